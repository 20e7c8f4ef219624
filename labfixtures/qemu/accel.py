"""KVM or TCG, decided on evidence; and the host facts the tuned command line needs.

Why not just `/dev/kvm`: on these machines it exists, the CPU has no vmx/svm flag, and
`qemu -accel kvm` hangs after "Booting from ROM" (docs/host-facts.md). So KVM is used only if the
flags are there, /dev/kvm opens, *and* a probe runs a vCPU: a 64 KiB firmware whose reset
vector writes to QEMU's isa-debug-exit port, so QEMU exits with status 3 within
milliseconds if the vCPU really ran, and is killed after a timeout if it did not.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from labfixtures.core.runner import run
from labfixtures.errors import CommandError, HostResourceError
from labfixtures.qemu.cmdline import QEMU

_lock = threading.Lock()
_cached: AccelInfo | None = None


@dataclass(frozen=True)
class AccelInfo:
    name: str  # 'kvm' or 'tcg'
    reason: str


def qemu_binary(qemu: str = QEMU) -> str:
    path = shutil.which(qemu)
    if path is None:
        raise HostResourceError("binary", qemu, "apt-get install qemu-system-x86",
                                problem=f"{qemu} is not installed")
    return path


@functools.lru_cache(maxsize=8)
def qemu_version(qemu: str = QEMU) -> str:
    """QEMU's version ('7.2.19'), from `QEMU --version` (asked once per binary)."""
    out = run([qemu_binary(qemu), "--version"], timeout=30).stdout
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else out.strip().split("\n")[0]


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    if cpuinfo is None:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    m = re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.M)
    return set(m.group(1).split()) if m else set()


def _probe_firmware() -> bytes:
    """64 KiB 'BIOS': at the reset vector, `mov al,1; out 0xf4,al; hlt`."""
    code = bytes([0xB0, 0x01, 0xE6, 0xF4, 0xF4])
    rom = bytearray(b"\xf4" * 65536)
    rom[-16:-16 + len(code)] = code
    return bytes(rom)


def probe(accel: str = "kvm", timeout: float = 5.0, qemu: str = QEMU) -> tuple[bool, str]:
    """Run one vCPU under ACCEL; True if it executed our reset-vector code."""
    binary = qemu_binary(qemu)
    with tempfile.TemporaryDirectory(prefix="lf-accel-") as tmp:
        bios = Path(tmp) / "probe.bin"
        bios.write_bytes(_probe_firmware())
        argv = [binary, "-nodefaults", "-no-user-config", "-display", "none",
                "-machine", "pc", "-accel", accel, "-m", "16", "-bios", str(bios),
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
        try:
            cp = run(argv, timeout=timeout, check=False)
        except CommandError:  # timed out
            return False, f"the {accel} probe VM did not finish within {timeout:g}s"
    if cp.returncode == 3:  # isa-debug-exit: (1 << 1) | 1
        return True, f"the {accel} probe ran a vCPU"
    err = cp.stderr.strip().splitlines()
    return False, f"the {accel} probe failed (exit {cp.returncode}): {' '.join(err[-2:])}"


def detect(probe_kvm: bool = True, timeout: float = 5.0, refresh: bool = False) -> AccelInfo:
    """KVM if the CPU, /dev/kvm and a probe all agree; TCG otherwise, with the reason.

    The answer is cached for the process (a probe costs up to TIMEOUT seconds).
    """
    global _cached
    with _lock:
        if _cached is not None and not refresh:
            return _cached
        _cached = _detect(probe_kvm, timeout)
        return _cached


def _detect(probe_kvm: bool, timeout: float) -> AccelInfo:
    flags = cpu_flags()
    if not flags & {"vmx", "svm"}:
        return AccelInfo("tcg", "the CPU shows no vmx/svm flag (no hardware virtualisation)")
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError as e:
        return AccelInfo("tcg", f"/dev/kvm cannot be opened: {e.strerror}")
    if not probe_kvm:
        return AccelInfo("kvm", "vmx/svm flag and /dev/kvm present (not probed)")
    ok, why = probe("kvm", timeout)
    return AccelInfo("kvm" if ok else "tcg", why)


def resolve(requested: str, probe_kvm: bool = True) -> AccelInfo:
    """'auto' -> detect(); 'kvm' refused with the reason if KVM does not work; 'tcg' as is."""
    if requested == "tcg":
        return AccelInfo("tcg", "asked for")
    info = detect(probe_kvm)
    if requested == "kvm" and info.name != "kvm":
        raise HostResourceError(
            "accelerator", "kvm",
            "use accel='auto' or 'tcg' (TCG emulation works everywhere, slower)",
            problem=f"KVM was asked for but is not usable: {info.reason}")
    return info


def host_tsc_khz() -> int | None:
    """Host TSC frequency for `tsc_early_khz` (no dmesg: it may be restricted)."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz").read_text())
    with contextlib.suppress(OSError):
        m = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", Path("/proc/cpuinfo").read_text(), re.M)
        if m:
            return round(float(m.group(1)) * 1000)
    return None


def vhost_net_available() -> bool:
    """vhost=on needs /dev/vhost-net (absent on these machines): detect, never assume."""
    try:
        fd = os.open("/dev/vhost-net", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True
