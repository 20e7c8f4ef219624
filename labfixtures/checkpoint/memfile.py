"""Restoring without reading the memory back: the saved RAM as a file, mapped copy-on-write.

`-loadvm` copies the saved RAM into the new QEMU page by page: ~0.1 s for the 73 MiB of a
tiny guest, a third of a restore. So, once per checkpoint and QEMU binary, its state is
unpacked into two files beside it, in `memfile-<QEMU>/`:

* `ram.img`: the guest's RAM, sparse. A QEMU whose RAM is that file, shared
  (`memory-backend-file,share=on`), is started paused with `-loadvm`: it writes the RAM
  into the file;
* `devices.state`: everything else, the migration stream that QEMU then sends with the
  `x-ignore-shared` capability, which leaves shared RAM out (62 kB for a tiny guest).

A restore then maps `ram.img` privately (`share=off`: what the guest writes stays in its
own QEMU, the file never changes) and takes the devices in (`-incoming defer`,
`migrate-incoming`): no page is copied, a page is read when the guest touches it, and
restores of one checkpoint share the pages they only read. Both streams go through a file
descriptor handed over QMP (`fd:`): a sandboxed QEMU may not spawn `exec:`'s shell.
This is QEMU's VM templating (its docs/system/vm-templating.rst). The checkpoint's qcow2
stays what is stored, exported and verified; `memfile-*/` is derived from it and can
be deleted at any time.

Only for a VM without a disk (the tiny guest: an overlay would need its own copy) and
without a balloon (free page reporting discards RAM, which on a private file mapping
QEMU 7.2 would punch out of the file itself).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from labfixtures.checkpoint.store import Checkpoint
from labfixtures.errors import CheckpointError
from labfixtures.lab.vm import VM
from labfixtures.qemu.machine import Machine

DIR = "memfile"
RAM_FILE = "ram.img"
DEVICES_FILE = "devices.state"
#: the id of the machine's RAM: the one its default backend has, so that the RAM block's
#: name in a migration stream is the same with or without a file behind it
RAM_ID = {"fast": "microvm.ram", "pc": "pc.ram", "q35": "pc.ram"}
IGNORE_SHARED = [{"capability": "x-ignore-shared", "state": True}]
FD_NAME = "lfmigration"


def eligible(vm: VM) -> bool:
    """Whether VM can be restored from a memory file (no disk, no balloon, a known RAM)."""
    spec = vm.spec()
    return (spec.disk is None and spec.cdrom is None and not spec.balloon
            and spec.profile in RAM_ID
            and not any(a.startswith("memory-backend") for a in spec.extra_args))


def ram_args(vm: VM, ram: Path, shared: bool) -> list[str]:
    """QEMU arguments that put VM's RAM in the file RAM (SHARED: written to it)."""
    spec = vm.spec()
    rid = RAM_ID[spec.profile]
    path = str(ram).replace(",", ",,")
    return ["-object", f"memory-backend-file,id={rid},size={spec.memory_mb}M,"
                       f"mem-path={path},share={'on' if shared else 'off'}",
            "-machine", f"memory-backend={rid}"]


def directory(cp: Checkpoint, qemu_id: str) -> Path:
    """Where CP is unpacked for the QEMU of identity QEMU_ID (checkpoint.qemuid): the device
    stream is that QEMU's own, and a bisection restores one checkpoint on several."""
    return cp.path / f"{DIR}-{hashlib.sha256(qemu_id.encode()).hexdigest()[:12]}"


def files(cp: Checkpoint, qemu_id: str) -> Path | None:
    """CP's memory directory for QEMU_ID, if it is unpacked."""
    d = directory(cp, qemu_id)
    return d if (d / RAM_FILE).is_file() and (d / DEVICES_FILE).is_file() else None


def unpack(vm: VM, cp: Checkpoint, qemu_id: str, state_args: list[str],
           timeout: float = 60.0) -> Path:
    """Unpack CP into its memory directory with VM's QEMU, of identity QEMU_ID (VM stopped;
    STATE_ARGS attach a writable copy of the state file): started paused with -loadvm,
    its RAM in a shared file, then its devices migrated out without the RAM. The
    directory appears whole or not at all; a concurrent unpack of it is harmless."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{DIR}-", dir=cp.path))
    try:
        vm.start(wait=False, loadvm=cp.tag,
                 extra_args=[*state_args, *ram_args(vm, tmp / RAM_FILE, shared=True), "-S"])
        m = vm.machine
        assert m is not None
        m.qmp("migrate-set-capabilities", capabilities=IGNORE_SHARED)
        with open(tmp / DEVICES_FILE, "wb") as out:  # fd:, not exec: a sandboxed QEMU
            m.send_fd(out.fileno(), FD_NAME)          # may not spawn a shell
            m.qmp("migrate", uri=f"fd:{FD_NAME}")
            _wait_migration(m, timeout, f"unpacking {cp.name}")
        vm.stop()  # before the directory is used: QEMU has written the whole RAM file
        try:
            os.rename(tmp, directory(cp, qemu_id))
        except OSError:  # unpacked meanwhile by another process: use that one
            if files(cp, qemu_id) is None:
                raise
    finally:
        vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    d = files(cp, qemu_id)
    assert d is not None
    return d


def start(vm: VM, cp: Checkpoint, d: Path, timeout: float = 60.0) -> None:
    """Start VM on CP's memory file D (private mapping) and migrate its devices in; returns
    once the guest runs again."""
    vm.start(wait=False, loadvm=None,
             extra_args=[*ram_args(vm, d / RAM_FILE, shared=False), "-incoming", "defer"])
    vm.loadvm = cp.tag
    m = vm.machine
    assert m is not None
    m.qmp("migrate-set-capabilities", capabilities=IGNORE_SHARED)
    with open(d / DEVICES_FILE, "rb") as src:
        m.send_fd(src.fileno(), FD_NAME)
        m.qmp("migrate-incoming", uri=f"fd:{FD_NAME}")
        _wait_migration(m, timeout, f"restoring {cp.name}")
    # off again: a snapshot of this VM records the capabilities, and a -loadvm of it
    # refuses one it does not have ("Capability x-ignore-shared is off, but received...")
    m.qmp("migrate-set-capabilities", capabilities=[{**IGNORE_SHARED[0], "state": False}])
    m.qmp("cont")  # the unpacking QEMU was paused (-S): so is the state it sent


def _wait_migration(m: Machine, timeout: float, doing: str) -> None:
    """Poll QMP query-migrate until the migration has completed (and, on the incoming
    side, the state is in); a failure or TIMEOUT is a CheckpointError with QEMU's words."""
    end = time.monotonic() + timeout
    while True:
        info = m.qmp("query-migrate")
        status = info.get("status") if isinstance(info, dict) else None
        if status == "completed":
            running = m.qmp("query-status")
            if not isinstance(running, dict) or running.get("status") != "inmigrate":
                return
        said = m.trouble()
        if status in ("failed", "cancelled") or said:
            words = info.get("error-desc") if isinstance(info, dict) else None
            raise CheckpointError(f"{doing}: QEMU's migration {status or 'broke'}: "
                                  f"{words or said or info}",
                                  f"see {m.stderr_log}; delete {DIR}-*/ beside the "
                                  "checkpoint to unpack it again", reason="qemu")
        if time.monotonic() > end:
            raise CheckpointError(f"{doing}: the migration did not finish within "
                                  f"{timeout:g}s (status {status})",
                                  f"see {m.stderr_log}", reason="timeout")
        time.sleep(0.002)
