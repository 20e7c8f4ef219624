"""The guide's §10 lab (Table 1)

A grading file: the checks a teacher gives points for, on a student's lab file.

    .venv/bin/pytest scenarios/grading/test_table1.py \\
        --lab-grade-target scenarios/grading/students/bob.yaml --lab-grade-out out/bob \\
        --lab-lang fr
    labctl grade scenarios/grading/test_table1.py --roster scenarios/grading/roster.csv \\
        --out out/ -n 2

Without `--lab-grade-target` it grades the reference solution (`REFERENCE`), which must
get every point: that is what `pytest scenarios/` checks.

    Système            Interface   Adresse IPv4       Rôle
    Machine virtuelle  eth0        203.0.113.130/26   Interface réseau de la machine virtuelle
    Système hôte       sw0-vlan2   203.0.113.129/26   Passerelle par défaut de la machine virtuelle
    Système hôte       eth0        203.0.113.2/26     Interface réseau du système hôte
    Routeur            indéfinie   203.0.113.1/26     Passerelle par défaut du système hôte

The student's lab file gives sw0, its SVI, forwarding, tap2 and vm0; this module adds what
the teacher probes from: the upstream router behind the lab host's eth0, and a host on
VLAN 3 (the intruder).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from labfixtures.core.addressing import eui64_link_local

pytestmark = [pytest.mark.root, pytest.mark.vm]

LAB_TITLE = "Table 1 (§10)"
REFERENCE = Path(__file__).parents[1] / "labs" / "seed-minimal.yaml"
VM_ADDR, GATEWAY, MAC = "203.0.113.130", "203.0.113.129", "b8:ad:ca:fe:00:02"
HOST_ETH0, ROUTER, INTRUDER = "203.0.113.2", "203.0.113.1", "203.0.113.131"

# this lab's hints, in both languages ({expected}, {seen}, {target} come from the probe)
MESSAGES = {
    "en": {
        "hint.table1.port": "tap2 must be an access port of VLAN 2, like the SVI "
                            "sw0-vlan2: `ovs-vsctl set port tap2 tag=2`",
        "hint.table1.mac": "the MAC comes from the tap number: tap2 gives "
                           "b8:ad:ca:fe:00:02 (the last two bytes are the number in hex)",
        "hint.table1.ssh": "the link-local address is the EUI-64 of the MAC, reached "
                           "through the SVI of VLAN 2 (`%sw0-vlan2`)",
        "hint.table1.address": "vm0's eth0 needs 203.0.113.130/26 (Table 1)",
        "hint.table1.gateway": "{target}'s default route goes via {seen}; the lab expects "
                               "{expected}, the address of sw0-vlan2",
        "hint.table1.neighbour": "the lab host learns vm0's MAC when vm0 answers on "
                                 "sw0-vlan2: check the port's VLAN and vm0's address",
        "hint.table1.isolation": "a host of VLAN 3 must not reach vm0: only VLAN 2 may "
                                 "reach tap2",
        "hint.table1.forwarding_off": "routing is off on the lab host "
                                      "(net.ipv4.ip_forward = 0): `sysctl -w "
                                      "net.ipv4.ip_forward=1`",
        "hint.table1.router": "the lab host routes vm0's traffic to the router "
                              "203.0.113.1: check its routes and forwarding",
    },
    "fr": {
        "hint.table1.port": "tap2 doit être un port d'accès du VLAN 2, comme l'interface "
                            "sw0-vlan2 : `ovs-vsctl set port tap2 tag=2`",
        "hint.table1.mac": "l'adresse MAC vient du numéro du tap : tap2 donne "
                           "b8:ad:ca:fe:00:02 (les deux derniers octets sont le numéro "
                           "en hexadécimal)",
        "hint.table1.ssh": "l'adresse de lien local est l'EUI-64 de l'adresse MAC, "
                           "jointe par l'interface du VLAN 2 (`%sw0-vlan2`)",
        "hint.table1.address": "l'interface eth0 de vm0 doit avoir 203.0.113.130/26 "
                               "(Table 1)",
        "hint.table1.gateway": "la route par défaut de {target} passe par {seen} ; le lab "
                               "attend {expected}, l'adresse de sw0-vlan2",
        "hint.table1.neighbour": "le système hôte apprend l'adresse MAC de vm0 quand vm0 "
                                 "répond sur sw0-vlan2 : vérifiez le VLAN du port et "
                                 "l'adresse de vm0",
        "hint.table1.isolation": "un hôte du VLAN 3 ne doit pas joindre vm0 : seul le "
                                 "VLAN 2 doit atteindre tap2",
        "hint.table1.forwarding_off": "le routage est désactivé sur le système hôte "
                                      "(net.ipv4.ip_forward = 0) : `sysctl -w "
                                      "net.ipv4.ip_forward=1`",
        "hint.table1.router": "le système hôte route le trafic de vm0 vers le routeur "
                              "203.0.113.1 : vérifiez ses routes et le routage",
    },
}


@pytest.fixture(scope="module")
def table1(student_lab):
    """The student's lab, plus the teacher's side of Table 1: the router behind the lab
    host's eth0, and an intruder on VLAN 3."""
    lab = student_lab.lab
    sw0 = student_lab.switches["sw0"]
    # see scenarios/test_s10_vm.py: the SVI, not tap2, answers ARP for the gateway
    lab.sysctl("net.ipv4.conf.all.arp_ignore", 1)
    router = lab.veth_host("eth0", addresses=[f"{ROUTER}/26"], gateway=HOST_ETH0)
    lab.nl.add_address("eth0", f"{HOST_ETH0}/26")
    lab.nl.add_route("default", gateway=ROUTER)
    intruder = lab.veth_host("vlan3", sw0, tag=3, addresses=[f"{INTRUDER}/26"])
    return SimpleNamespace(lab=lab, sw0=sw0, vm=student_lab.vms["vm0"], router=router,
                           intruder=intruder)


