"""Guide A.4, "Installation d'un système sur machine virtuelle" (and §5, which uses it).

    « Le script iso-install-startup.sh reprend le code du [A.1] avec la description d'un
    lecteur de DVD pour que l'on puisse lancer une installation système sur une image
    vierge. Ce script n'est utile que pour la création d'un nouveau master. »

    ~/vm$ qemu-img create -f raw vm0-debian-stable-amd64.raw 80G
    ~/vm$ ./scripts/iso-install-startup.sh vm0-debian-stable-amd64.raw \\
              ~/iso.images/debian-8.3.0-amd64-netinst.iso 512 0

    (the script: `-boot once=d`, `-drive media=cdrom,...,file=$iso`, the image on
    virtio-blk, a virtio NIC, the serial console on telnet 2300+N)

The same here, unattended: a blank qcow2 image (`qemu-img create -f qcow2`, 8G rather
than 80G), a VM of the `iso-install` profile (the `pc` machine, the ISO on an IDE CD-ROM,
`-boot once=d`, 512 MB as in the guide, a user-mode NIC) booted by its firmware: SeaBIOS
boots the CD-ROM (El Torito), GRUB on the ISO starts the installer, which lays the disk out
the guide's way (msdos label, vda1 /boot, vda5 the LVM physical volume of VG vm0, LV root),
installs GRUB in the MBR and powers the VM off. Its serial console is the install log.
Then the installed image boots on its own, through SeaBIOS and GRUB (no `-kernel`), and is
checked over SSH (its `hostfwd` port listens in the lab's namespace, not on the host).

The ISO is the installer of the `debian` image (labfixtures' own, Debian's netinst cannot
be downloaded here): a real ISO 9660 image, read with xorriso since the host kernel has no
ISO 9660 driver to mount it. The VMs run in `module_lab` (the lab's namespace), not as a
checkpointed `lab_vm`: an installation is a first boot on a blank disk, nothing to restore.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labfixtures.guestimages import default_tb_size, default_vcpus
from labfixtures.guestimages.debian import GRUB_CMDLINE
from labfixtures.guests.ssh import GuestSSH
from labfixtures.qemu import Machine, MachineSpec, NicSpec, qemu_img_info

pytestmark = [pytest.mark.root, pytest.mark.vm, pytest.mark.slow(55)]

N = 40  # the VM's number: MAC b8:ad:ca:fe:00:28, SSH forwarded from 2240 (user mode)
GIB = 2**30
MIB = 2**20
DISK_NAME = "vm0-debian-stable-amd64.qcow2"
MEMORY = 512  # the guide's third parameter
OK_LINE = "labfixtures: install ok"
FAILED_LINE = "labfixtures: install failed"
INSTALL_TIMEOUT = 1800.0  # hang guard only: an install takes 2-4 min under TCG
BOOT_TIMEOUT = 300.0  # hang guard only: the GRUB boot takes ~45-70 s under TCG


def xorriso(*args: str) -> str:
    cp = subprocess.run(["xorriso", *args], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, f"xorriso {' '.join(args)} failed: {cp.stderr[-1500:]}"
    return cp.stdout + cp.stderr  # xorriso reports on stderr



@pytest.fixture(scope="module")
def iso(debian_image) -> Path:
    path = debian_image.path / debian_image.facts.get("installer_iso", "installer.iso")
    assert path.is_file(), f"the debian image has no installer ISO at {path}: rebuild it"
    return path


# -- the installation medium -----------------------------------------------------------------


def test_the_installer_is_an_iso9660_image(iso):
    """ECMA-119: the primary volume descriptor in sector 16 (byte 32768): 01 'CD001' 01."""
    with open(iso, "rb") as f:
        f.seek(16 * 2048)
        pvd = f.read(7)
    assert pvd == b"\x01CD001\x01", f"{iso} has no ISO 9660 primary volume descriptor: {pvd!r}"
    report = xorriso("-indev", str(iso), "-pvd_info")
    assert re.search(r"Volume Id\s*:\s*\S+", report), report


def test_the_iso_is_bootable_by_the_bios_el_torito(iso):
    """What `-boot once=d` needs: an El Torito boot image for the BIOS platform."""
    report = xorriso("-indev", str(iso), "-report_el_torito", "plain")
    assert re.search(r"El Torito boot img\s*:\s*1\s+BIOS\s+y", report), (
        f"the ISO should have a bootable BIOS El Torito image:\n{report}")


def test_the_iso_holds_the_installer(iso, tmp_path):
    """Listed and read with xorriso (`-find`, `-extract`): never mounted."""
    files = set(re.findall(r"^'(/[^']*)'$", xorriso("-indev", str(iso), "-find", "/",
                                                       "-type", "f"), re.M))
    wanted = {"/boot/grub/grub.cfg", "/labfixtures/vmlinuz", "/labfixtures/installer.img",
              "/labfixtures/root.img"}
    assert wanted <= files, f"missing on the ISO: {sorted(wanted - files)}"
    xorriso("-osirrox", "on", "-indev", str(iso), "-extract", "/boot/grub/grub.cfg",
            str(tmp_path / "grub.cfg"))
    cfg = (tmp_path / "grub.cfg").read_text()
    m = re.search(r"linux /labfixtures/vmlinuz (.*)", cfg)
    assert m, f"the ISO's grub.cfg does not start the installer kernel:\n{cfg}"
    words = m.group(1).split()
    assert "console=ttyS0,115200" in words, "the installer must talk on the serial console"
    assert {"lf.install.disk=/dev/vda", "lf.install.vg=vm0", "lf.install.lv=root"} <= set(words)


# -- the blank image ------------------------------------------------------------------------


@dataclass
class Blank:
    path: Path
    create_output: str
    info: dict
    data_extents: list


@pytest.fixture(scope="module")
def blank_image(module_lab) -> Blank:
    """`qemu-img create -f qcow2 vm0-debian-stable-amd64.qcow2 8G`, in the lab's directory."""
    d = module_lab.rundir / "a4"
    d.mkdir(parents=True, exist_ok=True)
    disk = d / DISK_NAME
    module_lab.ledger.push("A.4 disk", lambda: disk.unlink(missing_ok=True))
    cp = subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "8G"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, f"qemu-img create failed: {cp.stderr}"
    m = subprocess.run(["qemu-img", "map", "--output=json", str(disk)], capture_output=True,
                       text=True, check=True, timeout=60)
    return Blank(disk, cp.stdout, qemu_img_info(disk),
                 [e for e in json.loads(m.stdout) if e.get("data")])


