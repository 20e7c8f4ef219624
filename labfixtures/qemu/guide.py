"""The `guide` profile: the machine the guide's scripts start, option for option. Pure.

Its source is `ovs-startup.sh` (guide A.2, a tap on the switch), with the user-mode NIC of
`standalone-startup.sh` (A.1) and the SATA CD-ROM of `iso-install-startup.sh` (A.4) when the
spec asks for them: q35 with `kernel-irqchip=split`, `-cpu max,l3-cache=on,+vmx`, an
`intel-iommu`, OVMF in secure pflash with a per-VM copy of the variables, a TPM 2.0 from
`swtpm` (qemu/swtpm.py starts it), an `i6300esb` watchdog, virtio-blk on an iothread, a
multi-queue modern-only virtio-net-pci, virtio-balloon, virtio-rng, `qxl-vga` with SPICE and
its vdagent channel, a USB tablet, HDA audio, the serial console on telnet 2300+N, SPICE on
5900+N (both on localhost: the lab namespace's own, since QEMU runs inside it).

Only what this host cannot do, or an unattended lab cannot use, is replaced, and every
replacement is returned with its reason (`Machine` writes them in the launch record and the
`.cmdline` file):

* no KVM: TCG, and `+vmx` dropped from `-cpu` (TCG emulates no VMX);
* no /dev/vhost-net: `vhost=off`;
* fewer host cores than the script's 8 vCPUs: `-smp` capped at the host's cores
  (`MachineSpec.vcpus` > 1 chooses another number);
* `-daemonize` is not used: labfixtures supervises QEMU (pid, QMP, serial log);
* `-boot menu=on` gets `splash-time=0`: nobody is at an unattended lab's keyboard, and OVMF
  would wait ~3 s for an ESC (`MachineSpec.boot_menu_wait` keeps the wait);
* SPICE's `addr=localhost` is written numerically, 127.0.0.1 or ::1 (qemu/guidehost.py);
* additions the lab needs: a QMP socket, and a `logfile=` on the telnet console (the lab
  reads the console; the telnet listener is the script's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labfixtures.core.addressing import spice_port, telnet_port
from labfixtures.errors import LabError
from labfixtures.qemu.cmdline import QEMU, disk_format, q
from labfixtures.qemu.spec import MachineSpec, NicSpec

#: the script's `-smp 8,threads=2` and `-netdev tap,queues=2`
GUIDE_VCPUS = 8
GUIDE_THREADS = 2
GUIDE_QUEUES = 2


@dataclass(frozen=True)
class GuideHost:
    """What the host can do, as far as the guide's machine is concerned (measured by the
    caller: `accel.resolve`, `accel.vhost_net_available`, `os.cpu_count`)."""

    accel: str  # 'kvm' or 'tcg'
    vhost_net: bool
    #: the cores its VMs may use: the host's, or this process's share of them (core/cpus.py)
    cpus: int
    #: SPICE's `addr=`: the script's `localhost`, numeric, in the family that SPICE's
    #: AI_ADDRCONFIG lookup accepts in the lab namespace (qemu/guidehost.py)
    spice_addr: str = "127.0.0.1"


def guide_threads(vcpus: int) -> int:
    """The script's 2 threads per core, when VCPUS makes whole cores of them: QEMU refuses
    `-smp 1,threads=2` ("Invalid CPU topology")."""
    return GUIDE_THREADS if vcpus % GUIDE_THREADS == 0 else 1


def guide_vcpus(vcpus: int, host_cpus: int) -> int:
    """The script's 8 vCPUs, capped at the host's cores; VCPUS > 1 (`MachineSpec.vcpus`)
    overrides."""
    if vcpus > 1:
        return vcpus
    return max(1, min(GUIDE_VCPUS, host_cpus))


def nic_queues(nic: NicSpec) -> int:
    """The script's 2 queue pairs, unless the NIC asks for more."""
    return nic.queues if nic.queues > 1 else GUIDE_QUEUES


