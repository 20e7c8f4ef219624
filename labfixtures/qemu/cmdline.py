"""MachineSpec -> QEMU argv. Pure: no file, process or clock is touched here.

Profiles (docs/host-facts.md: measured boot times under TCG, tiny guest, to SSH ready):

* `fast`: `microvm,x-option-roms=off`, `vmlinux` through its PVH entry, virtio-mmio
  devices, `-cpu max` (RDRAND: the SSH server no longer waits for entropy) and the tuned
  kernel command line: ~2.3 s. No PCI bus: `lspci` scenarios need `pc`/`q35`.
* `pc` / `q35`: virtio-*-pci devices, NIC `romfile=` (no iPXE option ROM to run): ~3.5 s.

Under TCG the translation cache is capped (`tb-size`, spec.TB_SIZE_MB): QEMU's 1 GiB default
let a tiny guest's boot leave ~55 MiB of generated code resident per VM.

NIC conventions are the guide's (`ovs-startup.sh`, `standalone-startup.sh`): MAC
`b8:ad:ca:fe:HH:LL`, `-netdev tap,ifname=tapN,script=no,downscript=no[,queues=Q]`, serial on
telnet localhost:2300+N when asked, SPICE on localhost:5900+N only when a display is asked,
user mode with `hostfwd=tcp::2200+N-:22` (bound to 127.0.0.1 of the VM's namespace here).
"""

from __future__ import annotations

from pathlib import Path

from labfixtures.core.addressing import spice_port, telnet_port
from labfixtures.errors import LabError
from labfixtures.qemu.spec import MachineSpec, NicSpec

QEMU = "qemu-system-x86_64"

#: docs/host-facts.md: what took the tiny guest from 2.5 s to 2.3 s under TCG (tsc_early_khz also
#: stops microvm from hanging now and then). Added before the image's own words.
#: Then, from guest profiles (RIP sampled through QMP while the kernel boots):
#: `noreplace-smp`: with one vCPU the kernel otherwise rewrites its ~9000 `lock` prefixes
#: one text_poke() at a time (an mm switch and a TLB flush each, dear under TCG);
#: `rodata=off`: skips write-protecting the kernel and the W+X page-table walk after it;
#: `init_on_alloc=0`: Debian zeroes every allocated page by default. Lab guests are
#: throw-away test machines: these hardening features are not what they are for.
TUNED_CMDLINE = ("quiet tsc=reliable no_timer_check cryptomgr.notests "
                 "initcall_blacklist=crypto_kdf108_init mitigations=off "
                 "noreplace-smp rodata=off init_on_alloc=0")

#: Per profile, added to TUNED_CMDLINE. On `pc`, QEMU's ACPI _PRT (PCI interrupt routing)
#: is an AML loop over 128 entries that the kernel evaluates again for every PCI device it
#: enables: ~0.3 s per virtio-pci device under TCG. `pci=noacpi` routes INTx through the
#: BIOS $PIR table instead (the virtio devices use MSI-X anyway); ACPI PCI hot-plug is off
#: in such a guest (`tuned=False` brings it back). q35's _PRT is a static table: no need.
#: Not for a kernel without MP-table code (`MachineSpec.mp_table`): it would see one CPU.
PROFILE_CMDLINE = {"pc": "pci=noacpi"}


def q(value: object) -> str:
    """Escape a value inside a QEMU option list (a comma is written ',,')."""
    return str(value).replace(",", ",,")


def disk_format(path: Path, given: str | None) -> str:
    """The format from the suffix, as the guide's `${vm##*.}` does (raw for .img/.raw)."""
    if given:
        return given
    suffix = path.suffix.lstrip(".").lower()
    return {"qcow2": "qcow2", "raw": "raw", "img": "raw", "vmdk": "vmdk", "vdi": "vdi",
            "qed": "qed"}.get(suffix, "raw")


def kernel_cmdline(spec: MachineSpec) -> str:
    words = [spec.cmdline]
    if spec.tuned:
        words += [TUNED_CMDLINE, PROFILE_CMDLINE.get(spec.profile, "") if spec.mp_table else ""]
        if spec.tsc_khz:
            words.append(f"tsc_early_khz={spec.tsc_khz}")
    words.append(spec.append)
    return " ".join(w.strip() for w in words if w and w.strip())


def _netdev(i: int, nic: NicSpec) -> str:
    if nic.kind == "user":
        opts = [f"user,id=net{i}"]
        opts += [f"hostfwd=tcp:{nic.hostfwd_addr}:{hp}-:{gp}"
                 for hp, gp in sorted(nic.hostfwd.items())]
        return ",".join(opts)
    opts = [f"tap,id=net{i},ifname={q(nic.tap)},script=no,downscript=no"]
    if nic.queues > 1:
        opts.append(f"queues={nic.queues}")
    if nic.vhost:
        opts.append("vhost=on")
    return ",".join(opts)


