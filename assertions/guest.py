"""Facts about a guest, read from inside it over SSH: virtio devices, modules, its disk, its
accelerator, and which frames it sends or receives.

What the guide (§4) reads with `lspci` and `lsmod`, read here from the kernel's own files, so
that the smallest guest (busybox, no pciutils, no kmod) answers too:

* PCI devices: `/sys/bus/pci/devices/*/{vendor,device,class}` and their bound driver
  (profiles `pc` and `q35`; the `fast` profile, microvm, has no PCI bus);
* virtio devices on any transport (PCI or MMIO): `/sys/bus/virtio/devices/*/device` holds
  the virtio type (1 network, 2 block, 3 console, 4 entropy, 5 memory balloon...);
* modules: `/proc/modules` (what `lsmod` prints), `/sys/module` for built-in ones;
* the disk: `/sys/block/vda/device/driver` -> `virtio_blk`.

A *guest* is anything with `run(cmd)` returning an object with `exit_status` and `stdout`
(labfixtures' `VM`). Every failure message says what was expected and shows what the guest
actually has, as `lspci`/`lsmod` would.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labfixtures.errors import LabError

from ._format import name_of, table
from ._types import Guest, check_name, check_number, check_object
from .vlan import ETHERTYPE_PROBE, Capture, port, ports, probe_frame, send

VIRTIO_VENDOR = 0x1AF4  # Red Hat, Inc. (virtio devices on PCI)

#: virtio device types (virtio spec §5), under the names the guide's lspci shows
VIRTIO_TYPES = {
    "network": 1, "block": 2, "console": 3, "rng": 4, "balloon": 5, "scsi": 8, "9p": 9,
    "gpu": 16, "input": 18, "vsock": 19, "crypto": 20, "iommu": 23, "mem": 24, "fs": 26,
}
ALIASES = {"net": "network", "blk": "block", "disk": "block", "serial": "console",
           "entropy": "rng", "memory balloon": "balloon"}
LSPCI_NAMES = {
    "network": "Virtio network device", "block": "Virtio block device",
    "console": "Virtio console", "rng": "Virtio RNG", "balloon": "Virtio memory balloon",
    "scsi": "Virtio SCSI", "9p": "Virtio filesystem", "gpu": "Virtio GPU",
    "input": "Virtio input", "vsock": "Virtio socket", "crypto": "Virtio crypto",
}
#: the driver (module) that handles each virtio type in a Linux guest
VIRTIO_DRIVERS = {
    "network": "virtio_net", "block": "virtio_blk", "console": "virtio_console",
    "rng": "virtio_rng", "balloon": "virtio_balloon", "scsi": "virtio_scsi",
    "9p": "9pnet_virtio", "gpu": "virtio_gpu", "input": "virtio_input",
    "vsock": "vmw_vsock_virtio_transport", "crypto": "virtio_crypto",
}
_TYPE_NAMES = {v: k for k, v in VIRTIO_TYPES.items()}


def _kind(kind: str) -> str:
    __tracebackhide__ = True
    k = ALIASES.get(kind.lower(), kind.lower())
    if k not in VIRTIO_TYPES:
        raise ValueError(f"unknown virtio device kind {kind!r}; use one of "
                         f"{', '.join(VIRTIO_TYPES)}")
    return k


def _run(guest: Any, cmd: str) -> str:
    __tracebackhide__ = True
    res = guest.run(cmd)
    if res.exit_status != 0:
        raise AssertionError(f"{name_of(guest)}: `{cmd}` failed with status {res.exit_status}: "
                             f"{(res.stderr or res.stdout).strip()[:300]}")
    return str(res.stdout)


def _guest(func: str, guest: object) -> None:
    __tracebackhide__ = True
    check_object(func, "guest", guest, Guest)


def _kinds(func: str, kinds: tuple[str, ...]) -> list[str]:
    __tracebackhide__ = True
    if not kinds:
        raise TypeError(f"{func}(): name at least one device kind, e.g. {func}(vm, "
                        "'network', 'block')")
    for k in kinds:
        check_name(func, "kinds", k, "network")
    return [_kind(k) for k in kinds]


# -- reads -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PciDevice:
    slot: str  # 0000:00:03.0
    vendor: int
    device: int
    cls: int  # class code, 24 bits
    driver: str  # bound driver, '' if none

    @property
    def virtio_kind(self) -> str | None:
        """network, block, balloon... for a virtio PCI function, else None.

        Transitional devices have ids 0x1000-0x103f (0x1000 network, 0x1001 block, 0x1002
        balloon, 0x1003 console, 0x1004 SCSI, 0x1005 RNG, 0x1009 9p); modern ones
        0x1040 + the virtio type.
        """
        if self.vendor != VIRTIO_VENDOR:
            return None
        transitional = {0x1000: 1, 0x1001: 2, 0x1002: 5, 0x1003: 3, 0x1004: 8, 0x1005: 4,
                        0x1009: 9}
        if self.device in transitional:
            return _TYPE_NAMES.get(transitional[self.device])
        if 0x1040 <= self.device <= 0x107F:
            return _TYPE_NAMES.get(self.device - 0x1040, f"virtio type {self.device - 0x1040}")
        return None

    def __str__(self) -> str:
        kind = self.virtio_kind
        what = LSPCI_NAMES.get(kind or "", f"Red Hat, Inc. {kind}") if kind else \
            f"[{self.vendor:04x}:{self.device:04x}]"
        drv = f" (driver {self.driver})" if self.driver else " (no driver)"
        return f"{self.slot.removeprefix('0000:')} class {self.cls >> 8:04x}: {what}{drv}"


@dataclass(frozen=True)
class VirtioDevice:
    name: str  # virtio0
    type_id: int
    driver: str  # '' if no driver is bound
    transport: str  # 'pci 0000:00:02.0', 'mmio ...'

    @property
    def kind(self) -> str:
        return _TYPE_NAMES.get(self.type_id, f"type {self.type_id}")

    def __str__(self) -> str:
        drv = self.driver or "no driver bound"
        return f"{self.name}: virtio {self.kind} (id {self.type_id}) on {self.transport}, {drv}"


@dataclass(frozen=True)
class Module:
    name: str
    size: int
    users: tuple[str, ...]
    state: str  # Live, Loading, Unloading; 'builtin' for a built-in module

    def __str__(self) -> str:
        used = ",".join(self.users)
        return f"{self.name:<22} {self.size:>7}  {len(self.users)} {used}".rstrip()


_PCI_CMD = (
    'for d in /sys/bus/pci/devices/*; do [ -e "$d/vendor" ] || continue; drv=; '
    '[ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")"); '
    'echo "${d##*/} $(cat "$d/vendor") $(cat "$d/device") $(cat "$d/class") $drv"; done')

_VIRTIO_CMD = (
    'for d in /sys/bus/virtio/devices/*; do [ -e "$d/device" ] || continue; drv=; '
    '[ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")"); '
    'p=$(readlink -f "$d/.."); '
    'echo "${d##*/} $(cat "$d/device") ${p##*/} $drv"; done')


def guest_pci_devices(guest: object) -> list[PciDevice]:
    """The guest's PCI functions, as `lspci -k` would list them (empty on microvm)."""
    out = []
    for line in _run(guest, _PCI_CMD).splitlines():
        f = line.split()
        if len(f) >= 4:
            out.append(PciDevice(f[0], int(f[1], 16), int(f[2], 16), int(f[3], 16),
                                 f[4] if len(f) > 4 else ""))
    return out


