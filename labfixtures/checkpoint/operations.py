"""Save a running VM's disk and memory, live, and bring it back later: in the same lab, or
as a VM of a lab built later (`restore_into`).

    cp = checkpoint.save(vm, "step1")          # live: the guest pauses ~0.15 s (tiny)
    ...                                         # the guest changes things
    checkpoint.restore(vm, "step1")             # same MAC, same tap; SSH answers again
    checkpoint.restore_into(other_lab, "vm0", "step1")   # a fresh lab (its taps exist)

How a state is kept is decided in snapshot.py (see docs/host-facts.md, "Checkpoints").
A save writes `state.qcow2` (and `disk.qcow2` for a VM with a disk) and the manifest into
a hidden directory of the store, renamed into place at the end. Restoring = stop QEMU,
copy the files into the VM's run directory (`-loadvm` writes to them, the store must stay
pristine), start QEMU with the same command line (same MAC, same tap) plus the state drive
and `-loadvm TAG`. No boot: ready when SSH answers (the first attempt after a restore may
fail, `GuestSSH.connect` retries). While it waits, QEMU is watched (`Machine.trouble()`): a
restore QEMU reports as broken (it exits, it writes an error such as `virtio-net ctrl missing
headers` on its stderr, its run state goes bad) fails within a second or so, with QEMU's
words, instead of after the SSH timeout.

`save_running()` is the one save: `save()` gives it a VM of this process, the persistent
lab module (persistent.py) a VM that `labctl up` started.
"""

from __future__ import annotations

import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labfixtures.checkpoint import memfile, qemuid
from labfixtures.checkpoint.manifest import (
    DISK_FILE,
    STATE_FILE,
    ImageIdentity,
    Manifest,
    check_name,
    differences,
    file_entries,
)
from labfixtures.checkpoint.snapshot import (
    Monitor,
    load_into,
    qemu_version,
    snapshot_to,
    state_drive_args,
)
from labfixtures.checkpoint.store import Checkpoint, CheckpointStore
from labfixtures.errors import CheckpointError, LabError
from labfixtures.guestimages import GuestImage
from labfixtures.lab.lab import Lab
from labfixtures.lab.state import VmState
from labfixtures.lab.vm import VM
from labfixtures.qemu import builds
from labfixtures.qemu.images import rebase


@dataclass(frozen=True)
class RunningVm:
    """What a live save needs of a running VM, whichever process started its QEMU."""

    state: VmState
    image: GuestImage
    monitor: Monitor
    overlay: Path | None = None
    accel: str | None = None
    argv: Sequence[str] = ()
    lab: str | None = None
    qemu: str | None = None  # the binary it runs (default: the session's, builds.selected())


