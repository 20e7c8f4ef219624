"""Guide §10: the host's switch `sw0`, VLAN 2, its SVI as the default gateway (Table 1).

Table 1 of the guide:

    system          interface   IPv4                role
    VM              eth0        203.0.113.130/26    the VM's interface
    lab host        sw0-vlan2   203.0.113.129/26    the VM's default gateway

Here a veth host stands in for the VM on an access port of VLAN 2 (test_s10_vm.py runs
the same topology with a real VM on tap2). The checks are those a teacher makes by hand.
"""

import socket
import time

import pytest

pytestmark = pytest.mark.root

VM_ADDR = "203.0.113.130/26"
GATEWAY = "203.0.113.129"


@pytest.fixture
def table1(lab, switch, veth_host):
    """sw0 with the SVI sw0-vlan2, forwarding on, a host on a VLAN 2 access port and
    an intruder on a VLAN 3 port of the same switch."""
    switch.svi(2, f"{GATEWAY}/26")
    lab.enable_forwarding()
    vm = veth_host("vm0", switch, tag=2, addresses=[VM_ADDR], gateway=GATEWAY)
    intruder = veth_host("vlan3", switch, tag=3, addresses=["203.0.113.131/26"],
                         gateway=GATEWAY)
    return lab, switch, vm, intruder


def test_vm_port_is_an_access_port_of_vlan_2(table1):
    _, switch, vm, _ = table1
    mode = switch.port_mode(vm.port)
    assert (mode.mode, mode.tag) == ("access", 2), f"port {vm.port} is {mode}"
    assert switch.port_mode("sw0-vlan2").tag == 2


def test_vm_reaches_its_gateway(table1):
    _, _, vm, _ = table1
    assert vm.ping(GATEWAY), f"{vm.name} (VLAN 2) cannot ping its gateway {GATEWAY}"


def test_default_route_of_the_vm_goes_via_the_svi(table1):
    _, _, vm, _ = table1
    defaults = [r for r in vm.routes() if r.dst == "default"]
    assert [r.gateway for r in defaults] == [GATEWAY], (
        "expected one default route via 203.0.113.129, got:\n  "
        + "\n  ".join(map(str, vm.routes())))


def test_forwarding_is_on_in_the_lab_host_only(table1):
    lab, *_ = table1
    assert lab.nl.sysctl("net.ipv4.ip_forward") == "1"
    assert lab.nl.sysctl("net.ipv4.conf.all.log_martians") == "1"


def test_vlan_3_cannot_reach_the_vlan_2_gateway(table1):
    _, _, _, intruder = table1
    assert not intruder.ping(GATEWAY, timeout=1.0), (
        "a host on a VLAN 3 port reached the VLAN 2 SVI: VLAN isolation is broken")


def test_lab_host_learns_the_vm_mac_on_sw0_vlan2(table1):
    lab, _, vm, _ = table1
    assert lab.ping(VM_ADDR.split("/")[0])
    neighbours = lab.neighbours("sw0-vlan2", socket.AF_INET)
    seen = {n.address: n.mac for n in neighbours}
    assert seen.get("203.0.113.130") == vm.mac, (
        f"neighbour table of sw0-vlan2 should map 203.0.113.130 to {vm.mac}; it holds:\n  "
        + "\n  ".join(map(str, neighbours)))


def test_ipv6_link_local_works_on_vlan_2(table1):
    lab, _, vm, _ = table1
    deadline = time.monotonic() + 5
    while (ll := vm.link_local()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ll, "the host never got an fe80:: address"
    assert lab.ping(f"{ll}%sw0-vlan2", timeout=5), f"no answer from {ll}%sw0-vlan2"


def test_tcp_crosses_the_switch(table1):
    """Ping works even when checksums are broken; TCP proves they are not (docs/host-facts.md)."""
    lab, _, vm, _ = table1
    server = vm.tcp_server(22, "203.0.113.130")
    from labfixtures.net import probes

    assert probes.tcp_connect(lab.ns, "203.0.113.130", 22, timeout=5)
    server.wait(timeout=5)
