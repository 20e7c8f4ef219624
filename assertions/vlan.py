"""VLAN checks on real frames, with scapy.

A frame carrying a unique marker is sent from one switch port and captured on others, by
AF_PACKET sockets opened *inside* each port's namespace (scapy's socket built with the
thread in that namespace). Ping cannot show what these show: which port a frame reached,
and with which 802.1Q tag.

A *port* is a veth host (its `eth0`) or `(lab, "ifname")` for a port of a lab switch seen
from the lab host: an SVI (`sw0-vlan2`), a tap towards a VM (`tap2`), a veth end.

Silence proves nothing unless the listener could have heard. So every listening port
first gets its own control frame, sent by the switch straight out of that port
(`ovs-ofctl packet-out ... actions=output:PORT`, whatever its VLAN), and must hear it
before its silence counts as isolation. A frame leaving the switch through a port is
heard the way it arrives there: received on a veth host's `eth0` and on an SVI (an
internal port: the frame goes up into the lab host's stack), but *transmitted* on a tap
or a veth end in the lab namespace (PACKET_OUTGOING: it leaves the lab host towards the VM
or the host). A port that cannot hear its control (a tap with no VM behind it drops what
it is given) is refused, with the assertion to use instead.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labfixtures.core import netns
from labfixtures.errors import LabError
from labfixtures.report.frames import CapturedFrame, attach

from ._format import bullets, name_of

ETHERTYPE_PROBE = 0x88B5  # IEEE 802 local experimental: never mistaken for real traffic
PACKET_OUTGOING = 4
CONTROL_TIMEOUT = 2.0  # seconds for every listening port to hear its control frame
GUEST_ASSERTIONS = ("assert_frames_reach_guest / assert_frames_do_not_reach_guest (frames "
                    "counted inside the VM) or assert_guest_frames_isolated (frames the VM "
                    "sends)")


@dataclass(frozen=True)
class Port:
    """Where to listen: interface IFNAME in namespace NS (equal ports: same NS, IFNAME).

    LAB and SWITCH_PORT (the OVS port's name) allow the control frame; IN_LAB says the
    interface is in the lab namespace (a tap, an SVI, a veth end), not a host's eth0."""

    ns: str
    ifname: str
    label: str = field(compare=False)
    lab: Any = field(default=None, compare=False)
    switch_port: str | None = field(default=None, compare=False)
    in_lab: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return self.label


def _is_lab(x: object) -> bool:
    return hasattr(x, "ns") and hasattr(x, "ovs") and hasattr(x, "labid")


def _is_host(x: object) -> bool:
    return hasattr(x, "ns") and hasattr(x, "port") and hasattr(x, "lab")


def _looks_like_one_port(x: object) -> bool:
    return isinstance(x, Port) or _is_host(x) or (
        isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], str))


def port(x: object, arg: str = "port", func: str = "port") -> Port:
    """A Port from what the assertions accept; a TypeError naming ARG otherwise."""
    __tracebackhide__ = True
    if isinstance(x, Port):
        return x
    if isinstance(x, tuple) and len(x) == 2 and _is_lab(x[0]) and isinstance(x[1], str):
        lab, ifname = x
        return Port(lab.ns, ifname, f"{ifname} (lab host)", lab, ifname, in_lab=True)
    if _is_host(x):
        h: Any = x
        return Port(h.ns, "eth0", f"{h.name} (eth0)", h.lab, h.port)
    fix = ("a veth host object (e.g. lab.hosts['h2']), or (lab, 'IFNAME') for a port of "
           "the lab host (an SVI such as 'sw0-vlan2', a tap such as 'tap2')")
    if isinstance(x, str):
        raise TypeError(f"{func}(): {arg} is the string {x!r}, but a port is {fix}.\n"
                        f"  fix: pass lab.hosts[{x!r}] for a veth host, (lab, {x!r}) for "
                        "an interface of the lab host")
    if hasattr(x, "run") and hasattr(x, "mac"):
        raise TypeError(f"{func}(): {arg} is a VM ({name_of(x)}); a port is {fix}.\n"
                        "  fix: listen on its tap, (lab, 'tapN'), or use "
                        + GUEST_ASSERTIONS)
    if isinstance(x, tuple):
        raise TypeError(f"{func}(): {arg}={x!r:.80} is not a port: a port is {fix}")
    raise TypeError(f"{func}(): {arg} must be {fix}, not {type(x).__name__} ({x!r:.80})")