def guest_virtio_devices(guest: object) -> list[VirtioDevice]:
    """The guest's virtio devices, whatever their transport (PCI or MMIO)."""
    out = []
    for line in _run(guest, _VIRTIO_CMD).splitlines():
        f = line.split()
        if len(f) >= 3:
            parent = f[2]
            transport = f"pci {parent}" if parent.count(":") == 2 else f"mmio {parent}"
            out.append(VirtioDevice(f[0], int(f[1], 16), f[3] if len(f) > 3 else "",
                                    transport))
    return out


def guest_modules(guest: object) -> dict[str, Module]:
    """Loaded modules (`/proc/modules`, i.e. `lsmod`), plus built-in ones from /sys/module
    (those have no `initstate`), keyed by name."""
    out = _run(guest, "cat /proc/modules; echo ---; for m in /sys/module/*; do "
                      '[ -e "$m/initstate" ] || echo "${m##*/}"; done')
    loaded, _, builtin = out.partition("---")
    mods: dict[str, Module] = {}
    for line in builtin.split():
        mods[line] = Module(line, 0, (), "builtin")
    for line in loaded.splitlines():
        f = line.split()
        if len(f) >= 5:
            users = tuple(u for u in f[3].split(",") if u and u != "-")
            mods[f[0]] = Module(f[0], int(f[1]), users, f[4])
    return mods


# -- assertions --------------------------------------------------------------------------------

