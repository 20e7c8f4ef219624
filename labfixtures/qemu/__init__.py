"""QEMU machines: spec -> command line -> process, QMP, serial log. Knows taps, not switches."""

from __future__ import annotations

from labfixtures.qemu.accel import (
    AccelInfo,
    detect,
    host_tsc_khz,
    qemu_binary,
    qemu_version,
    vhost_net_available,
)
from labfixtures.qemu.cmdline import TUNED_CMDLINE, build_argv, kernel_cmdline
from labfixtures.qemu.images import create_disk, create_overlay, qemu_img_info, snapshots
from labfixtures.qemu.launch import LaunchInfo
from labfixtures.qemu.machine import Machine, tap_user
from labfixtures.qemu.qmp import QmpClient
from labfixtures.qemu.spec import PROFILES, READY_MARKER, MachineSpec, NicSpec

__all__ = [
    "PROFILES", "READY_MARKER", "TUNED_CMDLINE", "AccelInfo", "LaunchInfo", "Machine",
    "MachineSpec", "NicSpec", "QmpClient", "build_argv", "create_disk", "create_overlay",
    "detect", "host_tsc_khz", "kernel_cmdline", "qemu_binary", "qemu_img_info",
    "qemu_version", "snapshots", "tap_user", "vhost_net_available",
]
