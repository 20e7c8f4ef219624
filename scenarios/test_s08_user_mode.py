"""Guide §8 and A.1, "Communications réseau en mode utilisateur".

    QEMU VLAN  <-----> Firewall/DHCP server <-----> Internet
                |              (10.0.2.2)
                ----> DNS server (10.0.2.3)

    « Le serveur virtuel attribue dynamiquement les adresses IP à partir de 10.0.2.15 »

`standalone-startup.sh` (A.1) gives the VM `-netdev user,id=net0,hostfwd=tcp::$((2200 +
$tapnum))-:22` and the MAC `b8:ad:ca:fe:HH:LL` from the same number; the student then runs
`ssh -p 22NN etu@localhost` and finds, in the guest:

    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0
    default via 10.0.2.2 dev eth0

Here the number is 10 (the guide's example): SSH through port 2210 of the lab host's
127.0.0.1 (the forward is bound inside the lab namespace, never on the real host).
Each test gets its own VM from `lab_vm`: booted once, then restored from its automatic
checkpoint, taken once the guest had its DHCP address and SSH answered.
"""

from __future__ import annotations

import re

import pytest

from assertions import (
    assert_address,
    assert_default_route,
    assert_file_contains,
    assert_listening,
    assert_no_route,
    assert_route,
    assert_tcp_closed,
    assert_tcp_open,
    eventually,
)
from labfixtures.guests.ssh import GuestSSH

pytestmark = [pytest.mark.root, pytest.mark.vm]

N = 10
SSH_PORT = 2200 + N  # the guide's A.1 rule


@pytest.fixture
def vm0(lab_vm):
    """`standalone-startup.sh vm0 256 10`: user-mode networking, DHCP in the guest."""
    return lab_vm("vm0", tap=N, user=True)


def test_qemu_forwards_port_2200_plus_n_to_the_guest_ssh(vm0):
    argv = vm0.machine.cmdline_file.read_text()
    assert "-netdev user,id=net0," in argv and f":{SSH_PORT}-:22" in argv, (
        f"expected `-netdev user,...,hostfwd=tcp::{SSH_PORT}-:22` in:\n{argv}")
    assert vm0.ssh_target()[:2] == ("127.0.0.1", SSH_PORT)


def test_ssh_through_the_forwarded_port(vm0, lab):
    """`ssh -p 2210 etu@localhost`, as the student (etu) the guide logs in as."""
    assert_listening(vm0, 22)  # the guest's SSH server, where the forward leads
    assert_tcp_open(lab, "127.0.0.1", SSH_PORT)
    with GuestSSH("127.0.0.1", SSH_PORT, user="etu", key=vm0.image.private_key,
                  netns=lab.ns, known_hosts=lab.rundir / "known_hosts") as c:
        who = c.run("id -un; hostname; echo $SSH_CLIENT", check=True).stdout.split("\n")
    assert who[0] == "etu" and who[1] == "vm0", who
    # `w` in the guide: the session comes from 10.0.2.2, the virtual firewall/gateway
    assert who[2].split()[0] == "10.0.2.2", (
        f"an SSH session through hostfwd should come from 10.0.2.2; SSH_CLIENT={who[2]!r}")


def test_dhcp_gives_10_0_2_15(vm0):
    eventually(lambda: assert_address(vm0, "10.0.2.15/24", dev="eth0"), timeout=10)


def test_the_default_gateway_is_10_0_2_2(vm0):
    eventually(lambda: assert_default_route(vm0, via="10.0.2.2", dev="eth0"), timeout=10)
    assert_route(vm0, "10.0.2.0/24", dev="eth0")


def test_the_dns_server_is_10_0_2_3(vm0):
    assert_file_contains(vm0, "/etc/resolv.conf", re.compile(r"^nameserver 10\.0\.2\.3$", re.M))


def test_the_mac_and_link_local_address_follow_the_vm_number(vm0):
    assert vm0.mac == "b8:ad:ca:fe:00:0a"
    assert_address(vm0, "fe80::baad:caff:fefe:a/64", dev="eth0")


def test_no_connection_reaches_the_guest_except_through_hostfwd(vm0, lab):
    """« aucune communication réseau vers la machine virtuelle n'est possible »: the lab host
    has no route to 10.0.2.0/24; only the forwarded port leads in."""
    assert_no_route(lab, "10.0.2.0/24")
    assert_tcp_closed(lab, "10.0.2.15", 22, timeout=0.5)
    assert_tcp_closed(lab, "127.0.0.1", SSH_PORT + 1, timeout=0.5)  # only the VM's forward
