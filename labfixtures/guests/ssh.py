"""SSH to lab guests from the test process, through a socket opened in the lab namespace.

Why not `ip netns exec ssh ...`: one process per command is slow and loses the connection
between commands. Here the TCP socket is created with the calling thread inside the lab
namespace (`netns.entered`) and handed to paramiko (`sock=`); the connection then lives in
that namespace while the test process stays where it is. A link-local address with a scope
(`fe80::baad:caff:fefe:2%sw0-vlan2`) is resolved to an interface index *inside* the
namespace too, since the index of sw0-vlan2 only means something there.

The first attempt after a boot or a checkpoint restore may fail; `connect()` retries with
short timeouts until a deadline instead of waiting out one long timeout.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import select
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from labfixtures.core import netns as _netns
from labfixtures.errors import HostKeyChangedError, LabError

if TYPE_CHECKING:
    import paramiko


@dataclass
class Result:
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self, cmd: str = "") -> Result:
        if self.exit_status != 0:
            raise LabError(f"`{cmd}` exited with {self.exit_status}: "
                           f"{(self.stderr or self.stdout).strip()[:500]}",
                           "look at the command's output above")
        return self


def _sockaddr(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    """Resolve HOST (IPv4, IPv6, `fe80::1%ifname`) in the current namespace."""
    addr, _, scope = host.partition("%")
    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)
    family, _, _, _, found = infos[0]
    sa: tuple[Any, ...] = tuple(found)
    if family == socket.AF_INET6 and scope:
        try:
            scope_id = int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
        except OSError:
            raise LabError(f"interface {scope!r} of address {host} does not exist here",
                           "check the interface name and the lab namespace") from None
        sa = (sa[0], sa[1], 0, scope_id)
    return family, sa


def open_socket(host: str, port: int, netns: str | None, timeout: float) -> socket.socket:
    """A TCP socket connected to HOST:PORT, created inside NETNS (if given)."""
    ctx = _netns.entered(netns) if netns else contextlib.nullcontext()
    with ctx:
        family, sa = _sockaddr(host, port)
        sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sa)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


class GuestSSH:
    """One SSH connection to a guest; reconnects on demand; a testinfra host on top."""

    def __init__(self, host: str, port: int = 22, *, user: str = "root",
                 key: Path | str | None = None, netns: str | None = None,
                 known_hosts: Path | str | None = None, connect_timeout: float = 1.0,
                 host_key: str | None = None, password: str | None = None) -> None:
        self.host, self.port, self.user = host, port, user
        self.password = password  # for attached VMs (a student's VM); ours use keys
        self.key_path = Path(key) if key else None
        self.netns = netns
        self.known_hosts = Path(known_hosts) if known_hosts else None
        self.connect_timeout = connect_timeout
        self.host_key = host_key
        self._client: paramiko.SSHClient | None = None

    @property
    def host_key_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _new_client(self) -> paramiko.SSHClient:
        import paramiko  # on first use: 0.2 s that `labctl --help` or a grading parent skip

        client = paramiko.SSHClient()
        if self.known_hosts is not None:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            self.known_hosts.touch(exist_ok=True)
            client.load_host_keys(str(self.known_hosts))
        if self.host_key:  # the image's host key, known from its manifest
            kind, _, b64 = self.host_key.partition(" ")
            client.get_host_keys().add(self.host_key_name, kind,
                                       paramiko.PKey.from_type_string(kind, _b64(b64)))
        # Lab guests are created seconds ago: trust on first use, remember per lab.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return client

    def connect(self, deadline: float = 60.0, retry_interval: float = 0.05) -> GuestSSH:
        """Connect, retrying with short timeouts until DEADLINE seconds have passed."""
        if self._client is not None and self.active:
            return self
        import paramiko

        pkey = paramiko.PKey.from_path(self.key_path) if self.key_path else None
        end = time.monotonic() + deadline
        last: BaseException | None = None
        attempts = 0
        while True:
            attempts += 1
            client = self._new_client()
            sock = None
            try:
                sock = open_socket(self.host, self.port, self.netns, self.connect_timeout)
                # slirp's hostfwd accepts before the guest listens: wait for the banner
                # only briefly at first, but give key exchange time (slow under TCG on a
                # busy host). The banner wait grows with the attempts: a guest sshd that
                # needs more than 2 s for it (a TCG guest on an overloaded host) is
                # otherwise dropped before it answers, again and again. The key exchange
                # gets the same time (paramiko's `timeout`: past it, connect() fails with
                # "No existing session", seen after a reboot under load 17).
                banner = min(max(2 * self.connect_timeout, 2.0) * attempts, 30.0)
                with _quiet_paramiko():
                    client.connect(self.host, self.port, username=self.user, pkey=pkey,
                                   password=self.password,
                                   sock=sock, timeout=banner,
                                   banner_timeout=banner,
                                   auth_timeout=15.0, look_for_keys=False,
                                   allow_agent=False)
                self._client = client
                return self
            except paramiko.BadHostKeyException as e:
                # never replaced silently: the remembered key stays in the file
                client.close()
                raise HostKeyChangedError(
                    self.host_key_name, e.key.get_name(), fingerprint(e.expected_key),
                    fingerprint(e.key),
                    str(self.known_hosts) if self.known_hosts is not None else None
                ) from None
            except paramiko.AuthenticationException as e:
                client.close()
                raise LabError(f"SSH authentication as {self.user}@{self.host_key_name} "
                               f"failed: {e}",
                               "is the image built with this cache's key pair?") from None
            except LabError:
                client.close()
                raise
            except (OSError, EOFError, paramiko.SSHException) as e:
                last = e
                client.close()
                if sock is not None:
                    sock.close()
            if time.monotonic() + retry_interval > end:
                raise LabError(
                    f"no SSH connection to {self.user}@{self.host_key_name}"
                    f"{' in ' + self.netns if self.netns else ''} after {deadline:g}s "
                    f"({attempts} attempts; last error: {last!r})",
                    "check the guest's serial log, its address and the lab's links")
            time.sleep(retry_interval)

    @property
    def active(self) -> bool:
        t = self._client.get_transport() if self._client else None
        return bool(t and t.is_active())

    @property
    def client(self) -> paramiko.SSHClient:
        if not self.active:
            self.connect(deadline=10.0)
        assert self._client is not None
        return self._client

    def run(self, cmd: str, timeout: float = 60.0, check: bool = False,
            input: str | bytes | None = None) -> Result:
        """Run CMD in the guest's shell; stdout and stderr read together (no deadlock)."""
        transport = self.client.get_transport()
        assert transport is not None
        chan = transport.open_session(timeout=timeout)
        try:
            chan.settimeout(timeout)
            chan.exec_command(cmd)
            if input is not None:
                chan.sendall(input.encode() if isinstance(input, str) else input)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            end = time.monotonic() + timeout
            eof_grace: float | None = None
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                # the exit status may come before the last output (sshd sends it when the
                # command exits, its pipes may still hold data): done at the channel's
                # EOF, or a moment after the status from a server that sends none
                if chan.exit_status_ready() and not chan.recv_ready() \
                        and not chan.recv_stderr_ready():
                    if chan.eof_received or chan.closed:
                        break
                    eof_grace = eof_grace or time.monotonic() + 2.0
                    if time.monotonic() > eof_grace:
                        break
                if time.monotonic() > end:
                    raise LabError(f"`{cmd}` did not finish within {timeout:g}s on "
                                   f"{self.host_key_name}", "raise the timeout or fix the command")
                select.select([chan], [], [], 0.02)
            # drain what arrived with the exit status
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            result = Result(chan.recv_exit_status(), out.decode(errors="replace"),
                            err.decode(errors="replace"))
        finally:
            chan.close()
        return result.check(cmd) if check else result

    def testinfra_host(self) -> Any:
        """A pytest-testinfra Host whose commands go through this connection."""
        import testinfra.host

        return testinfra.host.Host(_backend_for(self))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> GuestSSH:
        return self.connect()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@contextlib.contextmanager