def test_a_blank_qcow2_image_of_8g(blank_image):
    """« une installation système sur une image vierge »: 8G announced, nothing written."""
    assert blank_image.create_output.startswith(
        f"Formatting '{blank_image.path}', fmt=qcow2"), blank_image.create_output
    assert "size=8589934592" in blank_image.create_output, blank_image.create_output
    assert (blank_image.info["format"], blank_image.info["virtual-size"]) == ("qcow2", 8 * GIB)
    assert blank_image.info["actual-size"] < MIB, (
        f"a new qcow2 image should use (almost) nothing, it uses "
        f"{blank_image.info['actual-size']} bytes")
    assert blank_image.data_extents == [], (
        f"a blank image has no data: qemu-img map shows {blank_image.data_extents}")


# -- the installation -----------------------------------------------------------------------


@dataclass
class Install:
    log: str
    argv: str
    exit_status: int | None
    seconds: float
    timed_out: bool

    def explain(self) -> str:
        tail = "\n".join(self.log.splitlines()[-25:])
        return (f"the installer VM exited with {self.exit_status} after {self.seconds:.0f}s"
                f"{' (killed: it hung)' if self.timed_out else ''}; its serial console "
                f"ends with:\n{tail}")


@pytest.fixture(scope="module")
def install(module_lab, blank_image, iso) -> Install:
    """iso-install-startup.sh: the blank image, the ISO on a CD-ROM, boot once from it."""
    nic = NicSpec("user", number=N)
    spec = MachineSpec("vm0", disk=blank_image.path, cdrom=iso, boot_once_cdrom=True,
                       profile="pc", memory_mb=MEMORY, vcpus=default_vcpus("debian"),
                       nics=[nic], tuned=False, tb_size_mb=default_tb_size("debian"))
    m = Machine(spec, module_lab.rundir / "a4" / "install", netns=module_lab.ns)
    module_lab.ledger.push("A.4 installer VM", m.stop)
    m.start()
    deadline = time.monotonic() + INSTALL_TIMEOUT
    while m.running and time.monotonic() < deadline:
        time.sleep(1)
    timed_out = m.running
    seconds = m.uptime()
    m.stop()
    return Install(m.serial_text(), m.cmdline_file.read_text(), m.proc.returncode,
                   seconds, timed_out)