def assert_virtio_pci_devices(guest: Guest, *kinds: str) -> list[PciDevice]:
    """Each of KINDS (network, block, balloon, console, rng...) is a virtio function on the
    guest's PCI bus with a driver bound (the guide's `lspci` of §4). Returns them."""
    __tracebackhide__ = True
    _guest("assert_virtio_pci_devices", guest)
    want = _kinds("assert_virtio_pci_devices", kinds)
    devices = guest_pci_devices(guest)
    found, problems = [], []
    for k in want:
        matching = [d for d in devices if d.virtio_kind == k]
        if not matching:
            problems.append(f"no {LSPCI_NAMES.get(k, k)} (vendor 1af4) on the PCI bus")
        elif not any(d.driver for d in matching):
            problems.append(f"{LSPCI_NAMES.get(k, k)} at {matching[0].slot} has no driver "
                            "bound (is virtio_pci loaded?)")
        else:
            found.append(next(d for d in matching if d.driver))
    if problems:
        hint = ("  the guest has no PCI bus at all: the `fast` profile (microvm) puts virtio "
                "on MMIO; use profile 'pc' or 'q35' to see devices as lspci does"
                if not devices else
                "  add the device to QEMU's command line (e.g. `-device virtio-balloon-pci`)")
        raise AssertionError(
            f"{name_of(guest)}: expected virtio PCI devices {', '.join(want)}, but "
            + "; ".join(problems) + ".\n  PCI devices (lspci -k):\n"
            + table(devices, "(no PCI device: no PCI bus)") + "\n" + hint)
    return found


def assert_virtio_devices(guest: Guest, *kinds: str, bound: bool = True
                          ) -> list[VirtioDevice]:
    """Each of KINDS is present on the guest's virtio bus (any transport) and, if BOUND,
    handled by its driver (virtio_net for a network device...). Returns them."""
    __tracebackhide__ = True
    _guest("assert_virtio_devices", guest)
    want = _kinds("assert_virtio_devices", kinds)
    devices = guest_virtio_devices(guest)
    found, problems = [], []
    for k in want:
        matching = [d for d in devices if d.kind == k]
        if not matching:
            problems.append(f"no virtio {k} device (type {VIRTIO_TYPES[k]})")
        elif bound and not any(d.driver for d in matching):
            problems.append(f"virtio {k} device {matching[0].name} has no driver: "
                            f"{VIRTIO_DRIVERS.get(k, 'its module')} is not loaded")
        else:
            found.append(next((d for d in matching if d.driver), matching[0]))
    if problems:
        raise AssertionError(
            f"{name_of(guest)}: expected virtio devices {', '.join(want)}, but "
            + "; ".join(problems) + ".\n  virtio devices (/sys/bus/virtio/devices):\n"
            + table(devices, "(none)"))
    return found


def assert_modules_loaded(guest: Guest, *names: str) -> dict[str, Module]:
    """Each module of NAMES is loaded (or built in), as `lsmod | grep virtio` shows in §4."""
    __tracebackhide__ = True
    func = "assert_modules_loaded"
    _guest(func, guest)
    if not names:
        raise TypeError(f"{func}(): name at least one module, e.g. {func}(vm, 'virtio_net')")
    for n in names:
        check_name(func, "names", n, "virtio_net")
    mods = guest_modules(guest)
    want = [n.replace("-", "_") for n in names]
    missing = [n for n in want if n not in mods]
    not_live = [f"{n} ({mods[n].state})" for n in want
                if n in mods and mods[n].state not in ("Live", "builtin")]
    if missing or not_live:
        shown = sorted((m for m in mods.values() if m.state != "builtin" or "virtio" in m.name),
                       key=lambda mod: mod.name)
        why = []
        if missing:
            why.append(f"not loaded: {', '.join(missing)}")
        if not_live:
            why.append(f"not live: {', '.join(not_live)}")
        raise AssertionError(
            f"{name_of(guest)}: expected modules {', '.join(want)} to be loaded, but "
            + "; ".join(why) + ".\n  loaded modules (lsmod):\n"
            + table(shown, "(none)")
            + "\n  a virtio driver is loaded only when its device exists: check QEMU's "
              "-device options")
    return {n: mods[n] for n in want}


