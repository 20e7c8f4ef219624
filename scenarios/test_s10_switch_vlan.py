"""Guide §10: the host's switch `sw0`, VLAN 2, its SVI as the default gateway (Table 1).

Table 1 of the guide:

    system          interface   IPv4                role
    VM              eth0        203.0.113.130/26    the VM's interface
    lab host        sw0-vlan2   203.0.113.129/26    the VM's default gateway

Here a veth host, `host2`, stands in for the VM on an access port of VLAN 2
(test_s10_vm.py runs the same topology with a real VM on tap2); `intruder` sits on a
VLAN 3 port of the same switch. The checks are those a teacher makes by hand.
"""

import pytest

from assertions import (
    assert_address,
    assert_default_route,
    assert_neighbour,
    assert_reachable,
    assert_tcp_open,
    assert_unreachable,
    assert_vlan_isolation,
    eventually,
)

pytestmark = pytest.mark.root

HOST_ADDR = "203.0.113.130"
GATEWAY = "203.0.113.129"


@pytest.fixture
def table1(lab, switch, veth_host):
    """sw0 with the SVI sw0-vlan2, forwarding on, host2 on a VLAN 2 access port and
    the intruder on a VLAN 3 port of the same switch."""
    switch.svi(2, f"{GATEWAY}/26")
    lab.enable_forwarding()
    host2 = veth_host("host2", switch, tag=2, addresses=[f"{HOST_ADDR}/26"], gateway=GATEWAY)
    intruder = veth_host("intruder", switch, tag=3, addresses=["203.0.113.131/26"],
                         gateway=GATEWAY)
    return lab, switch, host2, intruder


def test_host2_port_is_an_access_port_of_vlan_2(table1):
    _, switch, host2, _ = table1
    mode = switch.port_mode(host2.port)
    assert (mode.mode, mode.tag) == ("access", 2), f"port {host2.port} is {mode}"
    assert switch.port_mode("sw0-vlan2").tag == 2


def test_host2_reaches_its_gateway(table1):
    _, _, host2, _ = table1
    assert_address(host2, f"{HOST_ADDR}/26", dev="eth0")
    assert_reachable(host2, GATEWAY)


def test_default_route_of_host2_goes_via_the_svi(table1):
    _, _, host2, _ = table1
    assert_default_route(host2, via=GATEWAY, dev="eth0")


def test_forwarding_is_on_in_the_lab_host_only(table1):
    lab, *_ = table1
    assert lab.nl.sysctl("net.ipv4.ip_forward") == "1"
    assert lab.nl.sysctl("net.ipv4.conf.all.log_martians") == "1"


def test_vlan_3_cannot_reach_the_vlan_2_gateway(table1):
    lab, _, host2, intruder = table1
    assert_unreachable(intruder, GATEWAY)
    # on real frames: a VLAN 2 broadcast reaches the SVI, never the intruder
    assert_vlan_isolation(host2, same_vlan=[(lab, "sw0-vlan2")], other_vlans=[intruder])


def test_lab_host_learns_host2_mac_on_sw0_vlan2(table1):
    lab, _, host2, _ = table1
    assert_reachable(lab, HOST_ADDR)
    assert_neighbour(lab, HOST_ADDR, mac=host2.mac, dev="sw0-vlan2")


def test_ipv6_link_local_works_on_vlan_2(table1):
    lab, _, host2, _ = table1
    ll = eventually(lambda: host2.link_local() or False, timeout=5,
                    what="the fe80:: address of host2")
    eventually(lambda: assert_reachable(lab, f"{ll}%sw0-vlan2", timeout=1), timeout=5)


def test_tcp_crosses_the_switch(table1):
    """Ping works even when checksums are broken; TCP proves they are not (DESIGN §2)."""
    lab, _, host2, _ = table1
    server = host2.tcp_server(22, HOST_ADDR)
    assert_tcp_open(lab, HOST_ADDR, 22, timeout=5)
    server.wait(timeout=5)