def test_the_installer_vm_boots_the_cdrom_once_with_the_image_as_its_disk(install,
                                                                         blank_image, iso):
    """The guide's script: `-boot once=d`, the ISO as a CD-ROM, the image on virtio-blk."""
    argv = install.argv
    assert "-boot once=d" in argv, f"the installer VM must boot the CD-ROM once:\n{argv}"
    cdrom = rf"-drive .?if=ide,index=2,media=cdrom,readonly=on,file={re.escape(str(iso))}"
    assert re.search(cdrom, argv), (
        f"the ISO should be on a CD-ROM drive:\n{argv}")
    assert f"file={blank_image.path}," in argv and "virtio-blk-pci" in argv, argv
    assert "-kernel" not in argv, "the firmware boots the ISO: no -kernel"
    assert f"-m {MEMORY}" in argv


def test_the_install_log_says_ok(install):
    """The installer's last word on its serial console: `labfixtures: install ok`."""
    assert FAILED_LINE not in install.log, f"the installer failed: {install.explain()}"
    assert OK_LINE in install.log, f"no `{OK_LINE}` line: {install.explain()}"
    assert not install.timed_out and install.exit_status == 0, install.explain()
    for step in ("partitioning /dev/vda", "LVM: pvcreate /dev/vda5, vgcreate vm0",
                 "grub-install --target=i386-pc /dev/vda", "done"):
        assert f"labfixtures-installer: {step}" in install.log, (
            f"the install log lacks the step `{step}`")
    assert re.search(r"medium found on /dev/sr\d", install.log), (
        "the installer should have read the ISO from the CD-ROM drive (/dev/sr0)")


def test_only_the_written_sectors_take_space(install, blank_image):
    """The installed image holds the system, still well under its 8G (a sparse image)."""
    assert OK_LINE in install.log, "not reached: the install did not succeed"
    info = qemu_img_info(blank_image.path)
    assert info["virtual-size"] == 8 * GIB, info
    assert 300 * MIB < info["actual-size"] < 4 * GIB, (
        f"the installed image should hold the system (~1 GB), it uses "
        f"{info['actual-size']} bytes")


# -- the installed system, booted on its own ------------------------------------------------


@dataclass
class Booted:
    ssh: GuestSSH
    machine: Machine

    def run(self, cmd: str) -> str:
        r = self.ssh.run(cmd, timeout=60)
        assert r.ok, f"`{cmd}` exited with {r.exit_status} in the guest: {r.stderr.strip()}"
        return r.stdout


@pytest.fixture(scope="module")
def installed(module_lab, install, blank_image, debian_image) -> Iterator[Booted]:
    """The installed image alone: SeaBIOS, GRUB in its MBR, its own kernel and initramfs."""
    if OK_LINE not in install.log:
        pytest.fail("not reached: the install failed (see test_the_install_log_says_ok)",
                    pytrace=False)
    nic = NicSpec("user", number=N)
    spec = MachineSpec("vm0", disk=blank_image.path, profile="pc", memory_mb=MEMORY,
                       vcpus=default_vcpus("debian"),
                       nics=[nic], tuned=False, tb_size_mb=default_tb_size("debian"))
    m = Machine(spec, module_lab.rundir / "a4" / "boot", netns=module_lab.ns)
    module_lab.ledger.push("A.4 installed VM", m.stop)
    try:
        m.boot(debian_image.facts.get("marker", "labfixtures: ready"), timeout=BOOT_TIMEOUT)
        ssh = GuestSSH("127.0.0.1", nic.ssh_port, key=debian_image.private_key,
                       netns=module_lab.ns,
                       host_key=debian_image.host_public_key or None).connect(deadline=120)
    except BaseException:
        m.stop()
        raise
    with m, ssh:
        yield Booted(ssh, m)


