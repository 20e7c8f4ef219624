"""Disk images with qemu-img: differential overlays (guide A.3), blank disks, info."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from labfixtures.core.runner import run
from labfixtures.errors import HostResourceError, LabError
from labfixtures.qemu.cmdline import disk_format


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise HostResourceError("binary", "qemu-img", "apt-get install qemu-utils",
                                problem="qemu-img is not installed")
    return path


def _run(argv: list[str]) -> str:
    return run(argv, timeout=300, missing="apt-get install qemu-utils").stdout


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


def qemu_img_info(path: Path, backing_chain: bool = False) -> dict[str, Any]:
    """`qemu-img info --output=json` (format, virtual-size, backing-filename, snapshots...)."""
    argv = [qemu_img(), "info", "--output=json", "-U"]
    if backing_chain:
        argv.append("--backing-chain")
    info: dict[str, Any] = json.loads(_run([*argv, str(path)]))
    return info


def snapshots(path: Path) -> list[str]:
    """Names of the internal snapshots (savevm) stored in a qcow2."""
    return [s["name"] for s in qemu_img_info(path).get("snapshots", [])]


def check(path: Path) -> str | None:
    """`qemu-img check` of a qcow2: None if it is sound (leaked clusters alone are
    harmless), else what qemu-img found."""
    r = run([qemu_img(), "check", "-q", "-f", "qcow2", str(path)], timeout=300, check=False)
    if r.returncode in (0, 3):  # 3: leaked clusters only
        return None
    return (r.stderr or r.stdout).strip()[:300] or f"exit status {r.returncode}"


def rebase(overlay: Path, base: Path, base_format: str = "qcow2") -> None:
    """Point the qcow2 OVERLAY at BASE without touching its data (`qemu-img rebase -u`):
    for an overlay carried to where BASE holds the very bytes it was made on."""
    _run([qemu_img(), "rebase", "-u", "-f", "qcow2", "-b", str(Path(base).resolve()),
          "-F", base_format, str(overlay)])
