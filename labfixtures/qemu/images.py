"""Disk images with qemu-img: differential overlays (guide A.3), blank disks, info."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from labfixtures.errors import CommandError, LabError
from labfixtures.qemu.cmdline import disk_format


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise LabError("qemu-img is not installed", "apt-get install qemu-utils")
    return path


def _run(argv: list[str]) -> str:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if cp.returncode != 0:
        raise CommandError(argv, cp.returncode, cp.stderr)
    return cp.stdout


def create_overlay(base: Path, path: Path, base_format: str | None = None) -> Path:
    """A qcow2 that records only the changes over BASE (the guide's `diff-img.sh`).

    The backing path is stored absolute and its format given with -F: without -F, recent
    qemu-img refuses to guess (probing a raw backing file is a security hole).
    """
    base = Path(base).resolve()
    if not base.is_file():
        raise LabError(f"base image {base} does not exist", "build or download it first")
    path = Path(path)
    if path.exists():
        raise LabError(f"overlay {path} already exists",
                       "delete it (its changes are lost) or choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = base_format or qemu_img_info(base).get("format") or disk_format(base, None)
    _run([qemu_img(), "create", "-q", "-f", "qcow2", "-b", str(base), "-F", fmt, str(path)])
    return path


def create_disk(path: Path, size: str, fmt: str = "qcow2") -> Path:
    """A blank disk (for an ISO install): SIZE like '3G'."""
    path = Path(path)
    if path.exists():
        raise LabError(f"disk {path} already exists", "delete it or choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([qemu_img(), "create", "-q", "-f", fmt, str(path), size])
    return path


def qemu_img_info(path: Path, backing_chain: bool = False) -> dict:
    """`qemu-img info --output=json` (format, virtual-size, backing-filename, snapshots...)."""
    argv = [qemu_img(), "info", "--output=json", "-U"]
    if backing_chain:
        argv.append("--backing-chain")
    return json.loads(_run([*argv, str(path)]))


def snapshots(path: Path) -> list[str]:
    """Names of the internal snapshots (savevm) stored in a qcow2."""
    return [s["name"] for s in qemu_img_info(path).get("snapshots", [])]