def assert_virtio_disk(guest: Guest, disk: str = "vda") -> str:
    """DISK is a virtio block device: /sys/block/DISK/device/driver is virtio_blk.
    Returns the driver name."""
    __tracebackhide__ = True
    _guest("assert_virtio_disk", guest)
    check_name("assert_virtio_disk", "disk", disk, "vda")
    if "/" in disk:
        raise TypeError(f"assert_virtio_disk(): disk is a block device's name such as "
                        f"'vda', not a path: {disk!r} -> {disk.rsplit('/', 1)[-1]!r}")
    out = _run(guest, f'd=/sys/block/{disk}; ls /sys/block | tr "\\n" " "; echo; '
                      f'if [ -e "$d" ]; then echo present; '
                      f'[ -e "$d/device/driver" ] && basename "$(readlink "$d/device/driver")"; '
                      f'else echo absent; fi')
    lines = out.splitlines() + ["", "", ""]
    disks, state, driver = lines[0].split(), lines[1].strip(), lines[2].strip()
    if state != "present":
        raise AssertionError(
            f"{name_of(guest)}: expected a virtio disk /dev/{disk}, but there is no block "
            f"device {disk}.\n  block devices (/sys/block): {', '.join(disks) or '(none)'}\n"
            "  attach one: `-drive if=none,id=d0,file=IMG -device virtio-blk-pci,drive=d0`")
    if driver != "virtio_blk":
        raise AssertionError(
            f"{name_of(guest)}: expected /dev/{disk} to be a virtio block device (driver "
            f"virtio_blk), but its driver is {driver or 'none'}.\n"
            "  the disk is emulated hardware (IDE/SATA/SCSI), not virtio: use "
            "`-device virtio-blk-pci` (the guide's `-device virtio-blk,drive=drive0`)")
    return driver


def assert_accelerator(vm: object, expected: object = None) -> dict[str, Any]:
    """The running VM uses the accelerator labfixtures chose (EXPECTED: 'kvm', 'tcg', an
    AccelInfo, or None for `accel.detect()`), and QEMU itself agrees (QMP `query-kvm`).
    Returns query-kvm's answer ({'enabled': ..., 'present': ...})."""
    __tracebackhide__ = True
    from labfixtures.qemu import accel

    if isinstance(vm, str) or not (hasattr(vm, "machine") or hasattr(vm, "qmp")):
        raise TypeError(f"assert_accelerator(): vm must be a VM of the lab (lab.vms[...], "
                        f"the object lab.vm() returned), not {vm!r:.60}")
    if isinstance(expected, str) and expected.lower() not in ("kvm", "tcg"):
        raise TypeError(f"assert_accelerator(): expected must be 'kvm', 'tcg', an AccelInfo "
                        f"or None, not {expected!r:.40}")
    machine: Any = getattr(vm, "machine", vm)
    if machine is None:
        raise AssertionError(f"{name_of(vm)} is not running: no QEMU to ask")
    info: Any
    if expected is None:
        info = accel.detect()
    elif isinstance(expected, str):
        info = accel.AccelInfo(expected.lower(), "expected by the test")
    else:
        info = expected  # an AccelInfo
    kvm = machine.qmp("query-kvm")
    enabled = bool(kvm.get("enabled"))
    running = "KVM" if enabled else "TCG (QEMU emulation)"
    if enabled != (info.name == "kvm"):
        raise AssertionError(
            f"{name_of(vm)}: expected accelerator {info.name.upper()} ({info.reason}), but QEMU "
            f"runs it with {running}: query-kvm says {kvm}.\n"
            "  the guide's rule: `egrep '(vmx|svm)' /proc/cpuinfo` empty -> QEMU (TCG) only")
    chosen = getattr(machine, "accel", None)
    if chosen is not None and chosen.name != info.name:
        raise AssertionError(
            f"{name_of(vm)}: QEMU runs {running}, but labfixtures recorded {chosen.name.upper()} "
            f"({chosen.reason}) for this machine")
    return dict(kvm)


# -- frames a guest sends and receives ---------------------------------------------------------

def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _vm(func: str, vm: object, command: str | None = None) -> None:
    __tracebackhide__ = True
    _guest(func, vm)
    if not isinstance(getattr(vm, "mac", None), str):
        raise TypeError(f"{func}(): vm must be a VM of the lab with a NIC on a tap (its "
                        f"`mac` identifies its frames), not {vm!r:.60}")
    if command is not None:
        check_name(func, "command", command, "arping -f -c 1 -w 1 -I eth0 203.0.113.129")


