# ruff: noqa: E501  (SCRIPT: the guide's command line, its lines as they are)
"""The `guide` profile's argv (qemu/guide.py): pure, no root, no QEMU.

The reference is the guide's own `ovs-startup.sh` (A.2), transcribed below with its
variables filled in for `./ovs-startup.sh vm0.qcow2 1024 2`.
"""

import shlex
from pathlib import Path

import pytest

from labfixtures.errors import LabError
from labfixtures.qemu import LaunchInfo, MachineSpec, NicSpec
from labfixtures.qemu.guide import (
    GuideHost,
    build_guide_argv,
    host_replacements,
    replacements,
)

RUN = Path("/run/lab")
TPM = RUN / "vm0_TPM" / "swtpm-sock"

#: ovs-startup.sh, its qemu-system-x86_64 line, for vm=vm0.qcow2 memory=1024 tapnum=2
#: (OVMF_CODE.fd and the VARS copy by their full paths; `accel=kvm:tcg` as resolved on a
#: KVM host). `l2-cache-size=` is cut off in the guide's text and `-daemonize` is replaced
#: by labfixtures' supervision: neither is in the transcription.
SCRIPT = """
-machine type=q35,accel=kvm,kernel-irqchip=split
-cpu max,l3-cache=on,+vmx
-device intel-iommu,intremap=on
-name vm0
-m 1024
-device virtio-net-pci,mq=on,vectors=6,netdev=net2,disable-legacy=on,disable-modern=off,mac=b8:ad:ca:fe:00:02
-netdev tap,queues=2,ifname=tap2,id=net2,script=no,downscript=no,vhost=on
-device virtio-balloon
-smp 8,threads=2
-rtc base=localtime,clock=host
-device i6300esb
-watchdog-action poweroff
-boot order=c,menu=on
-object iothread,id=iothread.drive0
-drive if=none,id=drive0,aio=native,cache.direct=on,discard=unmap,format=qcow2,media=disk,file=/img/vm0.qcow2
-device virtio-blk,num-queues=4,drive=drive0,scsi=off,config-wce=off,iothread=iothread.drive0
-global driver=cfi.pflash01,property=secure,value=on
-drive if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE.fd,readonly=on
-drive if=pflash,format=raw,unit=1,file=/run/lab/vm0_OVMF_VARS.fd
-k fr
-vga none
-device qxl-vga,vgamem_mb=64
-spice port=5902,addr=localhost,disable-ticketing=on
-device virtio-serial-pci
-device virtserialport,chardev=spicechannel0,name=com.redhat.spice.0
-chardev spicevmc,id=spicechannel0,name=vdagent
-object rng-random,filename=/dev/urandom,id=rng0
-device virtio-rng-pci,rng=rng0
-chardev socket,id=chrtpm,path=/run/lab/vm0_TPM/swtpm-sock
-tpmdev emulator,id=tpm0,chardev=chrtpm
-device tpm-tis,tpmdev=tpm0
-usb
-device usb-tablet,bus=usb-bus.0
-device ich9-intel-hda,addr=1f.1
-audiodev spice,id=snd0
-device hda-output,audiodev=snd0
"""

KVM_HOST = GuideHost("kvm", vhost_net=True, cpus=16)
THIS_HOST = GuideHost("tcg", vhost_net=False, cpus=2)


def spec(**kw):
    kw.setdefault("disk", Path("/img/vm0.qcow2"))
    kw.setdefault("memory_mb", 1024)
    kw.setdefault("nics", [NicSpec(number=2, csum_off=False)])
    kw.setdefault("serial_log", RUN / "vm0.serial.log")
    kw.setdefault("qmp_socket", RUN / "vm0.qmp")
    kw.setdefault("uefi_vars", RUN / "vm0_OVMF_VARS.fd")
    return MachineSpec(name="vm0", profile="guide", **kw)


def pairs(argv):
    """(option, value) pairs of an argv (a flag without a value pairs with '')."""
    out, i = [], 1
    while i < len(argv):
        if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            out.append((argv[i], argv[i + 1]))
            i += 2
        else:
            out.append((argv[i], ""))
            i += 1
    return out


