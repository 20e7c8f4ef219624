"""What a failed test's report shows about its lab, written for the student reading it.

- the lab's state (interfaces, addresses, switches, VMs: `Lab.status()`);
- the Open vSwitch logs without their INFO chatter: warnings and errors only, and the
  lines known to be harmless in a lab (OVS looking for a kernel module or a /proc file
  that a lab namespace does not have) replaced by one explaining line each;
- for each VM: the QEMU command line (replayable), the end of its serial console and
  QEMU's own messages.
"""

from __future__ import annotations

from pathlib import Path

from labfixtures.lab.lab import Lab

TAIL_LINES = 40

#: OVS log lines that say nothing about the lab under test, and why (OVS's own test suite
#: keeps such a list in OVS_VSWITCHD_STOP)
HARMLESS = (
    ("netdev_max_backlog: open failed",
     "OVS could not read /proc/sys/net/core/netdev_max_backlog, which a lab's network "
     "namespace does not have: harmless"),
    ("kernel module is probably not loaded",
     "no openvswitch kernel module here: the lab uses the userspace datapath (netdev), "
     "as intended"),
    ("error receiving data from",
     "a port's device went away while ovs-vswitchd read it (a test removed a link): "
     "harmless"),
)
SERIOUS = ("WARN", "ERR", "EMER")


def harmless(line: str) -> str | None:
    """The explanation of LINE if it is a known harmless OVS message, else None."""
    return next((why for pattern, why in HARMLESS if pattern in line), None)


def _level(line: str) -> str | None:
    """The level of an OVS log line (`2026-...|00045|module|WARN|text`), None for a
    continuation line."""
    parts = line.split("|", 4)
    return parts[3] if len(parts) == 5 and parts[1].isdigit() else None


def ovs_log_excerpt(text: str, max_lines: int = TAIL_LINES) -> str:
    """The warnings and errors of an OVS log (the last MAX_LINES), INFO/DBG lines left
    out and each known harmless message replaced by one note."""
    kept: list[str] = []
    notes: list[str] = []
    keep = False
    dropped = 0
    for line in text.splitlines():
        level = _level(line)
        if level is not None:
            why = harmless(line)
            keep = level in SERIOUS and why is None
            if why is not None and level in SERIOUS and f"note: {why}" not in notes:
                notes.append(f"note: {why}")
            if not keep:
                dropped += 1
        if keep:
            kept.append(line)
    head = f"({dropped} INFO or harmless line(s) left out)"
    if not kept:
        return "\n".join([f"no warnings or errors {head}", *notes])
    return "\n".join([*kept[-max_lines:], *notes, head])


def ovs_problems(lines: list[str]) -> list[str]:
    """Error lines (from `OvsServer.log_problems()`) that are not known to be harmless."""
    return [line for line in lines if harmless(line) is None]


def _tail(path: Path, n: int = TAIL_LINES) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def failure_sections(lab: Lab) -> list[tuple[str, str]]:
    """(title, text) sections describing LAB for a failed test's report."""
    sections = [("labfixtures: lab state", lab.status())]
    ovs = [f"{log.name}: " + ovs_log_excerpt(log.read_text(errors="replace"))
           for log in lab.ovs.logs if log.exists() and log.stat().st_size]
    if ovs:
        sections.append((f"labfixtures: Open vSwitch warnings and errors (full logs in "
                         f"{lab.ovs.logs[0].parent})", "\n".join(ovs)))
    for vm in lab.vms.values():
        if vm.machine is None:
            continue
        for title, log in (("QEMU command line", vm.machine.cmdline_file),
                           ("serial console, last lines", vm.machine.serial_log),
                           ("QEMU messages", vm.machine.stderr_log)):
            if log.exists() and log.stat().st_size:
                sections.append((f"labfixtures: VM {vm.name}: {title} ({log})", _tail(log)))
    return sections
