"""Where checkpoints live: `<cache>/checkpoints/<vm>/<tag>/`, listed, found, deleted.

A checkpoint directory holds `manifest.json`, `state.qcow2` and, for a VM with a disk,
`disk.qcow2`. A checkpoint is named by the VM's name and a tag; it belongs to no lab,
which is what lets it be restored into a lab built later. Every write goes into a hidden
temporary directory of the store (`tmpdir()`), renamed into place by `commit()`: a reader
sees a whole checkpoint or none. The pytest plugin's automatic checkpoints (boot once,
restore per test) live in the `.auto/` store inside.
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from labfixtures.checkpoint.manifest import MANIFEST, ImageIdentity, Manifest, check_name
from labfixtures.errors import CheckpointError
from labfixtures.guestimages import ImageCache, default_cache_dir

AUTO = ".auto"
HASHES = ".image-hashes.json"


def default_store_dir() -> Path:
    return default_cache_dir() / "checkpoints"


@dataclass(frozen=True)
class Checkpoint:
    """One stored checkpoint: a directory with its manifest and its qcow2 files."""

    path: Path
    manifest: Manifest

    @property
    def vm(self) -> str:
        return self.manifest.vm.name

    @property
    def tag(self) -> str:
        return self.manifest.tag

    @property
    def name(self) -> str:
        return f"{self.vm}@{self.tag}"

    @property
    def size(self) -> int:
        return self.manifest.size

    @property
    def image(self) -> ImageIdentity:
        return self.manifest.image

    def file(self, name: str) -> Path | None:
        return self.path / name if name in self.manifest.files else None

    def __str__(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.manifest.created))
        return (f"{self.name}: {self.size / 2**20:.1f} MiB, {when}, image "
                f"{self.image.label}, from lab {self.manifest.lab or '?'}")


class CheckpointStore:
    """`<root>/<vm>/<tag>/`; writes go through a hidden temporary directory and a rename."""

    def __init__(self, root: Path | str | None = None,
                 images: ImageCache | Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_store_dir()
        self._images = images

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.root)!r})"

    @property
    def images(self) -> ImageCache:
        """The image cache the base images are looked up in."""
        if not isinstance(self._images, ImageCache):
            self._images = ImageCache(self._images)
        return self._images

    @property
    def hash_cache(self) -> Path:
        """Where the base disks' sha256 are kept (computed once per file)."""
        return self.root / HASHES

    @property
    def auto(self) -> CheckpointStore:
        """The store of the pytest plugin's automatic checkpoints."""
        return CheckpointStore(self.root / AUTO, self._images)

    def dir(self, vm: str, tag: str) -> Path:
        return self.root / check_name(vm, "VM name") / check_name(tag, "checkpoint tag")

    def find(self, vm: str, tag: str) -> Checkpoint | None:
        d = self.dir(vm, tag)
        try:
            return Checkpoint(d, Manifest.read(d))
        except (OSError, CheckpointError):
            return None

    def get(self, vm: str, tag: str) -> Checkpoint:
        cp = self.find(vm, tag)
        if cp is None:
            have = [c.name for c in self.list(vm)]
            raise CheckpointError(
                f"no checkpoint {vm}@{tag} in {self.root}",
                (f"{vm} has: {', '.join(have)}" if have else
                 f"save one (`labctl checkpoint save LAB {vm} {tag}`) or import a bundle "
                 "(`labctl checkpoint import FILE`)"),
                reason="missing", vm=vm, tag=tag, path=str(self.root))
        return cp

    def exists(self, vm: str, tag: str) -> bool:
        return self.find(vm, tag) is not None

    def refuse_existing(self, vm: str, tag: str) -> None:
        if self.exists(vm, tag):
            raise self._exists(vm, tag)

    def _exists(self, vm: str, tag: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {vm}@{tag} already exists in {self.root}",
                               "choose another tag, delete it first, or replace it "
                               "(--replace)", reason="exists", vm=vm, tag=tag,
                               path=str(self.root))

    def list(self, vm: str | None = None) -> builtins.list[Checkpoint]:
        if not self.root.is_dir():
            return []
        out = []
        for vdir in sorted(self.root.iterdir()):
            if vdir.name.startswith(".") or not vdir.is_dir() or vm and vdir.name != vm:
                continue
            for tdir in sorted(vdir.iterdir()):
                if not tdir.name.startswith("."):
                    with contextlib.suppress(OSError, CheckpointError):
                        out.append(Checkpoint(tdir, Manifest.read(tdir)))
        return out

    def delete(self, vm: str, tag: str) -> None:
        d = self.dir(vm, tag)
        if not (d / MANIFEST).exists():
            raise CheckpointError(f"no checkpoint {vm}@{tag} in {self.root}",
                                  "list them with `labctl checkpoint list`",
                                  reason="missing", vm=vm, tag=tag, path=str(self.root))
        gone = d.with_name(f".deleting-{tag}-{os.getpid()}")
        d.rename(gone)  # atomic: a reader sees the checkpoint or nothing
        shutil.rmtree(gone, ignore_errors=True)
        with contextlib.suppress(OSError):
            d.parent.rmdir()

    def orphans(self, gone: Iterable[str] = ()) -> builtins.list[Checkpoint]:
        """The checkpoints whose base image is no longer in the image cache (or is among
        GONE, labels such as `tiny-HASH` about to be removed): no VM can be restored from
        them (for the automatic store, where each new build of an image leaves the last
        one's checkpoints behind, 70 MB and more each)."""
        going = set(gone)
        return [cp for cp in self.list() if cp.image.label in going
                or self.images.load(cp.image.name, cp.image.recipe_hash) is None]

    def tmpdir(self) -> Path:
        """A new hidden directory of the store, for a checkpoint being written."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))

    def commit(self, tmp: Path, vm: str, tag: str, replace: bool = False,
               exist_ok: bool = False) -> Checkpoint:
        """Rename the finished TMP directory into place (the one visible step)."""
        dest = self.dir(vm, tag)
        dest.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if dest.exists():
            if exist_ok:  # another worker saved the same automatic checkpoint first
                shutil.rmtree(tmp, ignore_errors=True)
                return self.get(vm, tag)
            if not replace:
                shutil.rmtree(tmp, ignore_errors=True)
                raise self._exists(vm, tag)
            old = dest.with_name(f".old-{tag}-{os.getpid()}")
            dest.rename(old)
        try:
            tmp.rename(dest)
        except OSError:
            if old is not None:
                old.rename(dest)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.get(vm, tag)

    def cleanup(self, max_age: float = 3600.0) -> None:
        """Remove temporary directories that crashed saves, imports or memory-file unpacks
        (memfile.py) left behind."""
        for d in itertools.chain(self.root.glob(".tmp-*"), self.root.glob("*/.old-*"),
                                 self.root.glob("*/.deleting-*"),
                                 self.root.glob("*/*/.memfile-*")):
            with contextlib.suppress(OSError):
                if time.time() - d.stat().st_mtime > max_age:
                    shutil.rmtree(d, ignore_errors=True)


def list_checkpoints(vm: str | None = None, *, store: CheckpointStore | None = None
                     ) -> builtins.list[Checkpoint]:
    """The stored checkpoints (of VM if given), by VM name and tag."""
    return (store or CheckpointStore()).list(vm)


def delete(vm: str, tag: str, *, store: CheckpointStore | None = None) -> None:
    """Delete the stored checkpoint VM@TAG (CheckpointError "missing" if there is none)."""
    (store or CheckpointStore()).delete(vm, tag)
