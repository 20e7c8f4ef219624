"""The guide's own machine: what `ovs-startup.sh` (A.2) starts, what a student sees in it, and
the new master that `iso-install-startup.sh` (A.4) installs on it by UEFI.

    ~/vm$ ./scripts/ovs-startup.sh vm0-debian-testing-amd64-base.raw 1024 2

The script starts q35 with OVMF (UEFI, secure pflash, a per-VM copy of OVMF_VARS.fd), a
TPM 2.0 emulated by `swtpm` (started by the script, its socket awaited), an `i6300esb`
watchdog, virtio-blk on an iothread, a two-queue modern-only virtio-net-pci, virtio-rng,
virtio-balloon, `qxl-vga` with SPICE on localhost:5900+N and the serial console on telnet
localhost:2300+N. Here it is the `guide` machine profile (qemu/guide.py): that device set,
with only what this host cannot do replaced (no KVM: TCG and no `+vmx`; no vhost-net:
`vhost=off`; fewer vCPUs than 8 on a smaller host), each replacement written in the
machine's launch record.

A.4 first, on that machine: the installer ISO on its SATA CD-ROM with `-boot once=d`, OVMF
boots the ISO's EFI image, the installer lays a blank disk out (msdos, vda1 /boot, vda4 EFI
system, vda5 LVM) and powers off (test_a4_iso_install.py is the same installation under
SeaBIOS). That disk is the new master « pour la création d'un nouveau master »: vm0 runs on
an overlay of it, as the guide's VMs run on their master (`diff-img.sh`), and OVMF boots it
on its own by the removable path EFI/BOOT/BOOTX64.EFI (no NVRAM entry, a fresh copy of
OVMF_VARS.fd), with its TPM; checked over SSH to its EUI-64 link-local address on its tap
(two queues: a `multi_queue` tap). One machine boots for both: under TCG an OVMF boot of
Debian is half a minute. Then the script's refusals. Every QEMU runs in the lab's
namespace: its SPICE and telnet listeners are there, on localhost, and nowhere in the
host's namespace.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from labfixtures import checkpoint
from labfixtures.errors import HostResourceError, ImageError, LabError, TapInUseError
from labfixtures.guestimages import default_tb_size
from labfixtures.guestimages.debian import GRUB_CMDLINE
from labfixtures.qemu import LaunchInfo, Machine, MachineSpec, NicSpec, create_overlay
from labfixtures.qemu.images import create_disk, qemu_img_info
from labfixtures.qemu.swtpm import Swtpm

pytestmark = [pytest.mark.root, pytest.mark.vm, pytest.mark.slow(90)]

N = 42  # the VM's number: tap42, MAC b8:ad:ca:fe:00:2a, SPICE 5942, telnet 2342
MEMORY = 1024  # the guide's second parameter
BOOT_TIMEOUT = 600.0  # hang guard only: OVMF + GRUB + Debian under TCG take ~1-2 min
INSTALL_TIMEOUT = 1800.0  # hang guard only: the installer powers the VM off


def listeners(netns: str | None = None) -> set[str]:
    """`ss -ltnH`: the local address:port of every listening TCP socket."""
    argv = ["ss", "-ltnH"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout
    return {line.split()[3] for line in out.splitlines() if len(line.split()) > 3}


def ports(addrs: set[str]) -> set[int]:
    return {int(a.rpartition(":")[2]) for a in addrs}


@pytest.fixture(scope="module")
def root_listeners() -> dict[str, set[str]]:
    """The host namespace's listening sockets, before and after vm0 started."""
    return {}


@dataclass
class Installed:
    """What A.4's installation left: its serial log and the disk it installed."""
    log: str
    disk: Path


@pytest.fixture(scope="module")
def a4_install(module_lab, debian_image, tmp_path_factory) -> Installed:
    """iso-install-startup.sh on the guide's machine: OVMF boots the ISO's EFI image from
    the SATA CD-ROM (`-boot once=d`); the installer lays out a blank qcow2 disk and powers
    the VM off."""
    iso = debian_image.path / debian_image.facts.get("installer_iso", "installer.iso")
    tmp = tmp_path_factory.mktemp("a4-uefi")
    disk = create_disk(tmp / "vm0-debian-stable-amd64.qcow2", "8G")  # blank, as in A.4
    inst = Machine(MachineSpec("inst", disk=disk, cdrom=iso, boot_once_cdrom=True,
                               profile="guide", memory_mb=512,
                               tb_size_mb=default_tb_size("debian")), tmp / "inst",
                   netns=module_lab.ns)
    module_lab.ledger.push("A.4 installer", inst.stop)
    inst.start()
    assert inst.proc is not None
    try:
        inst.proc.wait(timeout=INSTALL_TIMEOUT)
    finally:
        inst.stop()
    return Installed(inst.serial_text(), disk)


