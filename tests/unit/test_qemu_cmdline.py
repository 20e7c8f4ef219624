"""MachineSpec -> argv: pure, no root, no QEMU."""

import os
from pathlib import Path

import pytest

from labfixtures.errors import LabError
from labfixtures.guestimages.config import GuestConfig, InterfaceConfig, Route
from labfixtures.qemu import LaunchInfo, Machine, MachineSpec, NicSpec, build_argv, builds
from labfixtures.qemu.cmdline import TUNED_CMDLINE

K = Path("/img/vmlinux")
I = Path("/img/initrd.img")  # noqa: E741


def spec(**kw):
    kw.setdefault("kernel", K)
    kw.setdefault("initrd", I)
    kw.setdefault("cmdline", "console=ttyS0")
    kw.setdefault("serial_log", Path("/run/lab/vm0.serial.log"))
    kw.setdefault("qmp_socket", Path("/run/lab/vm0.qmp"))
    return MachineSpec(name="vm0", **kw)


def opt(argv, flag):
    """Values following every occurrence of FLAG."""
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_fast_profile_is_microvm_with_mmio_devices_and_tuned_cmdline():
    argv = build_argv(spec(nics=[NicSpec(number=2)], tsc_khz=2100000), "tcg")
    assert argv[0] == "qemu-system-x86_64"
    assert opt(argv, "-machine") == ["microvm,x-option-roms=off"]
    assert opt(argv, "-accel") == ["tcg,tb-size=32"]
    assert opt(argv, "-cpu") == ["max"]
    assert opt(argv, "-kernel") == [str(K)]
    append = opt(argv, "-append")[0]
    assert append.startswith("console=ttyS0 " + TUNED_CMDLINE)
    assert "tsc_early_khz=2100000" in append
    assert "mitigations=off" in append
    devices = opt(argv, "-device")
    assert ("virtio-net-device,netdev=net0,mac=b8:ad:ca:fe:00:02,csum=off,guest_csum=off"
            in devices)
    assert not any("-pci" in d for d in devices)
    for flag in ("-nodefaults", "-no-reboot", "-no-user-config"):
        assert flag in argv
    assert opt(argv, "-display") == ["none"]
    assert opt(argv, "-qmp") == ["unix:/run/lab/vm0.qmp,server=on,wait=off"]
    assert "file,id=serial0,path=/run/lab/vm0.serial.log" in opt(argv, "-chardev")


def test_tcg_translation_cache_is_capped_unless_none():
    assert opt(build_argv(spec(tb_size_mb=64), "tcg"), "-accel") == ["tcg,tb-size=64"]
    assert opt(build_argv(spec(tb_size_mb=None), "tcg"), "-accel") == ["tcg"]
    assert opt(build_argv(spec(profile="pc"), "kvm"), "-accel") == ["kvm"]
    for bad in (0, 5000):
        with pytest.raises(LabError, match="translation cache"):
            spec(tb_size_mb=bad)


def test_balloon_with_free_page_reporting_only_when_asked():
    assert not any("balloon" in d for d in opt(build_argv(spec(), "tcg"), "-device"))
    assert "virtio-balloon-device,free-page-reporting=on" in \
        opt(build_argv(spec(balloon=True), "tcg"), "-device")
    assert "virtio-balloon-pci,free-page-reporting=on" in \
        opt(build_argv(spec(balloon=True, profile="pc"), "tcg"), "-device")
    # QEMU takes one balloon: one given in extra_args replaces ours
    argv = build_argv(spec(balloon=True, profile="pc",
                           extra_args=["-device", "virtio-balloon-pci"]), "tcg")
    assert [d for d in opt(argv, "-device") if "balloon" in d] == ["virtio-balloon-pci"]


def test_tap_netdev_follows_the_guide():
    argv = build_argv(spec(nics=[NicSpec(number=2)]), "tcg")
    assert opt(argv, "-netdev") == ["tap,id=net0,ifname=tap2,script=no,downscript=no"]


def test_pc_profile_uses_pci_devices_without_option_rom():
    argv = build_argv(spec(profile="pc", nics=[NicSpec(number=7)]), "kvm")
    assert opt(argv, "-machine") == ["pc"]
    assert opt(argv, "-accel") == ["kvm"]
    nic = next(d for d in opt(argv, "-device") if d.startswith("virtio-net"))
    assert nic.startswith("virtio-net-pci,netdev=net0,mac=b8:ad:ca:fe:00:07")
    assert "romfile=" in nic.split(",")
    assert "virtio-rng-pci,rng=rng0" in opt(argv, "-device")


