"""Checkpoints: the disk and memory state of a running VM, saved live and restored later,
in the same lab or in a freshly built one; bundles to carry them to another machine.

    from labfixtures import checkpoint

    cp = checkpoint.save(vm, "step1")               # live
    checkpoint.restore(vm, "step1")                 # same MAC, same tap; SSH answers again
    checkpoint.restore_into(other_lab, "vm0", "step1")
    checkpoint.list("vm0"); checkpoint.delete("vm0", "step1")
    checkpoint.export("vm0", "step1", "step1.tar"); checkpoint.import_bundle("step1.tar")

Each function takes `store=` (a `CheckpointStore`, default `<cache>/checkpoints`).

The modules, one concept each: `manifest` (the versioned `Manifest`: its one reader and
writer), `store` (where checkpoints live: `CheckpointStore`, `Checkpoint`), `bundle`
(export and verified import), `snapshot` (the live snapshot over QMP), `operations` (save
and restore of a VM), `persistent` (the same for a VM of a `labctl up` lab), `qemuid`
(which QEMU binary: the automatic checkpoints' key).
"""

from __future__ import annotations

from labfixtures.checkpoint import qemuid
from labfixtures.checkpoint.bundle import MAX_BUNDLE_SIZE, export, import_bundle
from labfixtures.checkpoint.manifest import (
    DISK_FILE,
    FORMAT,
    MANIFEST,
    MANIFEST_SUM,
    STATE_FILE,
    ImageIdentity,
    Manifest,
    differences,
)
from labfixtures.checkpoint.operations import restore, restore_into, save
from labfixtures.checkpoint.persistent import restore_lab_vm, save_lab_vm
from labfixtures.checkpoint.qemuid import identity as qemu_identity
from labfixtures.checkpoint.snapshot import qemu_version
from labfixtures.checkpoint.store import (
    Checkpoint,
    CheckpointStore,
    default_store_dir,
    delete,
    list_checkpoints,
)
from labfixtures.errors import CheckpointError

#: `checkpoint.list()`, as labctl says it (left out of __all__: a star import would hide
#: the builtin)
list = list_checkpoints  # noqa: A001

__all__ = [
    "DISK_FILE", "FORMAT", "MANIFEST", "MANIFEST_SUM", "MAX_BUNDLE_SIZE", "STATE_FILE",
    "Checkpoint", "CheckpointError", "CheckpointStore", "ImageIdentity", "Manifest",
    "default_store_dir", "delete", "differences", "export", "import_bundle",
    "list_checkpoints", "qemu_identity", "qemu_version", "qemuid", "restore", "restore_into",
    "restore_lab_vm", "save", "save_lab_vm",
]