def save_running(target: RunningVm, tag: str, *, store: CheckpointStore,
                 replace: bool = False, exist_ok: bool = False) -> Checkpoint:
    """Save TARGET's disk and memory as NAME@TAG in STORE (the one save)."""
    name = target.state.name
    check_name(tag, "checkpoint tag")
    existing = store.find(name, tag)
    if existing is not None and exist_ok:
        return existing
    if existing is not None and not replace:
        store.refuse_existing(name, tag)
    image = ImageIdentity.of(target.image, store.hash_cache)
    tmp = store.tmpdir()
    try:
        t0 = time.monotonic()
        overlay = target.overlay
        timings = snapshot_to(target.monitor, tag, tmp / STATE_FILE, overlay,
                              tmp / DISK_FILE if overlay is not None else None)
        timings["save"] = time.monotonic() - t0
        Manifest(tag=tag, vm=target.state, image=image, files=file_entries(tmp),
                 created=time.time(), lab=target.lab, accel=target.accel,
                 qemu_argv=tuple(target.argv),
                 qemu_version=qemu_version(target.qemu or builds.selected()),
                 timings=timings).write(tmp)
        return store.commit(tmp, name, tag, replace=replace, exist_ok=exist_ok)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save(vm: VM, tag: str, *, store: CheckpointStore | None = None,
         replace: bool = False, exist_ok: bool = False) -> Checkpoint:
    """Save the running VM's disk and memory as VM.name@TAG, live (the guest pauses for
    the snapshot only, plus the copy of its overlay if it has a disk). EXIST_OK: return
    the stored one if there is one already; REPLACE: replace it."""
    store = store or CheckpointStore()
    if exist_ok and (cp := store.find(vm.name, tag)) is not None:
        return cp
    machine = vm.machine
    if machine is None or not machine.running:
        raise CheckpointError(f"VM {vm.name} is not running: a checkpoint is taken live",
                              "start it first", reason="not-running", vm=vm.name, tag=tag)
    vm.stop_ssh()  # a session open in the saved guest would come back half-open
    lines = machine.cmdline_file.read_text().splitlines() \
        if machine.cmdline_file.exists() else []
    target = RunningVm(vm.state(), vm.image, machine, vm.overlay,
                       machine.accel.name if machine.accel else None,
                       shlex.split(lines[-1]) if lines else [], vm.lab.labid, machine.qemu)
    return save_running(target, tag, store=store, replace=replace, exist_ok=exist_ok)


def _image_for(cp: Checkpoint, current: GuestImage, store: CheckpointStore) -> GuestImage:
    want = cp.image
    if current.name == want.name and current.recipe_hash == want.recipe_hash:
        return current
    img = store.images.load(want.name, want.recipe_hash)
    if img is None:
        raise CheckpointError(f"checkpoint {cp.name} was saved on image {want.label}, "
                              f"which is not in {store.images.root} (the current one is "
                              f"{current.name}-{current.recipe_hash})",
                              "save the checkpoint again on the current image, or build the "
                              "image it was saved on", reason="mismatch", vm=cp.vm,
                              tag=cp.tag)
    return img


def restore(vm: VM, tag: str, *, store: CheckpointStore | None = None,
            source: str | None = None, wait: bool = True, timeout: float = 60.0,
            use_memfile: bool = True) -> VM:
    """Bring VM back to checkpoint SOURCE@TAG (SOURCE: VM's own name by default): the
    QEMU is restarted with the same command line, so the same MAC on the same tap, and
    resumes the saved state; with WAIT, returns once SSH answers. A VM without a disk
    maps the checkpoint's RAM from a file unpacked once (memfile.py) unless USE_MEMFILE
    is false: then, as for a VM with a disk, `-loadvm` reads it back."""
    store = store or CheckpointStore()
    cp = store.get(source or vm.name, tag)
    diff = differences(cp.manifest.vm, vm.state())
    if diff:
        raise CheckpointError(f"VM {vm.name} does not match the machine checkpoint "
                              f"{cp.name} was saved on: " + "; ".join(diff),
                              "create the VM with the checkpoint's settings "
                              "(checkpoint.restore_into() does), or save a new checkpoint",
                              reason="mismatch", vm=cp.vm, tag=cp.tag)
    image = _image_for(cp, vm.image, store)
    vm.stop()
    vm.dir.mkdir(parents=True, exist_ok=True)
    state = vm.dir / f"{vm.name}.state.qcow2"
    state.unlink(missing_ok=True)
    overlay = None
    if (disk := cp.file(DISK_FILE)) is not None:
        if image.disk is None:
            raise CheckpointError(f"checkpoint {cp.name} has a disk but image {image.name} "
                                  "has none", "build the image the checkpoint was saved on",
                                  reason="mismatch", vm=cp.vm, tag=cp.tag)
        overlay = vm.dir / f"{vm.name}.qcow2"
        overlay.unlink(missing_ok=True)
        shutil.copyfile(disk, overlay)
        rebase(overlay, image.disk, cp.image.disk_format or "qcow2")
    elif vm.overlay is not None:
        vm.overlay.unlink(missing_ok=True)
    vm.image = image
    vm.overlay = overlay
    use_memfile = use_memfile and memfile.eligible(vm)
    qemu_id = qemuid.identity(builds.selected(), store.hash_cache) if use_memfile else ""
    ram = memfile.files(cp, qemu_id) if use_memfile else None
    if ram is None:
        shutil.copyfile(cp.path / STATE_FILE, state)  # -loadvm writes to it
        if use_memfile:
            ram = memfile.unpack(vm, cp, qemu_id, state_drive_args(state), timeout)
    if ram is not None:
        memfile.start(vm, cp, ram, timeout)
    elif overlay is None:
        vm.start(wait=False, loadvm=tag, extra_args=state_drive_args(state))
    else:  # -loadvm would look for the memory in the overlay (snapshot.load_into)
        vm.start(wait=False, extra_args=[*state_drive_args(state), "-S"])
        vm.loadvm = tag
        assert vm.machine is not None
        load_into(vm.machine, tag, overlay, timeout)
    if wait:
        _wait_restored(vm, cp, timeout)
    return vm


