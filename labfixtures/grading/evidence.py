"""evidence.json: what a grade was given on. Every probe of every check (what, from where,
the command, its output, expected and seen), each check's outcome, and the state of the
lab seen when it was graded (addresses, routes, neighbours, switch ports with their VLAN
modes). Times are in `at`, `started`, `finished` and `duration` only, so two gradings of
the same submission compare equal once those are left out (`without_times`).
"""

from __future__ import annotations

import contextlib
import re
import socket
from typing import Any

from labfixtures.core.addressing import eui64_link_local
from labfixtures.errors import LabError
from labfixtures.grading.model import Grade

TIME_KEYS = frozenset({"at", "started", "finished", "duration"})


def evidence(grade: Grade) -> dict[str, Any]:
    return {"version": 1, "student": grade.student, "target": grade.target,
            "grading_file": grade.grading_file, "status": grade.status,
            "reason": grade.reason, "started": grade.started, "finished": grade.finished,
            "checks": [{"name": c.spec.name, "outcome": c.outcome, "score": c.score,
                        "error": c.error, "needs": list(c.needs), "probes": c.probes}
                       for c in grade.checks],
            "state": grade.state}


def without_times(data: Any) -> Any:
    """DATA with every timestamp left out (to compare two gradings)."""
    if isinstance(data, dict):
        return {k: without_times(v) for k, v in data.items() if k not in TIME_KEYS}
    if isinstance(data, list):
        return [without_times(v) for v in data]
    return data


def state_of(lab: Any, vms: dict[str, Any], hosts: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """The state a grader saw: the lab host's and each VM's addresses, routes and
    neighbours, each switch's ports and their VLAN modes, forwarding. A part that cannot
    be read is recorded as its error (a dead VM is part of the evidence too).

    The MAC addresses the lab host gives its own interfaces (the SVI, the bridge, the host
    side of taps and veths: random at each build) are written as the interface's name,
    `<sw0-vlan2>`, and their link-local addresses as `<fe80 of sw0-vlan2>`: "vm0 resolved
    its gateway to sw0-vlan2" is what matters, and a regrade of the same submission then
    gives the same evidence. The students' own MACs (a VM's, from its tap) stay as seen.
    Link-local neighbour entries (IPv6 neighbour discovery's chatter, there or not
    depending on timing) are left out."""
    names = _lab_macs(lab)
    state: dict[str, Any] = {"lab_host": _net(lab, names), "switches": {}, "vms": {},
                             "hosts": {}}
    try:
        state["lab_host"]["forwarding"] = lab.nl.sysctl("net.ipv4.ip_forward")
    except (LabError, OSError) as e:
        state["lab_host"]["forwarding"] = f"unreadable: {e}"
    for name, sw in sorted(getattr(lab, "switches", {}).items()):
        ports: dict[str, str] = {}
        try:
            for p in sorted(sw.ports()):
                try:
                    ports[p] = str(sw.port_mode(p))
                except LabError as e:
                    ports[p] = f"unreadable: {e.problem}"
        except LabError as e:
            ports = {"error": e.problem}
        state["switches"][name] = ports
    for name, vm in sorted(vms.items()):
        state["vms"][name] = _net(vm, names)
    for name, host in sorted((hosts or {}).items()):
        state["hosts"][name] = _net(host, names)
    return state


def _lab_macs(lab: Any) -> dict[str, str]:
    """{MAC or link-local address: its name} for the lab host's own interfaces and its
    veth hosts (the teacher's too), whose MACs are random at each build."""
    names: dict[str, str] = {}
    with contextlib.suppress(LabError, OSError, AttributeError):
        for link in lab.nl.links():
            if link.mac and link.mac != "00:00:00:00:00:00":
                names[link.mac.lower()] = f"<{link.name}>"
                names[eui64_link_local(link.mac)] = f"<fe80 of {link.name}>"
    for host in getattr(lab, "hosts", {}).values():
        with contextlib.suppress(LabError, OSError, AttributeError):
            names[host.mac.lower()] = f"<{host.name}>"
            names[eui64_link_local(host.mac)] = f"<fe80 of {host.name}>"
    return names


def _named(row: str, names: dict[str, str]) -> str:
    return re.sub(r"fe80::[0-9a-f:]+|([0-9a-f]{2}:){5}[0-9a-f]{2}",
                  lambda m: names.get(m.group(0).lower(), m.group(0)), row)


def _net(target: Any, names: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("addresses", "routes", "neighbours"):
        try:
            if key == "addresses":
                rows = [str(a) for a in target.addresses()]
            elif key == "routes":
                rows = [str(r) for r in target.routes(socket.AF_INET)
                        + target.routes(socket.AF_INET6)]
            else:  # without their state (STALE, REACHABLE: a matter of timing), nor
                # multicast and link-local entries (MLD and neighbour discovery chatter)
                rows = [f"{n.address} dev {n.dev} lladdr {n.mac or '-'}"
                        for n in target.neighbours()
                        if n.state not in ("FAILED", "INCOMPLETE")
                        and not n.address.startswith(("ff", "fe80:"))]
            out[key] = sorted(_named(r, names) for r in rows)
        except (LabError, OSError) as e:
            out[key] = f"unreadable: {getattr(e, 'problem', e)}"
    return out