@pytest.mark.points(2)
def test_port(table1, probe):
    """tap2 is an access port of VLAN 2
    fr: tap2 est un port d'accès du VLAN 2"""
    probe.port_vlan(table1.sw0, "tap2", 2, hint="hint.table1.port")


@pytest.mark.points(1)
def test_mac(table1, probe):
    """vm0's MAC address comes from its tap number (b8:ad:ca:fe:00:02)
    fr: l'adresse MAC de vm0 vient du numéro de son tap (b8:ad:ca:fe:00:02)"""
    probe.mac(table1.vm, MAC, hint="hint.table1.mac")


@pytest.mark.points(2)
@pytest.mark.after("test_port", "test_mac")
def test_ssh(table1, probe):
    """SSH to vm0 over its EUI-64 link-local address through sw0-vlan2
    fr: SSH vers vm0 par son adresse de lien local EUI-64 via sw0-vlan2"""
    vm = table1.vm
    probe.ssh(f"{eui64_link_local(MAC)}%sw0-vlan2", vm="vm0", user="etu",
              key=vm.image.private_key, netns=table1.lab.ns, hint="hint.table1.ssh")


@pytest.mark.points(2)
def test_address(table1, probe):
    """vm0's eth0 has the address 203.0.113.130/26
    fr: l'interface eth0 de vm0 a l'adresse 203.0.113.130/26"""
    probe.addresses(table1.vm, [f"{VM_ADDR}/26"], "eth0", hint="hint.table1.address")


@pytest.mark.points(2)
@pytest.mark.after("test_address")
def test_gateway(table1, probe):
    """vm0's default route goes via 203.0.113.129 (sw0-vlan2)
    fr: la route par défaut de vm0 passe par 203.0.113.129 (sw0-vlan2)"""
    probe.default_route(table1.vm, via=GATEWAY, dev="eth0", hint="hint.table1.gateway")


@pytest.mark.points(1)
@pytest.mark.after("test_port", "test_mac", "test_address")
def test_neighbour(table1, probe):
    """The lab host knows vm0's MAC address on sw0-vlan2
    fr: le système hôte connaît l'adresse MAC de vm0 sur sw0-vlan2"""
    probe.reachable(table1.lab, VM_ADDR, within=5, hint="hint.table1.neighbour")
    probe.neighbour(table1.lab, VM_ADDR, MAC, "sw0-vlan2", hint="hint.table1.neighbour")


@pytest.mark.points(1)
@pytest.mark.hidden
@pytest.mark.after("test_address")
def test_isolation(table1, probe):
    """A host of VLAN 3 cannot reach vm0
    fr: un hôte du VLAN 3 ne peut pas joindre vm0"""
    probe.unreachable(table1.intruder, VM_ADDR, hint="hint.table1.isolation")


@pytest.mark.points(2)
@pytest.mark.after("test_port", "test_address", "test_gateway")
def test_router(table1, probe, credit):
    """vm0 reaches its gateway, and the router 203.0.113.1 through the lab host
    fr: vm0 joint sa passerelle, et le routeur 203.0.113.1 via le système hôte"""
    probe.reachable(table1.vm, GATEWAY, within=5, hint="hint.table1.neighbour")
    credit(1, 2)  # the gateway answers: half of the points even if the router does not
    off = table1.lab.nl.sysctl("net.ipv4.ip_forward") != "1"
    probe.reachable(table1.vm, ROUTER, within=3,
                    hint="hint.table1.forwarding_off" if off else "hint.table1.router")