@pytest.fixture(scope="module")
def guide_vm(module_lab, debian_image, a4_install, root_listeners):
    """vm0 on the `guide` profile, on an overlay of the disk A.4 installed (the image's
    recipe with that disk: same tree, same host key), booted by OVMF and its GRUB."""
    assert "labfixtures: install ok" in a4_install.log, a4_install.log[-3000:]
    master = dataclasses.replace(debian_image, disk=a4_install.disk)
    module_lab.tap(N, multi_queue=True)
    root_listeners["before"] = listeners()
    vm = module_lab.vm("vm0", tap=N, image=master, profile="guide", memory=MEMORY,
                       start=False)
    vm.start(timeout=BOOT_TIMEOUT)
    vm.ssh(deadline=300)
    root_listeners["after"] = listeners()
    return vm


def sh(vm, cmd: str) -> str:
    r = vm.ssh().run(cmd, timeout=60)
    assert r.ok, f"`{cmd}` failed in {vm.name}: {r.stderr or r.stdout}"
    return r.stdout.strip()


# -- the machine ------------------------------------------------------------------------------


def test_the_machine_is_the_scripts_with_the_replacements_said(guide_vm):
    info = LaunchInfo.read(guide_vm.machine.run_dir, guide_vm.name)
    assert info is not None and info.accel in ("kvm", "tcg")
    argv = list(info.argv)
    for option in ("type=q35,accel=" + info.accel + ",kernel-irqchip=split",
                   "intel-iommu,intremap=on", "i6300esb", "tpm-tis,tpmdev=tpm0",
                   "qxl-vga,vgamem_mb=64", "iothread,id=iothread.drive0",
                   "driver=cfi.pflash01,property=secure,value=on"):
        assert option in argv, f"{option} missing from {info.command_line()}"
    if info.accel == "tcg":
        assert "-cpu max,l3-cache=on,+vmx" in info.replaced, info.replaced
        assert "max,l3-cache=on" in argv and "max,l3-cache=on,+vmx" not in argv
    # unattended: the script's boot menu, without OVMF's wait for an ESC nobody presses
    assert "order=c,menu=on,splash-time=0" in argv and "-boot menu=on" in info.replaced
    if "vhost=on" in info.replaced:
        assert any(a.endswith(",vhost=off") for a in argv)
    text = guide_vm.machine.cmdline_file.read_text()
    assert "# replaced: -daemonize -> " in text
    # replayable by hand: the last line is the command, from the root namespace
    assert text.splitlines()[-1].startswith(f"ip netns exec {guide_vm.lab.ns} ")


def test_a4_the_installer_iso_boots_by_uefi_and_so_does_the_disk_it_installs(a4_install,
                                                                             guide_vm):
    """OVMF booted the ISO's EFI image, the installer laid the disk out the guide's way
    (msdos, vda1 /boot, vda4 EFI system, vda5 LVM; vda3 stays free for §7) and put GRUB
    on the removable path; vm0 booted from that disk alone, through OVMF."""
    assert "x86_64-efi" in a4_install.log and "EFI/BOOT/BOOTX64.EFI" in a4_install.log
    assert guide_vm.overlay is not None
    backing = qemu_img_info(guide_vm.overlay).get("backing-filename")
    assert backing == str(a4_install.disk.resolve()), backing
    argv = guide_vm.machine.cmdline_file.read_text()
    assert "-kernel" not in argv and "media=cdrom" not in argv, argv
    assert sh(guide_vm, "test -d /sys/firmware/efi && echo uefi") == "uefi"
    cmdline = sh(guide_vm, "cat /proc/cmdline").split()
    assert any(w.startswith("BOOT_IMAGE=/vmlinuz-") for w in cmdline), cmdline  # its GRUB
    missing = set(GRUB_CMDLINE) - set(cmdline)  # the recipe's kernel words, /boot's grub.cfg
    assert not missing, f"the installed grub.cfg should pass {sorted(missing)}: {cmdline}"
    table = sh(guide_vm, "LC_ALL=C parted -s -m /dev/vda print")
    assert ":msdos:" in table.splitlines()[1], table
    parts = {int(p.split(":")[0]): p.rstrip(";").split(":") for p in table.splitlines()[2:]}
    assert sorted(parts) == [1, 2, 4, 5], table
    assert parts[4][4].startswith("fat") and "esp" in parts[4][6], table
    assert sh(guide_vm, "findmnt -n -o FSTYPE /boot/efi") == "vfat"
    assert sh(guide_vm, "test -f /boot/efi/EFI/BOOT/BOOTX64.EFI && echo ok") == "ok"
    assert sh(guide_vm, "vgs --noheadings -o vg_name").split() == ["vm0"]


