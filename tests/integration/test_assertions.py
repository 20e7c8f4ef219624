"""Every assertion passes on the right lab and fails, with a useful message, on a lab made
wrong on purpose (a wrong gateway, a missing neighbour, a leaking VLAN...)."""

import socket

import pytest

from assertions import (
    assert_address,
    assert_default_route,
    assert_foreign_tag_dropped,
    assert_link_up,
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

pytestmark = pytest.mark.root
GW = "203.0.113.129"


@pytest.fixture
def table1(lab, switch, veth_host):
    switch.svi(2, f"{GW}/26")
    vm = veth_host("vm0", switch, tag=2, addresses=["203.0.113.130/26"], gateway=GW)
    peer = veth_host("peer", switch, tag=2, addresses=["203.0.113.132/26"], gateway=GW)
    other = veth_host("other", switch, tag=3, addresses=["203.0.113.131/26"])
    return lab, switch, vm, peer, other


def test_default_route(table1):
    _, _, vm, _, other = table1
    assert_default_route(vm, via=GW)
    assert_default_route(vm, via=GW, dev="eth0")
    with pytest.raises(AssertionError) as e:
        assert_default_route(vm, via="203.0.113.1")
    msg = str(e.value)
    assert "expected `default via 203.0.113.1`" in msg
    assert "the default route goes elsewhere" in msg
    assert "default via 203.0.113.129 dev eth0" in msg  # the real table is shown
    with pytest.raises(AssertionError, match="there is no default route"):
        assert_default_route(other, via=GW)


def test_routes(table1):
    lab, _, vm, _, _ = table1
    assert_route(vm, "203.0.113.128/26", dev="eth0")
    assert_route(lab, "203.0.113.128/26", dev="sw0-vlan2")
    assert_no_route(vm, "198.51.100.0/24")
    with pytest.raises(AssertionError, match="expected a route `198.51.100.0/24`"):
        assert_route(vm, "198.51.100.0/24")
    with pytest.raises(AssertionError, match="expected no route to 203.0.113.128/26"):
        assert_no_route(vm, "203.0.113.128/26")


def test_addresses_and_links(table1):
    lab, _, vm, _, _ = table1
    assert_address(vm, "203.0.113.130/26", dev="eth0")
    assert_address(lab, "203.0.113.129/26", dev="sw0-vlan2")
    with pytest.raises(AssertionError) as e:
        assert_address(vm, "203.0.113.130/24")
    assert "expected address 203.0.113.130/24" in str(e.value)
    assert "203.0.113.130/26 dev eth0" in str(e.value)
    assert_link_up(lab, "sw0-vlan2")
    lab.nl.set_up("sw0-vlan2", False)
    with pytest.raises(AssertionError, match="sw0-vlan2 is DOWN"):
        assert_link_up(lab, "sw0-vlan2")


def test_neighbours(table1):
    lab, _, vm, _, _ = table1
    assert_reachable(lab, "203.0.113.130")
    n = assert_neighbour(lab, "203.0.113.130", mac=vm.mac, dev="sw0-vlan2")
    assert n.dev == "sw0-vlan2"
    with pytest.raises(AssertionError) as e:
        assert_neighbour(lab, "203.0.113.130", mac="b8:ad:ca:fe:00:02", dev="sw0-vlan2")
    assert f"the entry is {vm.mac}" in str(e.value)
    with pytest.raises(AssertionError) as e:
        assert_neighbour(lab, "203.0.113.140", dev="sw0-vlan2")
    assert "203.0.113.140 is not in the table" in str(e.value)
    assert "203.0.113.130 dev sw0-vlan2 lladdr" in str(e.value)  # the table, shown
    assert_no_neighbour(lab, "203.0.113.140")
    with pytest.raises(AssertionError, match="expected 203.0.113.130 not to be resolved"):
        assert_no_neighbour(lab, "203.0.113.130")


def test_ipv6_link_local_neighbour_eventually(table1):
    lab, _, vm, _, _ = table1
    ll = eventually(vm.link_local, timeout=5, what="link-local address of vm0")
    eventually(lambda: lab.ping(f"{ll}%sw0-vlan2", timeout=0.5), timeout=5)
    assert_neighbour(lab, ll, mac=vm.mac, dev="sw0-vlan2")


def test_reachability(table1):
    _, _, vm, _, other = table1
    assert_reachable(vm, GW)
    assert_unreachable(other, GW)
    with pytest.raises(AssertionError, match="other cannot reach 203.0.113.129"):
        assert_reachable(other, GW, timeout=0.5)
    with pytest.raises(AssertionError, match="vm0 reached 203.0.113.129, which it must not"):
        assert_unreachable(vm, GW)


def test_tcp(table1):
    _, _, vm, peer, _ = table1
    srv = peer.tcp_server(2200)
    assert_tcp_open(vm, "203.0.113.132", 2200)
    srv.wait(timeout=5)
    assert_tcp_closed(vm, "203.0.113.132", 2201)
    with pytest.raises(AssertionError, match="cannot open TCP 203.0.113.132 port 2201"):
        assert_tcp_open(vm, "203.0.113.132", 2201, timeout=0.5)


def test_vlan_isolation_on_real_frames(table1):
    lab, _, vm, peer, other = table1
    assert_vlan_isolation(vm, same_vlan=[peer, (lab, "sw0-vlan2")], other_vlans=[other])
    assert_vlan_isolation(other, same_vlan=[], other_vlans=[vm, peer, (lab, "sw0-vlan2")])


def test_vlan_leak_made_on_purpose_is_caught(table1):
    lab, switch, vm, peer, other = table1
    lab.ovs.vsctl("set", "port", "other", "tag=2")  # the student's mistake
    with pytest.raises(AssertionError) as e:
        assert_vlan_isolation(vm, same_vlan=[peer], other_vlans=[other])
    assert "VLAN leak" in str(e.value)
    assert "other (eth0)" in str(e.value)
    assert "ovs-vsctl list port" in str(e.value)


def test_isolation_check_detects_a_broken_capture(table1):
    """The positive control: a port expected in the VLAN but cut off is reported."""
    _, _, vm, peer, other = table1
    with pytest.raises(AssertionError, match="did not reach other"):
        assert_vlan_isolation(vm, same_vlan=[other], other_vlans=[])


def test_trunk_carries_tagged_frames(table1, veth_host):
    lab, switch, vm, _, other = table1
    trunk = veth_host("trunk", switch, trunks=[2, 3])
    assert_trunk_carries(vm, trunk, vid=2)
    assert_trunk_carries(other, trunk, vid=3)
    narrow = veth_host("narrow", switch, trunks=[3])
    with pytest.raises(AssertionError, match="never reached the trunk narrow"):
        assert_trunk_carries(vm, narrow, vid=2)
    with pytest.raises(AssertionError, match="expected a tag with VID 2"):
        assert_trunk_carries(other, trunk, vid=2)


def test_foreign_tag_is_dropped_on_an_access_port(table1, veth_host):
    lab, switch, vm, peer, other = table1
    assert_foreign_tag_dropped(other, vid=2, receivers=[vm, peer, (lab, "sw0-vlan2")])
    # a trunk port (no tag) lets the tagged frame in: the check must say so
    hopper = veth_host("hopper", switch, trunks=[2, 3])
    with pytest.raises(AssertionError) as e:
        assert_foreign_tag_dropped(hopper, vid=2, receivers=[vm])
    assert "VLAN hopping" in str(e.value)
    assert "vm0 (eth0)" in str(e.value)


def test_lab_routes_family_v6(table1):
    lab, *_ = table1
    assert any(r.dev == "sw0-vlan2" for r in lab.routes(socket.AF_INET6))
