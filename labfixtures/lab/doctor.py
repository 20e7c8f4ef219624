"""`labctl doctor`: can a lab run on this host, and how?

Each check gives a status (ok, warn, fail), what was found and, when it is not ok, the
remedy. Only a `fail` means no lab can run at all; a `warn` changes *how* labs run (TCG
instead of KVM, the userspace datapath instead of the kernel one).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from labfixtures.core import netns
from labfixtures.core.naming import PREFIX
from labfixtures.net.ovs import kernel_datapath_available
from labfixtures.qemu import accel
from labfixtures.qemu.guide import GuideHost, host_replacements
from labfixtures.qemu.spec import OVMF_CODE, OVMF_VARS

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    name: str
    status: str
    found: str
    remedy: str = ""


def _version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0].strip() if out else None


def check_privileges() -> Check:
    if os.geteuid() == 0:
        return Check("privileges", OK, "running as root")
    return Check("privileges", FAIL, f"running as uid {os.geteuid()}",
                 "run as root: `sudo labctl ...`, `sudo .venv/bin/pytest ...`")


def check_kernel() -> Check:
    return Check("kernel", OK, f"Linux {platform.release()}")


def check_tun() -> Check:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        os.close(fd)
        return Check("/dev/net/tun", OK, "present and usable (TAP interfaces)")
    except FileNotFoundError:
        return Check("/dev/net/tun", FAIL, "missing", "`modprobe tun`")
    except PermissionError:
        return Check("/dev/net/tun", FAIL, "not openable", "run as root")


def check_group(name: str = "kvm") -> Check:
    """The guide's taps belong to group kvm (`ip tuntap add ... group kvm`)."""
    import grp

    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        return Check(f"group {name}", WARN,
                     f"missing: a tap or lab file with `group: {name}` is refused",
                     f"`groupadd --system {name}` (./ci/setup does it)")
    return Check(f"group {name}", OK, f"present (gid {gid}), for the guide's taps")


def check_namespaces() -> Check:
    if os.geteuid() != 0:
        return Check("network namespaces", FAIL, "cannot be tested without root", "run as root")
    name = f"{PREFIX}doctor-{os.getpid()}"
    try:
        netns.create(name)
        netns.delete(name)
    except Exception as e:  # noqa: BLE001 - report whatever stops us
        return Check("network namespaces", FAIL, f"cannot create one: {e}",
                     "the kernel needs CONFIG_NET_NS; in a container, run it privileged")
    return Check("network namespaces", OK, "created and deleted a test namespace")


def check_ovs() -> list[Check]:
    missing = [t for t in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl")
               if not (shutil.which(t) or os.path.exists(f"/usr/sbin/{t}"))]
    if missing:
        return [Check("Open vSwitch", FAIL, f"missing: {', '.join(missing)}",
                      "apt-get install openvswitch-switch (or run ./ci/setup)")]
    version = _version(["ovs-vswitchd", "--version"]) or "unknown version"
    checks = [Check("Open vSwitch", OK, version)]
    if kernel_datapath_available():
        checks.append(Check("OVS datapath", OK, "kernel module loaded: datapath 'system'"))
    else:
        checks.append(Check("OVS datapath", WARN,
                            "no openvswitch kernel module: userspace datapath 'netdev' "
                            "(VLANs work; TCP needs checksum offload off, done for you)",
                            "for the kernel datapath: `modprobe openvswitch` where it exists"))
    return checks


def check_qemu() -> list[Check]:
    checks = []
    if shutil.which("qemu-system-x86_64"):
        checks.append(Check("QEMU", OK, _version(["qemu-system-x86_64", "--version"]) or "?"))
    else:
        checks.append(Check("QEMU", WARN, "qemu-system-x86_64 missing: no VM can start "
                            "(veth labs still run)", "apt-get install qemu-system-x86"))
    if shutil.which("qemu-img"):
        checks.append(Check("qemu-img", OK, _version(["qemu-img", "--version"]) or "?"))
    else:
        checks.append(Check("qemu-img", WARN, "missing: no VM disk can be made",
                            "apt-get install qemu-utils"))
    if checks[0].status == OK:
        try:
            info = accel.detect()
            status = OK if info.name == "kvm" else WARN
            remedy = "" if status == OK else ("VMs run under TCG (slower); use a host with "
                                              "VT-x/AMD-V exposed for KVM")
            checks.append(Check("accelerator", status, f"{info.name.upper()}: {info.reason}",
                                remedy))
        except Exception as e:  # noqa: BLE001
            checks.append(Check("accelerator", WARN, f"not determined: {e}"))
    return checks


def check_guide_profile() -> Check:
    """The `guide` machine profile (ovs-startup.sh's machine): its firmware, its TPM
    emulator, and what this host runs differently from the script."""
    missing = [what for what, ok in (("ovmf", OVMF_CODE.exists() and OVMF_VARS.exists()),
                                     ("swtpm", shutil.which("swtpm") is not None)) if not ok]
    if missing:
        return Check("guide profile", WARN, f"missing: {', '.join(missing)}",
                     f"apt-get install {' '.join(missing)}")
    try:
        host = GuideHost(accel.detect().name, accel.vhost_net_available(), os.cpu_count() or 1)
    except Exception as e:  # noqa: BLE001
        return Check("guide profile", WARN, f"accelerator not determined: {e}")
    said = host_replacements(host)
    if not said:
        return Check("guide profile", OK, "the script's machine as it is (OVMF, swtpm)")
    return Check("guide profile", WARN,
                 "runs with " + "; ".join(f"{k} -> {v}" for k, v in said.items()),
                 "nothing to do: each VM's launch record says what was replaced")


def run_checks() -> list[Check]:
    return [check_privileges(), check_kernel(), check_tun(), check_group(),
            check_namespaces(),
            *check_ovs(), *check_qemu(), check_guide_profile()]


def verdict(checks: list[Check]) -> bool:
    """True when a lab can run here (no check failed)."""
    return all(c.status != FAIL for c in checks)


def render(checks: list[Check]) -> str:
    mark = {OK: "ok  ", WARN: "warn", FAIL: "FAIL"}
    lines = []
    for c in checks:
        lines.append(f"[{mark[c.status]}] {c.name:<19} {c.found}")
        if c.remedy and c.status != OK:
            lines.append(f"       {'':<19} remedy: {c.remedy}")
    ok = verdict(checks)
    lines.append("")
    lines.append("A lab can run here." if ok else
                 "No lab can run here until the FAIL lines above are fixed.")
    return "\n".join(lines)


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"can_run": verdict(checks), "checks": [asdict(c) for c in checks]}
