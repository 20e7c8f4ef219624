"""What a virtual machine is, as data: validated here, turned into argv by `cmdline`.

The qemu layer receives tap *names*; it does not know which switch a tap is plugged into.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from labfixtures.core.addressing import (
    check_mac,
    check_memory,
    check_tap_number,
    mac_from_tap,
    ssh_forward_port,
    tap_name,
)
from labfixtures.errors import LabError

Profile = Literal["fast", "pc", "q35", "guide"]
Accel = Literal["auto", "kvm", "tcg"]

#: the machine profiles, with what each is for (the one list: lab files, CLI and specs)
PROFILES: dict[str, str] = {
    "fast": "microvm, no PCI bus: most tests",
    "pc": "i440FX with a PCI bus: lspci-style checks",
    "q35": "Q35 with PCIe",
    "guide": "the guide's own machine (ovs-startup.sh): q35, UEFI + swtpm TPM 2.0, watchdog, "
             "iothread, multi-queue NIC, qxl/SPICE; boots a disk by its firmware",
}
#: the line a labfixtures guest image prints on its serial console once it is ready; the
#: machine waits for it (`Machine.boot`), the images print it (guestimages imports it)
READY_MARKER = "labfixtures: ready"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE.fd")
#: TCG's translation-block cache, MiB (`-accel tcg,tb-size=N`). QEMU's default on a 64-bit
#: host is 1 GiB, and what it fills stays resident: ~55 MiB after a tiny guest's boot,
#: 400 MiB after 10 s of shell commands. At 32 the cache is flushed when full: SSH ready
#: within 0.1 s of the uncapped boot, commands ~10 % slower; at 16 `pc` boots ~0.5 s
#: slower, at 8 boots take 4-8 s (docs/host-facts.md).
TB_SIZE_MB = 32
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS.fd")


@dataclass
class NicSpec:
    """One virtio NIC: a tap (guide §9–10, `ovs-startup.sh`) or user mode (§8, A.1).

    `number` is the guide's tap number: it names the tap (`tapN`), makes the MAC
    (`b8:ad:ca:fe:HH:LL`) and, in user mode, the SSH forward port 2200+N.
    `csum_off` turns off checksum offload between guest and tap: required when the tap sits
    on an OVS *userspace* datapath, which never fills in the partial checksums (docs/host-facts.md).
    """

    kind: Literal["tap", "user"] = "tap"
    number: int | None = None
    tap: str | None = None
    mac: str | None = None
    queues: int = 1
    hostfwd: dict[int, int] = field(default_factory=dict)  # host port -> guest port
    hostfwd_addr: str = "127.0.0.1"
    csum_off: bool | None = None
    vhost: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("tap", "user"):
            raise LabError(f"NIC kind {self.kind!r} is unknown", "use 'tap' or 'user'")
        if self.number is not None:
            check_tap_number(self.number)
        if self.kind == "tap" and self.tap is None:
            if self.number is None:
                raise LabError("a tap NIC needs a tap name or a tap number",
                               "give NicSpec(tap='tap2') or NicSpec(number=2)")
            self.tap = tap_name(self.number)
        if self.tap is not None and not 0 < len(self.tap) <= 15:
            raise LabError(f"tap name {self.tap!r} is not a valid interface name",
                           "use 1 to 15 characters")
        if self.mac is None and self.number is not None:
            self.mac = mac_from_tap(self.number)
        if self.mac is not None:
            self.mac = check_mac(self.mac)
        if not 1 <= self.queues <= 64:
            raise LabError(f"{self.queues} queues on a NIC is out of range", "use 1..64")
        if self.csum_off is None:
            self.csum_off = self.kind == "tap"
        if self.kind == "user" and not self.hostfwd and self.number is not None:
            self.hostfwd = {ssh_forward_port(self.number): 22}
        for hp, gp in self.hostfwd.items():
            if not (0 < hp < 65536 and 0 < gp < 65536):
                raise LabError(f"port forward {hp}->{gp} is out of range", "use 1..65535")

    @property
    def ssh_port(self) -> int | None:
        """The host port forwarded to the guest's SSH port, in user mode."""
        return next((hp for hp, gp in self.hostfwd.items() if gp == 22), None)


