"""Talking to a running QEMU: the live snapshot of its memory (and disk) into files.

The memory state (QEMU's vmstate) always goes into a qcow2 of its own, `state.qcow2`,
hot-added to the running QEMU (`blockdev-add`) for the save and removed after it, with no
device in the guest. QMP `snapshot-save` names that node as the vmstate target. So the
tiny image, which has no disk (kernel + initramfs, its root file system lives in RAM),
needs nothing at boot to be checkpointable, and each saved state is one file holding
exactly one snapshot. A VM with a disk (a qcow2 overlay) gets an internal snapshot of that
overlay in the same `snapshot-save`; the overlay is copied while the guest is paused
(consistent), then the snapshot is deleted from the live overlay.

Restoring is the other way round: QEMU started with the state file as a drive without a
device (`state_drive_args()`) and `-loadvm TAG`. With a disk, QEMU is started paused and
loads TAG by QMP `snapshot-load` naming the state file's node (`load_into()`): `-loadvm`
takes the memory from the first drive that can hold a snapshot, which is then the overlay,
and refuses its disk-only snapshot.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from labfixtures.errors import CheckpointError
from labfixtures.qemu.accel import qemu_version
from labfixtures.qemu.images import create_disk

__all__ = ["Monitor", "load_into", "major_minor", "qemu_version", "snapshot_to",
           "state_drive_args"]

_nodes = itertools.count()


class Monitor(Protocol):
    """A QMP connection: a `qemu.Machine`, or a `qemu.qmp.QmpClient` (a QEMU started by
    another process)."""

    @property
    def qmp(self) -> Callable[..., object]:
        """`qmp(command, **args)`: run a QMP command, its return value."""
        ...


def major_minor(version: str) -> str:
    """`7.2` of `7.2.22`: a saved state restores only into the same QEMU line."""
    return ".".join(version.split()[0].split(".")[:2]) if version else ""


#: the block node of the state file at a restore (a node name may not be a drive's id)
STATE_NODE = "lfstatenode"


def state_drive_args(state: Path) -> list[str]:
    """QEMU arguments attaching STATE as a drive without a guest device: where `-loadvm`
    (or `load_into()`) finds the memory state of a VM."""
    return ["-drive", f"if=none,id=lfstate,node-name={STATE_NODE},format=qcow2,"
                      f"file={str(state).replace(',', ',,')}"]


def load_into(mon: Monitor, tag: str, overlay: Path, timeout: float = 600.0) -> None:
    """Load TAG into a QEMU started paused (`-S`) with the state drive and the disk
    OVERLAY: the memory from the state file, the disk from its own snapshot; then run.
    The overlay's snapshot is deleted before the guest runs: the VM's disk is an overlay
    like any other (`qemu-img resize` refuses an image holding snapshots)."""
    disk = _disk_node(mon, overlay)
    _run_job(mon, "snapshot-load", f"{STATE_NODE}-load", timeout=timeout, tag=tag,
             vmstate=STATE_NODE, devices=[STATE_NODE, disk])
    _run_job(mon, "snapshot-delete", f"{STATE_NODE}-del", timeout=timeout, tag=tag,
             devices=[disk])
    mon.qmp("cont")


def _list(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _run_job(mon: Monitor, command: str, job_id: str, timeout: float = 600.0,
             **args: object) -> None:
    mon.qmp(command, **{"job-id": job_id}, **args)
    deadline = time.monotonic() + timeout
    while True:
        job = next((j for j in _list(mon.qmp("query-jobs")) if j.get("id") == job_id), None)
        if job is None or job.get("status") in ("concluded", "null"):
            break
        if time.monotonic() > deadline:
            raise CheckpointError(f"{command} did not finish within {timeout:g}s",
                                  "see the QEMU log in the VM's run directory",
                                  reason="timeout")
        time.sleep(0.005)
    mon.qmp("job-dismiss", id=job_id)
    if job is not None and job.get("error"):
        raise CheckpointError(f"{command} failed: {job['error']}",
                              "see the QEMU log in the VM's run directory", reason="qemu")


def _disk_node(mon: Monitor, overlay: Path) -> str:
    """The block node of the drive whose file is OVERLAY. Found by its file, not by the
    drive's id: labfixtures' machines call it `disk0`, the guide's script `drive0`."""
    want = os.path.realpath(overlay)
    for b in _list(mon.qmp("query-block")):
        inserted = b.get("inserted")
        if isinstance(inserted, Mapping) and \
                os.path.realpath(str(inserted.get("file", ""))) == want:
            return str(inserted["node-name"])
    raise CheckpointError(f"the VM has no drive on {overlay} to snapshot",
                          "start the VM with its overlay as a drive (VM.start() does)",
                          reason="qemu")


def snapshot_to(mon: Monitor, tag: str, state: Path, overlay: Path | None = None,
                disk_copy: Path | None = None) -> dict[str, float]:
    """Save the VM's memory into STATE (a new qcow2) under TAG, and, if the VM has a
    qcow2 OVERLAY, snapshot it too and copy it to DISK_COPY while the guest is paused.
    The live VM is left as it was: running, with no state file and no snapshot kept.
    Returns the seconds the snapshot took and the guest was paused."""
    create_disk(state, "1M")
    node = f"lfsave{os.getpid()}x{next(_nodes)}"
    mon.qmp("blockdev-add", driver="qcow2", **{"node-name": node},
            file={"driver": "file", "filename": str(state)})
    timings: dict[str, float] = {}
    try:
        devices = [node]
        disk = _disk_node(mon, overlay) if overlay is not None else None
        if disk is not None:
            devices.append(disk)
        status = mon.qmp("query-status")
        running = bool(status.get("running")) if isinstance(status, Mapping) else True
        t0 = time.monotonic()
        if disk is not None and running:
            mon.qmp("stop")  # the copy below must see no guest write
        try:
            _run_job(mon, "snapshot-save", f"{node}-save", tag=tag, vmstate=node,
                     devices=devices)
            timings["snapshot"] = time.monotonic() - t0
            if disk is not None and overlay is not None and disk_copy is not None:
                shutil.copyfile(overlay, disk_copy)
                _run_job(mon, "snapshot-delete", f"{node}-del", tag=tag, devices=[disk])
        finally:
            if disk is not None and running:
                mon.qmp("cont")
            timings["paused"] = time.monotonic() - t0
    finally:
        mon.qmp("blockdev-del", **{"node-name": node})
    return timings