def ports(value: object, arg: str, func: str) -> list[Port]:
    """A list of ports (SAME_VLAN, OTHER_VLANS, RECEIVERS): one port alone is refused."""
    __tracebackhide__ = True
    if _looks_like_one_port(value) or isinstance(value, str) or \
            not isinstance(value, list | tuple):
        raise TypeError(f"{func}(): {arg} must be a list of ports, got one value "
                        f"{value!r:.80}.\n  fix: {arg}=[{value!r:.60}]")
    return [port(p, f"{arg}[{i}]", func) for i, p in enumerate(value)]


def probe_frame(marker: bytes, vid: int | None = None, src: str = "02:00:00:00:00:01"
                ) -> Any:
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    frame = Ether(dst="ff:ff:ff:ff:ff:ff", src=src)
    if vid is not None:
        frame = frame / Dot1Q(vlan=vid, type=ETHERTYPE_PROBE)
    else:
        frame.type = ETHERTYPE_PROBE
    return frame / Raw(marker)


# -- where a port is on its switch -----------------------------------------------------------

@dataclass(frozen=True)
class _SwitchPort:
    bridge: str
    ofport: int
    internal: bool


def _locate(p: Port) -> _SwitchPort | None:
    """The bridge and OpenFlow port number of P's switch port, None if it has none."""
    if p.lab is None or p.switch_port is None:
        return None
    out = p.lab.ovs.vsctl("--if-exists", "get", "Interface", p.switch_port, "type",
                          "ofport").split()
    if len(out) < 2 or not out[1].lstrip("-").isdigit() or int(out[1]) < 0:
        return None
    bridge = p.lab.ovs.vsctl("iface-to-br", p.switch_port).strip()
    return _SwitchPort(bridge, int(out[1]), out[0].strip('"') == "internal")


