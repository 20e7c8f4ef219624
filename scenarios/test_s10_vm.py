"""Guide §10 with a real VM: the minimal topology of Table 1, built from its lab file.

    Système            Interface   Adresse IPv4       Rôle
    Machine virtuelle  eth0        203.0.113.130/26   Interface réseau de la machine virtuelle
    Système hôte       sw0-vlan2   203.0.113.129/26   Passerelle par défaut de la machine virtuelle
    Système hôte       eth0        203.0.113.2/26     Interface réseau du système hôte
    Routeur            indéfinie   203.0.113.1/26     Passerelle par défaut du système hôte

`scenarios/labs/seed-minimal.yaml` builds the switch sw0, its SVI sw0-vlan2 (VLAN 2),
forwarding, tap2 (access port of VLAN 2, group kvm) and vm0 on tap2. This module adds what
a teacher needs to test it: the upstream router of Table 1 behind the lab host's eth0, a
host on VLAN 3 (the intruder) and a trunk port carrying VLANs 2 and 3.

The guide's validation:

    $ ip nei ls
    fe80::b8ad:ff:feca:fe02 dev sw0-vlan2 lladdr ba:ad:00:ca:fe:02 STALE
    $ ssh etu@fe80::b8ad:ff:feca:fe02%sw0-vlan2

    « On commence par identifier l'adresse MAC au format EUI64 du système virtuel puis on
    l'utilise pour la connexion. »

(The guide's text predates its scripts' MAC prefix: `ovs-startup.sh` makes
`b8:ad:ca:fe:00:02`, hence `fe80::baad:caff:fefe:2`.)
Each test builds that network in its own lab (milliseconds) and gets vm0 from `lab_vm`:
booted once, then restored from its automatic checkpoint. So every test starts from the
just-booted VM and a freshly built network, whatever the previous test switched off.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from assertions import (
    assert_address,
    assert_default_route,
    assert_frames_do_not_reach_guest,
    assert_frames_reach_guest,
    assert_guest_frames_isolated,
    assert_guest_frames_tagged,
    assert_neighbour,
    assert_reachable,
    assert_route,
    assert_trunk_carries,
    assert_unreachable,
    eventually,
)
from labfixtures.guests.ssh import GuestSSH
from labfixtures.lab import labfile as topology

pytestmark = [pytest.mark.root, pytest.mark.vm]

LAB_FILE = Path(__file__).parent / "labs" / "seed-minimal.yaml"
VM_ADDR, GATEWAY = "203.0.113.130", "203.0.113.129"
HOST_ETH0, ROUTER = "203.0.113.2", "203.0.113.1"
ARPING = f"arping -f -c 1 -w 1 -I eth0 {GATEWAY}"  # one broadcast ARP request from the VM


def eui64(mac: str) -> str:
    """The guide's rule, written out: U/L bit flipped, ff:fe in the middle, fe80::/64."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


@pytest.fixture
def table1(lab, lab_vm):
    # the lab file's switch, SVI, tap and VM (booted by lab_vm, from a checkpoint when
    # one fits), with the file's NIC settings as written
    built = topology.build(topology.load(LAB_FILE), lab, make_vm=lab_vm)
    sw0 = built.switches["sw0"]
    # Table 1's upstream side: the router, the lab host's default gateway, behind the lab
    # host's eth0 (the router's veth end on the lab side, renamed as in the table)
    router = lab.veth_host("router", addresses=[f"{ROUTER}/26"], gateway=HOST_ETH0)
    lab.run(["ip", "link", "set", "dev", "router", "down"])
    lab.run(["ip", "link", "set", "dev", "router", "name", "eth0"])
    lab.run(["ip", "link", "set", "dev", "eth0", "up"])
    lab.nl.add_address("eth0", f"{HOST_ETH0}/26")
    lab.nl.add_route("default", gateway=ROUTER)
    intruder = lab.veth_host("intruder", sw0, tag=3, addresses=["203.0.113.131/26"],
                             gateway=GATEWAY)
    trunk = lab.veth_host("trunk", sw0, trunks=[2, 3])
    (vm,) = built.vms.values()
    return SimpleNamespace(lab=lab, sw0=sw0, vm=vm, router=router, intruder=intruder,
                           trunk=trunk, svi=(lab, "sw0-vlan2"))


