"""Guide A.4 on the guide's own machine: `iso-install-startup.sh` booted by UEFI.

The A.2 machine (`ovs-startup.sh`: q35, OVMF, swtpm, here the `guide` profile) given the
installer ISO on its SATA CD-ROM with `-boot once=d`: OVMF boots the ISO's EFI image, the
installer lays the blank disk out (msdos, vda1 /boot, vda4 EFI system, vda5 LVM) and powers
off; then OVMF boots that disk on its own, by the removable path EFI/BOOT/BOOTX64.EFI (no
NVRAM entry), with a fresh copy of OVMF_VARS.fd. test_a4_iso_install.py is the same
installation under SeaBIOS. A module of its own: an installation and two firmware boots
under TCG take minutes, and the scheduler can run them beside test_guide_machine.py.
"""

from __future__ import annotations

import subprocess

import pytest

from labfixtures.guestimages import default_tb_size
from labfixtures.guests.ssh import GuestSSH
from labfixtures.qemu import Machine, MachineSpec, NicSpec

pytestmark = [pytest.mark.root, pytest.mark.vm, pytest.mark.slow(75)]

N = 42  # the guide machine's number (test_guide_machine.py); its VMs here are N+2
MEMORY = 1024  # the guide's second parameter
BOOT_TIMEOUT = 600.0  # hang guard only: OVMF + GRUB + Debian under TCG take ~1-2 min


def test_a4_the_installer_iso_boots_by_uefi_and_so_does_the_disk_it_installs(
        module_lab, debian_image, tmp_path):
    """iso-install-startup.sh on the guide's machine: OVMF boots the ISO's EFI image from
    the SATA CD-ROM (`-boot once=d`), the installer lays the disk out (msdos, vda1 /boot,
    vda4 EFI system, vda5 LVM) and powers off; then OVMF boots that disk by the removable
    path EFI/BOOT/BOOTX64.EFI (no NVRAM entry) with a fresh copy of OVMF_VARS.fd."""
    iso = debian_image.path / debian_image.facts.get("installer_iso", "installer.iso")
    disk = tmp_path / "vm0-debian-stable-amd64.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "8G"], check=True,
                   timeout=60)
    inst = Machine(MachineSpec("inst", disk=disk, cdrom=iso, boot_once_cdrom=True,
                               profile="guide", memory_mb=512,
                               tb_size_mb=default_tb_size("debian")), tmp_path / "inst",
                   netns=module_lab.ns)
    module_lab.ledger.push("A.4 installer", inst.stop)
    inst.start()
    assert inst.proc is not None
    try:
        inst.proc.wait(timeout=1800)  # hang guard only: the installer powers the VM off
    finally:
        inst.stop()
    log = inst.serial_text()
    assert "labfixtures: install ok" in log, log[-3000:]
    assert "x86_64-efi" in log and "EFI/BOOT/BOOTX64.EFI" in log

    nic = NicSpec("user", number=N + 2)
    vm = Machine(MachineSpec("vm3", disk=disk, profile="guide", memory_mb=MEMORY,
                             nics=[nic], tb_size_mb=default_tb_size("debian")),
                 tmp_path / "vm3", netns=module_lab.ns)
    module_lab.ledger.push("A.4 installed VM", vm.stop)
    vm.boot(timeout=BOOT_TIMEOUT)
    with GuestSSH("127.0.0.1", nic.ssh_port, key=debian_image.private_key,
                  netns=module_lab.ns).connect(deadline=120) as ssh:
        def run(cmd: str) -> str:
            r = ssh.run(cmd, timeout=60)
            assert r.ok, f"`{cmd}`: {r.stderr or r.stdout}"
            return r.stdout.strip()

        assert run("test -d /sys/firmware/efi && echo uefi") == "uefi"
        table = run("LC_ALL=C parted -s -m /dev/vda print")
        assert ":msdos:" in table.splitlines()[1], table
        parts = {int(p.split(":")[0]): p.rstrip(";").split(":")
                 for p in table.splitlines()[2:]}
        assert sorted(parts) == [1, 2, 4, 5], table  # vda3 stays free for §7
        assert parts[4][4].startswith("fat") and "esp" in parts[4][6], table
        assert run("findmnt -n -o FSTYPE /boot/efi") == "vfat"
        assert run("test -f /boot/efi/EFI/BOOT/BOOTX64.EFI && echo ok") == "ok"
        assert run("vgs --noheadings -o vg_name").split() == ["vm0"]
    vm.stop()
