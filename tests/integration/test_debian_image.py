"""The `debian` image: the guide's disk layout (§5, §7), checked from inside the guest.

The disk's own boot loaders are checked where a firmware boots them: GRUB in the MBR under
SeaBIOS by scenarios/test_a4_iso_install.py, EFI/BOOT/BOOTX64.EFI under OVMF by
scenarios/test_guide_machine.py: both boot a disk that the image's own installer ISO has just
installed (the image's disk is that installer's output), the recipe's kernel words
included. Here the VM boots directly (`-kernel`), as lab VMs do.

The image takes minutes to build (debootstrap, then an installer VM under TCG), so these
tests never build it: ./ci/setup does, and a missing image fails them with the remedy.
The VM runs in a lab's network namespace with a user-mode NIC (guide §8): its `hostfwd` port
listens on 127.0.0.1 of that namespace, never of the host.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from labfixtures.core.addressing import eui64_link_local
from labfixtures.guestimages import GuestImage
from labfixtures.guestimages.debian import MASKED_GENERATORS
from labfixtures.lab.lab import Lab
from labfixtures.lab.vm import VM
from labfixtures.qemu import NicSpec
from labfixtures.qemu.spec import READY_MARKER

pytestmark = [
    pytest.mark.vm,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86 is not installed"),
]

N = 13  # the VM's number: MAC b8:ad:ca:fe:00:0d, SSH forwarded from 2213


@pytest.fixture(scope="module")
def direct_vm(lab_host: Lab, booted_vm: Callable[..., VM],
              debian_image: GuestImage) -> Iterator[VM]:
    """vm0 just booted directly (`-kernel`) on the image's disk, a user-mode NIC (DHCP):
    restored from its automatic checkpoint (`booted_vm`), booted and saved the first time.
    Everything checked here is the state of a booted system, which a restore gives back."""
    assert debian_image.facts["marker"] == READY_MARKER
    with lab_host.scope("debian-image") as lab:
        yield booted_vm(lab, "vm0", tap=N, user=True, image=debian_image, profile="pc",
                        memory=512)


def test_lvm_volume_group_vm0(direct_vm: VM) -> None:
    out = direct_vm.run("vgs --noheadings -o vg_name,pv_count,lv_count", check=True).stdout
    assert out.split() == ["vm0", "1", "1"]
    pvs = direct_vm.run("pvs --noheadings -o pv_name,vg_name", check=True).stdout.split()
    assert pvs == ["/dev/vda5", "vm0"]
    lvs = direct_vm.run("lvs --noheadings -o lv_name,vg_name", check=True).stdout.split()
    assert lvs == ["root", "vm0"]


def test_msdos_layout_of_the_guide(direct_vm: VM) -> None:
    out = direct_vm.run("parted -s -m /dev/vda unit MiB print", check=True).stdout
    lines = [line.rstrip(";").split(":") for line in out.splitlines()]
    assert lines[1][5] == "msdos"  # the disk line: path:size:type:ls:ps:label:model
    parts = {int(p[0]): p for p in lines[2:]}
    assert sorted(parts) == [1, 2, 4, 5]  # 4: the EFI system partition (UEFI boot)
    assert parts[1][4] == "ext2" and "boot" in parts[1][6]
    assert parts[4][4].startswith("fat")
    assert "lvm" in parts[5][6]
    human = direct_vm.run("parted -s /dev/vda print", check=True).stdout
    assert "extended" in human and "logical" in human
    lsblk = direct_vm.run("lsblk -rno NAME,TYPE,FSTYPE /dev/vda", check=True).stdout.split("\n")
    rows = {r.split(" ")[0]: r.split(" ")[1:] for r in lsblk if r}
    assert rows["vda1"] == ["part", "ext2"]
    assert rows["vda5"] == ["part", "LVM2_member"]
    assert rows["vda4"] == ["part", "vfat"]
    assert rows["vm0-root"] == ["lvm", "ext4"]


def test_root_on_the_logical_volume_and_boot_on_vda1(direct_vm: VM) -> None:
    assert direct_vm.run("findmnt -no SOURCE /", check=True).stdout.strip() == \
        "/dev/mapper/vm0-root"
    assert direct_vm.run("findmnt -no FSTYPE /", check=True).stdout.strip() == "ext4"
    assert direct_vm.run("findmnt -no SOURCE,FSTYPE /boot", check=True).stdout.split() == \
        ["/dev/vda1", "ext2"]
    fstab = direct_vm.run("cat /etc/fstab", check=True).stdout
    assert "/dev/mapper/vm0-root" in fstab and " /boot " in fstab


def test_user_etu_and_root_by_key_only(direct_vm: VM) -> None:
    assert direct_vm.run("id -un etu", check=True).stdout.strip() == "etu"
    assert direct_vm.run("getent passwd etu", check=True).stdout.split(":")[5] == "/home/etu"
    assert "ssh-ed25519" in direct_vm.run("cat /home/etu/.ssh/authorized_keys").stdout
    sshd = direct_vm.run("sshd -T", check=True).stdout
    assert "permitrootlogin without-password" in sshd
    assert "passwordauthentication no" in sshd


def test_guest_configuration_and_eui64(direct_vm: VM) -> None:
    assert direct_vm.run("hostname", check=True).stdout.strip() == "vm0"
    v4 = direct_vm.run("ip -4 addr show dev eth0", check=True).stdout
    assert "inet 10.0.2.15/24" in v4
    v6 = direct_vm.run("ip -6 addr show dev eth0", check=True).stdout
    assert f"inet6 {eui64_link_local(NicSpec('user', number=N).mac)}/64 scope link" in v6
    assert direct_vm.run("systemctl is-active lf-config.service").stdout.strip() == "active"
    assert direct_vm.run("systemctl --failed --no-legend", check=True).stdout.strip() == ""


def test_boot_order_for_a_fast_ssh(direct_vm: VM) -> None:
    """What the recipe does for boot speed is in place, and nothing failed for it."""
    gens = direct_vm.run("readlink " + " ".join(f"/etc/systemd/system-generators/{g}"
                                               for g in MASKED_GENERATORS), check=True)
    assert gens.stdout.split() == ["/dev/null"] * len(MASKED_GENERATORS)
    ssh_after = direct_vm.run("systemctl show -p After --value ssh.service", check=True)
    assert "lf-config.service" not in ssh_after.stdout.split()  # beside it, not after it
    ready_after = direct_vm.run("systemctl show -p After --value lf-ready.service",
                                check=True).stdout.split()
    assert {"ssh.service", "lf-config.service"} <= set(ready_after)  # the marker: both done
    getty_after = direct_vm.run("systemctl show -p After --value serial-getty@ttyS0.service",
                                check=True).stdout.split()
    assert "lf-ready.service" in getty_after
    # lf-ready is a oneshot that has run (inactive, not failed): is-active exits 3 for it
    assert direct_vm.run("systemctl is-active ssh.service lf-ready.service"
                         ).stdout.split() == ["active", "inactive"]
    assert direct_vm.run("systemctl --failed --no-legend", check=True).stdout.strip() == ""
