"""Guide §9, "Fonction TUN/TAP du noyau Linux": the tap, a patch cord between host and VM.

    $ sudo ip tuntap add mode tap dev tap1 group kvm multi_queue
    $ ip addr ls tap1
    14: tap1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default qlen 1000
    $ sudo ip link set dev tap1 up
    $ ip addr ls tap1
    14: tap1: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc mq state DOWN ...

    « L'attribution de l'interface tap1 au groupe système kvm est importante [...]
    L'option multi_queue autorise l'utilisation de plusieurs descripteurs de fichiers pour
    une même interface. [...] on peut considérer que la prise réseau dispose d'un
    « interrupteur » [...] `$ sudo ip link set dev tap1 down`. »

The first test follows those commands on tap1. The others plug a VM into a multi-queue tap
(tap9) the way `ovs-startup.sh` does (`-netdev tap,queues=2,ifname=tapN,...` with
`-device virtio-net-pci,mq=on,...`) and check the cord carries traffic, and stops carrying
it when the switch is off. Everything happens in the lab namespace (`ip` runs there).

Each of those tests builds tap9 in its own lab and gets its VM from `lab_vm`: booted once,
then restored from its automatic checkpoint (the `pc` profile, the 2 vCPUs and the
2-queue NIC are part of the checkpoint's key; the restored QEMU opens tap9 twice again).
So the tap switched off, or a second VM refused on it, leaves the next test a fresh cord.
"""

from __future__ import annotations

import json

import pytest

from assertions import assert_reachable, assert_unreachable, eventually
from labfixtures.errors import QemuLaunchError, TapInUseError
from labfixtures.lab.vm import VmNic

pytestmark = [pytest.mark.root, pytest.mark.vm]

N = 9  # the VM's tap: tap9, MAC b8:ad:ca:fe:00:09
VM_LL = "fe80::baad:caff:fefe:9"


def ip_link(lab, dev: str) -> dict:
    """`ip -details link show DEV` in the lab namespace, as data."""
    return json.loads(lab.run(["ip", "-details", "-json", "link", "show", dev]).stdout)[0]


def tun(link: dict) -> dict:
    return link["linkinfo"]["info_data"]


@pytest.fixture
def vm0(lab, lab_vm):
    lab.tap(N, group="kvm", multi_queue=True)
    return lab_vm("vm0", nics=[VmNic(tap=N, queues=2)], profile="pc", vcpus=2)


def test_tap1_as_in_the_guide_group_kvm_multi_queue_up_and_down(lab):
    lab.tap(1, group="kvm", multi_queue=True, up=False)
    link = ip_link(lab, "tap1")
    assert link["linkinfo"]["info_kind"] == "tun" and tun(link)["type"] == "tap"
    assert tun(link)["group"] == "kvm", f"tap1 should belong to group kvm: {tun(link)}"
    assert tun(link)["multi_queue"] is True, f"tap1 should be multi_queue: {tun(link)}"
    assert tun(link)["persist"] is True, "a tap made by `ip tuntap add` persists"
    assert "UP" not in link["flags"] and link["operstate"] == "DOWN", link["flags"]

    lab.run(["ip", "link", "set", "dev", "tap1", "up"])
    link = ip_link(lab, "tap1")
    assert "UP" in link["flags"], link["flags"]
    # no program holds the tap yet: the cord is plugged on one side only
    assert "NO-CARRIER" in link["flags"] and link["operstate"] == "DOWN", link["flags"]

    lab.run(["ip", "link", "set", "dev", "tap1", "down"])
    assert "UP" not in ip_link(lab, "tap1")["flags"]


def test_the_vm_holds_the_tap_with_two_queues(vm0, lab):
    link = ip_link(lab, f"tap{N}")
    queues = tun(link)["numqueues"] + tun(link)["numdisabled"]
    assert queues == 2, f"QEMU should have opened tap{N} twice (queues=2): {tun(link)}"
    assert "LOWER_UP" in link["flags"], f"the VM is attached: carrier expected, {link['flags']}"
    argv = vm0.machine.cmdline_file.read_text()
    assert f"ifname=tap{N},script=no,downscript=no,queues=2" in argv, argv


def test_the_guest_nic_has_two_queue_pairs(vm0):
    queues = vm0.run("ls /sys/class/net/eth0/queues", check=True).stdout.split()
    assert sorted(queues) == ["rx-0", "rx-1", "tx-0", "tx-1"], (
        f"a multi-queue virtio NIC on 2 vCPUs should have 2 rx and 2 tx queues: {queues}")


def test_host_and_vm_talk_through_the_tap(vm0, lab):
    """SSH to the VM's EUI-64 address over the cord (`%tap9`, the tap is not on a switch)."""
    assert vm0.ssh_target()[0] == f"{VM_LL}%tap{N}"
    assert vm0.run("hostname", check=True).stdout.strip() == "vm0"
    assert_reachable(lab, f"{VM_LL}%tap{N}")


def test_the_tap_switch_cuts_and_restores_the_link(vm0, lab):
    target = f"{VM_LL}%tap{N}"
    assert_reachable(lab, target)
    lab.run(["ip", "link", "set", "dev", f"tap{N}", "down"])
    try:
        assert_unreachable(lab, target)
    finally:
        lab.run(["ip", "link", "set", "dev", f"tap{N}", "up"])
    eventually(lambda: assert_reachable(lab, target, timeout=1), timeout=10,
               what=f"the VM after `ip link set dev tap{N} up`")


def test_a_tap_already_in_use_is_refused(vm0, lab):
    """`ovs-startup.sh`: « tapN is already in use by another process. »"""
    with pytest.raises(TapInUseError) as e:
        lab.vm("vm1", nics=[VmNic(tap=N, queues=2)], profile="pc")
    assert (e.value.tap, e.value.vm, e.value.user) == (f"tap{N}", "vm1", "vm0")


def test_a_multi_queue_tap_needs_queues_on_the_netdev(lab):
    """Without `queues=N`, QEMU cannot attach to a multi_queue tap (docs/host-facts.md)."""
    lab.tap(1, group="kvm", multi_queue=True)
    with pytest.raises(QemuLaunchError) as e:
        lab.vm("vm1", nics=[VmNic(tap=1, queues=1)], profile="pc")
    assert e.value.machine == "vm1" and e.value.exitcode not in (0, None)
    netdev = next(a for a in e.value.argv if "ifname=tap1" in a)
    assert "queues=" not in netdev
    assert "tap1" in e.value.stderr  # QEMU names the tap it could not attach
