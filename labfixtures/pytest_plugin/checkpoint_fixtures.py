"""pytest side of checkpoints: VMs from a named checkpoint, and boot once / restore per test.

    def test_step2(lab, lab_vm):                   # boot once, then restore per test
        build_table1(lab)                           # the taps and switch the VM needs
        vm0 = lab_vm("vm0", tap=2, addresses=["203.0.113.130/26"], gateway=GW)

    @pytest.mark.checkpoint("step1")                # a state saved earlier, by name
    def test_after_step1(lab, lab_vm):
        build_table1(lab)
        vm0 = lab_vm("vm0", tap=2, ...)            # restored from vm0@step1, not booted

    def test_other(lab, vm_from_checkpoint):
        build_table1(lab)
        vm0 = vm_from_checkpoint("step1", "vm0")

`lab_vm(name, **kw)` takes `lab.vm()`'s arguments. The first time a worker asks for a VM
with given settings (image and its recipe hash, NICs, addresses, memory, profile, the QEMU
binary, host TSC), it boots it, waits for SSH and saves an automatic checkpoint in
`<cache>/checkpoints/.auto/`; every later request, in this run or the next ones, restores
that checkpoint instead of booting (~0.5 s instead of ~2.5 s for the tiny guest under TCG),
so each test starts from the same just-booted state. `--lab-no-checkpoints` boots every
time. Two xdist workers may both boot the first time; the first to finish keeps its
checkpoint (an atomic rename), the other's is dropped.

A `checkpoint(TAG, vm=None)` marker makes `lab_vm` restore VM@TAG from the store (all of
the test's VMs, or the names in `vm=`) and fails the test with the remedy when that
checkpoint does not exist. The lab's taps must exist before: a checkpoint holds a VM, not
the lab around it.

Known limit: a restored guest's wall clock is the clock at save time (no guest agent to
set it); compare durations inside the guest, not dates with the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labfixtures import checkpoint
from labfixtures.errors import LabError
from labfixtures.guestimages import kernels
from labfixtures.lab.lab import Lab
from labfixtures.lab.vm import VM
from labfixtures.qemu import builds
from labfixtures.qemu.accel import host_tsc_khz

AUTO_FORMAT = 2  # 2: keyed on the QEMU binary's identity, not its version
#: how each VM of a test came up, a `user_properties` entry `lab_came_up:VM`
CAME_UP_PREFIX = "lab_came_up:"
QEMU_HASHES = ".qemu-hashes.json"


@pytest.fixture(scope="session")
def checkpoint_store(request: pytest.FixtureRequest) -> checkpoint.CheckpointStore:
    """The checkpoint store (`--lab-checkpoint-store`, default `<cache>/checkpoints`);
    its leftovers of interrupted saves are cleaned once per session."""
    store = checkpoint.CheckpointStore(request.config.getoption("--lab-checkpoint-store"))
    if not hasattr(request.config, "workerinput"):
        store.cleanup()
        store.auto.cleanup()
    return store


@pytest.fixture
def vm_from_checkpoint(lab: Lab, checkpoint_store: checkpoint.CheckpointStore
                       ) -> Callable[..., VM]:
    """Factory: `vm_from_checkpoint(tag, name="vm0", source=None)` restores SOURCE@TAG
    (SOURCE defaults to NAME) as VM NAME of this test's lab, ready for SSH."""
    def make(tag: str, name: str = "vm0", source: str | None = None,
             timeout: float = 60.0) -> VM:
        try:
            return checkpoint.restore_into(lab, name, tag, store=checkpoint_store,
                                           source=source, timeout=timeout)
        except LabError as e:
            pytest.fail(str(e), pytrace=False)
    return make


@pytest.fixture
def lab_vm(lab: Lab, request: pytest.FixtureRequest,
           checkpoint_store: checkpoint.CheckpointStore,
           booted_vm: Callable[..., VM]) -> Callable[..., VM]:
    """Factory with `lab.vm()`'s arguments: a VM in the state just after its boot,
    restored from an automatic checkpoint when possible (see the module's doc)."""
    marker = request.node.get_closest_marker("checkpoint")

    def make(name: str, **kw: Any) -> VM:
        if marker is not None and _marked(marker, name):
            tag = marker.args[0] if marker.args else marker.kwargs["tag"]
            try:
                vm = checkpoint.restore_into(lab, name, tag, store=checkpoint_store)
            except LabError as e:
                pytest.fail(str(e), pytrace=False)
            _check_asked(vm, kw)
            return vm
        def note(how: str) -> None:
            request.node.user_properties.append((f"{CAME_UP_PREFIX}{name}", how))

        return booted_vm(lab, name, note=note, **kw)
    return make


