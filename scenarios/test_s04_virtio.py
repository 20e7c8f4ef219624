"""Guide §4, "KVM et VIRTIO": the virtio devices a guest sees, and the modules that drive them.

The guide lists the PCI bus of a guest and finds four virtio devices:

    00:03.0 Unclassified device [00ff]: Red Hat, Inc Virtio memory balloon
    00:04.0 SCSI storage controller: Red Hat, Inc Virtio block device
    00:05.0 Communication controller: Red Hat, Inc Virtio console
    00:06.0 Ethernet controller: Red Hat, Inc Virtio network device

    « Dans la liste ci-dessus, on reconnaît 4 périphériques référencés virtio dont le
    gestionnaire mémoire et le contrôleur réseau. »

then `lsmod | grep virtio`: virtio_console, virtio_balloon, virtio_net, virtio_blk,
virtio_pci, virtio_ring, virtio. Here the guest runs on the `pc` profile (a PCI bus, as in
the guide) with the same four devices the guide's scripts give it: `-device virtio-net`,
`-device virtio-blk`, `-device virtio-balloon`, `-device virtio-serial-pci`.

Each test gets its own VM from `lab_vm` (booted once, then restored from its automatic
checkpoint: the `pc` profile and the extra devices are part of the checkpoint's key). The
disk behind virtio-blk is a blank 64 MiB raw image of the cache, attached read-only: QEMU
restores a saved state only if every writable disk holds that snapshot, which a raw file
cannot ("Device 'drive0' is writable but does not support snapshots"). These tests only
read the disk.
"""

from __future__ import annotations

import pytest

from assertions import (
    assert_modules_loaded,
    assert_virtio_devices,
    assert_virtio_disk,
    assert_virtio_pci_devices,
)
from assertions.guest import guest_pci_devices

pytestmark = [pytest.mark.root, pytest.mark.vm]

N = 4  # the VM's number: MAC b8:ad:ca:fe:00:04, SSH forwarded from 2204


@pytest.fixture
def vm0(lab_vm, blank_disk):
    disk = blank_disk(64)
    return lab_vm(
        "vm0", tap=N, user=True, profile="pc",
        extra_args=["-drive", f"if=none,id=drive0,format=raw,readonly=on,file={disk}",
                    "-device", "virtio-blk-pci,drive=drive0",
                    "-device", "virtio-balloon-pci",
                    "-device", "virtio-serial-pci"])


def test_the_pci_bus_shows_the_four_virtio_devices_of_the_guide(vm0):
    found = assert_virtio_pci_devices(vm0, "balloon", "block", "console", "network")
    assert all(d.vendor == 0x1AF4 for d in found), "virtio devices are Red Hat's (1af4)"
    assert all(d.driver == "virtio-pci" for d in found), [str(d) for d in found]


def test_the_guest_network_card_is_virtio_not_emulated_hardware(vm0):
    """No e1000 or rtl8139: the only Ethernet controller is the virtio one."""
    ethernet = [d for d in guest_pci_devices(vm0) if d.cls >> 8 == 0x0200]
    assert [d.virtio_kind for d in ethernet] == ["network"], (
        "expected one Ethernet controller, the virtio network device; found:\n  "
        + "\n  ".join(map(str, ethernet)))


def test_each_virtio_device_has_its_driver(vm0):
    devices = assert_virtio_devices(vm0, "network", "block", "balloon", "console")
    drivers = {d.kind: d.driver for d in devices}
    assert drivers == {"network": "virtio_net", "block": "virtio_blk",
                       "balloon": "virtio_balloon", "console": "virtio_console"}
    assert all(d.transport.startswith("pci ") for d in devices), [str(d) for d in devices]


def test_lsmod_shows_the_virtio_modules_of_the_guide(vm0):
    mods = assert_modules_loaded(vm0, "virtio_console", "virtio_balloon", "virtio_net",
                                 "virtio_blk", "virtio_pci", "virtio_ring", "virtio")
    # as in the guide, virtio_ring and virtio are used by the device drivers
    for lib in ("virtio", "virtio_ring"):
        users = set(mods[lib].users)
        assert {"virtio_net", "virtio_blk", "virtio_balloon", "virtio_console"} <= users, (
            f"{lib} should be used by every virtio driver; lsmod says: {mods[lib]}")


def test_the_disk_is_a_virtio_block_device(vm0):
    assert assert_virtio_disk(vm0, "vda") == "virtio_blk"
    size = vm0.run("cat /sys/block/vda/size", check=True).stdout.strip()
    assert int(size) * 512 == 64 * 2**20, f"vda has {size} sectors, the image is 64 MiB"