def test_the_disk_boots_by_uefi_with_its_tpm(guide_vm):
    log = guide_vm.machine.serial_text()
    assert "BdsDxe" in log or "EFI" in log, "OVMF's boot manager never spoke"
    assert sh(guide_vm, "test -d /sys/firmware/efi && echo uefi") == "uefi"
    assert sh(guide_vm, "test -c /dev/tpmrm0 && echo tpm") == "tpm"
    assert sh(guide_vm, "cat /sys/class/tpm/tpm0/tpm_version_major") == "2"
    swtpm = guide_vm.machine.swtpm
    assert swtpm is not None and swtpm.running, "swtpm should serve the running VM"


def test_the_watchdog_is_the_i6300esb(guide_vm):
    """The script's i6300esb is a watchdog of the guest. q35's chipset has its own (the
    ICH9 TCO, iTCO_wdt): which of the two is watchdog0 depends on which driver loads first."""
    assert sh(guide_vm, "test -c /dev/watchdog && echo wd") == "wd"
    ids = sh(guide_vm, "cat /sys/class/watchdog/watchdog*/identity").splitlines()
    assert any("i6300ESB" in i for i in ids), ids


def test_the_virtio_rng_is_the_kernels_hwrng(guide_vm):
    assert sh(guide_vm, "cat /sys/class/misc/hw_random/rng_current").startswith("virtio_rng")


def test_the_display_is_qxl(guide_vm):
    out = sh(guide_vm, "lspci -nn")
    assert re.search(r"VGA compatible controller .*QXL.*\[1b36:0100\]", out), out


def test_the_nic_is_modern_only_and_the_other_virtio_devices_as_the_script_makes_them(
        guide_vm):
    """`disable-legacy=on,disable-modern=off`: the NIC is a virtio 1.0 device (1af4:1041);
    the script gives no such option to the others, which stay transitional (1af4:100x)."""
    # eth0's device is virtio0 (virtio device id 1, a NIC); its parent is the PCI function
    assert sh(guide_vm, "cat /sys/class/net/eth0/device/device") == "0x0001"
    assert sh(guide_vm, "cat /sys/class/net/eth0/device/../device") == "0x1041"
    ids = set(re.findall(r"\[1af4:(10[0-9a-f]{2})\]", sh(guide_vm, "lspci -nn")))
    assert "1041" in ids, ids
    assert {"1001", "1002", "1003", "1005"} <= ids, (
        f"block, balloon, console, rng expected (transitional): {ids}")


def test_eth0_has_two_queue_pairs(guide_vm):
    """The script's `queues=2`: the NIC offers two queue pairs, and the guest uses as many
    as it has vCPUs (one when the machine runs on a pytest worker's share of two cores)."""
    out = sh(guide_vm, "ethtool -l eth0")
    m = re.search(r"Pre-set maximums:.*?Combined:\s*(\d+).*?"
                  r"Current hardware settings:.*?Combined:\s*(\d+)", out, re.S)
    assert m and m.group(1) == "2", out
    used = min(2, int(sh(guide_vm, "nproc")))
    assert m.group(2) == str(used), out
    queues = sh(guide_vm, "ls /sys/class/net/eth0/queues").split()
    assert sorted(queues) == [f"{d}-{i}" for d in ("rx", "tx") for i in range(used)], queues


def test_spice_and_telnet_listen_on_localhost_in_the_lab_namespace_only(guide_vm,
                                                                         root_listeners):
    spice, telnet = 5900 + N, 2300 + N
    inside = listeners(guide_vm.lab.ns)
    mine = {a for a in inside if a.rpartition(":")[2] in (str(spice), str(telnet))}
    assert ports(mine) == {spice, telnet}, inside
    assert all(a.startswith(("127.0.0.1:", "[::1]:")) for a in mine), mine
    before, after = root_listeners["before"], root_listeners["after"]
    assert not ports(after - before) & {spice, telnet}, after - before
    assert not ports(listeners()) & {spice, telnet}