def test_q35_multiqueue_and_vhost_only_when_asked():
    argv = build_argv(spec(profile="q35", nics=[NicSpec(number=3, queues=2, vhost=True)]),
                      "tcg")
    assert opt(argv, "-netdev") == [
        "tap,id=net0,ifname=tap3,script=no,downscript=no,queues=2,vhost=on"]
    nic = next(d for d in opt(argv, "-device") if d.startswith("virtio-net"))
    assert "mq=on" in nic and "vectors=6" in nic
    argv = build_argv(spec(profile="q35", nics=[NicSpec(number=3)]), "tcg")
    assert "vhost" not in " ".join(argv)


def test_csum_offload_can_be_kept_for_kernel_datapath():
    argv = build_argv(spec(nics=[NicSpec(number=2, csum_off=False)]), "tcg")
    assert "csum=off" not in " ".join(argv)


def test_user_mode_forwards_ssh_to_2200_plus_n():
    nic = NicSpec("user", number=10)
    assert nic.ssh_port == 2210
    argv = build_argv(spec(nics=[nic]), "tcg")
    assert opt(argv, "-netdev") == ["user,id=net0,hostfwd=tcp:127.0.0.1:2210-:22"]
    dev = next(d for d in opt(argv, "-device") if d.startswith("virtio-net"))
    assert "csum=off" not in dev  # only taps sit on the userspace datapath


def test_telnet_serial_and_spice_use_guide_ports():
    argv = build_argv(spec(profile="q35", number=4, serial="telnet", display="spice"), "tcg")
    chardevs = opt(argv, "-chardev")
    assert any(c.startswith("socket,id=serial0,host=localhost,port=2304,telnet=on,server=on")
               and "logfile=/run/lab/vm0.serial.log" in c for c in chardevs)
    assert opt(argv, "-spice") == ["port=5904,addr=localhost,disable-ticketing=on"]


def test_no_spice_without_display():
    argv = build_argv(spec(profile="pc", number=4), "tcg")
    assert "-spice" not in argv


def test_iso_install_profile():
    s = spec(profile="pc", kernel=None, initrd=None, disk=Path("/lab/vm0.qcow2"),
             cdrom=Path("/iso/debian,netinst.iso"), boot_once_cdrom=True)
    argv = build_argv(s, "tcg")
    drives = opt(argv, "-drive")
    assert any("file=/lab/vm0.qcow2" in d and "format=qcow2" in d for d in drives)
    assert any("media=cdrom" in d and "file=/iso/debian,,netinst.iso" in d for d in drives)
    assert opt(argv, "-boot") == ["once=d"]
    assert "-kernel" not in argv


def test_uefi_pflash():
    s = spec(profile="q35", firmware="uefi", uefi_vars=Path("/lab/vm0_OVMF_VARS.fd"))
    drives = opt(build_argv(s, "tcg"), "-drive")
    assert any(d.startswith("if=pflash") and "unit=0" in d and "readonly=on" in d
               for d in drives)
    assert any("unit=1" in d and "vm0_OVMF_VARS.fd" in d for d in drives)


def test_guest_config_goes_on_the_kernel_command_line():
    cfg = GuestConfig(hostname="vm0",
                      interfaces=[InterfaceConfig("eth0", addresses=("203.0.113.130/26",))],
                      gateway="203.0.113.129")
    append = opt(build_argv(spec(append=cfg.to_cmdline()), "tcg"), "-append")[0]
    assert append.endswith("lf.hostname=vm0 lf.ip=eth0,203.0.113.130/26 lf.gw=203.0.113.129")


def test_tuned_words_per_profile():
    fast = opt(build_argv(spec(), "tcg"), "-append")[0]
    pc = opt(build_argv(spec(profile="pc"), "tcg"), "-append")[0]
    q35 = opt(build_argv(spec(profile="q35"), "tcg"), "-append")[0]
    for append in (fast, pc, q35):
        for word in ("noreplace-smp", "rodata=off", "init_on_alloc=0"):
            assert word in append.split()
    # QEMU's i440fx _PRT is an AML loop evaluated per PCI device: route INTx via $PIR
    assert "pci=noacpi" in pc.split()
    assert "pci=noacpi" not in fast.split() and "pci=noacpi" not in q35.split()
    assert "  " not in fast


def test_a_kernel_without_mp_table_code_keeps_acpis_pci_routing_on_pc():
    """Debian's cloud kernel finds its CPUs through ACPI only: with `pci=noacpi` a 2-vCPU
    guest would see one. The image says so in its facts; from_image() carries it over."""
    class Image:
        kernel, initrd, disk, cmdline = Path("/k"), None, None, "console=ttyS0"
        facts = {"mp_table": "no"}

    cloud = MachineSpec.from_image("vm0", Image(), profile="pc", vcpus=2)
    assert cloud.mp_table is False
    assert "pci=noacpi" not in opt(build_argv(cloud, "tcg"), "-append")[0].split()
    Image.facts = {"mp_table": "yes"}
    generic = MachineSpec.from_image("vm0", Image(), profile="pc", vcpus=2)
    assert "pci=noacpi" in opt(build_argv(generic, "tcg"), "-append")[0].split()
    Image.facts = {}  # an image built before the fact existed: as before
    assert MachineSpec.from_image("vm0", Image(), profile="pc").mp_table is True


