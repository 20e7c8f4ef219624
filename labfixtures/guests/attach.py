"""Attach mode: a VM that labfixtures did not start, as the target of the same checks.

A teacher grades the VM a student started with the guide's own `ovs-startup.sh`; CI
checks a VM kept by another tool. `AttachedVM` reaches it over SSH (key or password),
optionally from inside a network namespace, and answers the same reads as a VM of ours
(`routes()`, `addresses()`, `neighbours()`, `ping()`...), so `assertions/` apply as they
are. Nothing is started and nothing is torn down: closing only closes the connection.

    vm = AttachedVM.parse("vm0=etu@[fe80::baad:caff:fefe:2%sw0-vlan2]:22")
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from labfixtures.errors import LabError
from labfixtures.guests.ssh import GuestSSH, Result
from labfixtures.guests.guest import Guest

_TARGET = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9_.-]+)@)?"
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\]|(?P<host>[^:@\s\[\]]+))"
    r"(?::(?P<port>\d{1,5}))?$")


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

    def connect(self, deadline: float = 30.0) -> AttachedVM:
        self._ssh.connect(deadline=deadline)
        return self

    def run(self, cmd: str, timeout: float = 60.0, check: bool = False) -> Result:
        if not self._ssh.active:
            self._ssh.connect(deadline=30.0)
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
