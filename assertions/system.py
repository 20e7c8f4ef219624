"""What a machine holds and runs, read from inside it: a file's contents, a service, a
listening socket.

A *target* is a VM (`run("shell command")` over SSH, labfixtures' `VM` or an attached
VM), or a veth host or the lab (commands run inside their namespace). The smallest guest
(busybox, no systemd, no ss) answers too: services are then checked by process name, and
sockets are read from `/proc/net/tcp*` / `/proc/net/udp*`, which is where `ss` reads them.

    assert_file_contains(vm, "/etc/hostname", "vm0")
    assert_file_contains(vm, "/etc/fstab", re.compile(r"^/dev/mapper/vm0-var\\s+/var", re.M))
    assert_service_running(vm, "ssh")          # systemd: `systemctl is-active ssh`
    assert_service_running(tiny, "dropbear")   # no systemctl: a process named dropbear
    assert_listening(vm, 22)                   # a TCP socket in LISTEN on port 22
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass
from typing import Any

from ._format import name_of, table, titled
from ._types import check_name

MAX_SHOWN = 40  # lines of a file shown in a failure message


def _check_target(func: str, target: object) -> None:
    __tracebackhide__ = True
    if isinstance(target, str):
        raise TypeError(f"{func}(): target is the string {target!r}, but it must be the "
                        f"machine itself: a VM (lab.vms[{target!r}]), a veth host "
                        f"(lab.hosts[{target!r}]) or the lab")
    if not hasattr(target, "run"):
        raise TypeError(f"{func}(): target must be a VM, a veth host or the lab (something "
                        f"with run()), not {type(target).__name__} ({target!r:.80})")


def _shell(target: Any, script: str) -> str:
    """SCRIPT's stdout, run by `sh` on TARGET. Scripts here always exit 0 and say what they
    found on stdout, so that a missing file is a finding, not an error."""
    __tracebackhide__ = True
    if hasattr(target, "ns") and (hasattr(target, "labid") or hasattr(target, "port")):
        res = target.run(["sh", "-c", script])  # a veth host or the lab: a namespace
    else:
        res = target.run(script)
    status = getattr(res, "exit_status", getattr(res, "returncode", 0))
    if status != 0:
        raise AssertionError(f"{name_of(target)}: reading the facts failed (status {status}): "
                             f"{(res.stderr or res.stdout).strip()[:300]}")
    return str(res.stdout)


# -- files -------------------------------------------------------------------------------------

def assert_file_contains(target: object, path: str, text_or_regex: str | re.Pattern[str]
                         ) -> str:
    """File PATH on TARGET contains TEXT (a substring) or matches REGEX (`re.search`, a
    compiled pattern). Returns the first line that holds the match."""
    __tracebackhide__ = True
    func = "assert_file_contains"
    _check_target(func, target)
    check_name(func, "path", path, "/etc/hostname")
    if not path.startswith("/"):
        raise TypeError(f"{func}(): path must be absolute (it is read on the target, from "
                        f"no particular directory): {path!r} -> '/{path}'?")
    if isinstance(text_or_regex, re.Pattern):
        pattern: re.Pattern[str] = text_or_regex
        want = f"a match for /{pattern.pattern}/"
    elif isinstance(text_or_regex, str) and text_or_regex:
        pattern = re.compile(re.escape(text_or_regex))
        want = f"the text {text_or_regex!r}"
    else:
        raise TypeError(f"{func}(): text_or_regex must be a non-empty string or a compiled "
                        f"regular expression (re.compile(...)), not {text_or_regex!r:.60}")
    q = shlex.quote(path)
    out = _shell(target, f"if [ -f {q} ] && [ -r {q} ]; then echo FILE; cat -- {q}; "
                         f"elif [ -e {q} ]; then echo NOTFILE; ls -ld -- {q}; "
                         f"else echo MISSING; ls -la -- \"$(dirname -- {q})\" 2>&1; fi; "
                         "exit 0")
    kind, _, body = out.partition("\n")
    if kind == "MISSING":
        raise AssertionError(
            f"{name_of(target)}: expected {path} to contain {want}, but there is no file "
            f"{path}.\n" + titled("its directory holds", body.splitlines(), "(nothing)"))
    if kind != "FILE":
        raise AssertionError(
            f"{name_of(target)}: expected {path} to contain {want}, but {path} is not a "
            f"readable regular file:\n{table(body.splitlines())}")
    m = pattern.search(body)
    if m:
        start = body.rfind("\n", 0, m.start()) + 1
        end = body.find("\n", m.start())
        return body[start:end if end >= 0 else None]
    lines = body.splitlines()
    shown = [f"{i:>3}  {line}" for i, line in enumerate(lines[:MAX_SHOWN], 1)]
    if len(lines) > MAX_SHOWN:
        shown.append(f"... ({len(lines) - MAX_SHOWN} more lines)")
    raise AssertionError(
        f"{name_of(target)}: expected {path} to contain {want}, but it does not.\n"
        + titled(f"{path} ({len(lines)} lines)", shown, "(empty file)"))


# -- services ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Process:
    pid: int
    comm: str  # the kernel's name for it (15 characters at most)
    argv0: str

    def __str__(self) -> str:
        return f"{self.pid:>6}  {self.comm:<16} {self.argv0}"


_SERVICE_SCRIPT = """
name={name}
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  echo SYSTEMD
  systemctl show -p Id -p LoadState -p ActiveState -p SubState -p MainPID -- "$name"
  echo ---
  systemctl status --no-pager --lines=5 -- "$name" 2>&1 | head -n 15