@pytest.fixture(scope="session")
def booted_vm(request: pytest.FixtureRequest,
              checkpoint_store: checkpoint.CheckpointStore) -> Callable[..., VM]:
    """Factory `booted_vm(lab, name, **lab.vm arguments)`: `lab_vm` for any lab, a module's
    too (a module fixture cannot take the per-test `lab_vm`): the VM just after its boot,
    restored from its automatic checkpoint when there is one. What the test does next (a
    reboot, a resized disk) is its own: only the first boot is skipped. NOTE, if given, is
    told how the VM came up (`boot_once`); `start=False` only creates it."""
    no_checkpoints = request.config.getoption("--lab-no-checkpoints")
    reference = request.config.getoption("--lab-checkpoint-qemu", None)

    def make(lab: Lab, name: str, note: Callable[[str], None] | None = None,
             **kw: Any) -> VM:
        if no_checkpoints or kw.get("start") is False:
            vm = lab.vm(name, **kw)
            if note is not None and kw.get("start") is not False:
                note("booted")
            return vm
        return boot_once(lab, name, checkpoint_store.auto, reference=reference, note=note,
                         **kw)
    return make


def _marked(marker: pytest.Mark, name: str) -> bool:
    names = marker.kwargs.get("vm")
    if names is None:
        return True
    return name in ([names] if isinstance(names, str) else list(names))


def _check_asked(vm: VM, kw: dict[str, Any]) -> None:
    """A named checkpoint decides the VM's settings; say so if the test asked otherwise."""
    tap = kw.get("tap")
    if tap is not None and vm.nics and vm.nics[0].tap != tap:
        pytest.fail(f"checkpoint of {vm.name} is on tap{vm.nics[0].tap}, the test asks for "
                    f"tap{tap}", pytrace=False)
    kernel = kw.get("kernel")
    if kernel and kernels.kernel_of(vm.image)[0] != kernels.parse(kernel)[0]:
        pytest.fail(f"checkpoint of {vm.name} was saved on {vm.image.name} with kernel "
                    f"{' '.join(kernels.kernel_of(vm.image)) or '?'}, the test asks for "
                    f"kernel={kernel!r}", pytrace=False)


def auto_tag(vm: VM, qemu: str, hash_cache: Path | None = None) -> str:
    """The automatic checkpoint's tag: a hash of everything that shapes the booted state,
    the QEMU binary included (its identity, not its version: see checkpoint.qemuid)."""
    key = {"format": AUTO_FORMAT, "vm": vm.state().to_dict(),
           "qemu": checkpoint.qemu_identity(qemu, hash_cache),
           "spec": {k: str(v) for k, v in vars(vm.spec()).items()
                    if k not in ("serial_log", "qmp_socket", "uefi_vars")},
           "tsc": host_tsc_khz()}
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    return "auto-" + hashlib.sha256(blob).hexdigest()[:20]


def boot_once(lab: Lab, name: str, store: checkpoint.CheckpointStore, *,
              reference: str | None = None, note: Callable[[str], None] | None = None,
              **kw: Any) -> VM:
    """`lab.vm(name, **kw)`, restored from the automatic checkpoint of these settings if
    there is one, else booted, checked over SSH and checkpointed for the next time.

    REFERENCE (`--lab-checkpoint-qemu`, set by `labctl regress bisect`): the checkpoint is
    the one saved on that QEMU, and only that QEMU saves it; on another QEMU it is
    restored when it can be, else the VM boots and the checkpoint is kept as it is.
    NOTE is told how the VM came up: `restored`, `booted` or `booted: WHY`."""
    kw.pop("start", None)
    vm = lab.vm(name, start=False, **kw)
    running = str(checkpoint.qemuid.resolve(builds.selected()))
    keyed_on = str(checkpoint.qemuid.resolve(reference)) if reference else running
    tag = auto_tag(vm, keyed_on, store.root / QEMU_HASHES)
    saver = keyed_on == running
    why = "no checkpoint yet"
    if store.find(name, tag) is not None:
        try:
            checkpoint.restore(vm, tag, store=store, timeout=30.0)
            if note:
                note("restored")
            return vm
        except LabError as e:  # a damaged or unusable automatic checkpoint: boot instead
            why = f"restore failed: {e.problem}{_qemu_said(vm, e.problem)}"
            warnings.warn(f"automatic checkpoint {name}@{tag} unusable, booting: {e}",
                          stacklevel=2)
            vm.stop()
            if vm.overlay is not None:
                vm.overlay.unlink(missing_ok=True)
                vm.overlay = None
            if saver:
                with contextlib.suppress(LabError):
                    store.delete(name, tag)
    vm.start()
    vm.run("true", check=True)
    if note:
        note("booted" if saver else f"booted: {why}")
    if saver:
        checkpoint.save(vm, tag, store=store, exist_ok=True)
    return vm


def _qemu_said(vm: VM, known: str) -> str:
    """The errors QEMU logged during VM's failed restore (`virtio-net ctrl missing headers`,
    `Length mismatch: ...`) that KNOWN does not hold already, as '; QEMU: LINE | LINE', or
    '' (its warnings left out)."""
    lines = vm.machine.qemu_errors() if vm.machine is not None else []
    lines = [ln for ln in lines if ln[:200] not in known]
    return "; QEMU: " + " | ".join(ln[:200] for ln in lines[-3:]) if lines else ""
