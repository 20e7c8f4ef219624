"""Every assertion passes on the right lab and fails, with a useful message, on a lab made
wrong on purpose (a wrong gateway, a missing neighbour, a leaking VLAN...).

The VLAN assertions are proven on every kind of port they listen on: a veth host's eth0,
an SVI (an OVS internal port), a veth end and a tap in the lab namespace (a tap with a test
holding its queue, and a tap with a real tiny VM behind it): each makes a real leak and
sees the assertion fail."""

import contextlib
import fcntl
import os
import socket
import struct
from collections.abc import Iterator

import pytest

from assertions import (
    assert_address,
    assert_default_route,
    assert_foreign_tag_dropped,
    assert_link_up,
    assert_listening,
    assert_neighbour,
    assert_no_neighbour,
    assert_no_route,
    assert_reachable,
    assert_route,
    assert_tcp_closed,
    assert_tcp_open,
    assert_trunk_carries,
    assert_unreachable,
    assert_vlan_isolation,
    eventually,
)
from labfixtures import guestimages
from labfixtures.core import netns
from labfixtures.errors import LabError

pytestmark = pytest.mark.root
GW = "203.0.113.129"


@pytest.fixture
def table1(lab, switch, veth_host):
    """host2 and peer on VLAN 2 (the SVI sw0-vlan2 their gateway), other on VLAN 3."""
    switch.svi(2, f"{GW}/26")
    host2 = veth_host("host2", switch, tag=2, addresses=["203.0.113.130/26"], gateway=GW)
    peer = veth_host("peer", switch, tag=2, addresses=["203.0.113.132/26"], gateway=GW)
    other = veth_host("other", switch, tag=3, addresses=["203.0.113.131/26"])
    return lab, switch, host2, peer, other


def test_default_route(table1):
    _, _, host2, _, other = table1
    assert_default_route(host2, via=GW)
    assert_default_route(host2, via=GW, dev="eth0")
    with pytest.raises(AssertionError) as e:
        assert_default_route(host2, via="203.0.113.1")
    msg = str(e.value)
    assert "expected `default via 203.0.113.1`" in msg
    assert "the default route goes elsewhere" in msg
    assert "default via 203.0.113.129 dev eth0" in msg  # the real table is shown
    with pytest.raises(AssertionError, match="there is no default route"):
        assert_default_route(other, via=GW)


def test_routes(table1):
    lab, _, host2, _, _ = table1
    assert_route(host2, "203.0.113.128/26", dev="eth0")
    assert_route(lab, "203.0.113.128/26", dev="sw0-vlan2")
    assert_no_route(host2, "198.51.100.0/24")
    with pytest.raises(AssertionError, match="expected a route `198.51.100.0/24`"):
        assert_route(host2, "198.51.100.0/24")
    with pytest.raises(AssertionError, match="expected no route to 203.0.113.128/26"):
        assert_no_route(host2, "203.0.113.128/26")


def test_addresses_and_links(table1):
    lab, _, host2, _, _ = table1
    assert_address(host2, "203.0.113.130/26", dev="eth0")
    assert_address(lab, "203.0.113.129/26", dev="sw0-vlan2")
    with pytest.raises(AssertionError) as e:
        assert_address(host2, "203.0.113.130/24")
    assert "expected address 203.0.113.130/24" in str(e.value)
    assert "203.0.113.130/26 dev eth0" in str(e.value)
    assert_link_up(lab, "sw0-vlan2")
    lab.nl.set_up("sw0-vlan2", False)
    with pytest.raises(AssertionError, match="sw0-vlan2 is DOWN"):
        assert_link_up(lab, "sw0-vlan2")


def test_neighbours(table1):
    lab, _, host2, _, _ = table1
    assert_reachable(lab, "203.0.113.130")
    n = assert_neighbour(lab, "203.0.113.130", mac=host2.mac, dev="sw0-vlan2")
    assert n.dev == "sw0-vlan2"
    with pytest.raises(AssertionError) as e:
        assert_neighbour(lab, "203.0.113.130", mac="b8:ad:ca:fe:00:02", dev="sw0-vlan2")
    assert f"the entry is {host2.mac}" in str(e.value)
    with pytest.raises(AssertionError) as e:
        assert_neighbour(lab, "203.0.113.140", dev="sw0-vlan2")
    assert "203.0.113.140 is not in the table" in str(e.value)
    assert "203.0.113.130 dev sw0-vlan2 lladdr" in str(e.value)  # the table, shown
    assert_no_neighbour(lab, "203.0.113.140")
    with pytest.raises(AssertionError, match="expected 203.0.113.130 not to be resolved"):
        assert_no_neighbour(lab, "203.0.113.130")


def test_ipv6_link_local_neighbour_eventually(table1):
    lab, _, host2, _, _ = table1
    ll = eventually(lambda: host2.link_local() or False, timeout=5,
                    what="link-local address of host2")
    eventually(lambda: lab.ping(f"{ll}%sw0-vlan2", timeout=0.5), timeout=5)
    assert_neighbour(lab, ll, mac=host2.mac, dev="sw0-vlan2")