def _packet_out(p: Port, where: _SwitchPort, frame: bytes) -> None:
    """The switch sends FRAME straight out of P's port (no flow table, no VLAN rules)."""
    __tracebackhide__ = True
    ovs = p.lab.ovs
    argv = ["ovs-ofctl", "packet-out", f"unix:{ovs.rundir}/{where.bridge}.mgmt",
            f"in_port=controller,packet={frame.hex()},actions=output:{where.ofport}"]
    r = subprocess.run(argv, env=ovs.env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    if r.returncode != 0:
        raise LabError(f"could not send the control frame out of {p}: `{' '.join(argv)}` "
                       f"failed: {r.stderr.strip()}", "is the switch still running?")


# -- capture ---------------------------------------------------------------------------------

class Capture:
    """Listen on several ports at once; `frames(marker)` says who saw what.

    With CONTROL (the default), each port must first hear a frame that the switch sends
    straight out of it: a port that cannot hear is refused (LabError) before anything
    is concluded from its silence."""

    def __init__(self, ports_: Iterable[object], control: bool = True,
                 func: str = "Capture") -> None:
        __tracebackhide__ = True
        self.ports = [port(p, "port", func) for p in ports_]
        twice = sorted({str(p) for p in self.ports if self.ports.count(p) > 1})
        if twice:
            raise TypeError(f"{func}(): {', '.join(twice)} listed twice: each port is "
                            "either in the sender's VLAN or in another one")
        self.socks: dict[Port, Any] = {}
        # how a frame from the switch shows on each interface: received (True: a host's
        # eth0, an SVI) or transmitted (False: a tap or a veth end in the lab namespace)
        self.inward = {p: not p.in_lab for p in self.ports}
        self.func = func
        try:
            for p in self.ports:
                self.socks[p] = self._open(p)
            if control and self.ports:
                self._control()
        except BaseException:
            self.close()
            raise

    def _open(self, p: Port) -> Any:
        __tracebackhide__ = True
        from scapy.arch.linux import L2ListenSocket
        from scapy.layers.l2 import Ether

        try:
            with netns.entered(p.ns):
                # a listening socket: it also gets what the interface *transmits*
                # (PACKET_OUTGOING), which is how a frame towards a VM shows on its tap
                sock = L2ListenSocket(iface=p.ifname, promisc=False)
        except OSError as e:
            raise LabError(f"{self.func}(): cannot listen on {p}: {e}",
                           f"does {p.ifname} exist in namespace {p.ns}?") from None
        # scapy guesses the link type from the interface *name* in our own namespace;
        # these are Ethernet ports of the lab, whatever their name
        sock.LL = Ether
        return sock

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks = {}

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _control(self) -> None:
        """Each port hears a frame the switch sends out of it, or is refused."""
        __tracebackhide__ = True
        token = secrets.token_hex(6).encode()
        markers: dict[Port, bytes] = {}
        unplugged: list[str] = []
        for i, p in enumerate(self.ports):
            where = _locate(p)
            if where is None:
                unplugged.append(str(p))
                continue
            if p.in_lab:  # in the lab namespace: an internal port (SVI) receives
                self.inward[p] = where.internal
            markers[p] = b"labfixtures-control-" + token + b"-%d" % i
            _packet_out(p, where, bytes(probe_frame(markers[p])))
        if unplugged:
            raise LabError(
                f"{self.func}(): cannot listen on {', '.join(unplugged)}: not a port of "
                "a switch of this lab, so no control frame can prove the capture there "
                "works (and silence there would prove nothing)",
                "listen on switch ports only (a veth host, or (lab, 'IFNAME') for an SVI or "
                "a tap on the switch); for what reaches a VM, use " + GUEST_ASSERTIONS)
        deaf = self._await(markers)
        if deaf:
            raise LabError(
                f"{self.func}(): nothing can be heard on {', '.join(map(str, deaf))}: a "
                "frame the switch sent straight out of it never showed up there (a tap "
                "with no VM behind it, or a link that is down, drops every frame), so its "
                "silence would prove nothing" + bullets(self._link_states(deaf)),
                "start the VM on that tap (or bring the link up) before checking its "
                "VLAN; to check what reaches a VM, use " + GUEST_ASSERTIONS)

    def _await(self, markers: dict[Port, bytes]) -> list[Port]:
        heard: set[Port] = set()
        deadline = time.monotonic() + CONTROL_TIMEOUT
        while len(heard) < len(markers) and (left := deadline - time.monotonic()) > 0:
            for p, data in self._read(left):
                if p in markers and markers[p] in data:
                    heard.add(p)
        return [p for p in markers if p not in heard]

    @staticmethod
    def _link_states(deaf: list[Port]) -> list[str]:
        return [f"{p}: {_operstate(p)}" for p in deaf]

    def _read(self, timeout: float) -> list[tuple[Port, bytes]]:
        """Frames arriving from the switch on any port within TIMEOUT (the first batch)."""
        socks = list(self.socks.values())
        if not socks:
            time.sleep(timeout)
            return []
        by_sock = {id(s): p for p, s in self.socks.items()}
        ready = socks[0].select(socks, timeout) or []
        got = []
        for s in ready:
            data, sa_ll, _ = s._recv_raw(s.ins, 65535)
            if not data:
                continue
            p = by_sock[id(s)]
            outgoing = sa_ll[2] == PACKET_OUTGOING
            if outgoing != self.inward[p]:  # only what comes from the switch
                got.append((p, data))
        return got

    def frames(self, marker: bytes, wait: float = 0.3) -> dict[Port, list[Any]]:
        """Every frame carrying MARKER that reached each port within WAIT seconds."""
        from scapy.layers.l2 import Ether

        seen: dict[Port, list[Any]] = {p: [] for p in self.ports}
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            for p, data in self._read(left):
                if marker in data:
                    seen[p].append(Ether(data))
        return seen


def _operstate(p: Port) -> str:
    from labfixtures.net.netlink import Netlink

    try:
        with Netlink(p.ns) as nl:
            link = nl.link(p.ifname)
        return (f"{'UP' if link.up else 'DOWN'}, "
                f"{'carrier' if link.carrier else 'NO-CARRIER (nothing behind it)'}")
    except Exception as e:  # noqa: BLE001 - only decorates the message
        return f"state unknown ({e})"


def send(from_port: object, frame: Any) -> None:
    from scapy.arch.linux import L2Socket

    p = port(from_port, "sender")
    with netns.entered(p.ns):
        sock = L2Socket(iface=p.ifname, promisc=False)
    try:
        sock.send(frame)
    finally:
        sock.close()


def _marker() -> bytes:
    return b"labfixtures-vlan-probe-" + secrets.token_hex(6).encode()


def _vid(pkt: Any) -> int | None:
    from scapy.layers.l2 import Dot1Q

    return pkt[Dot1Q].vlan if pkt.haslayer(Dot1Q) else None


def _evidence(sender: Port, frame: Any, seen: dict[Port, list[Any]],
              offending: Iterable[Port]) -> list[CapturedFrame]:
    """The frame sent and every frame heard, for the failed test's report (pcap, table)."""
    bad = set(offending)
    return [CapturedFrame(f"sent from {sender}", frame)] + [
        CapturedFrame(f"heard on {p}", f, p in bad) for p, got in seen.items() for f in got]


def _not_listening(func: str, sender: Port, listeners: list[Port]) -> None:
    __tracebackhide__ = True
    if sender in listeners:
        raise TypeError(f"{func}(): the sender {sender} is also listed as a port to listen "
                        "on: it would hear its own frame; leave it out of the lists")


def _check_wait(func: str, wait: object) -> None:
    __tracebackhide__ = True
    from ._types import check_number

    check_number(func, "wait", wait, 0.01, 30)


def assert_vlan_isolation(sender: object, same_vlan: Sequence[object],
                          other_vlans: Sequence[object], wait: float = 0.3) -> None:
    """A broadcast frame from SENDER reaches every port of SAME_VLAN and none of
    OTHER_VLANS. Every listening port first proves it can hear (a control frame sent to
    it by the switch); a tap with no VM behind it is refused."""
    __tracebackhide__ = True
    func = "assert_vlan_isolation"
    s = port(sender, "sender", func)
    same = ports(same_vlan, "same_vlan", func)
    other = ports(other_vlans, "other_vlans", func)
    _not_listening(func, s, [*same, *other])
    _check_wait(func, wait)
    marker = _marker()
    frame = probe_frame(marker)
    with Capture([*same, *other], func=func) as cap:
        send(s, frame)
        seen = cap.frames(marker, wait)
    missing = [str(p) for p in same if not seen[p]]
    leaked = [f"{p}: {seen[p][0].summary()}" for p in other if seen[p]]
    if leaked:
        raise attach(AssertionError(
            f"VLAN leak: a broadcast frame sent from {s} arrived on port(s) of another VLAN:"
            + bullets(leaked) +
            "\n  check the `tag` of these ports (`ovs-vsctl list port NAME`)"),
            _evidence(s, frame, seen, other), [p.switch_port for p in other if seen[p]])
    if missing:
        raise attach(AssertionError(
            f"a broadcast frame sent from {s} did not reach {', '.join(missing)}, which "
            "should be in the same VLAN (check their tags, and that the links are up)"),
            _evidence(s, frame, seen, ()), [p.switch_port for p in same if not seen[p]])


def assert_trunk_carries(sender: object, trunk: object, vid: int, wait: float = 0.3) -> None:
    """A frame from SENDER (an access port of VLAN VID) leaves TRUNK tagged with VID."""
    __tracebackhide__ = True
    func = "assert_trunk_carries"
    s = port(sender, "sender", func)
    t = port(trunk, "trunk", func)
    _not_listening(func, s, [t])
    if isinstance(vid, bool) or not isinstance(vid, int) or not 0 < vid < 4095:
        raise TypeError(f"{func}(): vid must be a VLAN number (1-4094), not {vid!r:.40}")
    _check_wait(func, wait)
    marker = _marker()
    frame = probe_frame(marker)
    with Capture([t], func=func) as cap:
        send(s, frame)
        seen = cap.frames(marker, wait)[t]
    if not seen:
        raise attach(AssertionError(f"the frame sent from {s} never reached the trunk "
                                    f"{t} (is VLAN {vid} in its `trunks`?)"),
                     _evidence(s, frame, {}, ()), [t.switch_port])
    vids = [_vid(p) for p in seen]
    if vid not in vids:
        got = ", ".join("untagged" if v is None else f"VLAN {v}" for v in vids)
        raise attach(AssertionError(f"the trunk {t} received the frame from "
                                    f"{s} {got}, expected a tag with VID {vid}"),
                     _evidence(s, frame, {t: seen}, [t]), [t.switch_port])


def assert_foreign_tag_dropped(sender: object, vid: int, receivers: Sequence[object],
                               wait: float = 0.3) -> None:
    """A frame tagged with VID, injected on SENDER's access port, reaches none of
    RECEIVERS: an access port must drop tagged frames, not hop them into VLAN VID."""
    __tracebackhide__ = True
    func = "assert_foreign_tag_dropped"
    s = port(sender, "sender", func)
    if isinstance(vid, bool) or not isinstance(vid, int) or not 0 < vid < 4095:
        raise TypeError(f"{func}(): vid must be a VLAN number (1-4094), not {vid!r:.40}")
    rcv = ports(receivers, "receivers", func)
    _not_listening(func, s, rcv)
    _check_wait(func, wait)
    marker = _marker()
    frame = probe_frame(marker, vid=vid)
    with Capture(rcv, func=func) as cap:
        send(s, frame)
        seen = cap.frames(marker, wait)
    hopped = [f"{p}: {seen[p][0].summary()}" for p in rcv if seen[p]]
    if hopped:
        raise attach(AssertionError(
            f"VLAN hopping: a frame tagged VID {vid} injected on {s} arrived on:"
            + bullets(hopped) +
            f"\n  {s} should be an access port (vlan_mode=access) that drops "
            "tagged frames"), _evidence(s, frame, seen, rcv),
            [s.switch_port, *(p.switch_port for p in rcv if seen[p])])
