"""evidence.json: what a grade was given on. Every probe of every check (what, from where,
the command, its output, expected and seen), each check's outcome, and the state of the
lab seen when it was graded (addresses, routes, neighbours, switch ports with their VLAN
modes). Times are in `at`, `started` and `finished` only, so two gradings of the same
submission compare equal once those are left out (`without_times`).
"""

from __future__ import annotations

import re
import socket
from typing import Any

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


LINK_LOCAL = re.compile(r"\bfe80:|lladdr (?!b8:ad:ca:fe:)[0-9a-f:]{17}")


def comparable(data: Any) -> Any:
    """DATA without timestamps, and without what depends on the MAC addresses the lab host
    gives its own interfaces at random when it builds them (the SVI, the bridge, the host
    side of taps and veths): their link-local addresses and the neighbour entries that
    carry them. What remains (the student's addresses, routes, switch ports, the VM's own
    MAC from its tap number, every probe's outcome) is what two gradings of the same
    submission must agree on."""
    data = without_times(data)
    if isinstance(data, dict) and isinstance(data.get("state"), dict):
        data = {**data, "state": _strip_random(data["state"])}
    return data


def _strip_random(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_random(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_strip_random(v) for v in x
                if not (isinstance(v, str) and LINK_LOCAL.search(v))]
    return x


def state_of(lab: Any, vms: dict[str, Any], hosts: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """The state a grader saw: the lab host's and each VM's addresses, routes and
    neighbours, each switch's ports and their VLAN modes, forwarding. A part that cannot
    be read is recorded as its error (a dead VM is part of the evidence too)."""
    state: dict[str, Any] = {"lab_host": _net(lab), "switches": {}, "vms": {}, "hosts": {}}
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
        state["vms"][name] = _net(vm)
    for name, host in sorted((hosts or {}).items()):
        state["hosts"][name] = _net(host)
    return state


def _net(target: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("addresses", "routes", "neighbours"):
        try:
            if key == "addresses":
                rows = sorted(str(a) for a in target.addresses())
            elif key == "routes":
                rows = sorted(str(r) for r in target.routes(socket.AF_INET)
                              + target.routes(socket.AF_INET6))
            else:  # without their state (STALE, REACHABLE: a matter of timing), nor
                # the multicast entries (ff02::16...: the kernel's own MLD chatter)
                rows = sorted(f"{n.address} dev {n.dev} lladdr {n.mac or '-'}"
                              for n in target.neighbours()
                              if n.state not in ("FAILED", "INCOMPLETE")
                              and not n.address.startswith("ff"))
            out[key] = rows
        except (LabError, OSError) as e:
            out[key] = f"unreadable: {getattr(e, 'problem', e)}"
    return out