def _check_restored(vm: VM, cp: Checkpoint) -> None:
    said = vm.machine.trouble() if vm.machine is not None else "QEMU is not started"
    if said:
        raise CheckpointError(f"QEMU reported an error restoring {cp.name} into VM {vm.name}:"
                              f" {said}", f"see {vm.dir}; a state saved by another QEMU may "
                              "not load in this one: boot instead, or save it again here",
                              reason="qemu", vm=cp.vm, tag=cp.tag)


def _wait_restored(vm: VM, cp: Checkpoint, timeout: float) -> None:
    """Wait for SSH after a restore, up to TIMEOUT, looking at QEMU between tries: SSH is
    tried for 1 s, then 2 s, 3 s... (each try longer, as a guest slow to answer needs),
    QEMU's `trouble()` asked before and after each (a CheckpointError with its words)."""
    end = time.monotonic() + timeout
    tries = 0
    while True:
        _check_restored(vm, cp)
        tries += 1
        try:
            vm.ssh(deadline=max(min(float(tries), end - time.monotonic()), 0.0))
            break
        except LabError as e:  # GuestSSH's "no SSH connection ... after Ns": try again
            if type(e) is not LabError or not e.problem.startswith("no SSH connection"):
                raise
            if time.monotonic() >= end:
                raise LabError(f"{e.problem} (restoring {cp.name}: {timeout:g}s in all)",
                               e.remedy) from None
    _check_restored(vm, cp)
    assert vm.machine is not None
    vm.boot_seconds = vm.machine.uptime()
    set_clock(vm.run)


def set_clock(run: Callable[[str], object]) -> None:
    """A restored guest's clock goes on from the time of the save: set it to the host's,
    to the second (busybox's `date` takes whole seconds), through RUN (a guest command)."""
    run(f"date -u -s @{round(time.time())} >/dev/null 2>&1")


def restore_into(lab: Lab, name: str, tag: str, *, store: CheckpointStore | None = None,
                 source: str | None = None, wait: bool = True, timeout: float = 60.0) -> VM:
    """Restore checkpoint SOURCE@TAG (SOURCE defaults to NAME) as VM NAME of LAB: the VM
    of that name if the lab has one, else a new one with the checkpoint's settings (its
    taps must exist in LAB, plugged in as when the checkpoint was saved)."""
    store = store or CheckpointStore()
    vm = lab.vms.get(name)
    if vm is None:
        s = store.get(source or name, tag).manifest.vm
        vm = lab.vm(name, nics=s.nics, image=s.image, memory=s.memory_mb, vcpus=s.vcpus,
                    profile=s.profile, hostname=s.hostname, extra_args=s.extra_args,
                    start=False)
        vm.opts.extra_config.update(s.extra_config)
    return restore(vm, tag, store=store, source=source, wait=wait, timeout=timeout)