@dataclass
class MachineSpec:
    """Everything that decides QEMU's command line. Paths are used as given."""

    name: str
    kernel: Path | None = None
    initrd: Path | None = None
    disk: Path | None = None
    disk_format: str | None = None  # default: from the file suffix, like the guide's scripts
    cmdline: str = ""  # the image's kernel command line (console=..., root=...)
    append: str = ""  # extra words: guest configuration (GuestConfig.to_cmdline())
    memory_mb: int = 256
    vcpus: int = 1
    nics: list[NicSpec] = field(default_factory=list)
    accel: Accel = "auto"
    firmware: Literal["bios", "uefi"] = "bios"
    profile: Profile = "fast"
    serial: Literal["log", "telnet"] = "log"
    serial_log: Path | None = None
    qmp_socket: Path | None = None
    display: Literal["none", "spice"] = "none"
    number: int | None = None  # the guide's N for SPICE 5900+N and telnet 2300+N
    cdrom: Path | None = None
    boot_once_cdrom: bool = False
    #: `guide` profile: the script's `-boot menu=on` also makes OVMF wait ~3 s for ESC. An
    #: unattended lab has nobody to press it, so by default `splash-time=0` skips the wait
    #: (the menu stays on: ESC pressed in time still opens it). True: the script's wait.
    boot_menu_wait: bool = False
    tuned: bool = True  # the TCG boot-speed kernel parameters of docs/host-facts.md
    #: the guest kernel reads the MP table. One that cannot (Debian's cloud flavour) finds
    #: its CPUs through ACPI only, so `pc` keeps ACPI's PCI routing (no `pci=noacpi`):
    #: without it such a guest sees one CPU whatever `vcpus`. Taken from the image's facts.
    mp_table: bool = True
    tsc_khz: int | None = None  # host TSC for tsc_early_khz (see accel.host_tsc_khz)
    rng: bool = True
    tb_size_mb: int | None = TB_SIZE_MB  # TCG only; None: QEMU's default (1 GiB)
    balloon: bool = False  # virtio-balloon with free page reporting (docs/host-facts.md)
    extra_args: list[str] = field(default_factory=list)
    powerdown_timeout: float = 0.0  # >0: ACPI power button first (needs acpid in the guest)
    uefi_code: Path = OVMF_CODE
    uefi_vars: Path | None = None  # a per-VM copy of OVMF_VARS.fd (Machine makes it)

    def __post_init__(self) -> None:
        if self.profile == "guide":  # the script's machine: OVMF, console on telnet 2300+N
            self.firmware = "uefi"
            self.serial = "telnet"
            self.display = "spice"
        self.validate()

    @classmethod
    def from_image(cls, name: str, image: Any, **kw: Any) -> MachineSpec:
        """Take kernel/initrd/disk/cmdline from a GuestImage (or anything shaped like one).

        On the `guide` profile an image with a disk boots it through its firmware (OVMF,
        then the disk's GRUB), as the guide's scripts do: no kernel is given."""
        disk = kw.pop("disk", image.disk)
        kw.setdefault("mp_table", getattr(image, "facts", {}).get("mp_table") != "no")
        if kw.get("profile") == "guide" and image.disk is not None:
            return cls(name=name, disk=disk, **kw)
        return cls(name=name, kernel=image.kernel, initrd=image.initrd,
                   disk=disk, cmdline=image.cmdline, **kw)

    @property
    def console_number(self) -> int:
        if self.number is not None:
            return self.number
        return next((n.number for n in self.nics if n.number is not None), 0)

    def validate(self) -> None:
        if not self.name or "/" in self.name or "," in self.name or len(self.name) > 64:
            raise LabError(f"machine name {self.name!r} is not usable",
                           "use letters, digits, '-' or '_' (no '/' nor ','), 64 at most")
        check_memory(self.memory_mb)
        if self.profile not in PROFILES:
            raise LabError(f"machine profile {self.profile!r} is unknown",
                           f"use one of {', '.join(PROFILES)}")
        if self.accel not in ("auto", "kvm", "tcg"):
            raise LabError(f"accelerator {self.accel!r} is unknown", "use auto, kvm or tcg")
        if self.tb_size_mb is not None and not 1 <= self.tb_size_mb <= 4096:
            raise LabError(f"a TCG translation cache of {self.tb_size_mb} MiB is out of range",
                           f"use 1..4096, or None for QEMU's default (labfixtures: {TB_SIZE_MB})")
        if not 1 <= self.vcpus <= 64:
            raise LabError(f"{self.vcpus} vCPUs is out of range", "use 1..64")
        if self.kernel is None and self.disk is None and self.cdrom is None:
            raise LabError(f"machine {self.name} has nothing to boot",
                           "give a kernel (direct boot), a disk or a cdrom")
        if self.profile == "fast":
            if self.firmware == "uefi":
                raise LabError("the 'fast' profile (microvm) has no UEFI firmware",
                               "use profile 'q35' or 'pc' for UEFI")
            if self.kernel is None:
                raise LabError("the 'fast' profile (microvm) boots a kernel directly only",
                               "give a kernel, or use profile 'pc'/'q35' to boot a disk")
            if self.cdrom is not None:
                raise LabError("the 'fast' profile (microvm) has no CD-ROM drive",
                               "use profile 'pc' or 'q35' for an ISO install")
            if self.display != "none":
                raise LabError("the 'fast' profile (microvm) has no display",
                               "use profile 'pc' or 'q35' with a SPICE display")
        if self.profile == "guide" and (self.kernel is not None or self.disk is None
                                        and self.cdrom is None):
            raise LabError("the 'guide' profile boots a disk (or a CD-ROM) by its firmware, "
                           "as the guide's scripts do",
                           "give a disk image (or a cdrom) and no kernel")
        if self.boot_once_cdrom and self.cdrom is None:
            raise LabError("boot once from cdrom, but no cdrom given", "give cdrom=PATH")
        taps = [n.tap for n in self.nics if n.kind == "tap"]
        if len(taps) != len(set(taps)):
            raise LabError(f"machine {self.name} uses a tap twice: {taps}",
                           "give each NIC its own tap")
        macs = [n.mac for n in self.nics if n.mac]
        if len(macs) != len(set(macs)):
            raise LabError(f"machine {self.name} has two NICs with the same MAC: {macs}",
                           "give each NIC its own number or MAC")
        if self.profile == "fast" and any(n.queues > 1 for n in self.nics):
            raise LabError("multi-queue NICs need virtio-net-pci",
                           "use profile 'pc' or 'q35', or queues=1")
