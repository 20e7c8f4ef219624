"""The probes of a grading check: each reads one fact of the student's lab, records what it
probed, from where, the command, its output, what was expected and what was seen (the
evidence), and fails with a `CheckFailed` whose finding the feedback renders in the
student's language.

    def test_default_route(table1, probe):
        '''vm0's default route goes via 203.0.113.129
        fr: la route par défaut de vm0 passe par 203.0.113.129'''
        probe.default_route(table1.vm, via="203.0.113.129",
                            hint=("hint.table1.gateway", {"svi": "sw0-vlan2"}))

A HINT is a catalogue key, or (key, params); its text also gets `{expected}`, `{seen}` and
`{target}` (the probe's own, rendered in the same language).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labfixtures.errors import LabError
from labfixtures.grading.messages import Catalogue
from labfixtures.grading.model import CheckFailed, Finding, Message
from labfixtures.guests.guest import Guest
from labfixtures.guests.ssh import GuestSSH

Hint = str | tuple[str, dict[str, Any]] | Message | None
ENGLISH = Catalogue()  # the text of a failure in pytest's own report


def _is_lab_host(target: object) -> bool:
    return hasattr(target, "labid") and not isinstance(target, Guest)


def target_name(target: object) -> str:
    """What a student calls TARGET: a VM or host by name, the lab host as such."""
    if _is_lab_host(target):
        return "the lab host"
    return str(getattr(target, "name", None) or target)


def where_of(target: object) -> Message:
    if _is_lab_host(target):
        return Message("where.lab_host")  # (its namespace is named after the run)
    if isinstance(target, Guest):  # a VM of ours, or one attached to (a live lab)
        return Message("where.vm_ssh", {"vm": target_name(target)})
    return Message("where.host", {"host": target_name(target)})


class Prober:
    """Probes for one check; RECORDS collects the evidence (one dict per probe)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.records: list[dict[str, Any]] = []
        self._now = now

    # -- the one place a probe ends --------------------------------------------------------

    def done(self, ok: bool, probe: Message, where: Message, command: str, output: str,
             expected: Message, seen: Message, hint: Hint = None, share: float = 0.0,
             target: str = "", values: dict[str, Any] | None = None) -> None:
        """Record a probe; raise CheckFailed (with HINT, and SHARE of the points) if not OK.
        The hint's `{expected}` and `{seen}` are VALUES' (bare values) if given, else the
        probe's expected and seen sentences."""
        self.records.append({
            "probe": probe.to_json(), "where": where.to_json(), "command": command,
            "output": output, "expected": expected.to_json(), "seen": seen.to_json(),
            "ok": ok, "at": round(self._now(), 3)})
        if ok:
            return
        raise CheckFailed(Finding(probe, where, expected, seen,
                                  _hint(hint, expected, seen, target, values)), share,
                          render=lambda m: ENGLISH.render(m, "en"))

    # -- switches ---------------------------------------------------------------------------

    def port_vlan(self, switch: Any, port: str, vlan: int, hint: Hint = None) -> None:
        """PORT of SWITCH is an access port of VLAN."""
        probe = Message("probe.port_mode", {"port": port, "switch": switch.name})
        where = Message("where.switch", {"switch": switch.name})
        expected = Message("expect.access_port", {"vlan": vlan})
        try:
            mode = switch.port_mode(port)
        except LabError as e:
            self.done(False, probe, where, f"ovs-vsctl list port {port}", e.problem,
                      expected, Message("seen.no_port", {"port": port,
                                                         "switch": switch.name}), hint)
            return
        self.done(mode.mode == "access" and mode.tag == vlan, probe, where,
                  f"ovs-vsctl get port {port} vlan_mode tag trunks", str(mode), expected,
                  Message("seen.port_mode", {"mode": str(mode)}), hint,
                  target=port)

    # -- a guest or a host's own state ------------------------------------------------------

    def mac(self, vm: Any, expected_mac: str, dev: str = "eth0", hint: Hint = None) -> None:
        """DEV in VM has the MAC address EXPECTED_MAC (read in the guest)."""
        links = vm.links()
        link = next((x for x in links if x.name == dev), None)
        seen = link.mac if link else f"no interface {dev}"
        self.done(link is not None and link.mac.lower() == expected_mac.lower(),
                  Message("probe.mac", {"dev": dev, "vm": target_name(vm)}), where_of(vm),
                  "ip -j link show", "\n".join(f"{x.name} {x.mac}" for x in links),
                  Message("expect.value", {"value": expected_mac}),
                  Message("seen.value", {"value": seen}), hint, target=target_name(vm))

    def addresses(self, target: Any, cidrs: Sequence[str], dev: str = "eth0",
                  hint: Hint = None) -> None:
        """Every address of CIDRS is on DEV; a share of the points for each one there."""
        if isinstance(cidrs, str):
            raise TypeError("probe.addresses(): cidrs is a list, e.g. ['203.0.113.130/26']")
        rows = [a for a in target.addresses() if a.dev == dev]
        present = {a.cidr for a in rows}
        ok = sum(1 for c in cidrs if c in present)
        seen = ", ".join(a.cidr for a in rows if a.scope != "link") or None
        self.done(ok == len(cidrs),
                  Message("probe.addresses", {"dev": dev, "target": target_name(target)}),
                  where_of(target), f"ip -j addr show dev {dev}",
                  "\n".join(str(a) for a in rows),
                  Message("expect.addresses", {"addresses": ", ".join(cidrs)}),
                  Message("seen.addresses", {"addresses": seen or Message("seen.none"),
                                             "ok": ok, "total": len(cidrs)}),
                  hint, share=ok / len(cidrs) if cidrs else 0.0, target=target_name(target))

    def default_route(self, target: Any, via: str, dev: str | None = None,
                      hint: Hint = None) -> None:
        """TARGET's default route goes via VIA (and DEV if given)."""
        family = socket.AF_INET6 if ":" in via else socket.AF_INET
        routes = target.routes(family)
        defaults = [r for r in routes if r.dst == "default"]
        ok = any(r.gateway == via and (dev is None or r.dev == dev) for r in defaults)
        seen = (Message("seen.default_route", {"via": ", ".join(
                    f"{r.gateway or '-'}" + (f" dev {r.dev}" if dev else "")
                    for r in defaults)})
                if defaults else Message("seen.no_default_route"))
        self.done(ok, Message("probe.default_route", {"target": target_name(target)}),
                  where_of(target), "ip -j route show",
                  "\n".join(str(r) for r in routes),
                  Message("expect.default_route", {"via": via + (f" dev {dev}" if dev
                                                                 else "")}),
                  seen, hint, target=target_name(target),
                  values={"expected": via, "seen": ", ".join(
                      r.gateway or "-" for r in defaults) or Message("seen.none")})

    def neighbour(self, target: Any, address: str, mac: str, dev: str,
                  hint: Hint = None) -> None:
        """ADDRESS is resolved to MAC on DEV in TARGET's neighbour table."""
        table = [n for n in target.neighbours() if n.dev == dev]
        entries = [n for n in table if n.address == address]
        ok = any((n.mac or "").lower() == mac.lower() and n.state not in
                 ("FAILED", "INCOMPLETE") for n in entries)
        seen = (Message("seen.neighbour", {"entries": "; ".join(
                    f"{n.mac or '-'} ({n.state})" for n in entries)})
                if entries else Message("seen.no_neighbour", {"address": address}))
        self.done(ok, Message("probe.neighbour", {"address": address,
                                                  "target": target_name(target)}),
                  where_of(target), f"ip -j neigh show dev {dev}",
                  "\n".join(f"{n.address} lladdr {n.mac or '-'}" for n in table
                            if not n.address.startswith("ff")),
                  Message("expect.neighbour", {"address": address, "mac": mac, "dev": dev}),
                  seen, hint, target=target_name(target))

    def sysctl(self, lab: Any, key: str, expected: str, hint: Hint = None) -> None:
        """The lab host's net.* sysctl KEY is EXPECTED."""
        value = lab.nl.sysctl(key)
        self.done(value == expected, Message("probe.sysctl", {"key": key,
                                                              "target": target_name(lab)}),
                  where_of(lab), f"sysctl {key}", f"{key} = {value}",
                  Message("expect.value", {"value": f"{key} = {expected}"}),
                  Message("seen.value", {"value": f"{key} = {value}"}), hint,
                  target=target_name(lab))

    # -- reachability -----------------------------------------------------------------------

    def reachable(self, src: Any, address: str, within: float = 10.0, timeout: float = 1.0,
                  hint: Hint = None) -> None:
        """A ping from SRC to ADDRESS is answered (retried for up to WITHIN seconds: an
        ARP resolution or a VM just restored may take a moment)."""
        end = time.monotonic() + within
        while True:
            ok = bool(src.ping(address, timeout=timeout))
            if ok or time.monotonic() >= end:
                break
        self.done(ok, Message("probe.ping", {"src": target_name(src), "address": address}),
                  where_of(src), f"ping -c 1 -W {timeout:g} {address}",
                  "answered" if ok else f"no answer in {within:g} s",
                  Message("expect.answer"),
                  Message("seen.answer") if ok else
                  Message("seen.no_answer", {"timeout": f"{within:g}"}),
                  hint, target=target_name(src))

    def unreachable(self, src: Any, address: str, timeout: float = 1.0,
                    hint: Hint = None) -> None:
        """A ping from SRC to ADDRESS goes unanswered (isolation)."""
        answered = bool(src.ping(address, timeout=timeout))
        self.done(not answered,
                  Message("probe.no_ping", {"src": target_name(src), "address": address}),
                  where_of(src), f"ping -c 1 -W {timeout:g} {address}",
                  "answered" if answered else "no answer",
                  Message("expect.no_answer"),
                  Message("seen.answer") if answered else
                  Message("seen.no_answer", {"timeout": f"{timeout:g}"}),
                  hint, target=target_name(src))

    # -- SSH as the student would -----------------------------------------------------------

    def ssh(self, address: str, *, vm: str, user: str, key: Path | str, netns: str | None,
            deadline: float = 10.0, hint: Hint = None) -> None:
        """An SSH connection to ADDRESS (e.g. `fe80::baad:caff:fefe:2%sw0-vlan2`) from
        NETNS opens, as USER, and `hostname` there says VM. The host key is trusted for
        this connection only (never across students), and no agent is used."""
        probe = Message("probe.ssh", {"address": address, "user": user})
        where = Message("where.lab_host") if netns else Message("where.host",
                                                                {"host": "the grading host"})
        expected = Message("expect.ssh", {"vm": vm})
        conn = GuestSSH(address, user=user, key=key, netns=netns, known_hosts=None)
        try:
            conn.connect(deadline=deadline)
            out = conn.run("hostname", timeout=10).stdout.strip()
        except (LabError, OSError) as e:
            text = getattr(e, "problem", None) or str(e)
            self.done(False, probe, where, f"ssh {user}@{address} hostname", text,
                      expected, Message("seen.ssh_error", {"error": text.splitlines()[0]
                                                           if text else "?"}), hint,
                      target=vm)
            return
        finally:
            conn.close()
        self.done(out == vm, probe, where, f"ssh {user}@{address} hostname", out, expected,
                  Message("seen.ssh_other", {"hostname": out, "vm": vm}), hint, target=vm)


def _hint(hint: Hint, expected: Message, seen: Message, target: str,
          values: dict[str, Any] | None = None) -> Message | None:
    if hint is None:
        return None
    if isinstance(hint, Message):
        key, params = hint.key, dict(hint.params)
    elif isinstance(hint, str):
        key, params = hint, {}
    else:
        key, params = hint[0], dict(hint[1])
    for k, v in (values or {}).items():
        params.setdefault(k, v)
    params.setdefault("expected", expected)
    params.setdefault("seen", seen)
    params.setdefault("target", target)
    return Message(key, params)