def test_a_checkpoint_resumes_the_machine_with_its_disk_and_its_tpm(guide_vm, tmp_path):
    """A student saves the lab mid-way and resumes it later: the guide's machine (its disk
    on an iothread as `drive0`, OVMF, the swtpm TPM) is checkpointed like any VM. The guest
    is resumed, not rebooted: same boot id, the file written before the save and not the
    one written after, and the TPM, whose state travels in QEMU's, answers the same PCR."""
    store = checkpoint.CheckpointStore(tmp_path / "checkpoints")
    pcr0 = "cat /sys/class/tpm/tpm0/pcr-sha256/0"
    sh(guide_vm, "echo before > /root/step && sync")
    boot_id, pcr = sh(guide_vm, "cat /proc/sys/kernel/random/boot_id"), sh(guide_vm, pcr0)
    cp = checkpoint.save(guide_vm, "mid-way", store=store)
    assert cp.file(checkpoint.DISK_FILE) is not None, "the disk was not saved"
    sh(guide_vm, "echo after > /root/step && sync")
    before = guide_vm.machine.pid
    checkpoint.restore(guide_vm, "mid-way", store=store, timeout=120)
    assert guide_vm.machine.pid != before, "restoring starts a new QEMU"
    assert sh(guide_vm, "cat /root/step") == "before"
    assert sh(guide_vm, "cat /proc/sys/kernel/random/boot_id") == boot_id
    assert sh(guide_vm, pcr0) == pcr
    swtpm = guide_vm.machine.swtpm
    assert swtpm is not None and swtpm.running


# -- the script's refusals ------------------------------------------------------------------


def test_less_than_128_mb_is_refused_as_the_script_does():
    with pytest.raises(LabError, match=r"unsufficient RAM size: 64MB") as e:
        MachineSpec("vm1", disk=Path("/nonexistent.qcow2"), profile="guide", memory_mb=64)
    assert "128MB" in e.value.remedy


def test_a_tap_used_by_a_running_qemu_is_refused(guide_vm, tmp_path):
    disk = create_overlay(guide_vm.image.disk, tmp_path / "vm1.qcow2")
    spec = MachineSpec("vm1", disk=disk, profile="guide", memory_mb=512,
                       nics=[NicSpec(number=N)])
    m = Machine(spec, tmp_path, netns=guide_vm.lab.ns)
    with pytest.raises(TapInUseError) as e:
        m.start()
    assert (e.value.tap, e.value.vm, e.value.pid) == (f"tap{N}", "vm1",
                                                       guide_vm.machine.pid)
    assert m.swtpm is None and m.proc is None


def test_a_missing_image_file_is_refused(module_lab, tmp_path):
    missing = tmp_path / "vm0-debian-testing-amd64-base.raw"
    m = Machine(MachineSpec("vm1", disk=missing, profile="guide"), tmp_path,
                netns=module_lab.ns)
    with pytest.raises(ImageError) as e:
        m.start()
    assert e.value.image == str(missing) and "does not exist" in e.value.problem


def test_a_missing_swtpm_is_a_host_resource_error(tmp_path):
    with pytest.raises(HostResourceError) as e:
        Swtpm(tmp_path, "vm1", binary="swtpm-not-installed").start()
    assert (e.value.kind, e.value.resource) == ("binary", "swtpm-not-installed")
    assert "apt-get install swtpm" in e.value.remedy


# -- teardown ---------------------------------------------------------------------------------


def swtpm_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-x", "swtpm"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_the_lab_teardown_leaves_no_swtpm(lab_host, debian_image):
    with lab_host.scope("guide-teardown") as lab:
        lab.tap(N + 1, multi_queue=True)
        vm = lab.vm("vm2", tap=N + 1, image=debian_image, profile="guide", start=False)
        vm.start(wait=False)
        swtpm = vm.machine.swtpm
        assert swtpm is not None and swtpm.running
        pid, sock, qemu_pid = swtpm.pid, swtpm.socket, vm.machine.pid
        assert sock.is_socket() and pid in swtpm_pids()
    assert not Path(f"/proc/{pid}").exists(), f"swtpm {pid} survived the lab's teardown"
    assert not Path(f"/proc/{qemu_pid}").exists()
    assert not sock.exists(), f"{sock} left behind"
    assert not (swtpm.pidfile).exists()