def _nic(i: int, nic: NicSpec, host: GuideHost) -> list[str]:
    nid = f"net{nic.number}" if nic.number is not None else f"net{i}"
    if nic.kind == "user":  # standalone-startup.sh
        dev = f"virtio-net-pci,netdev={nid}"
        if nic.mac:
            dev += f",mac={nic.mac}"
        fwd = "".join(f",hostfwd=tcp:{nic.hostfwd_addr}:{hp}-:{gp}"
                      for hp, gp in sorted(nic.hostfwd.items()))
        return ["-device", dev, "-netdev", f"user,id={nid}{fwd}"]
    queues = nic_queues(nic)
    dev = (f"virtio-net-pci,mq=on,vectors={2 * queues + 2},netdev={nid},"
           "disable-legacy=on,disable-modern=off")
    if nic.mac:
        dev += f",mac={nic.mac}"
    if nic.csum_off:
        dev += ",csum=off,guest_csum=off"
    vhost = "on" if host.vhost_net else "off"
    return ["-device", dev,
            "-netdev", f"tap,queues={queues},ifname={q(nic.tap)},id={nid},"
                       f"script=no,downscript=no,vhost={vhost}"]


def host_replacements(host: GuideHost, vcpus: int = 1) -> dict[str, str]:
    """What this HOST cannot do of the script's machine, whatever the VM: {script option:
    what runs here (why)}; VCPUS > 1: a vCPU count asked for (`labctl doctor` shows these)."""
    out: dict[str, str] = {}
    if host.accel != "kvm":
        out["accel=kvm:tcg"] = "accel=tcg (no usable KVM on this host)"
        out["-cpu max,l3-cache=on,+vmx"] = ("-cpu max,l3-cache=on (no KVM: TCG emulates no "
                                            "VMX, so no nested virtualisation)")
    if not host.vhost_net:
        out["vhost=on"] = "vhost=off (no /dev/vhost-net on this host)"
    n = guide_vcpus(vcpus, host.cpus)
    if n != GUIDE_VCPUS:
        why = ("asked for" if vcpus > 1
               else f"the host has {host.cpus} core{'s' if host.cpus != 1 else ''} for it")
        out[f"-smp {GUIDE_VCPUS},threads={GUIDE_THREADS}"] = (
            f"-smp {n},threads={guide_threads(n)} ({why})")
    return out


def replacements(spec: MachineSpec, host: GuideHost) -> dict[str, str]:
    """What of the script's machine this host runs differently: {script option: what runs
    here, and why}. Empty on a host with KVM, vhost-net and 8 cores (but for the two
    options every labfixtures machine changes: -daemonize and the console's log file)."""
    out: dict[str, str] = {
        "-daemonize": "not used: labfixtures supervises QEMU (pid file, QMP, serial log)",
        "-spice addr=localhost": (f"addr={host.spice_addr} (SPICE resolves its address "
                                  "with AI_ADDRCONFIG: in a lab namespace with IPv6 "
                                  "link-local addresses only, localhost and 127.0.0.1 fail)"),
    }
    host_said = host_replacements(host, vcpus=spec.vcpus)
    if not any(n.kind == "tap" for n in spec.nics):
        host_said.pop("vhost=on", None)
    out.update(host_said)
    if any(n.kind == "tap" and n.csum_off for n in spec.nics):
        out["virtio-net-pci checksum offload"] = (
            "csum=off,guest_csum=off (the lab's Open vSwitch userspace datapath never fills "
            "partial checksums in)")
    if spec.serial_log is not None:
        out["-serial telnet:localhost:PORT,server,nowait"] = (
            "the same telnet listener as a -chardev with logfile= (the lab reads the console)")
    if not spec.boot_menu_wait:
        out["-boot menu=on"] = ("menu=on,splash-time=0 (an unattended lab: nobody presses "
                                "ESC, so OVMF does not wait ~3 s for it; "
                                "MachineSpec(boot_menu_wait=True) keeps the wait)")
    if spec.disk is not None:
        out["l2-cache-size="] = ("left at QEMU's default: its value is cut off in the "
                                 "guide's text of ovs-startup.sh")
    return out


