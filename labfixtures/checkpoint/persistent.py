"""Checkpoints of the VMs of a persistent lab (`labctl up`): reached through its run
directory (`lab.persistent.PersistentLab`), their QEMU started by another process.

`save_lab_vm()` reads the VM's vm.json and launch record from the run directory, connects
to its QMP socket and hands them to the one save (`operations.save_running`);
`restore_lab_vm()` stops that QEMU and starts a new one resuming the checkpoint, left
running as `labctl up` leaves its VMs, and records it in lab.json for `labctl status`.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from labfixtures import guestimages
from labfixtures.checkpoint.manifest import check_name
from labfixtures.checkpoint.operations import RunningVm, restore, save_running, set_clock
from labfixtures.checkpoint.store import Checkpoint, CheckpointStore
from labfixtures.core import netns, procs
from labfixtures.errors import CheckpointError, LabError
from labfixtures.guestimages import GuestImage
from labfixtures.lab.persistent import PersistentLab
from labfixtures.lab.state import VmState
from labfixtures.lab.vm import VM
from labfixtures.qemu.launch import LaunchInfo
from labfixtures.qemu.qmp import QmpClient


class LabVM:
    """A VM of a persistent lab as its run directory shows it: settings, launch, QMP."""

    def __init__(self, lab: PersistentLab, name: str) -> None:
        self.lab = lab
        self.name = check_name(name, "VM name")
        self.dir = lab.rundir / "vms" / name

    def state(self) -> VmState:
        return self.lab.vm_state(self.name)

    def launch(self) -> LaunchInfo | None:
        return LaunchInfo.read(self.dir, self.name)

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.dir / f"{self.name}.pid").read_text())
            if Path(f"/proc/{pid}").exists():
                return pid
        return None

    def monitor(self) -> QmpClient:
        argv = list(launch.argv) if (launch := self.launch()) is not None else []
        sock = next((a.split(",")[0].removeprefix("unix:")
                     for prev, a in zip(argv, argv[1:], strict=False) if prev == "-qmp"), None)
        if sock is None or self.pid() is None:
            raise CheckpointError(f"VM {self.name} of lab {self.lab.labid} is not running",
                                  "restore it from a checkpoint, or `labctl up` the lab again",
                                  reason="not-running", vm=self.name)
        return QmpClient(sock, name=self.name, timeout=60).connect()

    @property
    def overlay(self) -> Path | None:
        p = self.dir / f"{self.name}.qcow2"
        return p if p.exists() else None


def _image(state: VmState, store: CheckpointStore) -> GuestImage:
    return store.images.load(state.image, state.recipe_hash) or guestimages.get(state.image)


def save_lab_vm(lab: str, name: str, tag: str, *, store: CheckpointStore | None = None,
                replace: bool = False) -> Checkpoint:
    """`labctl checkpoint save LAB VM TAG`: `save()` of a VM of a persistent lab."""
    store = store or CheckpointStore()
    check_name(tag, "checkpoint tag")
    target = LabVM(PersistentLab.open(lab), name)
    state = target.state()
    if not replace:
        store.refuse_existing(name, tag)
    image = _image(state, store)
    launch = target.launch()
    with target.monitor() as mon:
        return save_running(RunningVm(state, image, mon, target.overlay,
                                      launch.accel if launch else None,
                                      launch.argv if launch else (), target.lab.labid),
                            tag, store=store, replace=replace)


def restore_lab_vm(lab: str, name: str, tag: str, *, store: CheckpointStore | None = None,
                   source: str | None = None, timeout: float = 60.0) -> float:
    """`labctl checkpoint restore LAB VM TAG`: stop the VM's QEMU if it runs, start a new
    one (left running, as `labctl up` does) resuming the checkpoint; returns the seconds
    until SSH answered (or QEMU ran, for a VM without an SSH target in lab.json)."""
    store = store or CheckpointStore()
    host = PersistentLab.open(lab)
    target = LabVM(host, name)
    if not netns.exists(host.labid):
        raise LabError(f"lab {host.labid} has no namespace (it is not up)",
                       "`labctl up` it first")
    saved = store.get(source or name, tag).manifest.vm
    vm = VM(host, name, saved.nics, saved.options(), _image(saved, store))
    vm.check_taps()
    if (pid := target.pid()) is not None:
        with contextlib.suppress(LabError), target.monitor() as mon:
            mon.command("quit")
        procs.terminate([pid], grace=3.0)
    t0 = time.monotonic()
    restore(vm, tag, store=store, source=source, wait=False)
    ready = None
    with contextlib.suppress(LabError, OSError):
        with host.ssh_client(name).connect(deadline=timeout) as c:
            ready = vm.machine.uptime() if vm.machine is not None else None
            set_clock(c.run)
    with contextlib.suppress(LabError, OSError, ValueError):
        host.record_vm(vm)  # keep `labctl status` right (the new QEMU's pid)
    return ready if ready is not None else time.monotonic() - t0
