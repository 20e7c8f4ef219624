"""VLAN checks on real frames, with scapy.

A frame carrying a unique marker is sent from one switch port and captured on others, by
AF_PACKET sockets opened *inside* each port's namespace (scapy's L2Socket built with the
thread in that namespace). Ping cannot show what these show: which port a frame reached,
and with which 802.1Q tag.

A *port* is a veth host (its `eth0`) or `(lab, "ifname")` for an interface of the lab host
(an SVI, a tap...).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labfixtures.core import netns

ETHERTYPE_PROBE = 0x88B5  # IEEE 802 local experimental: never mistaken for real traffic


@dataclass(frozen=True)
class Port:
    ns: str
    ifname: str
    label: str

    def __str__(self) -> str:
        return self.label


def port(x: object) -> Port:
    if isinstance(x, Port):
        return x
    if isinstance(x, tuple):
        lab, ifname = x
        return Port(lab.ns, ifname, f"{ifname} (lab host)")
    return Port(x.ns, "eth0", f"{x.name} (eth0)")


def probe_frame(marker: bytes, vid: int | None = None, src: str = "02:00:00:00:00:01"):
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    frame = Ether(dst="ff:ff:ff:ff:ff:ff", src=src)
    if vid is not None:
        frame = frame / Dot1Q(vlan=vid, type=ETHERTYPE_PROBE)
    else:
        frame.type = ETHERTYPE_PROBE
    return frame / Raw(marker)


class Capture:
    """Listen on several ports at once; `frames(marker)` says who saw what."""

    def __init__(self, ports: Iterable[object]) -> None:
        from scapy.arch.linux import L2Socket
        from scapy.layers.l2 import Ether

        self.ports = [port(p) for p in ports]
        self.socks = {}
        try:
            for p in self.ports:
                with netns.entered(p.ns):
                    sock = L2Socket(iface=p.ifname, promisc=False)
                # scapy guesses the link type from the interface *name* in our own
                # namespace; these are Ethernet ports of the lab, whatever their name
                sock.LL = Ether
                self.socks[p] = sock
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks = {}

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frames(self, marker: bytes, wait: float = 0.3) -> dict[Port, list]:
        """Every frame carrying MARKER seen on each port within WAIT seconds."""
        seen: dict[Port, list] = {p: [] for p in self.ports}
        deadline = time.monotonic() + wait
        socks = list(self.socks.values())
        by_sock = {id(s): p for p, s in self.socks.items()}
        while (left := deadline - time.monotonic()) > 0:
            ready = socks[0].select(socks, left) if socks else []
            for s in ready or []:
                pkt = s.recv()
                if pkt is not None and marker in bytes(pkt):
                    seen[by_sock[id(s)]].append(pkt)
        return seen


def send(from_port: object, frame) -> None:
    from scapy.arch.linux import L2Socket

    p = port(from_port)
    with netns.entered(p.ns):
        sock = L2Socket(iface=p.ifname, promisc=False)
    try:
        sock.send(frame)
    finally:
        sock.close()


def _marker() -> bytes:
    return b"labfixtures-vlan-probe-" + secrets.token_hex(6).encode()


def _vid(pkt) -> int | None:
    from scapy.layers.l2 import Dot1Q

    return pkt[Dot1Q].vlan if pkt.haslayer(Dot1Q) else None


def assert_vlan_isolation(sender: object, same_vlan: Sequence[object],
                          other_vlans: Sequence[object], wait: float = 0.3) -> None:
    """A broadcast frame from SENDER reaches every port of SAME_VLAN (the control: the
    capture works) and none of OTHER_VLANS."""
    marker = _marker()
    with Capture([*same_vlan, *other_vlans]) as cap:
        send(sender, probe_frame(marker))
        seen = cap.frames(marker, wait)
    s = port(sender)
    missing = [str(port(p)) for p in same_vlan if not seen[port(p)]]
    leaked = [f"{port(p)}: {seen[port(p)][0].summary()}" for p in other_vlans if seen[port(p)]]
    if leaked:
        raise AssertionError(
            f"VLAN leak: a broadcast frame sent from {s} arrived on port(s) of another VLAN:"
            "\n  " + "\n  ".join(leaked) +
            "\n  check the `tag` of these ports (`ovs-vsctl list port NAME`)")
    if missing:
        raise AssertionError(
            f"a broadcast frame sent from {s} did not reach {', '.join(missing)}, which "
            "should be in the same VLAN (check their tags, and that the links are up)")


def assert_trunk_carries(sender: object, trunk: object, vid: int, wait: float = 0.3) -> None:
    """A frame from SENDER (an access port of VLAN VID) leaves TRUNK tagged with VID."""
    marker = _marker()
    with Capture([trunk]) as cap:
        send(sender, probe_frame(marker))
        seen = cap.frames(marker, wait)[port(trunk)]
    if not seen:
        raise AssertionError(f"the frame sent from {port(sender)} never reached the trunk "
                             f"{port(trunk)} (is VLAN {vid} in its `trunks`?)")
    vids = [_vid(p) for p in seen]
    if vid not in vids:
        got = ", ".join("untagged" if v is None else f"VLAN {v}" for v in vids)
        raise AssertionError(f"the trunk {port(trunk)} received the frame from "
                             f"{port(sender)} {got}, expected a tag with VID {vid}")


def assert_foreign_tag_dropped(sender: object, vid: int, receivers: Sequence[object],
                               wait: float = 0.3) -> None:
    """A frame tagged with VID, injected on SENDER's access port, reaches none of
    RECEIVERS: an access port must drop tagged frames, not hop them into VLAN VID."""
    marker = _marker()
    with Capture(receivers) as cap:
        send(sender, probe_frame(marker, vid=vid))
        seen = cap.frames(marker, wait)
    hopped = [f"{port(p)}: {seen[port(p)][0].summary()}" for p in receivers if seen[port(p)]]
    if hopped:
        raise AssertionError(
            f"VLAN hopping: a frame tagged VID {vid} injected on {port(sender)} arrived on:"
            "\n  " + "\n  ".join(hopped) +
            f"\n  {port(sender)} should be an access port (vlan_mode=access) that drops "
            "tagged frames")