def test_untuned():
    append = opt(build_argv(spec(tuned=False), "tcg"), "-append")[0]
    assert append == "console=ttyS0"


@pytest.mark.parametrize(("kw", "match"), [
    ({"memory_mb": 64}, "RAM size must be above 128MB"),
    ({"profile": "fast", "cdrom": Path("/x.iso")}, "no CD-ROM"),
    ({"profile": "fast", "firmware": "uefi"}, "no UEFI"),
    ({"profile": "arm"}, "unknown"),
    ({"nics": [NicSpec(number=2), NicSpec(tap="tap2", mac="b8:ad:ca:fe:00:09")]}, "tap twice"),
    ({"profile": "fast", "nics": [NicSpec(number=2, queues=2)]}, "multi-queue"),
    ({"kernel": None, "initrd": None}, "nothing to boot"),
])
def test_bad_specs_are_refused_with_a_remedy(kw, match):
    with pytest.raises(LabError, match=match) as e:
        spec(**kw)
    assert e.value.remedy


def test_accel_must_be_resolved():
    with pytest.raises(LabError, match="resolved"):
        build_argv(spec(), "auto")


def test_nic_needs_a_tap():
    with pytest.raises(LabError, match="tap name or a tap number"):
        NicSpec("tap")


def test_guest_config_round_trip():
    cfg = GuestConfig(
        hostname="vm1",
        interfaces=[InterfaceConfig("eth0", dhcp=True),
                    InterfaceConfig("eth1", addresses=("203.0.113.130/26", "2001:db8::2/64"),
                                    mtu=1400)],
        routes=[Route("198.51.100.0/24", "203.0.113.129")],
        gateway="203.0.113.129", gateway6="fe80::1", gateway6_dev="eth1",
        dns=["10.0.2.3"], ssh_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJmk comment"])
    line = cfg.to_cmdline()
    back = GuestConfig.from_cmdline("console=ttyS0 " + line)
    assert back.to_cmdline() == line
    assert "lf.key=ssh-ed25519:AAAAC3NzaC1lZDI1NTE5AAAAIJmk" in line


@pytest.mark.parametrize("bad", [
    {"hostname": "bad name"},
    {"gateway": "2001:db8::1"},
    {"gateway6": "fe80::1"},
    {"ssh_keys": ["not a key"]},
])
def test_guest_config_validation(bad):
    with pytest.raises(LabError):
        GuestConfig(**bad).to_cmdline()


# -- the QEMU binary, explicit -----------------------------------------------------------

def test_the_command_line_starts_with_the_binary_it_is_given():
    argv = build_argv(spec(), "tcg", "/cache/qemu/1_7.2/bin/qemu-system-x86_64")
    assert argv[0] == "/cache/qemu/1_7.2/bin/qemu-system-x86_64"
    assert argv[1:3] == ["-name", "vm0"]


def test_a_selected_binary_is_the_default_of_every_machine_and_is_undone(tmp_path,
                                                                         monkeypatch):
    monkeypatch.delenv(builds.SELECTED_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert builds.selected() == "qemu-system-x86_64"  # not found: the bare name
    wrapper = tmp_path / "qemu-new"
    wrapper.write_text("#!/bin/sh\n")
    wrapper.chmod(0o755)
    with builds.use(wrapper) as chosen:
        assert chosen == str(wrapper) == builds.selected()
        assert os.environ[builds.SELECTED_VAR] == chosen  # the processes it starts too
        assert Machine(spec(), tmp_path).qemu == str(wrapper)
        assert Machine(spec(), tmp_path, qemu="/other/qemu").qemu == "/other/qemu"
    assert builds.selected() == "qemu-system-x86_64"
    assert builds.SELECTED_VAR not in os.environ


def test_selecting_a_file_that_is_not_executable_says_so(tmp_path):
    (tmp_path / "qemu").write_text("not a program")
    with pytest.raises(LabError, match="no executable file"), builds.use(tmp_path / "qemu"):
        pass


def test_the_launch_record_names_the_binary_and_reads_back(tmp_path):
    exe = "/cache/qemu/1_7.2/bin/qemu-system-x86_64"
    info = LaunchInfo("vm0", (exe, "-name", "vm0"), "tcg", "no vmx", "7.2.18",
                      netns="lf-x", qemu_binary=exe)
    info.write(tmp_path)
    back = LaunchInfo.read(tmp_path, "vm0")
    assert back == info and back.qemu_binary == exe
    assert back.command_line().startswith(f"ip netns exec lf-x {exe} -name vm0")