def _nic_device(i: int, nic: NicSpec, pci: bool) -> str:
    opts = [("virtio-net-pci" if pci else "virtio-net-device"), f"netdev=net{i}"]
    if nic.mac:
        opts.append(f"mac={nic.mac}")
    if nic.csum_off:
        opts += ["csum=off", "guest_csum=off"]
    if pci:
        opts.append("romfile=")
        if nic.queues > 1:
            opts += ["mq=on", f"vectors={2 * nic.queues + 2}"]
    return ",".join(opts)


def build_argv(spec: MachineSpec, accel: str, qemu: str = QEMU) -> list[str]:
    """The full argv for SPEC under ACCEL ('kvm' or 'tcg', already decided)."""
    if accel not in ("kvm", "tcg"):
        raise LabError(f"accelerator {accel!r} must be resolved to 'kvm' or 'tcg'",
                       "call accel.detect() first, or pass 'tcg'")
    spec.validate()
    pci = spec.profile != "fast"
    dev = "pci" if pci else "device"
    n = spec.console_number
    argv = [qemu, "-name", q(spec.name), "-nodefaults", "-no-user-config", "-no-reboot"]

    machine = {"fast": "microvm,x-option-roms=off", "pc": "pc", "q35": "q35"}[spec.profile]
    accel_opt = accel
    if accel == "tcg" and spec.tb_size_mb is not None:  # resident memory: see TB_SIZE_MB
        accel_opt += f",tb-size={spec.tb_size_mb}"
    argv += ["-machine", machine, "-accel", accel_opt, "-cpu", "max",
             "-smp", str(spec.vcpus), "-m", str(spec.memory_mb)]

    if spec.firmware == "uefi":
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={q(spec.uefi_code)}"]
        if spec.uefi_vars is not None:
            argv += ["-drive", f"if=pflash,format=raw,unit=1,file={q(spec.uefi_vars)}"]

    if spec.kernel is not None:
        argv += ["-kernel", str(spec.kernel)]
        if spec.initrd is not None:
            argv += ["-initrd", str(spec.initrd)]
        argv += ["-append", kernel_cmdline(spec)]

    if spec.disk is not None:
        argv += ["-drive", f"if=none,id=disk0,file={q(spec.disk)},"
                           f"format={disk_format(spec.disk, spec.disk_format)},"
                           "cache=writeback,discard=unmap",
                 "-device", f"virtio-blk-{dev},drive=disk0"]
    if spec.cdrom is not None:
        argv += ["-drive", f"if=ide,index=2,media=cdrom,readonly=on,file={q(spec.cdrom)}"]
    if spec.boot_once_cdrom:
        argv += ["-boot", "once=d"]
    elif spec.kernel is None and pci:
        argv += ["-boot", "order=c"]

    for i, nic in enumerate(spec.nics):
        argv += ["-netdev", _netdev(i, nic), "-device", _nic_device(i, nic, pci)]

    if spec.rng:
        argv += ["-object", "rng-random,id=rng0,filename=/dev/urandom",
                 "-device", f"virtio-rng-{dev},rng=rng0"]

    # free page reporting: the guest hands back the pages it frees (2 MiB blocks), QEMU
    # discards them, so RAM a workload used and freed leaves the VM's RSS. One balloon at
    # most in a QEMU: one given in extra_args wins.
    if spec.balloon and not any(a.startswith("virtio-balloon") for a in spec.extra_args):
        argv += ["-device", f"virtio-balloon-{dev},free-page-reporting=on"]

    if spec.serial == "telnet":
        chardev = (f"socket,id=serial0,host=localhost,port={telnet_port(n)},"
                   "telnet=on,server=on,wait=off")
        if spec.serial_log is not None:
            chardev += f",logfile={q(spec.serial_log)}"
        argv += ["-chardev", chardev, "-serial", "chardev:serial0"]
    elif spec.serial_log is not None:
        argv += ["-chardev", f"file,id=serial0,path={q(spec.serial_log)}",
                 "-serial", "chardev:serial0"]

    if spec.qmp_socket is not None:
        argv += ["-qmp", f"unix:{q(spec.qmp_socket)},server=on,wait=off"]

    argv += ["-display", "none"]
    if spec.display == "spice":
        argv += ["-vga", "qxl",
                 "-spice", f"port={spice_port(n)},addr=localhost,disable-ticketing=on",
                 "-device", f"virtio-serial-{dev}",
                 "-chardev", "spicevmc,id=spicechannel0,name=vdagent",
                 "-device", "virtserialport,chardev=spicechannel0,name=com.redhat.spice.0"]

    argv += list(spec.extra_args)
    return argv