else
  echo PROCS
  for p in /proc/[0-9]*; do
    c=$(cat "$p/comm" 2>/dev/null) || continue
    a=$(tr '\\0' '\\n' < "$p/cmdline" 2>/dev/null | head -n 1)
    echo "${{p#/proc/}} $c ${{a:-[$c]}}"
  done
fi
exit 0
"""


def _processes(out: str) -> list[Process]:
    procs = []
    for line in out.splitlines():
        f = line.split(" ", 2)
        if len(f) == 3 and f[0].isdigit():
            procs.append(Process(int(f[0]), f[1], f[2]))
    return sorted(procs, key=lambda p: p.pid)


def assert_service_running(target: object, name: str) -> object:
    """Service NAME runs on TARGET: `systemctl` says it is active (a systemd guest, e.g.
    `debian`), or, without systemd (the `tiny` guest: busybox init, dropbear), a process
    named NAME exists. Returns systemd's properties (a dict) or the Process."""
    __tracebackhide__ = True
    func = "assert_service_running"
    _check_target(func, target)
    check_name(func, "name", name, "ssh")
    if any(c.isspace() or c in "/;&|$`'\"" for c in name):
        raise TypeError(f"{func}(): name must be a service or process name such as 'ssh' "
                        f"or 'dropbear', not {name!r}")
    out = _shell(target, _SERVICE_SCRIPT.format(name=shlex.quote(name)))
    kind, _, body = out.partition("\n")
    if kind == "SYSTEMD":
        props_text, _, status = body.partition("---\n")
        props = dict(line.split("=", 1) for line in props_text.splitlines() if "=" in line)
        if props.get("ActiveState") == "active":
            return props
        unit = props.get("Id") or name
        if props.get("LoadState") == "not-found":
            problem = f"there is no unit {unit} (LoadState not-found): is the package installed?"
        else:
            problem = (f"{unit} is {props.get('ActiveState', '?')} "
                       f"({props.get('SubState', '?')})")
        raise AssertionError(
            f"{name_of(target)}: expected service {name} to be running, but {problem}.\n"
            + titled(f"systemctl status {name}", status.rstrip().splitlines(), "(nothing)")
            + f"\n  start it: `systemctl start {name}`; at every boot: "
              f"`systemctl enable {name}`")
    procs = _processes(body)
    found = [p for p in procs if p.comm == name or p.comm == name[:15]
             or p.argv0.rsplit("/", 1)[-1] == name]
    if found:
        return found[0]
    shown = [p for p in procs if not p.argv0.startswith("[")]  # no kernel threads
    raise AssertionError(
        f"{name_of(target)}: expected service {name} to be running, but no process is "
        f"named {name} (no systemd here: services are checked by process name).\n"
        + titled("processes (kernel threads left out)", shown, "(none)"))


# -- listening sockets -------------------------------------------------------------------------

@dataclass(frozen=True)
class Socket:
    proto: str  # tcp, tcp6, udp, udp6
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.proto:<5} {host}:{self.port}"


def _hex_address(text: str) -> str:
    """/proc/net/tcp's address: 32-bit words in the host's (little-endian) byte order."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def parse_proc_net(proto: str, text: str) -> list[Socket]:
    """Listening sockets of a `/proc/net/{tcp,udp}[6]` table: TCP in state LISTEN (0A),
    UDP unconnected (07), as `ss -l` shows them."""
    listening = "0A" if proto.startswith("tcp") else "07"
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) > 3 and f[3] == listening and ":" in f[1]:
            addr, port = f[1].split(":")
            out.append(Socket(proto, _hex_address(addr), int(port, 16)))
    return out


def assert_listening(target: object, port: int, proto: str = "tcp") -> list[Socket]:
    """A PROTO ('tcp' or 'udp') socket listens on PORT on TARGET, IPv4 or IPv6 (what
    `ss -ltn` / `ss -lun` shows, read from /proc/net). Returns the matching sockets."""
    __tracebackhide__ = True
    func = "assert_listening"
    _check_target(func, target)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise TypeError(f"{func}(): port must be a port number (1-65535), not {port!r:.40}")
    if proto not in ("tcp", "udp"):
        raise TypeError(f"{func}(): proto must be 'tcp' or 'udp', not {proto!r:.40}")
    out = _shell(target, f"for t in {proto} {proto}6; do echo \"== $t\"; "
                         f"cat /proc/net/$t 2>/dev/null; done; exit 0")
    sockets: list[Socket] = []
    for block in out.split("== ")[1:]:
        name, _, text = block.partition("\n")
        sockets += parse_proc_net(name.strip(), text)
    found = [s for s in sockets if s.port == port]
    if found:
        return found
    flag = "t" if proto == "tcp" else "u"
    sockets.sort(key=lambda sock: (sock.port, sock.proto))
    raise AssertionError(
        f"{name_of(target)}: expected a {proto.upper()} socket listening on port {port}, "
        "but nothing listens there.\n"
        + titled(f"listening {proto.upper()} sockets (ss -l{flag}n)",
                 sockets, "(none)")
        + "\n  is the service running, and configured for this port?")