def build_guide_argv(spec: MachineSpec, host: GuideHost, *, tpm_socket: Path | None,
                     qemu: str = QEMU) -> list[str]:
    """The argv of the guide's machine for SPEC on HOST; TPM_SOCKET: swtpm's socket."""
    if host.accel not in ("kvm", "tcg"):
        raise LabError(f"accelerator {host.accel!r} must be resolved to 'kvm' or 'tcg'",
                       "call accel.resolve() first, or pass 'tcg'")
    spec.validate()
    if spec.profile != "guide":
        raise LabError(f"build_guide_argv() got a {spec.profile!r} machine",
                       "use cmdline.build_argv() for the other profiles")
    if spec.uefi_vars is None:
        raise LabError(f"machine {spec.name} has no copy of OVMF_VARS.fd",
                       "Machine.start() makes it; give uefi_vars=PATH to build argv by hand")
    n = spec.console_number
    vcpus = guide_vcpus(spec.vcpus, host.cpus)
    cpu = "max,l3-cache=on" + (",+vmx" if host.accel == "kvm" else "")
    argv = [qemu,
            "-machine", f"type=q35,accel={host.accel},kernel-irqchip=split",
            "-cpu", cpu,
            "-device", "intel-iommu,intremap=on",
            "-name", q(spec.name),
            "-m", str(spec.memory_mb)]
    for i, nic in enumerate(spec.nics):
        argv += _nic(i, nic, host)
    if not spec.nics:  # else QEMU adds its default NIC, and OVMF tries PXE on it
        argv += ["-nic", "none"]
    chardev = (f"socket,id=serial0,host=localhost,port={telnet_port(n)},"
               "telnet=on,server=on,wait=off")
    if spec.serial_log is not None:
        chardev += f",logfile={q(spec.serial_log)}"
    argv += ["-chardev", chardev, "-serial", "chardev:serial0",
             "-device", "virtio-balloon",
             "-smp", f"{vcpus},threads={guide_threads(vcpus)}",
             "-rtc", "base=localtime,clock=host",
             "-device", "i6300esb",
             "-watchdog-action", "poweroff",
             "-boot", ("once=d,menu=on" if spec.boot_once_cdrom else "order=c,menu=on")
             + ("" if spec.boot_menu_wait else ",splash-time=0")]
    if spec.cdrom is not None:  # iso-install-startup.sh
        argv += ["-device", "ahci,id=ahci0",
                 "-device", "ide-cd,bus=ahci0.0,drive=drive-sata0-0-0,id=sata0-0-0",
                 "-drive", f"media=cdrom,if=none,file={q(spec.cdrom)},id=drive-sata0-0-0"]
    if spec.disk is not None:
        argv += ["-object", "iothread,id=iothread.drive0",
                 "-drive", "if=none,id=drive0,aio=native,cache.direct=on,discard=unmap,"
                           f"format={disk_format(spec.disk, spec.disk_format)},media=disk,"
                           f"file={q(spec.disk)}",
                 "-device", "virtio-blk,num-queues=4,drive=drive0,scsi=off,config-wce=off,"
                            "iothread=iothread.drive0"]
    argv += ["-global", "driver=cfi.pflash01,property=secure,value=on",
             "-drive", f"if=pflash,format=raw,unit=0,file={q(spec.uefi_code)},readonly=on",
             "-drive", f"if=pflash,format=raw,unit=1,file={q(spec.uefi_vars)}",
             "-k", "fr",
             "-vga", "none",
             "-device", "qxl-vga,vgamem_mb=64",
             "-spice", f"port={spice_port(n)},addr={q(host.spice_addr)},"
                       "disable-ticketing=on",
             "-device", "virtio-serial-pci",
             "-device", "virtserialport,chardev=spicechannel0,name=com.redhat.spice.0",
             "-chardev", "spicevmc,id=spicechannel0,name=vdagent",
             "-object", "rng-random,filename=/dev/urandom,id=rng0",
             "-device", "virtio-rng-pci,rng=rng0"]
    if tpm_socket is not None:
        argv += ["-chardev", f"socket,id=chrtpm,path={q(tpm_socket)}",
                 "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                 "-device", "tpm-tis,tpmdev=tpm0"]
    argv += ["-usb",
             "-device", "usb-tablet,bus=usb-bus.0",
             "-device", "ich9-intel-hda,addr=1f.1",
             "-audiodev", "spice,id=snd0",
             "-device", "hda-output,audiodev=snd0"]
    if spec.qmp_socket is not None:
        argv += ["-qmp", f"unix:{q(spec.qmp_socket)},server=on,wait=off"]
    argv += list(spec.extra_args)
    return argv