def opt(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def script_pairs():
    return pairs(["qemu"] + shlex.split(SCRIPT))


def test_on_a_host_that_can_do_everything_it_is_the_script_option_for_option():
    argv = build_guide_argv(spec(boot_menu_wait=True), KVM_HOST, tpm_socket=TPM)
    got = pairs(argv)
    expected = script_pairs()
    # what labfixtures adds: the console's log file (same telnet listener) and QMP
    added = [p for p in got if p not in expected]
    assert [p[0] for p in added] == ["-chardev", "-serial", "-spice", "-qmp"], added
    assert ("-spice", "port=5902,addr=127.0.0.1,disable-ticketing=on") in added
    assert added[0][1] == ("socket,id=serial0,host=localhost,port=2302,telnet=on,server=on,"
                           "wait=off,logfile=/run/lab/vm0.serial.log")
    assert [p for p in expected if p not in got] == [
        ("-spice", "port=5902,addr=localhost,disable-ticketing=on")]
    # the script's order is kept for what it gives
    assert [p for p in got if p in expected] == [p for p in expected if p[0] != "-spice"]
    assert set(replacements(spec(boot_menu_wait=True), KVM_HOST)) == {
        "-daemonize", "-spice addr=localhost", "-serial telnet:localhost:PORT,server,nowait",
        "l2-cache-size="}


def test_an_unattended_machine_keeps_the_boot_menu_but_not_its_wait_and_says_so():
    assert opt(build_guide_argv(spec(), KVM_HOST, tpm_socket=TPM), "-boot") == [
        "order=c,menu=on,splash-time=0"]
    assert "-boot menu=on" in replacements(spec(), KVM_HOST)
    assert "nobody presses ESC" in replacements(spec(), THIS_HOST)["-boot menu=on"]
    assert "-boot menu=on" not in replacements(spec(boot_menu_wait=True), KVM_HOST)


def test_on_this_host_only_kvm_vmx_vhost_and_the_vcpus_are_replaced_and_said():
    argv = build_guide_argv(spec(), THIS_HOST, tpm_socket=TPM)
    got, expected = pairs(argv), script_pairs()
    changed = {p for p in expected if p not in got}
    assert changed == {
        ("-machine", "type=q35,accel=kvm,kernel-irqchip=split"),
        ("-cpu", "max,l3-cache=on,+vmx"),
        ("-netdev", "tap,queues=2,ifname=tap2,id=net2,script=no,downscript=no,vhost=on"),
        ("-smp", "8,threads=2"),
        ("-spice", "port=5902,addr=localhost,disable-ticketing=on"),
        ("-boot", "order=c,menu=on"),  # unattended: splash-time=0 (the test above)
    }
    assert opt(argv, "-machine") == ["type=q35,accel=tcg,kernel-irqchip=split"]
    assert opt(argv, "-cpu") == ["max,l3-cache=on"]
    assert opt(argv, "-netdev")[0].endswith(",vhost=off")
    assert opt(argv, "-smp") == ["2,threads=2"]
    said = replacements(spec(), THIS_HOST)
    assert "TCG" in said["-cpu max,l3-cache=on,+vmx"]
    assert said["vhost=on"].startswith("vhost=off")
    assert said["-smp 8,threads=2"] == "-smp 2,threads=2 (the host has 2 cores for it)"
    assert said["accel=kvm:tcg"].startswith("accel=tcg")


def test_vcpus_are_configurable_and_capped_at_the_host_by_default():
    assert opt(build_guide_argv(spec(vcpus=4), THIS_HOST, tpm_socket=TPM), "-smp") == [
        "4,threads=2"]
    assert "asked for" in replacements(spec(vcpus=4), THIS_HOST)["-smp 8,threads=2"]
    assert opt(build_guide_argv(spec(), GuideHost("tcg", False, 1), tpm_socket=TPM),
               "-smp") == ["1,threads=1"]  # QEMU refuses 1,threads=2
    assert opt(build_guide_argv(spec(vcpus=3), THIS_HOST, tpm_socket=TPM), "-smp") == [
        "3,threads=1"]
    assert replacements(spec(), GuideHost("tcg", False, 1))["-smp 8,threads=2"] == (
        "-smp 1,threads=1 (the host has 1 core for it)")
    assert "-smp 8,threads=2" not in replacements(spec(), KVM_HOST)


def test_listeners_are_on_localhost_at_the_guides_port_numbers():
    argv = build_guide_argv(spec(nics=[NicSpec(number=7)]), THIS_HOST, tpm_socket=TPM)
    assert opt(argv, "-spice") == ["port=5907,addr=127.0.0.1,disable-ticketing=on"]
    serial = [c for c in opt(argv, "-chardev") if c.startswith("socket,id=serial0")]
    assert serial and "host=localhost,port=2307," in serial[0]


def test_the_lab_datapath_needs_checksum_offload_off_and_says_so():
    argv = build_guide_argv(spec(nics=[NicSpec(number=2)]), THIS_HOST, tpm_socket=TPM)
    assert opt(argv, "-device")[1].endswith(",csum=off,guest_csum=off")
    assert "virtio-net-pci checksum offload" in replacements(spec(nics=[NicSpec(number=2)]),
                                                             THIS_HOST)


def test_more_queues_than_the_scripts_two_when_asked():
    argv = build_guide_argv(spec(nics=[NicSpec(number=2, queues=4)]), THIS_HOST,
                            tpm_socket=TPM)
    assert "mq=on,vectors=10," in opt(argv, "-device")[1]
    assert opt(argv, "-netdev")[0].startswith("tap,queues=4,")


def test_a_cdrom_is_iso_install_startup_sh_sata_drive_booted_once():
    s = spec(cdrom=Path("/iso/inst.iso"), boot_once_cdrom=True)
    argv = build_guide_argv(s, THIS_HOST, tpm_socket=TPM)
    assert opt(argv, "-boot") == ["once=d,menu=on,splash-time=0"]
    assert "ahci,id=ahci0" in opt(argv, "-device")
    assert "ide-cd,bus=ahci0.0,drive=drive-sata0-0-0,id=sata0-0-0" in opt(argv, "-device")
    assert "media=cdrom,if=none,file=/iso/inst.iso,id=drive-sata0-0-0" in opt(argv, "-drive")


def test_user_mode_nic_is_standalone_startup_sh_and_no_nic_means_none():
    argv = build_guide_argv(spec(nics=[NicSpec("user", number=3)]), THIS_HOST,
                            tpm_socket=TPM)
    assert opt(argv, "-netdev") == ["user,id=net3,hostfwd=tcp:127.0.0.1:2203-:22"]
    assert opt(argv, "-device")[1] == "virtio-net-pci,netdev=net3,mac=b8:ad:ca:fe:00:03"
    bare = build_guide_argv(spec(nics=[]), THIS_HOST, tpm_socket=TPM)
    assert opt(bare, "-nic") == ["none"] and "-netdev" not in bare


def test_the_profile_is_uefi_with_its_console_on_telnet_and_spice():
    s = spec()
    assert (s.firmware, s.serial, s.display) == ("uefi", "telnet", "spice")


def test_the_guide_profile_boots_a_disk_by_its_firmware_only():
    with pytest.raises(LabError, match="boots a disk"):
        MachineSpec(name="vm0", profile="guide", kernel=Path("/img/vmlinuz"))
    with pytest.raises(LabError, match="OVMF_VARS"):
        build_guide_argv(spec(uefi_vars=None), THIS_HOST, tpm_socket=TPM)
    with pytest.raises(LabError, match="resolved"):
        build_guide_argv(spec(), GuideHost("auto", False, 2), tpm_socket=TPM)

    class Image:  # a GuestImage with a disk and a direct-boot kernel
        kernel, initrd, disk, cmdline = Path("/k"), Path("/i"), Path("/d.qcow2"), "ro"

    s = MachineSpec.from_image("vm0", Image(), profile="guide")
    assert (s.kernel, s.initrd, s.disk, s.cmdline) == (None, None, Path("/d.qcow2"), "")


def test_the_launch_record_keeps_what_was_replaced():
    info = LaunchInfo("vm0", ("qemu",), "tcg", "no /dev/kvm", "7.2.0",
                      replaced=replacements(spec(), THIS_HOST))
    back = LaunchInfo.from_json(info.to_json())
    assert back.replaced == info.replaced and "vhost=on" in back.replaced
    old = LaunchInfo.from_json({"name": "vm0", "argv": [], "accel": "tcg",
                                "accel_reason": "", "qemu_version": ""})
    assert old.replaced == {}


def test_what_the_host_changes_is_said_once_for_doctor():
    assert host_replacements(GuideHost("kvm", True, 8)) == {}
    said = host_replacements(THIS_HOST)
    assert set(said) == {"accel=kvm:tcg", "-cpu max,l3-cache=on,+vmx", "vhost=on",
                         "-smp 8,threads=2"}


def test_spice_listens_on_the_loopback_its_lookup_accepts_in_the_namespace():
    v6 = GuideHost("tcg", False, 2, spice_addr="::1")
    argv = build_guide_argv(spec(), v6, tpm_socket=TPM)
    assert opt(argv, "-spice") == ["port=5902,addr=::1,disable-ticketing=on"]
    assert replacements(spec(), v6)["-spice addr=localhost"].startswith("addr=::1 ")