def test_it_boots_from_its_own_disk_through_grub(installed):
    argv = installed.machine.cmdline_file.read_text()
    assert "-kernel" not in argv and "media=cdrom" not in argv, (
        f"the installed image must boot alone, from its disk:\n{argv}")
    cmdline = installed.run("cat /proc/cmdline").split()
    assert any(w.startswith("BOOT_IMAGE=/vmlinuz-") for w in cmdline), (
        f"GRUB (from /boot on vda1) should have started the kernel: {cmdline}")
    assert "root=/dev/mapper/vm0-root" in cmdline, cmdline
    missing = set(GRUB_CMDLINE) - set(cmdline)  # the recipe's boot-speed words too
    assert not missing, f"the installed grub.cfg should pass {sorted(missing)}: {cmdline}"
    mbr = installed.run("python3 -c \"d = open('/dev/vda', 'rb').read(512); "
                        "print(b'GRUB' in d, d[510:].hex())\"").split()
    assert mbr == ["True", "55aa"], f"GRUB's boot code should be in the MBR of vda: {mbr}"


def test_root_is_on_the_logical_volume_root_of_vm0(installed):
    assert installed.run("findmnt -no SOURCE,FSTYPE /").split() == \
        ["/dev/mapper/vm0-root", "ext4"], "/ should be mounted from vm0-root (ext4)"
    assert installed.run("vgs --noheadings -o vg_name,pv_count,lv_count").split() == \
        ["vm0", "1", "1"], "one volume group vm0, with one PV and one LV"
    assert installed.run("pvs --noheadings -o pv_name,vg_name").split() == ["/dev/vda5", "vm0"]
    assert installed.run("lvs --noheadings -o lv_name,vg_name").split() == ["root", "vm0"]


def test_boot_is_on_vda1(installed):
    assert installed.run("findmnt -no SOURCE,FSTYPE /boot").split() == ["/dev/vda1", "ext2"], (
        "/boot should be mounted from vda1 (ext2)")
    assert installed.run("ls /boot").split().count("grub") == 1, "no /boot/grub on vda1"


def test_the_partition_table_of_the_guide(installed):
    """« Partition Table: msdos »; 1 primary ext2 boot, 2 extended, 5 logical lvm; and 4,
    the EFI system partition (FAT) that makes the disk bootable by UEFI too (vda3 stays
    free: the guide's §7 creates it)."""
    out = installed.run("parted -s -m /dev/vda unit B print")
    lines = [line.rstrip(";").split(":") for line in out.splitlines()]
    assert lines[1][5] == "msdos" and lines[1][1] == f"{8 * GIB}B", lines[1]
    parts = {int(p[0]): p for p in lines[2:]}
    assert sorted(parts) == [1, 2, 4, 5], f"expected partitions 1, 2, 4, 5: {parts}"
    assert parts[1][4] == "ext2" and "boot" in parts[1][6], parts[1]
    assert parts[4][4].startswith("fat"), parts[4]
    assert "lvm" in parts[5][6], parts[5]
    human = installed.run("parted -s /dev/vda print")
    assert re.search(r"^\s*2\s.*extended", human, re.M), human
    assert re.search(r"^\s*5\s.*logical", human, re.M), human


def test_the_user_etu_logs_in(installed, debian_image):
    """The guide works as `etu@vm0`: the account exists and logs in over SSH (by key)."""
    assert installed.run("hostname").strip() == "vm0"
    assert installed.run("getent passwd etu").split(":")[5] == "/home/etu"
    etu = GuestSSH("127.0.0.1", NicSpec("user", number=N).ssh_port, user="etu",
                   key=debian_image.private_key, netns=installed.ssh.netns,
                   host_key=debian_image.host_public_key or None).connect(deadline=30)
    with etu:
        r = etu.run("id -un; pwd", timeout=30)
    assert r.ok and r.stdout.split() == ["etu", "/home/etu"], (
        f"ssh etu@vm0 should log in as etu in /home/etu: {r.stdout!r} {r.stderr!r}")


def test_the_system_came_up_cleanly(installed):
    assert installed.run("systemctl --failed --no-legend --plain").strip() == "", (
        "units failed at the first boot of the installed system")
