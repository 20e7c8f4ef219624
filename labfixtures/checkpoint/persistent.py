"""Checkpoints of the VMs of a persistent lab (`labctl up`): reached through its run
directory, their QEMU started by another process.

`save_lab_vm()` reads the VM's vm.json, command line and QMP socket from the run
directory and hands them to the one save (`operations.save_running`); `restore_lab_vm()`
stops that QEMU and starts a new one resuming the checkpoint, left running as `labctl up`
leaves its VMs, and records its pid in lab.json for `labctl status`.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import time
from pathlib import Path

from labfixtures import guestimages
from labfixtures.checkpoint.manifest import check_name
from labfixtures.checkpoint.operations import RunningVm, restore, save_running
from labfixtures.checkpoint.snapshot import SocketMonitor
from labfixtures.checkpoint.store import Checkpoint, CheckpointStore
from labfixtures.core import netns, procs
from labfixtures.core.naming import RUN_BASE
from labfixtures.errors import CheckpointError, LabError
from labfixtures.guestimages import GuestImage
from labfixtures.guests.ssh import GuestSSH
from labfixtures.lab.state import LAB_STATE, VM_STATE, LabState, VmState
from labfixtures.lab.vm import VM
from labfixtures.lab.vmhost import KNOWN_HOSTS, tap_name
from labfixtures.net.netlink import Netlink


def _labid(lab: str) -> str:
    return lab if lab.startswith("lf-") else f"lf-{lab}"


class LabVM:
    """A VM of a lab run by another process (`labctl up`), found in its run directory."""

    def __init__(self, lab: str, name: str) -> None:
        self.labid = _labid(lab)
        self.name = check_name(name, "VM name")
        self.rundir = RUN_BASE / self.labid
        self.dir = self.rundir / "vms" / name
        if not self.rundir.is_dir():
            raise LabError(f"no lab named {self.labid!r}", "list labs with `labctl status`")

    def state(self) -> VmState:
        try:
            return VmState.load(self.dir / VM_STATE)
        except FileNotFoundError:
            raise LabError(f"lab {self.labid} has no VM {self.name!r} started by labfixtures",
                           "check the name with `labctl status`") from None

    def _cmdline(self) -> list[str]:
        f = self.dir / f"{self.name}.cmdline"
        return f.read_text().splitlines() if f.exists() else []

    def argv(self) -> list[str]:
        lines = self._cmdline()
        return shlex.split(lines[-1]) if lines else []

    def accel(self) -> str | None:
        m = re.match(r"# accel: (\w+)", "\n".join(self._cmdline()))
        return m.group(1) if m else None

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.dir / f"{self.name}.pid").read_text())
            if Path(f"/proc/{pid}").exists():
                return pid
        return None

    def monitor(self) -> SocketMonitor:
        argv = self.argv()
        sock = next((a.split(",")[0].removeprefix("unix:")
                     for prev, a in zip(argv, argv[1:], strict=False) if prev == "-qmp"), None)
        if sock is None or self.pid() is None:
            raise CheckpointError(f"VM {self.name} of lab {self.labid} is not running",
                                  "restore it from a checkpoint, or `labctl up` the lab again",
                                  reason="not-running", vm=self.name)
        return SocketMonitor(Path(sock), self.name)

    @property
    def overlay(self) -> Path | None:
        p = self.dir / f"{self.name}.qcow2"
        return p if p.exists() else None


def _image(state: VmState, store: CheckpointStore) -> GuestImage:
    return store.images.load(state.image, state.recipe_hash) or guestimages.get(state.image)


def save_lab_vm(lab: str, name: str, tag: str, *, store: CheckpointStore | None = None,
                replace: bool = False) -> Checkpoint:
    """`labctl checkpoint save LAB VM TAG`: `save()` of a VM reached by its run directory."""
    store = store or CheckpointStore()
    check_name(tag, "checkpoint tag")
    target = LabVM(lab, name)
    state = target.state()
    if not replace:
        store.refuse_existing(name, tag)
    image = _image(state, store)
    mon = target.monitor()
    try:
        return save_running(RunningVm(state, image, mon, target.overlay, target.accel(),
                                      target.argv(), target.labid),
                            tag, store=store, replace=replace)
    finally:
        mon.close()


class RunDirHost:
    """The `VmHost` of a VM restored into a lab run by another process: what `VM` needs
    to start QEMU there (namespace, run directory, taps)."""

    def __init__(self, labid: str, rundir: Path) -> None:
        self._labid = labid
        self._rundir = rundir
        self.nl = Netlink(labid)

    @property
    def labid(self) -> str:
        return self._labid

    @property
    def ns(self) -> str:
        return self._labid

    @property
    def rundir(self) -> Path:
        return self._rundir

    @property
    def keep_overlays(self) -> Path | None:
        return None

    @property
    def known_hosts(self) -> Path:
        return self._rundir / KNOWN_HOSTS

    def has_tap(self, number: int) -> bool:
        return self.nl.exists(tap_name(number))

    def tap_user(self, number: int) -> str | None:
        return None  # the VM being restored is the one on its taps

    def ssh_scope(self, tap: int) -> str:
        return tap_name(tap)  # unused: SSH goes to the target recorded in lab.json

    def close(self) -> None:
        self.nl.close()


def restore_lab_vm(lab: str, name: str, tag: str, *, store: CheckpointStore | None = None,
                   source: str | None = None, timeout: float = 60.0) -> float:
    """`labctl checkpoint restore LAB VM TAG`: stop the VM's QEMU if it runs, start a new
    one (left running, as `labctl up` does) resuming the checkpoint; returns the seconds
    until SSH answered (or QEMU ran, for a VM without an SSH target in lab.json)."""
    store = store or CheckpointStore()
    target = LabVM(lab, name)
    if not netns.exists(target.labid):
        raise LabError(f"lab {target.labid} has no namespace (it is not up)",
                       "`labctl up` it first")
    saved = store.get(source or name, tag).manifest.vm
    host = RunDirHost(target.labid, target.rundir)
    try:
        vm = VM(host, name, saved.nics, saved.options(), _image(saved, store))
        vm.check_taps()
        if (pid := target.pid()) is not None:
            with contextlib.suppress(LabError):
                mon = target.monitor()
                with contextlib.suppress(LabError):
                    mon.qmp("quit")
                mon.close()
            procs.terminate([pid], grace=3.0)
        t0 = time.monotonic()
        restore(vm, tag, store=store, source=source, wait=False)
        ready = _wait_lab_ssh(target, vm, timeout)
        _record_pid(target, vm)
        return ready if ready is not None else time.monotonic() - t0
    finally:
        host.close()


def _wait_lab_ssh(target: LabVM, vm: VM, timeout: float) -> float | None:
    with contextlib.suppress(OSError, ValueError, LabError, KeyError):
        v = LabState.load(target.rundir / LAB_STATE).vms[vm.name]
        with GuestSSH(v.host, v.port, user=v.user, key=v.key, netns=target.labid,
                      known_hosts=target.rundir / KNOWN_HOSTS).connect(deadline=timeout):
            pass
        return vm.machine.uptime() if vm.machine is not None else None
    return None


def _record_pid(target: LabVM, vm: VM) -> None:
    """Keep `labctl status` right: lab.json records each VM's QEMU pid."""
    f = target.rundir / LAB_STATE
    with contextlib.suppress(OSError, ValueError, LabError):
        state = LabState.load(f)
        if vm.name in state.vms and vm.machine is not None:
            state.vms[vm.name].pid = vm.machine.pid
            state.save(f)