def _quiet_paramiko() -> Any:
    """paramiko logs a traceback for every failed attempt; retries are expected here."""
    log = logging.getLogger("paramiko.transport")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def forget_host_keys(known_hosts: Path, names: Iterable[str]) -> list[str]:
    """Drop the lines of NAMES (`host` or `[host]:port`) from the KNOWN_HOSTS file; the
    lines removed. A guest that is gone takes its key with it: the next guest at that
    address is a new machine, met for the first time (a key that changes while a guest
    lives is still refused). Lines of other hosts, and comments, stay as they are."""
    if not known_hosts.is_file():
        return []
    wanted = set(names)
    kept: list[str] = []
    dropped: list[str] = []
    for line in known_hosts.read_text().splitlines(keepends=True):
        fields = line.split()
        hosts = set(fields[0].split(",")) if fields and not line.startswith("#") else set()
        (dropped if hosts & wanted else kept).append(line)
    if dropped:
        known_hosts.write_text("".join(kept))
    return dropped


def fingerprint(key: paramiko.PKey) -> str:
    """KEY's fingerprint as OpenSSH prints it (`ssh-keygen -lf`): `SHA256:` and the
    unpadded base64 of the SHA-256 of the public key blob."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _b64(s: str) -> bytes:
    import base64

    return base64.b64decode(s)


def connect(host: str, port: int = 22, *, deadline: float = 60.0, **kw: Any) -> GuestSSH:
    """Shorthand: `GuestSSH(host, port, **kw).connect(deadline)`."""
    return GuestSSH(host, port, **kw).connect(deadline)


def _backend_for(conn: GuestSSH) -> Any:
    """testinfra's ParamikoBackend builds its own SSHClient from a host spec, which cannot
    reach into a namespace; this subclass hands it our client instead (and reconnects
    through us when testinfra drops a dead transport)."""
    from testinfra.backend.paramiko import ParamikoBackend

    def client(self: Any) -> paramiko.SSHClient:
        return conn.client

    def forget_client(self: Any) -> None:
        conn.close()

    # made with type(): ParamikoBackend is untyped, a class statement would subclass Any
    backend = type("LabParamikoBackend", (ParamikoBackend,),
                   {"NAME": "labfixtures", "client": property(client, None, forget_client)})
    return backend(f"paramiko://{conn.user}@guest")
