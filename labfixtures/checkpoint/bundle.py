"""Bundles: one tar file that carries a checkpoint to another machine.

A bundle holds `manifest.json`, `manifest.json.sha256`, then the checkpoint's files, each a
plain file at the top of the archive. `import_bundle()` reads the whole bundle once
without writing anything: every member must be a regular file directly in the bundle's
folder (no `/`, no `..`, no link, no device), listed by the manifest, of the size it
gives, with its sha256, the total under a limit, and the base image must be here with the
same disk. Only then does it extract into a hidden temporary directory of the store
(hashing again, the file may have changed meanwhile), check the qcow2 files themselves,
and rename the directory into place. A refused bundle leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath

from labfixtures.checkpoint.manifest import (
    MANIFEST,
    MANIFEST_SUM,
    MAX_MANIFEST,
    Manifest,
    cached_sha256,
)
from labfixtures.checkpoint.store import Checkpoint, CheckpointStore
from labfixtures.errors import CheckpointError
from labfixtures.guestimages import GuestImage
from labfixtures.qemu.images import check as qcow2_check
from labfixtures.qemu.images import snapshots

#: a bundle whose files add up to more is refused before anything is written
MAX_BUNDLE_SIZE = 64 << 30
_AGAIN = "copy or export the bundle again"
_EXPORT = "create bundles with `labctl checkpoint export`"


def export(vm: str, tag: str, file: Path | str, *, store: CheckpointStore | None = None
           ) -> Path:
    """Write VM@TAG as one tar bundle FILE (gzip if it ends in .gz/.tgz), atomically."""
    store = store or CheckpointStore()
    cp = store.get(vm, tag)
    file = Path(file)
    for name, meta in cp.manifest.files.items():  # never export a damaged one
        f = cp.path / name
        if not f.exists() or f.stat().st_size != meta.size:
            raise CheckpointError(f"checkpoint {vm}@{tag} is damaged: {name} is missing or "
                                  "has the wrong size", "delete it and save it again",
                                  reason="corrupt", vm=vm, tag=tag, path=str(cp.path))
    raw = (cp.path / MANIFEST).read_bytes()
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmpname = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    os.close(fd)
    try:
        gz = file.name.endswith((".gz", ".tgz"))
        with (tarfile.open(tmpname, "w:gz", format=tarfile.PAX_FORMAT) if gz else
              tarfile.open(tmpname, "w", format=tarfile.PAX_FORMAT)) as tar:
            _add_bytes(tar, MANIFEST, raw)
            _add_bytes(tar, MANIFEST_SUM,
                       f"{hashlib.sha256(raw).hexdigest()}  {MANIFEST}\n".encode())
            for name in sorted(cp.manifest.files):
                info = tar.gettarinfo(str(cp.path / name), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(cp.path / name, "rb") as data:
                    tar.addfile(info, data)
        os.replace(tmpname, file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmpname)
        raise
    return file


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def import_bundle(file: Path | str, *, store: CheckpointStore | None = None,
                  replace: bool = False, max_size: int = MAX_BUNDLE_SIZE) -> Checkpoint:
    """Check bundle FILE completely, then add the VM@TAG it holds to STORE."""
    store = store or CheckpointStore()
    file = Path(file)
    if not file.is_file():
        raise CheckpointError(f"bundle {file} does not exist", "give the path of a .tar bundle",
                              reason="missing", path=str(file))
    manifest, raw = _scan(file, max_size)  # reads it all, writes nothing
    vm, tag = manifest.vm.name, manifest.tag
    _check_base_image(file, manifest, store)
    if not replace:
        store.refuse_existing(vm, tag)
    tmp = store.tmpdir()
    try:
        if _scan(file, max_size, into=tmp)[1] != raw:
            raise CheckpointError(f"bundle {file} changed while it was being imported",
                                  "import it again once it is complete", reason="corrupt",
                                  vm=vm, tag=tag, path=str(file))
        for name in manifest.files:
            problem = qcow2_check(tmp / name)
            if problem is None and tag not in snapshots(tmp / name):
                problem = f"it holds no snapshot {tag!r}"
            if problem is not None:
                raise CheckpointError(f"bundle {file}: {name} is not a sound qcow2: {problem}",
                                      _AGAIN, reason="corrupt", vm=vm, tag=tag,
                                      path=str(file))
        (tmp / MANIFEST).write_bytes(raw)
        return store.commit(tmp, vm, tag, replace=replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            store.root.rmdir()  # only if the refused import made it and it is empty


def _scan(file: Path, max_size: int, into: Path | None = None) -> tuple[Manifest, bytes]:
    """Read bundle FILE from end to end and check everything in it: its members (names,
    kinds, sizes, total), its manifest and every file's sha256; write the files INTO a
    directory if given. Returns the manifest and its bytes."""
    try:
        tar = tarfile.open(file, "r|*")  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CheckpointError(f"{file} is not a labfixtures checkpoint bundle ({e})",
                              _EXPORT, reason="invalid", path=str(file)) from None
    try:
        with tar:
            return _scan_members(file, tar, max_size, into)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CheckpointError(f"bundle {file} is truncated or damaged ({e})", _AGAIN,
                              reason="truncated", path=str(file)) from None


def _scan_members(file: Path, tar: tarfile.TarFile, max_size: int, into: Path | None
                  ) -> tuple[Manifest, bytes]:
    def refuse(problem: str, remedy: str, reason: str) -> CheckpointError:
        return CheckpointError(f"bundle {file} {problem}", remedy, reason=reason,
                               vm=m.vm.name if m else None, tag=m.tag if m else None,
                               path=str(file))

    m: Manifest | None = None
    raw = b""
    seen: set[str] = set()
    total = 0
    for i, member in enumerate(tar):
        name = _member_name(file, member)
        total += member.size
        if total > max_size:
            raise refuse(f"holds more than {max_size} bytes", "export a smaller checkpoint, "
                         "or raise the limit (max_size)", "too-large")
        if i == 0:
            if name != MANIFEST or member.size > MAX_MANIFEST:
                raise refuse(f"does not start with {MANIFEST}", _EXPORT, "invalid")
            raw = _read(tar, member)
            continue
        if i == 1:
            want = _read(tar, member).decode(errors="replace").split() \
                if name == MANIFEST_SUM and member.size < 4096 else []
            if not want:
                raise refuse(f"is truncated or damaged: no {MANIFEST_SUM}", _AGAIN,
                             "truncated")
            if want[0] != hashlib.sha256(raw).hexdigest():
                raise refuse("is corrupted: its manifest does not match its checksum",
                             _AGAIN, "corrupt")
            try:
                m = Manifest.loads(raw, MANIFEST)
            except CheckpointError as e:
                raise refuse(f"is not a labfixtures checkpoint bundle: {e.problem}", _EXPORT,
                             "invalid") from None
            if m.size > max_size:
                raise refuse(f"holds more than {max_size} bytes", "export a smaller "
                             "checkpoint, or raise the limit (max_size)", "too-large")
            continue
        assert m is not None
        meta = m.files.get(name)
        if meta is None or name in seen:
            raise refuse(f"holds an unexpected member {name!r}", _EXPORT, "invalid")
        if member.size != meta.size:
            raise refuse(f"is corrupted: {name} is {member.size} bytes, the manifest says "
                         f"{meta.size}", _AGAIN, "corrupt")
        n, digest = _copy(tar, member, into / name if into is not None else None)
        if n != meta.size:
            raise refuse(f"is truncated: {name} ends after {n} of {meta.size} bytes",
                         _AGAIN, "truncated")
        if digest != meta.sha256:
            raise refuse(f"is corrupted: {name} does not match its sha256 in the manifest",
                         _AGAIN, "corrupt")
        seen.add(name)
    if m is None:
        raise refuse(f"is truncated or empty: no {MANIFEST_SUM}" if raw else
                     f"does not start with {MANIFEST}", _AGAIN if raw else _EXPORT,
                     "truncated" if raw else "invalid")
    missing = sorted(set(m.files) - seen)
    if missing:
        raise refuse(f"is truncated: {', '.join(missing)} missing", _AGAIN, "truncated")
    return m, raw


def _member_name(file: Path, member: tarfile.TarInfo) -> str:
    """MEMBER's name if it is a regular file directly in the bundle's folder."""
    path = PurePosixPath(member.name)
    what = None
    if member.issym() or member.islnk():
        what = f"a link ({member.name} -> {member.linkname})"
    elif member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        what = f"a device file ({member.name})"
    elif path.is_absolute() or ".." in path.parts or len(path.parts) != 1:
        what = f"a member outside its folder ({member.name!r})"
    elif not member.isfile():
        what = f"a member that is not a regular file ({member.name!r})"
    if what is not None:
        raise CheckpointError(f"bundle {file} holds {what}: refused",
                              f"a bundle holds plain files only; {_EXPORT}",
                              reason="unsafe", path=str(file))
    return path.name


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    src = tar.extractfile(member)
    return src.read() if src is not None else b""


def _copy(tar: tarfile.TarFile, member: tarfile.TarInfo, out: Path | None
          ) -> tuple[int, str]:
    """Read MEMBER (into OUT if given): its length and sha256."""
    src = tar.extractfile(member)
    h = hashlib.sha256()
    n = 0
    with open(out, "xb") if out is not None else contextlib.nullcontext() as dest:
        while src is not None and (block := src.read(1 << 20)):
            h.update(block)
            n += len(block)
            if dest is not None:
                dest.write(block)
    return n, h.hexdigest()


def _check_base_image(file: Path, m: Manifest, store: CheckpointStore) -> GuestImage:
    want = m.image

    def refuse(problem: str, remedy: str) -> CheckpointError:
        return CheckpointError(f"bundle {file} {problem}", remedy, reason="mismatch",
                               vm=m.vm.name, tag=m.tag, path=str(file))

    img = store.images.load(want.name, want.recipe_hash)
    if img is None:
        here = [f"{i.name}-{i.recipe_hash}" for i in store.images.built(want.name)]
        raise refuse(f"was saved on base image {want.label}, which is not in "
                     f"{store.images.root} (here: {', '.join(here) or 'none'})",
                     f"build the same image (`labctl image build {want.name}` with the same "
                     "recipe, package versions and the cache's SSH key pair, "
                     f"{store.images.root / 'keys'}), or export from a machine with this "
                     "image")
    if want.disk_sha256:
        if img.disk is None:
            raise refuse(f"needs a base disk, but image {img.name} here has none",
                         "build the same image as on the saving machine")
        got = cached_sha256(img.disk, store.hash_cache)
        if got != want.disk_sha256:
            raise refuse(f"was saved on a different base disk: {img.disk} has sha256 "
                         f"{got[:16]}..., the bundle expects {want.disk_sha256[:16]}...",
                         "use the very image the checkpoint was taken on (copy its disk): "
                         "an overlay on another base would corrupt the guest")
    return img