def test_tap2_is_an_access_port_of_vlan_2(table1):
    mode = table1.sw0.port_mode("tap2")
    assert (mode.mode, mode.tag) == ("access", 2), f"tap2 is {mode}"
    assert (table1.sw0.port_mode("sw0-vlan2").tag) == 2
    assert table1.vm.mac == "b8:ad:ca:fe:00:02", "the MAC comes from the tap number"


def test_ssh_to_the_eui64_link_local_address_over_sw0_vlan2(table1):
    lab, vm = table1.lab, table1.vm
    ll = eui64(vm.mac)
    assert ll == "fe80::baad:caff:fefe:2"
    assert_address(vm, f"{ll}/64", dev="eth0")
    with GuestSSH(f"{ll}%sw0-vlan2", user="etu", key=vm.image.private_key, netns=lab.ns,
                  known_hosts=lab.rundir / "known_hosts") as c:
        out = c.run("id -un; hostname; echo $SSH_CLIENT", check=True).stdout.split("\n")
    assert out[:2] == ["etu", "vm0"], out
    # the guide's "Last login ... from fe80::...%eth0": the SVI's own link-local address
    svi_ll = [a.address for a in lab.addresses("sw0-vlan2", socket.AF_INET6)
              if a.scope == "link"]
    assert out[2].split()[0] == f"{svi_ll[0]}%eth0", (
        f"the session should come from sw0-vlan2 ({svi_ll}); SSH_CLIENT={out[2]!r}")


def test_the_lab_host_neighbour_table_shows_the_vm_mac_on_sw0_vlan2(table1):
    lab, vm = table1.lab, table1.vm
    vm.run("true", check=True)  # an SSH session to the VM makes the host resolve it
    assert_neighbour(lab, eui64(vm.mac), mac=vm.mac, dev="sw0-vlan2")
    assert_reachable(lab, VM_ADDR)
    assert_neighbour(lab, VM_ADDR, mac=vm.mac, dev="sw0-vlan2")


def test_the_vm_addressing_and_default_route(table1):
    vm, lab = table1.vm, table1.lab
    assert_address(vm, f"{VM_ADDR}/26", dev="eth0")
    assert_route(vm, "203.0.113.128/26", dev="eth0")
    assert_default_route(vm, via=GATEWAY, dev="eth0")
    # the VM's side of `ip nei ls`: its gateway is the SVI, by its MAC
    eventually(lambda: assert_reachable(vm, GATEWAY, timeout=1), timeout=10)
    assert_neighbour(vm, GATEWAY, mac=lab.nl.link("sw0-vlan2").mac, dev="eth0")


def test_the_lab_host_routes_the_vm_to_the_router(table1):
    """« on doit s'assurer que la fonction de routage est activée sur le système hôte »"""
    lab, vm = table1.lab, table1.vm
    assert lab.nl.sysctl("net.ipv4.ip_forward") == "1"
    assert lab.nl.sysctl("net.ipv6.conf.all.forwarding") == "1"
    assert_default_route(lab, via=ROUTER, dev="eth0")
    eventually(lambda: assert_reachable(vm, ROUTER, timeout=1), timeout=10)
    # the control: without forwarding the router is out of reach
    lab.nl.sysctl("net.ipv4.ip_forward", 0)
    try:
        assert_unreachable(vm, ROUTER)
    finally:
        lab.nl.sysctl("net.ipv4.ip_forward", 1)
    eventually(lambda: assert_reachable(vm, ROUTER, timeout=1), timeout=10)


def test_the_vm_frames_stay_in_vlan_2(table1):
    """Captured with scapy on both sides: the VM's broadcast reaches the VLAN 2 SVI, not
    the VLAN 3 host."""
    assert_guest_frames_isolated(table1.vm, ARPING, same_vlan=[table1.svi],
                                 other_vlans=[table1.intruder])


def test_frames_from_vlan_3_never_reach_the_vm(table1):
    vm = table1.vm
    assert_frames_reach_guest(table1.svi, vm)  # the control: VLAN 2 frames do arrive
    assert_frames_do_not_reach_guest(table1.intruder, vm)
    # nor can VLAN 3 hop into VLAN 2 with a tag of its own
    assert_frames_do_not_reach_guest(table1.intruder, vm, vid=2)


def test_a_trunk_port_carries_vlan_2_tagged(table1):
    assert_guest_frames_tagged(table1.vm, ARPING, table1.trunk, vid=2)
    assert_trunk_carries(table1.svi, table1.trunk, vid=2)
    assert_trunk_carries(table1.intruder, table1.trunk, vid=3)