def capture_guest_frames(vm: Any, ports_: Sequence[object], command: str,
                         wait: float = 0.5, func: str = "capture_guest_frames"
                         ) -> dict[Any, list[Any]]:
    """Run COMMAND in the guest while listening on PORTS (veth hosts or `(lab, ifname)`);
    return, per port, the frames that carry the guest's MAC (sent by it, or to it). Each
    port proves first that it can hear (see `assertions.vlan`)."""
    mac = _mac_bytes(vm.mac)
    with Capture(ports_, func=func) as cap:
        vm.run(command)
        return cap.frames(mac, wait)


def assert_guest_frames_isolated(vm: Any, command: str, same_vlan: Sequence[object],
                                 other_vlans: Sequence[object], wait: float = 0.5) -> None:
    """Frames the guest sends while running COMMAND (e.g. `arping -b ...`, a broadcast)
    reach every port of SAME_VLAN and no port of OTHER_VLANS (each of which proves first
    that it can hear)."""
    __tracebackhide__ = True
    func = "assert_guest_frames_isolated"
    _vm(func, vm, command)
    same = ports(same_vlan, "same_vlan", func)
    other = ports(other_vlans, "other_vlans", func)
    check_number(func, "wait", wait, 0.01, 30)
    seen = capture_guest_frames(vm, [*same, *other], command, wait, func)
    leaked = [f"{p}: {seen[p][0].summary()}" for p in other if seen[p]]
    missing = [str(p) for p in same if not seen[p]]
    if leaked:
        raise AssertionError(
            f"VLAN leak: frames of {name_of(vm)} ({vm.mac}) sent by `{command}` arrived on "
            "port(s) of another VLAN:\n  " + "\n  ".join(leaked) +
            "\n  check the `tag` of the VM's tap port and of these ports")
    if missing:
        raise AssertionError(
            f"frames of {name_of(vm)} sent by `{command}` did not reach {', '.join(missing)}, "
            "which should be in its VLAN (the command must emit a broadcast; check the tap "
            "port's tag and that the tap is up)")


def assert_guest_frames_tagged(vm: Any, command: str, trunk: object, vid: int,
                               wait: float = 0.5) -> None:
    """Frames the guest sends while running COMMAND leave the trunk port TRUNK tagged VID."""
    __tracebackhide__ = True
    from scapy.layers.l2 import Dot1Q, Ether

    func = "assert_guest_frames_tagged"
    _vm(func, vm, command)
    t = port(trunk, "trunk", func)
    _vid(func, vid)
    check_number(func, "wait", wait, 0.01, 30)
    seen = capture_guest_frames(vm, [t], command, wait, func)[t]
    mac = vm.mac.lower()
    sent = [p for p in seen if p.haslayer(Ether) and p[Ether].src.lower() == mac]
    if not sent:
        raise AssertionError(f"no frame from {name_of(vm)} ({mac}) reached the trunk "
                             f"{port(trunk)} while running `{command}` (is VLAN {vid} in its "
                             "`trunks`? did the command emit a broadcast?)")
    vids = [p[Dot1Q].vlan if p.haslayer(Dot1Q) else None for p in sent]
    if any(v != vid for v in vids):
        got = ", ".join("untagged" if v is None else f"VLAN {v}" for v in vids)
        raise AssertionError(f"frames of {name_of(vm)} reached the trunk {port(trunk)} {got}; "
                             f"expected every one tagged with VID {vid}")


def _vid(func: str, vid: object, optional: bool = False) -> None:
    __tracebackhide__ = True
    if optional and vid is None:
        return
    if isinstance(vid, bool) or not isinstance(vid, int) or not 0 < vid < 4095:
        raise TypeError(f"{func}(): vid must be a VLAN number (1-4094)"
                        + (" or None" if optional else "") + f", not {vid!r:.40}")


def guest_unhandled_frames(vm: object, dev: str = "eth0") -> int:
    """Frames DEV received that no protocol took (`rx_nohandler` + `rx_dropped`): where the
    guest counts the labfixtures probe frames (EtherType 0x88b5), having no tcpdump."""
    out = _run(vm, f"cat /sys/class/net/{dev}/statistics/rx_nohandler "
                   f"/sys/class/net/{dev}/statistics/rx_dropped")
    return sum(int(x) for x in out.split())