def test_reachability(table1):
    _, _, host2, _, other = table1
    assert_reachable(host2, GW)
    assert_unreachable(other, GW)
    with pytest.raises(AssertionError, match="other cannot reach 203.0.113.129"):
        assert_reachable(other, GW, timeout=0.5)
    with pytest.raises(AssertionError, match="host2 reached 203.0.113.129, which it must not"):
        assert_unreachable(host2, GW)


def test_tcp(table1):
    _, _, host2, peer, _ = table1
    srv = peer.tcp_server(2200)
    assert_listening(peer, 2200)  # read in the host's own namespace (/proc/net/tcp)
    with pytest.raises(AssertionError, match=r"peer: expected a TCP socket listening on "
                                             r"port 2201(?s:.*)tcp   0.0.0.0:2200"):
        assert_listening(peer, 2201)
    assert_tcp_open(host2, "203.0.113.132", 2200)
    srv.wait(timeout=5)
    assert_tcp_closed(host2, "203.0.113.132", 2201)
    with pytest.raises(AssertionError, match="cannot open TCP 203.0.113.132 port 2201"):
        assert_tcp_open(host2, "203.0.113.132", 2201, timeout=0.5)


def test_vlan_isolation_on_real_frames(table1):
    lab, _, host2, peer, other = table1
    assert_vlan_isolation(host2, same_vlan=[peer, (lab, "sw0-vlan2")], other_vlans=[other])
    assert_vlan_isolation(other, same_vlan=[], other_vlans=[host2, peer, (lab, "sw0-vlan2")])


def test_vlan_leak_made_on_purpose_is_caught(table1):
    lab, switch, host2, peer, other = table1
    lab.ovs.vsctl("set", "port", "other", "tag=2")  # the student's mistake
    with pytest.raises(AssertionError) as e:
        assert_vlan_isolation(host2, same_vlan=[peer], other_vlans=[other])
    assert "VLAN leak" in str(e.value)
    assert "other (eth0)" in str(e.value)
    assert "ovs-vsctl list port" in str(e.value)


def test_isolation_check_detects_a_broken_capture(table1):
    """The positive control: a port expected in the VLAN but cut off is reported."""
    _, _, host2, peer, other = table1
    with pytest.raises(AssertionError, match="did not reach other"):
        assert_vlan_isolation(host2, same_vlan=[other], other_vlans=[])


def test_trunk_carries_tagged_frames(table1, veth_host):
    lab, switch, host2, _, other = table1
    trunk = veth_host("trunk", switch, trunks=[2, 3])
    assert_trunk_carries(host2, trunk, vid=2)
    assert_trunk_carries(other, trunk, vid=3)
    narrow = veth_host("narrow", switch, trunks=[3])
    with pytest.raises(AssertionError, match="never reached the trunk narrow"):
        assert_trunk_carries(host2, narrow, vid=2)
    with pytest.raises(AssertionError, match="expected a tag with VID 2"):
        assert_trunk_carries(other, trunk, vid=2)


def test_foreign_tag_is_dropped_on_an_access_port(table1, veth_host):
    lab, switch, host2, peer, other = table1
    assert_foreign_tag_dropped(other, vid=2, receivers=[host2, peer, (lab, "sw0-vlan2")])
    # a trunk port (no tag) lets the tagged frame in: the check must say so
    hopper = veth_host("hopper", switch, trunks=[2, 3])
    with pytest.raises(AssertionError) as e:
        assert_foreign_tag_dropped(hopper, vid=2, receivers=[host2])
    assert "VLAN hopping" in str(e.value)
    assert "host2 (eth0)" in str(e.value)


def test_lab_routes_family_v6(table1):
    lab, *_ = table1
    assert any(r.dev == "sw0-vlan2" for r in lab.routes(socket.AF_INET6))


# -- VLAN isolation on every kind of port -------------------------------------------------

TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000


@contextlib.contextmanager
def holding(lab, tap: str) -> Iterator[int]:
    """Open TAP's queue as QEMU does (a VM's side of the cord, with no VM): the tap gets
    its carrier and takes the frames the switch sends it, seen leaving it (PACKET_OUTGOING)
    by a packet socket in the lab namespace, exactly as with a VM behind it."""
    with netns.entered(lab.ns):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", tap.encode(), IFF_TAP | IFF_NO_PI))
        yield fd
    finally:
        os.close(fd)


@pytest.fixture
def vlans(lab, switch, veth_host):
    """VLAN 10: the SVI sw0-vlan10, x10 and tap11 (held open by the test); VLAN 20: the SVI
    sw0-vlan20 and y20; tap12 (VLAN 20) with nothing behind it."""
    switch.svi(10, "198.51.100.1/25")
    switch.svi(20, "198.51.100.129/25")
    x10 = veth_host("x10", switch, tag=10, addresses=["198.51.100.10/25"])
    y20 = veth_host("y20", switch, tag=20, addresses=["198.51.100.130/25"])
    lab.tap(11)
    switch.add_port("tap11", tag=10)
    lab.tap(12)
    switch.add_port("tap12", tag=20)
    with holding(lab, "tap11"):
        yield lab, switch, x10, y20


