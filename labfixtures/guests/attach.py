"""Attach mode: a VM that labfixtures did not start, as the target of the same checks.

A teacher grades the VM a student started with the guide's own `ovs-startup.sh`; CI
checks a VM kept by another tool. `AttachedVM` reaches it over SSH (key or password),
optionally from inside a network namespace, and answers the same reads as a VM of ours
(`routes()`, `addresses()`, `neighbours()`, `ping()`...), so `assertions/` apply as they
are. Nothing is started and nothing is torn down: closing only closes the connection.

    vm = AttachedVM.parse("vm0=etu@[fe80::baad:caff:fefe:2%sw0-vlan2]:22")
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from labfixtures.core import netns as _netns
from labfixtures.errors import LabError
from labfixtures.guests.guest import Guest
from labfixtures.guests.ssh import GuestSSH, Result

_TARGET = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9_.-]+)@)?"
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\]|(?P<host>[^:@\s\[\]]+))"
    r"(?::(?P<port>\d{1,5}))?$")


class AttachCredentialsError(LabError):
    """Neither a key nor a password was given, or the guest refused them (no retry)."""


class AttachNamespaceError(LabError):
    """The target's address needs a network namespace it was not given (or a missing one)."""


class AttachedVM(Guest):
    """A running machine reached over SSH, started by someone else."""

    def __init__(self, name: str, host: str, port: int = 22, *, user: str = "root",
                 key: Path | str | None = None, password: str | None = None,
                 netns: str | None = None, known_hosts: Path | str | None = None) -> None:
        self.name = name
        self.address = host
        self.port = port
        self.user = user
        self.netns = netns
        self._ssh = GuestSSH(host, port, user=user, key=key, password=password,
                             netns=netns, known_hosts=known_hosts)

    def __repr__(self) -> str:
        return f"AttachedVM({self.name!r}, {self.user}@{self.address}:{self.port})"

    @classmethod
    def parse(cls, spec: str, **kw: Any) -> AttachedVM:
        """`NAME=[USER@]HOST[:PORT]`, an IPv6 address in brackets: `[fe80::1%sw0-vlan2]`."""
        name, sep, target = spec.partition("=")
        m = _TARGET.match(target) if sep else None
        if not name or m is None:
            raise LabError(
                f"cannot read the attach target {spec!r}",
                "write NAME=[USER@]HOST[:PORT], e.g. vm0=etu@192.0.2.10:2210 or "
                "vm0=root@[fe80::baad:caff:fefe:2%sw0-vlan2]")
        port = int(m["port"] or 22)
        if not 0 < port < 65536:
            raise LabError(f"port {port} in {spec!r} is out of range", "use 1..65535")
        return cls(name, m["v6"] or m["host"], port, user=m["user"] or kw.pop("user", "root"),
                   **kw)

    def check_reachable_here(self) -> None:
        """Fail at once, without a network round trip, when the target cannot be tried:
        no credentials, a missing namespace, or a scope interface that is not there."""
        if self._ssh.key_path is None and not self._ssh.password:
            raise AttachCredentialsError(
                f"no credentials for {self.user}@{self.address}: neither a key nor a "
                "password", "give a private key (key=) or a password (password=)")
        if self._ssh.key_path is not None and not self._ssh.key_path.is_file():
            raise AttachCredentialsError(f"the SSH key {self._ssh.key_path} does not exist",
                                         "give the path of an existing private key")
        if self.netns is not None and not _netns.exists(self.netns):
            raise AttachNamespaceError(f"network namespace {self.netns!r} does not exist",
                                       "list namespaces with `ip netns list`")
        if self.netns is not None and os.geteuid() != 0:
            raise LabError(f"reaching {self.name} from network namespace {self.netns} needs "
                           "root privileges", "run it under sudo")
        scope = self.address.partition("%")[2]
        if scope and not scope.isdigit() and not _interface_exists(scope, self.netns):
            where = f"namespace {self.netns}" if self.netns else "this network namespace"
            raise AttachNamespaceError(
                f"interface {scope!r} (the scope of {self.address}) does not exist in "
                f"{where}", "reach the target from the namespace that holds the interface")

    def connect(self, deadline: float = 30.0) -> AttachedVM:
        """Connect, retrying until DEADLINE only for network errors (a guest still
        booting); missing credentials, a missing namespace or a refused login fail at
        once."""
        if self._ssh.active:
            return self
        self.check_reachable_here()
        try:
            self._ssh.connect(deadline=deadline)
        except LabError as e:
            if "authentication" in e.problem:
                raise AttachCredentialsError(e.problem, "check the user, the key or the "
                                             "password") from None
            raise
        return self

    def run(self, cmd: str, timeout: float = 60.0, check: bool = False) -> Result:
        if not self._ssh.active:
            self.connect(deadline=30.0)
        return self._ssh.run(cmd, timeout=timeout, check=check)

    @property
    def host(self) -> Any:
        """A pytest-testinfra host over the same SSH connection."""
        return self._ssh.testinfra_host()

    def close(self) -> None:
        self._ssh.close()

    def __enter__(self) -> AttachedVM:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _interface_exists(name: str, netns: str | None) -> bool:
    """Whether interface NAME exists in NETNS (None: the calling thread's namespace)."""
    try:
        with _netns.entered(netns):
            socket.if_nametoindex(name)
    except OSError:
        return False
    return True