def _probe_guest(func: str, sender: object, vm: object, vid: int | None, count: int,
                 dev: str, settle: float) -> int:
    __tracebackhide__ = True
    port(sender, "sender", func)
    _guest(func, vm)
    _vid(func, vid, optional=True)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= 100:
        raise TypeError(f"{func}(): count must be a number of frames (1-100), not "
                        f"{count!r:.40}")
    check_name(func, "dev", dev, "eth0")
    check_number(func, "settle", settle, 0, 30)
    before = guest_unhandled_frames(vm, dev)
    src = "02:00:00:00:" + secrets.token_hex(2)[:2] + ":" + secrets.token_hex(1)
    for _ in range(count):
        send(sender, probe_frame(b"labfixtures-guest-probe", vid=vid, src=src))
    time.sleep(settle)
    return guest_unhandled_frames(vm, dev) - before


def assert_frames_reach_guest(sender: object, vm: object, vid: int | None = None,
                              count: int = 3, dev: str = "eth0", settle: float = 0.3) -> int:
    """COUNT broadcast probe frames (EtherType 0x88b5, tagged VID if given) sent from SENDER
    arrive in the guest on DEV (its counters of unhandled frames grow by COUNT)."""
    __tracebackhide__ = True
    got = _probe_guest("assert_frames_reach_guest", sender, vm, vid, count, dev, settle)
    if got < count:
        tag = f" tagged VID {vid}" if vid is not None else ""
        raise AssertionError(
            f"{count} broadcast frame(s){tag} sent from {port(sender)} should reach "
            f"{name_of(vm)} ({dev}), but it counted {got} (rx_nohandler+rx_dropped).\n"
            "  check that the sender and the VM's tap are in the same VLAN and up")
    return got


def _guest_tap(vm: Any, dev: str) -> tuple[Any, str] | None:
    """(lab, 'tapN') of the VM's NIC that the guest calls DEV (ethK: the K-th NIC)."""
    lab, nics = getattr(vm, "lab", None), getattr(vm, "nics", None)
    if lab is None or not nics or not dev.startswith("eth") or not dev[3:].isdigit() \
            or int(dev[3:]) >= len(nics):
        return None
    nic = nics[int(dev[3:])]
    if getattr(nic, "user", False) or getattr(nic, "tap", None) is None:
        return None
    return lab, f"tap{nic.tap}"


def _known_tap(func: str, vm: Any, dev: str) -> tuple[Any, str]:
    __tracebackhide__ = True
    tap = _guest_tap(vm, dev)
    if tap is None:
        raise LabError(
            f"{func}(): no tap is known for {name_of(vm)}'s {dev}, so no control frame can "
            "prove that the guest would count a frame that arrives (and its silence would "
            "prove nothing)",
            "use it on a VM of the lab whose NIC is on a tap (lab.vm(..., tap=N)); for other "
            "machines, capture on switch ports: assert_vlan_isolation")
    return tap


def _guest_hears(func: str, vm: Any, tap: tuple[Any, str], dev: str, settle: float
                 ) -> None:
    """The positive control of a silence: a probe frame sent straight to the guest on its
    TAP (from the lab host) is counted on DEV. LabError if the guest cannot tell."""
    __tracebackhide__ = True
    before = guest_unhandled_frames(vm, dev)
    send(tap, probe_frame(b"labfixtures-guest-control"))
    time.sleep(settle)
    if guest_unhandled_frames(vm, dev) - before < 1:
        raise LabError(
            f"{func}(): {name_of(vm)} counted no frame on {dev}, even one sent straight to it "
            f"on {tap[1]}: its silence proves nothing",
            f"is {dev} up in the guest (`ip link set dev {dev} up`) and is {tap[1]} up on the "
            "lab host?")


def assert_frames_do_not_reach_guest(sender: object, vm: object, vid: int | None = None,
                                     count: int = 3, dev: str = "eth0",
                                     settle: float = 0.3) -> None:
    """Probe frames sent from SENDER (tagged VID if given) never arrive in the guest. The
    guest first proves it would count one: a frame sent straight to it on its tap."""
    __tracebackhide__ = True
    func = "assert_frames_do_not_reach_guest"
    _guest(func, vm)
    check_name(func, "dev", dev, "eth0")
    tap = _known_tap(func, vm, dev)
    got = _probe_guest(func, sender, vm, vid, count, dev, settle)
    if not got:
        _guest_hears(func, vm, tap, dev, settle)
    if got:
        tag = f" tagged VID {vid}" if vid is not None else ""
        raise AssertionError(
            f"VLAN leak: {got} of {count} broadcast frame(s){tag} sent from {port(sender)} "
            f"arrived in {name_of(vm)} ({dev}, EtherType {ETHERTYPE_PROBE:#06x} counted as "
            "unhandled).\n  the sender must not share a VLAN with the VM's tap port")
