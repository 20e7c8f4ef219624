"""Each guest assertion passes on a guest that has the fact and fails, with a message that
shows what was expected and what the guest has, on one that does not.

One tiny VM (microvm profile: virtio on MMIO, no PCI bus, no balloon, no console, no disk)
on an access port of VLAN 2 serves every test; branches such a guest cannot produce (a disk
with another driver, a device without its driver) are fed to the same code by a stand-in
guest that answers with canned `/sys` contents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from assertions import (
    assert_accelerator,
    assert_file_contains,
    assert_frames_do_not_reach_guest,
    assert_frames_reach_guest,
    assert_guest_frames_isolated,
    assert_guest_frames_tagged,
    assert_listening,
    assert_modules_loaded,
    assert_service_running,
    assert_virtio_devices,
    assert_virtio_disk,
    assert_virtio_pci_devices,
)
from assertions.guest import PciDevice
from labfixtures import guestimages
from labfixtures.errors import LabError
from labfixtures.qemu import accel

GW = "203.0.113.129"
ARPING = f"arping -f -c 1 -w 1 -I eth0 {GW}"


@pytest.fixture(scope="module")
def net(lab_host):
    guestimages.build("tiny", progress=None)
    with lab_host.scope("guest-assertions") as lab:
        sw = lab.switch("sw0")
        sw.svi(2, f"{GW}/26")
        lab.tap(2)
        sw.add_port("tap2", tag=2)
        same = lab.veth_host("same2", sw, tag=2, addresses=["203.0.113.131/26"])
        other = lab.veth_host("other3", sw, tag=3, addresses=["203.0.113.132/26"])
        trunk3 = lab.veth_host("trunk3", sw, trunks=[3])
        trunk23 = lab.veth_host("trunk23", sw, trunks=[2, 3])
        vm = lab.vm("vm0", tap=2, addresses=["203.0.113.130/26"], gateway=GW)
        yield SimpleNamespace(lab=lab, vm=vm, same=same, other=other, trunk3=trunk3,
                              trunk23=trunk23, svi=(lab, "sw0-vlan2"))


# -- devices, modules, disk, accelerator on a real guest -----------------------------------

@pytest.mark.root
@pytest.mark.vm
def test_virtio_devices_on_any_transport(net):
    (dev,) = assert_virtio_devices(net.vm, "network")
    assert (dev.driver, dev.transport.split()[0]) == ("virtio_net", "mmio")
    with pytest.raises(AssertionError) as e:
        assert_virtio_devices(net.vm, "network", "balloon")
    msg = str(e.value)
    assert "expected virtio devices network, balloon" in msg
    assert "no virtio balloon device (type 5)" in msg
    assert "virtio network (id 1)" in msg and "virtio_net" in msg  # what it has


@pytest.mark.root
@pytest.mark.vm
def test_virtio_pci_devices_need_a_pci_bus(net):
    with pytest.raises(AssertionError) as e:
        assert_virtio_pci_devices(net.vm, "network")
    msg = str(e.value)
    assert "no Virtio network device (vendor 1af4) on the PCI bus" in msg
    assert "(no PCI device: no PCI bus)" in msg and "profile 'pc' or 'q35'" in msg


@pytest.mark.root
@pytest.mark.vm
def test_modules_loaded(net):
    mods = assert_modules_loaded(net.vm, "virtio_net", "virtio-mmio")
    assert mods["virtio_net"].state == "Live"
    with pytest.raises(AssertionError) as e:
        assert_modules_loaded(net.vm, "virtio_net", "virtio_balloon", "virtio_console")
    msg = str(e.value)
    assert "not loaded: virtio_balloon, virtio_console" in msg
    assert "virtio_net" in msg.split("loaded modules (lsmod):")[1], msg  # shows lsmod


@pytest.mark.root
@pytest.mark.vm
def test_virtio_disk_absent(net):
    with pytest.raises(AssertionError) as e:
        assert_virtio_disk(net.vm, "vda")
    msg = str(e.value)
    assert "expected a virtio disk /dev/vda, but there is no block device vda" in msg
    assert "block devices (/sys/block): (none)" in msg


@pytest.mark.root
@pytest.mark.vm
def test_accelerator(net):
    info = accel.detect()
    kvm = assert_accelerator(net.vm)
    assert kvm["enabled"] == (info.name == "kvm")
    wrong = "tcg" if info.name == "kvm" else "kvm"
    with pytest.raises(AssertionError) as e:
        assert_accelerator(net.vm, wrong)
    msg = str(e.value)
    assert f"expected accelerator {wrong.upper()}" in msg and "query-kvm says" in msg
    assert "egrep '(vmx|svm)' /proc/cpuinfo" in msg


# -- frames sent by and to the guest ---------------------------------------------------------

@pytest.mark.root
@pytest.mark.vm
def test_guest_frames_isolated(net):
    assert_guest_frames_isolated(net.vm, ARPING, same_vlan=[net.svi, net.same],
                                 other_vlans=[net.other])
    with pytest.raises(AssertionError, match=r"(?s)VLAN leak: frames of vm0 "
                                             r"\(b8:ad:ca:fe:00:02\) sent by `arping.*` "
                                             r"arrived on .*same2 \(eth0\): Ether / ARP"):
        assert_guest_frames_isolated(net.vm, ARPING, same_vlan=[net.svi],
                                     other_vlans=[net.same])
    with pytest.raises(AssertionError, match=r"did not reach other3 \(eth0\), which should "
                                             "be in its VLAN"):
        assert_guest_frames_isolated(net.vm, ARPING, same_vlan=[net.other], other_vlans=[])


@pytest.mark.root
@pytest.mark.vm
def test_guest_frames_tagged(net):
    assert_guest_frames_tagged(net.vm, ARPING, net.trunk23, vid=2)
    with pytest.raises(AssertionError, match=r"no frame from vm0 \(b8:ad:ca:fe:00:02\) "
                                             r"reached the trunk trunk3 \(eth0\)"):
        assert_guest_frames_tagged(net.vm, ARPING, net.trunk3, vid=2)
    with pytest.raises(AssertionError, match=r"reached the trunk trunk23 \(eth0\) VLAN 2"
                                             r"(, VLAN 2)*; expected every one tagged with "
                                             "VID 3"):
        assert_guest_frames_tagged(net.vm, ARPING, net.trunk23, vid=3)


@pytest.mark.root
@pytest.mark.vm
def test_frames_reach_guest(net):
    assert assert_frames_reach_guest(net.same, net.vm, count=2) >= 2
    with pytest.raises(AssertionError, match=r"2 broadcast frame\(s\) sent from other3 "
                                             r"\(eth0\) should reach vm0 \(eth0\), but it "
                                             "counted 0"):
        assert_frames_reach_guest(net.other, net.vm, count=2)


@pytest.mark.root
@pytest.mark.vm
def test_frames_do_not_reach_guest(net):
    assert_frames_do_not_reach_guest(net.other, net.vm)
    assert_frames_do_not_reach_guest(net.other, net.vm, vid=2)
    with pytest.raises(AssertionError, match=r"VLAN leak: 3 of 3 broadcast frame\(s\) sent "
                                             r"from same2 \(eth0\) arrived in vm0"):
        assert_frames_do_not_reach_guest(net.same, net.vm)


@pytest.mark.root
@pytest.mark.vm
def test_silence_of_a_guest_that_cannot_count_is_refused(net):
    """The positive control of `assert_frames_do_not_reach_guest`: a guest whose counters
    never move (here the real VM's tap, but counters read from a stand-in) proves nothing."""
    stuck = SimpleNamespace(name="stuck", mac=net.vm.mac, lab=net.lab, nics=net.vm.nics,
                            run=lambda cmd: _Result(0, "0\n0\n"))
    with pytest.raises(LabError) as e:
        assert_frames_do_not_reach_guest(net.other, stuck)
    assert "stuck counted no frame on eth0, even one sent straight to it on tap2" in str(e.value)
    with pytest.raises(LabError, match="no tap is known for vm0's eth1"):
        assert_frames_do_not_reach_guest(net.other, net.vm, dev="eth1")


# -- files, services, listening sockets ----------------------------------------------------

@pytest.mark.root
@pytest.mark.vm
def test_file_contains(net):
    net.vm.run("printf 'lab 10\\nvlan=2\\n' > /tmp/lab.conf", check=True)
    assert assert_file_contains(net.vm, "/tmp/lab.conf", "vlan=2") == "vlan=2"
    assert assert_file_contains(net.vm, "/tmp/lab.conf", re.compile(r"^lab \d+$", re.M)
                                ) == "lab 10"
    with pytest.raises(AssertionError) as e:
        assert_file_contains(net.vm, "/tmp/lab.conf", "vlan=3")
    msg = str(e.value)
    assert "vm0: expected /tmp/lab.conf to contain the text 'vlan=3', but it does not" in msg
    assert "/tmp/lab.conf (2 lines):\n      1  lab 10\n      2  vlan=2" in msg  # the file
    with pytest.raises(AssertionError, match=r"(?s)there is no file /tmp/nope.conf.*"
                                             "its directory holds:.*lab.conf"):
        assert_file_contains(net.vm, "/tmp/nope.conf", "x")
    with pytest.raises(AssertionError, match="/tmp is not a readable regular file"):
        assert_file_contains(net.vm, "/tmp", "x")


@pytest.mark.root
@pytest.mark.vm
def test_service_running_by_process_name_without_systemd(net):
    """The tiny guest has no systemctl: a service is a process of that name (dropbear)."""
    proc = assert_service_running(net.vm, "dropbear")
    assert proc.comm == "dropbear"
    with pytest.raises(AssertionError) as e:
        assert_service_running(net.vm, "sshd")
    msg = str(e.value)
    assert "vm0: expected service sshd to be running, but no process is named sshd" in msg
    assert "no systemd here" in msg
    assert re.search(r"\n +\d+  dropbear ", msg), msg  # what runs instead, shown
    net.vm.run("sleep 300 >/dev/null 2>&1 &", check=True)
    assert_service_running(net.vm, "sleep")
    net.vm.run("killall sleep", check=True)
    with pytest.raises(AssertionError, match="no process is named sleep"):
        assert_service_running(net.vm, "sleep")


@pytest.mark.root
@pytest.mark.vm
def test_listening(net):
    socks = assert_listening(net.vm, 22)  # dropbear
    assert {s.port for s in socks} == {22}
    with pytest.raises(AssertionError) as e:
        assert_listening(net.vm, 2222)
    msg = str(e.value)
    assert "vm0: expected a TCP socket listening on port 2222, but nothing listens" in msg
    assert re.search(r"listening TCP sockets \(ss -ltn\):\n +tcp6? +\S+:22\b", msg), msg
    with pytest.raises(AssertionError, match="expected a UDP socket listening on port 53"):
        assert_listening(net.vm, 53, proto="udp")


# -- branches a tiny guest cannot show: a stand-in guest ------------------------------------

@dataclass
class _Result:
    exit_status: int
    stdout: str
    stderr: str = ""


class FakeGuest:
    """Answers the assertions' commands from canned text, keyed by a word of the command."""

    name = "fake"

    def __init__(self, **answers: str) -> None:
        self.answers = answers

    def run(self, cmd: str) -> _Result:
        for key, out in self.answers.items():
            if key in cmd:
                return _Result(0, out)
        return _Result(1, "", f"no answer for {cmd!r}")


def test_disk_with_another_driver():
    guest = FakeGuest(**{"/sys/block/vda": "sda vda \npresent\nsd\n"})
    with pytest.raises(AssertionError) as e:
        assert_virtio_disk(guest, "vda")
    assert "expected /dev/vda to be a virtio block device (driver virtio_blk), but its " \
           "driver is sd" in str(e.value)
    assert assert_virtio_disk(FakeGuest(**{"/sys/block/vda": "vda \npresent\nvirtio_blk\n"})
                              ) == "virtio_blk"


def test_pci_device_without_driver():
    pci = ("0000:00:02.0 0x1af4 0x1000 0x020000 virtio-pci\n"
           "0000:00:03.0 0x1af4 0x1002 0x00ff00\n")
    guest = FakeGuest(**{"/sys/bus/pci": pci})
    (net,) = assert_virtio_pci_devices(guest, "net")
    assert str(net) == "00:02.0 class 0200: Virtio network device (driver virtio-pci)"
    with pytest.raises(AssertionError) as e:
        assert_virtio_pci_devices(guest, "network", "balloon")
    msg = str(e.value)
    assert "Virtio memory balloon at 0000:00:03.0 has no driver bound" in msg
    assert "00:03.0 class 00ff: Virtio memory balloon (no driver)" in msg


def test_modern_pci_ids_are_recognised():
    assert PciDevice("0000:00:04.0", 0x1AF4, 0x1042, 0x010000, "virtio-pci"
                     ).virtio_kind == "block"
    assert PciDevice("0000:00:05.0", 0x8086, 0x100E, 0x020000, "e1000").virtio_kind is None


def test_module_not_live_and_failing_command():
    mods = "virtio_balloon 24576 0 - Loading 0xffffffffc024b000\n---\n"
    with pytest.raises(AssertionError, match=r"not live: virtio_balloon \(Loading\)"):
        assert_modules_loaded(FakeGuest(**{"/proc/modules": mods}), "virtio_balloon")
    with pytest.raises(AssertionError, match=r"fake: `cat /proc/modules.*` failed with "
                                             "status 1"):
        assert_modules_loaded(FakeGuest(), "virtio_net")
    with pytest.raises(ValueError, match="unknown virtio device kind 'floppy'"):
        assert_virtio_devices(FakeGuest(), "floppy")