def test_a_tap_hears_its_vlan_and_only_it(vlans):
    """The frame leaves the lab host through tap11 towards the VM: it counts as arrived
    (before, the capture dropped it as outgoing and reported `did not reach tap11`)."""
    lab, _, x10, y20 = vlans
    assert_vlan_isolation(x10, same_vlan=[(lab, "sw0-vlan10"), (lab, "tap11")],
                          other_vlans=[y20, (lab, "sw0-vlan20")])
    assert_vlan_isolation(y20, same_vlan=[(lab, "sw0-vlan20")],
                          other_vlans=[x10, (lab, "tap11"), (lab, "sw0-vlan10")])


def test_a_leak_to_a_tap_is_caught(vlans):
    lab, _, x10, y20 = vlans
    lab.ovs.vsctl("set", "port", "tap11", "tag=20")  # the student's mistake
    with pytest.raises(AssertionError) as e:
        assert_vlan_isolation(y20, same_vlan=[(lab, "sw0-vlan20")],
                              other_vlans=[x10, (lab, "tap11")])
    msg = str(e.value)
    assert "VLAN leak: a broadcast frame sent from y20 (eth0)" in msg
    assert "tap11 (lab host): 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff (0x88b5)" in msg
    assert "x10" not in msg.split("VLAN:")[1]


def test_a_leak_to_an_svi_is_caught(vlans):
    lab, _, x10, y20 = vlans
    lab.ovs.vsctl("set", "port", "sw0-vlan20", "tag=10")
    with pytest.raises(AssertionError, match=r"(?s)VLAN leak.*sw0-vlan20 \(lab host\): "):
        assert_vlan_isolation(x10, same_vlan=[(lab, "sw0-vlan10")],
                              other_vlans=[(lab, "sw0-vlan20")])


def test_a_leak_to_a_veth_end_in_the_lab_namespace_is_caught(vlans):
    """(lab, "y20") listens on y20's veth end on the lab host side (frames transmitted
    towards the host), as the tap does; and on y20's own eth0 (frames received)."""
    lab, _, x10, y20 = vlans
    assert_vlan_isolation(x10, same_vlan=[(lab, "sw0-vlan10")],
                          other_vlans=[(lab, "y20"), y20])
    lab.ovs.vsctl("set", "port", "y20", "tag=10")
    with pytest.raises(AssertionError) as e:
        assert_vlan_isolation(x10, same_vlan=[(lab, "sw0-vlan10")],
                              other_vlans=[(lab, "y20"), y20])
    assert "y20 (lab host): 02:00" in str(e.value) and "y20 (eth0): 02:00" in str(e.value)


def test_a_tap_with_nothing_behind_it_is_refused(vlans):
    """tap12 drops everything (no VM holds it): its silence would prove nothing, and the
    assertion says which one to use instead."""
    lab, _, x10, _ = vlans
    with pytest.raises(LabError) as e:
        assert_vlan_isolation(x10, same_vlan=[(lab, "sw0-vlan10")],
                              other_vlans=[(lab, "tap12")])
    msg = str(e.value)
    assert "nothing can be heard on tap12 (lab host)" in msg
    assert "NO-CARRIER" in msg
    assert "assert_frames_do_not_reach_guest" in msg
    with pytest.raises(LabError, match="nothing can be heard on tap12"):
        assert_foreign_tag_dropped(x10, vid=20, receivers=[(lab, "tap12")])


def test_a_port_of_no_switch_is_refused(vlans):
    lab, _, x10, _ = vlans
    with pytest.raises(LabError, match=r"cannot listen on lo \(lab host\): not a port of a "
                                       "switch"):
        assert_vlan_isolation(x10, same_vlan=[], other_vlans=[(lab, "lo")])


@pytest.mark.vm
def test_a_vm_tap_in_the_wrong_vlan_is_caught(lab, switch, veth_host):
    """A real VM on tap21, wrongly in VLAN 10: the leak towards it is reported (before, the
    tap's capture heard nothing and the assertion passed)."""
    guestimages.build("tiny", progress=None)
    switch.svi(10, "198.51.100.1/25")
    switch.svi(20, "198.51.100.129/25")
    x10 = veth_host("x10", switch, tag=10, addresses=["198.51.100.10/25"])
    lab.tap(21)
    switch.add_port("tap21", tag=20)
    lab.vm("vm21", tap=21, addresses=["198.51.100.131/25"], gateway="198.51.100.129")
    assert_vlan_isolation(x10, same_vlan=[(lab, "sw0-vlan10")],
                          other_vlans=[(lab, "tap21")])
    assert_vlan_isolation((lab, "sw0-vlan20"), same_vlan=[(lab, "tap21")],
                          other_vlans=[x10])
    lab.ovs.vsctl("set", "port", "tap21", "tag=10")  # the student's mistake
    with pytest.raises(AssertionError, match=r"(?s)VLAN leak: .* from x10 \(eth0\).*"
                                             r"tap21 \(lab host\): 02:00"):
        assert_vlan_isolation(x10, same_vlan=[(lab, "sw0-vlan10")],
                              other_vlans=[(lab, "tap21")])
