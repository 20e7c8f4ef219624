"""Checkpoints: the disk and memory state of a running VM, saved live and restored later,
in the same lab or in a freshly built one; bundles to carry them to another machine.

    cp = checkpoint.save(vm, "step1")          # live: the guest pauses ~0.15 s (tiny)
    ...                                         # the guest changes things
    checkpoint.restore(vm, "step1")             # same MAC, same tap; SSH answers again
    checkpoint.restore_into(other_lab, "vm0", "step1")   # a fresh lab (its taps exist)
    store.export("vm0", "step1", "step1.tar"); store.import_bundle("step1.tar")

How a state is kept (decided here, see docs/host-facts.md, "Checkpoints"):

* The memory state (QEMU's vmstate) always goes into a qcow2 of its own, `state.qcow2`,
  hot-added to the running QEMU (`blockdev-add`) for the save and removed after it, with
  no device in the guest. QMP `snapshot-save` names that node as the vmstate target. So
  the tiny image, which has no disk (kernel + initramfs, its root file system lives in
  RAM), needs nothing at boot to be checkpointable, and each saved state is one file
  holding exactly one snapshot.
* A VM with a disk (the debian image's qcow2 overlay) gets an internal snapshot of that
  overlay in the same `snapshot-save`; the overlay is copied while the guest is paused
  (consistent), then the snapshot is deleted from the live overlay. The copy is the
  checkpoint's `disk.qcow2`; its backing file is the base image, identified by hash.
* Restoring = stop QEMU, copy the files into the VM's run directory (`-loadvm` writes to
  them, the store must stay pristine), start QEMU with the same command line (same MAC,
  same tap) plus `-drive if=none,...state.qcow2 -loadvm TAG`. No boot: ready when SSH
  answers (the first attempt after a restore may fail, `GuestSSH.connect` retries).

The store lives in the image cache: `<cache>/checkpoints/<vm>/<tag>/` holds
`manifest.json`, `state.qcow2` and, for a VM with a disk, `disk.qcow2`. A checkpoint is
named by the VM's name and a tag; it belongs to no lab, which is what lets it be restored
into a lab built later. The manifest holds the sha256 of every file, the base image (name,
recipe hash - which covers the recipe, the package versions and the cache's SSH key, the
key the saved guest trusts - and the sha256 of its disk), the VM's description (NICs,
memory, profile...), the machine spec and the QEMU version. Automatic checkpoints of the
pytest plugin (boot once, restore per test) live in `<cache>/checkpoints/.auto/`.

A bundle (`export`/`import_bundle`) is a tar: `manifest.json`, `manifest.json.sha256`,
then the files. Import checks the manifest and the base image before writing anything,
extracts into a hidden temporary directory of the store while hashing, checks every hash
and size and the qcow2 files themselves, and only then renames the directory into place:
a corrupted, truncated or mismatched bundle is refused and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from labfixtures.errors import CommandError, LabError
from labfixtures.qemu.images import qemu_img, qemu_img_info

if TYPE_CHECKING:
    import argparse

    from labfixtures.guestimages import GuestImage, ImageCache
    from labfixtures.lab.lab import Lab
    from labfixtures.lab.vm import VM

FORMAT = 1
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.json.sha256"
STATE_FILE = "state.qcow2"
DISK_FILE = "disk.qcow2"
ROLES = {STATE_FILE: "state", DISK_FILE: "disk"}
MAX_MANIFEST = 1 << 20
AUTO = ".auto"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_nodes = itertools.count()


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value) or ".." in value:
        raise LabError(f"{what} {value!r} is not usable as a checkpoint name",
                       "use letters, digits, '.', '-' or '_' (64 at most, no '/')")
    return value


def default_store_dir() -> Path:
    from labfixtures.guestimages import default_cache_dir

    return default_cache_dir() / "checkpoints"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_version: str | None = None


def qemu_version() -> str:
    """`7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)`: the first line of `--version`."""
    global _version
    if _version is None:
        from labfixtures.qemu.cmdline import QEMU

        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
        _version = out.splitlines()[0].removeprefix("QEMU emulator version ").strip() \
            if out else "unknown"
    return _version


def _major_minor(version: str) -> str:
    return ".".join(version.split()[0].split(".")[:2]) if version else ""


# -- image identity ------------------------------------------------------------------------

def image_identity(image: GuestImage, hash_cache: Path | None = None) -> dict:
    """The base image as a manifest records it. The disk's sha256 is what makes a qcow2
    overlay valid on top of it; it is computed once per file (size, mtime) and kept."""
    ident: dict[str, Any] = {"name": image.name, "recipe_hash": image.recipe_hash,
                             "public_key": image.public_key, "disk_sha256": None,
                             "disk_format": None}
    if image.disk is not None:
        ident["disk_sha256"] = _cached_sha256(image.disk, hash_cache)
        ident["disk_format"] = qemu_img_info(image.disk).get("format")
    return ident


def _cached_sha256(path: Path, cache_file: Path | None) -> str:
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    known: dict[str, str] = {}
    if cache_file is not None:
        with contextlib.suppress(OSError, ValueError):
            known = json.loads(cache_file.read_text())
        if key in known:
            return known[key]
    digest = sha256_file(path)
    if cache_file is not None:
        known[key] = digest
        with contextlib.suppress(OSError):
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps(known))
            tmp.rename(cache_file)
    return digest


# -- the store -----------------------------------------------------------------------------

@dataclass
class Checkpoint:
    """One stored checkpoint: a directory with its manifest and its qcow2 files."""

    path: Path
    manifest: dict

    @property
    def vm(self) -> str:
        return self.manifest["vm"]["name"]

    @property
    def tag(self) -> str:
        return self.manifest["tag"]

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.manifest["files"].values())

    @property
    def image(self) -> dict:
        return self.manifest["image"]

    def file(self, name: str) -> Path | None:
        return self.path / name if name in self.manifest["files"] else None

    def __str__(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.manifest["created"]))
        return (f"{self.vm}@{self.tag}: {self.size / 2**20:.1f} MiB, {when}, image "
                f"{self.image['name']}-{self.image['recipe_hash']}, from lab "
                f"{self.manifest.get('lab') or '?'}")


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
        from labfixtures.guestimages import ImageCache

        if not isinstance(self._images, ImageCache):
            self._images = ImageCache(self._images)
        return self._images

    @property
    def auto(self) -> CheckpointStore:
        """The store of the pytest plugin's automatic checkpoints."""
        return CheckpointStore(self.root / AUTO, self._images)

    def dir(self, vm: str, tag: str) -> Path:
        return self.root / check_name(vm, "VM name") / check_name(tag, "checkpoint tag")

    def find(self, vm: str, tag: str) -> Checkpoint | None:
        d = self.dir(vm, tag)
        try:
            return Checkpoint(d, json.loads((d / MANIFEST).read_text()))
        except (OSError, ValueError):
            return None

    def get(self, vm: str, tag: str) -> Checkpoint:
        cp = self.find(vm, tag)
        if cp is None:
            have = [f"{c.vm}@{c.tag}" for c in self.list(vm)]
            raise LabError(f"no checkpoint {vm}@{tag} in {self.root}",
                           (f"{vm} has: {', '.join(have)}" if have else
                            f"save one (`labctl checkpoint save LAB {vm} {tag}`) or import "
                            "a bundle (`labctl checkpoint import FILE`)"))
        return cp

    def list(self, vm: str | None = None) -> list[Checkpoint]:
        if not self.root.is_dir():
            return []
        out = []
        for vdir in sorted(self.root.iterdir()):
            if vdir.name.startswith(".") or not vdir.is_dir() or vm and vdir.name != vm:
                continue
            for tdir in sorted(vdir.iterdir()):
                if not tdir.name.startswith("."):
                    with contextlib.suppress(OSError, ValueError, KeyError):
                        out.append(Checkpoint(tdir, json.loads((tdir / MANIFEST).read_text())))
        return out

    def delete(self, vm: str, tag: str) -> None:
        d = self.dir(vm, tag)
        if not (d / MANIFEST).exists():
            raise LabError(f"no checkpoint {vm}@{tag} in {self.root}",
                           "list them with `labctl checkpoint list`")
        gone = d.with_name(f".deleting-{tag}-{os.getpid()}")
        d.rename(gone)  # atomic: a reader sees the checkpoint or nothing
        shutil.rmtree(gone, ignore_errors=True)
        with contextlib.suppress(OSError):
            d.parent.rmdir()

    def tmpdir(self) -> Path:
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
                raise LabError(f"checkpoint {vm}@{tag} already exists in {self.root}",
                               "choose another tag, delete it first, or replace it "
                               "(--replace)")
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
        """Remove temporary directories that crashed saves or imports left behind."""
        for d in itertools.chain(self.root.glob(".tmp-*"), self.root.glob("*/.old-*"),
                                 self.root.glob("*/.deleting-*")):
            with contextlib.suppress(OSError):
                if time.time() - d.stat().st_mtime > max_age:
                    shutil.rmtree(d, ignore_errors=True)

    # -- bundles -------------------------------------------------------------------------

    def export(self, vm: str, tag: str, file: Path | str) -> Path:
        """Write VM@TAG as one tar bundle (gzip if FILE ends in .gz/.tgz), atomically."""
        cp = self.get(vm, tag)
        file = Path(file)
        for name, meta in cp.manifest["files"].items():  # never export a damaged one
            f = cp.path / name
            if not f.exists() or f.stat().st_size != meta["size"]:
                raise LabError(f"checkpoint {vm}@{tag} is damaged: {name} is missing or "
                               "has the wrong size", "delete it and save it again")
        mode = "w:gz" if file.name.endswith((".gz", ".tgz")) else "w"
        raw = (cp.path / MANIFEST).read_bytes()
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmpname = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
        os.close(fd)
        try:
            with tarfile.open(tmpname, mode, format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, MANIFEST, raw)
                _add_bytes(tar, MANIFEST_SUM,
                           f"{hashlib.sha256(raw).hexdigest()}  {MANIFEST}\n".encode())
                for name in sorted(cp.manifest["files"]):
                    info = tar.gettarinfo(str(cp.path / name), arcname=name)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = 0o644
                    with open(cp.path / name, "rb") as f:
                        tar.addfile(info, f)
            os.replace(tmpname, file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmpname)
            raise
        return file

    def import_bundle(self, file: Path | str, *, replace: bool = False) -> Checkpoint:
        """Check a bundle completely, then store it as the VM@TAG it holds."""
        file = Path(file)
        if not file.is_file():
            raise LabError(f"bundle {file} does not exist", "give the path of a .tar bundle")
        tmp: Path | None = None
        try:
            with tarfile.open(file, "r|*") as tar:
                members = iter(tar)
                manifest, raw = _read_manifest(file, tar, members)
                vm, tag = manifest["vm"]["name"], manifest["tag"]
                self._check_base_image(file, manifest)
                if self.find(vm, tag) is not None and not replace:
                    raise LabError(f"checkpoint {vm}@{tag} already exists in {self.root}",
                                   "delete it first, or replace it (--replace)")
                # nothing was written so far; from here on, only into TMP
                tmp = self.tmpdir()
                seen = _extract_verified(file, tar, members, manifest, tmp)
            missing = sorted(set(manifest["files"]) - seen)
            if missing:
                raise LabError(f"bundle {file} is truncated: {', '.join(missing)} missing",
                               "copy or export the bundle again")
            for name in manifest["files"]:
                _check_qcow2(file, tmp / name, manifest["tag"])
            (tmp / MANIFEST).write_bytes(raw)
            return self.commit(tmp, vm, tag, replace=replace)
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            if isinstance(e, LabError):
                raise
            raise LabError(f"bundle {file} is truncated or damaged, or not a labfixtures "
                           f"checkpoint bundle: {e}",
                           "copy or export the bundle again") from None
        finally:
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
                with contextlib.suppress(OSError):
                    self.root.rmdir()  # only if the refused import made it and it is empty

    def _check_base_image(self, file: Path, manifest: dict) -> GuestImage:
        want = manifest["image"]
        img = self.images.load(want["name"], want["recipe_hash"])
        if img is None:
            here = [f"{i.name}-{i.recipe_hash}" for i in self.images.built(want["name"])]
            raise LabError(
                f"bundle {file} was saved on base image {want['name']}-{want['recipe_hash']}, "
                f"which is not in {self.images.root} (here: {', '.join(here) or 'none'})",
                f"build the same image (`labctl image build {want['name']}` with the same "
                "recipe, package versions and the cache's SSH key pair, "
                f"{self.images.root / 'keys'}), or export from a machine with this image")
        if want.get("disk_sha256"):
            if img.disk is None:
                raise LabError(f"bundle {file} needs a base disk, but image {img.name} here "
                               "has none", "build the same image as on the saving machine")
            got = _cached_sha256(img.disk, self.root / ".image-hashes.json")
            if got != want["disk_sha256"]:
                raise LabError(f"bundle {file} was saved on a different base disk: "
                               f"{img.disk} has sha256 {got[:16]}..., the bundle expects "
                               f"{want['disk_sha256'][:16]}...",
                               "use the very image the checkpoint was taken on (copy its "
                               "disk): an overlay on another base would corrupt the guest")
        return img


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _read_manifest(file: Path, tar: tarfile.TarFile, members: Any) -> tuple[dict, bytes]:
    bad = f"{file} is not a labfixtures checkpoint bundle"
    first = next(members, None)
    if first is None or first.name != MANIFEST or not first.isfile() \
            or first.size > MAX_MANIFEST:
        raise LabError(f"{bad}: it does not start with {MANIFEST}",
                       "create bundles with `labctl checkpoint export`")
    raw = tar.extractfile(first).read()  # type: ignore[union-attr]
    second = next(members, None)
    if second is None or second.name != MANIFEST_SUM or not second.isfile():
        raise LabError(f"bundle {file} is truncated or damaged: no {MANIFEST_SUM}",
                       "copy or export the bundle again")
    want = tar.extractfile(second).read().decode(errors="replace").split()  # type: ignore
    if len(raw) != first.size or not want or want[0] != hashlib.sha256(raw).hexdigest():
        raise LabError(f"bundle {file} is corrupted: its manifest does not match its "
                       "checksum", "copy or export the bundle again")
    try:
        manifest = json.loads(raw)
        validate_manifest(manifest)
    except (ValueError, KeyError, TypeError) as e:
        raise LabError(f"{bad}: its manifest is invalid ({e})",
                       "create bundles with `labctl checkpoint export`") from None
    return manifest, raw


def validate_manifest(m: dict) -> dict:
    """Shape checks that must hold before any name from a manifest is used as a path."""
    if m.get("format") != FORMAT:
        raise ValueError(f"format {m.get('format')!r}, this labfixtures reads {FORMAT}")
    check_name(m["tag"], "checkpoint tag")
    check_name(m["vm"]["name"], "VM name")
    for key in ("name", "recipe_hash"):
        if not isinstance(m["image"][key], str) or not m["image"][key]:
            raise ValueError(f"image.{key} is missing")
    files = m["files"]
    if not isinstance(files, dict) or STATE_FILE not in files:
        raise ValueError(f"files must list {STATE_FILE}")
    for name, meta in files.items():
        if name not in ROLES:
            raise ValueError(f"unexpected file {name!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]) or \
                not isinstance(meta["size"], int) or meta["size"] < 0:
            raise ValueError(f"bad sha256 or size for {name}")
    return m


def _extract_verified(file: Path, tar: tarfile.TarFile, members: Any, manifest: dict,
                      tmp: Path) -> set[str]:
    seen: set[str] = set()
    for member in members:
        name = member.name
        if name not in manifest["files"] or name in seen or not member.isfile():
            raise LabError(f"bundle {file} holds an unexpected member {name!r}",
                           "create bundles with `labctl checkpoint export`")
        meta = manifest["files"][name]
        if member.size != meta["size"]:
            raise LabError(f"bundle {file} is corrupted: {name} is {member.size} bytes, "
                           f"the manifest says {meta['size']}",
                           "copy or export the bundle again")
        src = tar.extractfile(member)
        assert src is not None
        h = hashlib.sha256()
        n = 0
        with open(tmp / name, "wb") as out:
            while block := src.read(1 << 20):
                h.update(block)
                out.write(block)
                n += len(block)
        if n != meta["size"]:
            raise LabError(f"bundle {file} is truncated: {name} ends after {n} of "
                           f"{meta['size']} bytes", "copy or export the bundle again")
        if h.hexdigest() != meta["sha256"]:
            raise LabError(f"bundle {file} is corrupted: {name} does not match its sha256 "
                           "in the manifest", "copy or export the bundle again")
        seen.add(name)
    return seen


def _check_qcow2(file: Path | str, path: Path, tag: str) -> None:
    cp = subprocess.run([qemu_img(), "check", "-q", "-f", "qcow2", str(path)],
                        capture_output=True, text=True, timeout=300)
    if cp.returncode not in (0, 3):  # 3: leaked clusters only, harmless
        raise LabError(f"{file}: {path.name} is not a sound qcow2: "
                       f"{(cp.stderr or cp.stdout).strip()[:300]}",
                       "copy or export the checkpoint again")
    if tag not in [s["name"] for s in qemu_img_info(path).get("snapshots", [])]:
        raise LabError(f"{file}: {path.name} holds no snapshot {tag!r}",
                       "export the checkpoint again")


def _run(argv: list[str]) -> str:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if cp.returncode != 0:
        raise CommandError(argv, cp.returncode, cp.stderr)
    return cp.stdout


# -- talking to a running QEMU ------------------------------------------------------------

class Monitor(Protocol):
    def qmp(self, command: str, **args: object) -> object: ...


class SocketMonitor:
    """A QMP connection to a QEMU this process did not start (a persistent lab's VM)."""

    def __init__(self, socket_path: Path, name: str = "vm") -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        self.name = name
        self._qmp = QEMUMonitorProtocol(str(socket_path), nickname=name)
        try:
            self._qmp.connect()
        except Exception as e:  # noqa: BLE001
            raise LabError(f"cannot reach the QMP socket of {name} ({socket_path}): {e}",
                           "is the VM running? QEMU accepts one QMP client at a time: "
                           "close the other one") from None
        self._qmp.settimeout(60)

    def qmp(self, command: str, **args: object) -> object:
        try:
            return self._qmp.cmd(command, **args)
        except Exception as e:
            raise LabError(f"QMP {command} on {self.name} failed: {e}",
                           "see the QEMU log in the VM's run directory") from e

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._qmp.close()


def _run_job(mon: Monitor, command: str, job_id: str, timeout: float = 600.0,
             **args: object) -> None:
    mon.qmp(command, **{"job-id": job_id}, **args)
    deadline = time.monotonic() + timeout
    while True:
        jobs = {j["id"]: j for j in mon.qmp("query-jobs")}  # type: ignore[union-attr]
        job = jobs.get(job_id)
        if job is None or job["status"] in ("concluded", "null"):
            break
        if time.monotonic() > deadline:
            raise LabError(f"{command} did not finish within {timeout:g}s",
                           "see the QEMU log in the VM's run directory")
        time.sleep(0.005)
    mon.qmp("job-dismiss", id=job_id)
    if job is not None and job.get("error"):
        raise LabError(f"{command} failed: {job['error']}",
                       "see the QEMU log in the VM's run directory")


def _disk_node(mon: Monitor, device: str = "disk0") -> str:
    for b in mon.qmp("query-block"):  # type: ignore[union-attr]
        if b.get("device") == device and b.get("inserted"):
            return b["inserted"]["node-name"]
    raise LabError(f"the VM has no disk {device!r} to snapshot", "")


def snapshot_to(mon: Monitor, tag: str, state: Path, overlay: Path | None = None,
                disk_copy: Path | None = None) -> dict:
    """Save the VM's memory into STATE (a new qcow2) under TAG, and, if the VM has a
    qcow2 OVERLAY, snapshot it too and copy it to DISK_COPY while the guest is paused.
    The live VM is left as it was: running, with no state file and no snapshot kept."""
    _run([qemu_img(), "create", "-q", "-f", "qcow2", str(state), "1M"])
    node = f"lfsave{os.getpid()}x{next(_nodes)}"
    mon.qmp("blockdev-add", driver="qcow2", **{"node-name": node},
            file={"driver": "file", "filename": str(state)})
    timings: dict[str, float] = {}
    try:
        devices = [node]
        disk = _disk_node(mon) if overlay is not None else None
        if disk is not None:
            devices.append(disk)
        status = mon.qmp("query-status")
        running = bool(status.get("running")) if isinstance(status, dict) else True
        t0 = time.monotonic()
        if disk is not None and running:
            mon.qmp("stop")  # the copy below must see no guest write
        try:
            _run_job(mon, "snapshot-save", f"{node}-save", tag=tag, vmstate=node,
                     devices=devices)
            timings["snapshot"] = time.monotonic() - t0
            if disk is not None:
                assert overlay is not None and disk_copy is not None
                shutil.copyfile(overlay, disk_copy)
                _run_job(mon, "snapshot-delete", f"{node}-del", tag=tag, devices=[disk])
        finally:
            if disk is not None and running:
                mon.qmp("cont")
            timings["paused"] = time.monotonic() - t0
    finally:
        mon.qmp("blockdev-del", **{"node-name": node})
    return timings


# -- save and restore ---------------------------------------------------------------------

def _machine_summary(desc: dict, accel: str | None, argv: Iterable[str] = ()) -> dict:
    o = desc["opts"]
    return {"profile": o["profile"], "memory_mb": o["memory"], "vcpus": o["vcpus"],
            "accel": accel, "extra_args": list(o.get("extra_args", [])),
            "nics": [{"tap": n.get("tap"), "user": n.get("user", False), "mac": n.get("mac"),
                      "queues": n.get("queues", 1)} for n in desc["nics"]],
            "qemu_argv": list(argv)}


def _write_manifest(tmp: Path, *, tag: str, desc: dict, image: dict, machine: dict,
                    lab: str | None, timings: dict) -> dict:
    files = {}
    for name in (STATE_FILE, DISK_FILE):
        if (tmp / name).exists():
            files[name] = {"sha256": sha256_file(tmp / name),
                           "size": (tmp / name).stat().st_size, "role": ROLES[name]}
    manifest = {"format": FORMAT, "tag": tag, "created": time.time(), "lab": lab,
                "vm": desc, "image": image, "machine": machine,
                "qemu_version": qemu_version(), "files": files,
                "save_seconds": {k: round(v, 4) for k, v in timings.items()}}
    validate_manifest(manifest)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def save(vm: VM, tag: str, *, store: CheckpointStore | None = None,
         replace: bool = False, exist_ok: bool = False) -> Checkpoint:
    """Save the running VM's disk and memory as VM.name@TAG, live (the guest pauses for
    the snapshot only, plus the copy of its overlay if it has a disk)."""
    store = store or CheckpointStore()
    check_name(tag, "checkpoint tag")
    dest_exists = store.find(vm.name, tag) is not None
    if dest_exists and exist_ok:
        return store.get(vm.name, tag)
    if dest_exists and not replace:
        raise LabError(f"checkpoint {vm.name}@{tag} already exists in {store.root}",
                       "choose another tag, delete it first, or replace it")
    if vm.machine is None or not vm.machine.running:
        raise LabError(f"VM {vm.name} is not running: a checkpoint is taken live",
                       "start it first")
    vm.stop_ssh()  # a session open in the saved guest would come back half-open
    image = image_identity(vm.image, store.root / ".image-hashes.json")
    tmp = store.tmpdir()
    try:
        t0 = time.monotonic()
        timings = snapshot_to(vm.machine, tag, tmp / STATE_FILE, vm.overlay,
                              tmp / DISK_FILE if vm.overlay is not None else None)
        timings["save"] = time.monotonic() - t0
        argv = vm.machine.cmdline_file.read_text().splitlines()[-1] \
            if vm.machine.cmdline_file.exists() else ""
        _write_manifest(tmp, tag=tag, desc=vm.description(), image=image,
                        machine=_machine_summary(vm.description(),
                                                 vm.machine.accel.name if vm.machine.accel
                                                 else None, shlex.split(argv)),
                        lab=vm.lab.labid if hasattr(vm.lab, "labid") else None,
                        timings=timings)
        return store.commit(tmp, vm.name, tag, replace=replace, exist_ok=exist_ok)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _image_for(cp: Checkpoint, current: GuestImage, store: CheckpointStore) -> GuestImage:
    want = cp.image
    if current.name == want["name"] and current.recipe_hash == want["recipe_hash"]:
        return current
    img = store.images.load(want["name"], want["recipe_hash"])
    if img is None:
        raise LabError(f"checkpoint {cp.vm}@{cp.tag} was saved on image "
                       f"{want['name']}-{want['recipe_hash']}, which is not in "
                       f"{store.images.root} (the current one is "
                       f"{current.name}-{current.recipe_hash})",
                       "save the checkpoint again on the current image, or build the "
                       "image it was saved on")
    return img


def differences(cp: Checkpoint, vm: VM) -> list[str]:
    """What differs between the machine the checkpoint was saved on and VM's."""
    want = cp.manifest["machine"]
    have = _machine_summary(vm.description(), want.get("accel"))
    out = []
    for key in ("profile", "memory_mb", "vcpus", "extra_args"):
        if want[key] != have[key]:
            out.append(f"{key}: checkpoint {want[key]!r}, VM {have[key]!r}")
    w = [(n["tap"], n["user"], n["mac"], n["queues"]) for n in want["nics"]]
    h = [(n["tap"], n["user"], n["mac"], n["queues"]) for n in have["nics"]]
    if w != h:
        out.append(f"NICs (tap, user, mac, queues): checkpoint {w}, VM {h}")
    return out


def restore(vm: VM, tag: str, *, store: CheckpointStore | None = None,
            source: str | None = None, wait: bool = True, timeout: float = 60.0) -> VM:
    """Bring VM back to checkpoint SOURCE@TAG (SOURCE: VM's own name by default): the
    QEMU is restarted with the same command line, so the same MAC on the same tap, and
    resumes the saved state; with WAIT, returns once SSH answers."""
    store = store or CheckpointStore()
    cp = store.get(source or vm.name, tag)
    diff = differences(cp, vm)
    if diff:
        raise LabError(f"VM {vm.name} does not match the machine checkpoint "
                       f"{cp.vm}@{cp.tag} was saved on: " + "; ".join(diff),
                       "create the VM with the checkpoint's settings "
                       "(checkpoint.restore_into() does), or save a new checkpoint")
    image = _image_for(cp, vm.image, store)
    vm.stop()
    vm.dir.mkdir(parents=True, exist_ok=True)
    state = vm.dir / f"{vm.name}.state.qcow2"
    state.unlink(missing_ok=True)
    shutil.copyfile(cp.path / STATE_FILE, state)
    overlay = None
    if (disk := cp.file(DISK_FILE)) is not None:
        if image.disk is None:
            raise LabError(f"checkpoint {cp.vm}@{cp.tag} has a disk but image "
                           f"{image.name} has none", "")
        overlay = vm.dir / f"{vm.name}.qcow2"
        overlay.unlink(missing_ok=True)
        shutil.copyfile(disk, overlay)
        fmt = cp.image.get("disk_format") or "qcow2"
        _run([qemu_img(), "rebase", "-u", "-f", "qcow2", "-b", str(image.disk.resolve()),
              "-F", fmt, str(overlay)])
    elif vm.overlay is not None:
        vm.overlay.unlink(missing_ok=True)
    vm.image = image
    vm.overlay = overlay
    vm.state_disk = state
    vm.start(wait=wait, timeout=timeout, loadvm=tag)
    return vm


def restore_into(lab: Lab, name: str, tag: str, *, store: CheckpointStore | None = None,
                 source: str | None = None, wait: bool = True, timeout: float = 60.0) -> VM:
    """Restore checkpoint SOURCE@TAG (SOURCE defaults to NAME) as VM NAME of LAB: the VM
    of that name if the lab has one, else a new one with the checkpoint's settings (its
    taps must exist in LAB, plugged in as when the checkpoint was saved)."""
    from labfixtures.lab.vm import VmNic

    store = store or CheckpointStore()
    vm = lab.vms.get(name)
    if vm is None:
        cp = store.get(source or name, tag)
        desc = cp.manifest["vm"]
        o = desc["opts"]
        nics = [VmNic(**{**n, "addresses": tuple(n.get("addresses", ()))})
                for n in desc["nics"]]
        vm = lab.vm(name, nics=nics, image=o["image"], memory=o["memory"],
                    vcpus=o["vcpus"], profile=o["profile"], hostname=o.get("hostname"),
                    extra_args=o.get("extra_args", []), start=False)
        vm.opts.extra_config.update(o.get("extra_config", {}))
    return restore(vm, tag, store=store, source=source, wait=wait, timeout=timeout)


# -- persistent labs (labctl): a VM reached through its run directory -------------------------

class LabVM:
    """A VM of a lab run by another process (`labctl up`), found in its run directory."""

    def __init__(self, lab: str, name: str) -> None:
        from labfixtures.lab.labhost import RUN_BASE

        self.labid = lab if lab.startswith("lf-") else f"lf-{lab}"
        self.name = check_name(name, "VM name")
        self.rundir = RUN_BASE / self.labid
        self.dir = self.rundir / "vms" / name
        if not self.rundir.is_dir():
            raise LabError(f"no lab named {self.labid!r}", "list labs with `labctl status`")

    @property
    def description(self) -> dict:
        try:
            return json.loads((self.dir / "vm.json").read_text())
        except FileNotFoundError:
            raise LabError(f"lab {self.labid} has no VM {self.name!r} started by labfixtures",
                           "check the name with `labctl status`") from None

    def argv(self) -> list[str]:
        f = self.dir / f"{self.name}.cmdline"
        return shlex.split(f.read_text().splitlines()[-1]) if f.exists() else []

    def accel(self) -> str | None:
        f = self.dir / f"{self.name}.cmdline"
        m = re.match(r"# accel: (\w+)", f.read_text()) if f.exists() else None
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
            raise LabError(f"VM {self.name} of lab {self.labid} is not running",
                           "restore it from a checkpoint, or `labctl up` the lab again")
        return SocketMonitor(Path(sock), self.name)

    @property
    def overlay(self) -> Path | None:
        p = self.dir / f"{self.name}.qcow2"
        return p if p.exists() else None


def save_lab_vm(lab: str, name: str, tag: str, *, store: CheckpointStore | None = None,
                replace: bool = False) -> Checkpoint:
    """`labctl checkpoint save LAB VM TAG`: the same as `save()`, through the run directory."""
    from labfixtures import guestimages

    store = store or CheckpointStore()
    check_name(tag, "checkpoint tag")
    target = LabVM(lab, name)
    desc = target.description
    if store.find(name, tag) is not None and not replace:
        raise LabError(f"checkpoint {name}@{tag} already exists in {store.root}",
                       "choose another tag, delete it first, or --replace it")
    image = store.images.load(desc["image"], desc["recipe_hash"]) or guestimages.get(
        desc["image"])
    ident = image_identity(image, store.root / ".image-hashes.json")
    mon = target.monitor()
    tmp = store.tmpdir()
    try:
        t0 = time.monotonic()
        overlay = target.overlay
        timings = snapshot_to(mon, tag, tmp / STATE_FILE, overlay,
                              tmp / DISK_FILE if overlay is not None else None)
        timings["save"] = time.monotonic() - t0
        _write_manifest(tmp, tag=tag, desc=desc, image=ident,
                        machine=_machine_summary(desc, target.accel(), target.argv()),
                        lab=target.labid, timings=timings)
        return store.commit(tmp, name, tag, replace=replace)
    finally:
        mon.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class _RunDirLab:
    """Just what a `VM` needs of its lab to start, for a lab run by another process."""

    def __init__(self, labid: str, rundir: Path) -> None:
        from labfixtures.net.netlink import Netlink

        self.labid = labid
        self.ns = labid
        self.rundir = rundir
        self.switches: dict = {}
        self.nl = Netlink(labid)


def restore_lab_vm(lab: str, name: str, tag: str, *, store: CheckpointStore | None = None,
                   source: str | None = None, timeout: float = 60.0) -> float:
    """`labctl checkpoint restore LAB VM TAG`: stop the VM's QEMU if it runs, start a new
    one (left running, as `labctl up` does) resuming the checkpoint; returns the seconds
    until SSH answered (or QEMU ran, for a VM without an SSH target in lab.json)."""
    from labfixtures import guestimages
    from labfixtures.core import netns, procs
    from labfixtures.lab.vm import VM, VmNic, VmOptions, guest_config

    store = store or CheckpointStore()
    target = LabVM(lab, name)
    if not netns.exists(target.labid):
        raise LabError(f"lab {target.labid} has no namespace (it is not up)",
                       "`labctl up` it first")
    cp = store.get(source or name, tag)
    desc = cp.manifest["vm"]
    nics = [VmNic(**{**n, "addresses": tuple(n.get("addresses", ()))}) for n in desc["nics"]]
    shim = _RunDirLab(target.labid, target.rundir)
    try:
        for nic in nics:
            if not nic.user and nic.tap is not None and not shim.nl.exists(f"tap{nic.tap}"):
                raise LabError(f"lab {target.labid} has no tap{nic.tap} for {name}",
                               "build the lab with the same taps as when the checkpoint "
                               "was saved")
        o = dict(desc["opts"])
        opts = VmOptions(**o)
        image = store.images.load(desc["image"], desc["recipe_hash"]) or guestimages.get(
            desc["image"])
        vm = VM(shim, name, nics, opts, image,  # type: ignore[arg-type]
                guest_config(name, nics, opts.hostname))
        if (pid := target.pid()) is not None:
            with contextlib.suppress(LabError):
                mon = target.monitor()
                with contextlib.suppress(LabError):
                    mon.qmp("quit")
                mon.close()
            procs.terminate([pid], grace=3.0)
        t0 = time.monotonic()
        restore(vm, tag, store=store, source=source, wait=False)
        assert vm.machine is not None
        ready = _wait_lab_ssh(target, vm, timeout)
        _update_lab_state(target, vm)
        return ready if ready is not None else time.monotonic() - t0
    finally:
        shim.nl.close()


def _wait_lab_ssh(target: LabVM, vm: VM, timeout: float) -> float | None:
    from labfixtures.guests.ssh import GuestSSH

    state_file = target.rundir / "lab.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        v = json.loads(state_file.read_text())["vms"][vm.name]
        with GuestSSH(v["host"], v["port"], user=v.get("user", "root"), key=v["key"],
                      netns=target.labid, known_hosts=target.rundir / "known_hosts"
                      ).connect(deadline=timeout):
            pass
        assert vm.machine is not None
        return vm.machine.uptime()
    return None


def _update_lab_state(target: LabVM, vm: VM) -> None:
    """Keep `labctl status` right: lab.json records each VM's QEMU pid."""
    f = target.rundir / "lab.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        state = json.loads(f.read_text())
        if vm.name in state.get("vms", {}) and vm.machine is not None:
            state["vms"][vm.name]["pid"] = vm.machine.pid
            tmp = f.with_name(".lab.json.tmp")
            tmp.write_text(json.dumps(state, indent=1))
            tmp.rename(f)


# -- labctl checkpoint ... -------------------------------------------------------------------

def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`labctl checkpoint save|restore|list|delete|export|import`."""
    p = subparsers.add_parser(
        "checkpoint", help="save, restore, list, delete, export and import VM checkpoints",
        description="Checkpoints hold a VM's disk and memory, taken live; they are kept in "
                    f"the cache ({default_store_dir()}) by VM name and tag, so they can be "
                    "restored into a lab built later, or carried to another machine with "
                    "the same base image as a bundle.")
    p.add_argument("--store", help="checkpoint directory (default: <cache>/checkpoints)")
    sub = p.add_subparsers(dest="checkpoint_command", metavar="ACTION")
    sub.required = True

    s = sub.add_parser("save", help="save VM's disk and memory now, as TAG (live)")
    s.add_argument("lab")
    s.add_argument("vm")
    s.add_argument("tag")
    s.add_argument("--replace", action="store_true", help="replace an existing VM@TAG")
    s.set_defaults(func=cli_save)

    r = sub.add_parser("restore", help="bring VM back to TAG (restarts its QEMU)")
    r.add_argument("lab")
    r.add_argument("vm")
    r.add_argument("tag")
    r.add_argument("--from", dest="source", metavar="VM",
                   help="restore the checkpoint of another VM name (same settings)")
    r.set_defaults(func=cli_restore)

    ls = sub.add_parser("list", help="list stored checkpoints")
    ls.add_argument("vm", nargs="?")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cli_list)

    d = sub.add_parser("delete", help="delete a stored checkpoint")
    d.add_argument("vm")
    d.add_argument("tag")
    d.set_defaults(func=cli_delete)

    e = sub.add_parser("export", help="write a checkpoint as one bundle file (.tar, .tar.gz)")
    e.add_argument("lab", help="the lab it was saved in (informative: checkpoints are "
                               "stored by VM and tag, not by lab)")
    e.add_argument("vm")
    e.add_argument("tag")
    e.add_argument("file")
    e.set_defaults(func=cli_export)

    i = sub.add_parser("import", help="check a bundle and add it to the store")
    i.add_argument("file")
    i.add_argument("--replace", action="store_true", help="replace an existing VM@TAG")
    i.set_defaults(func=cli_import)
    return p


def _store(args: argparse.Namespace) -> CheckpointStore:
    return CheckpointStore(getattr(args, "store", None))


def cli_save(args: argparse.Namespace) -> int:
    cp = save_lab_vm(args.lab, args.vm, args.tag, store=_store(args), replace=args.replace)
    t = cp.manifest.get("save_seconds", {})
    print(f"saved {cp} in {t.get('save', 0):.2f} s (guest paused "
          f"{t.get('paused', 0):.2f} s)")
    return 0


def cli_restore(args: argparse.Namespace) -> int:
    seconds = restore_lab_vm(args.lab, args.vm, args.tag, store=_store(args),
                             source=args.source)
    print(f"restored {args.vm} of {args.lab} to {args.source or args.vm}@{args.tag}: "
          f"ready {seconds:.2f} s after QEMU started")
    return 0


def cli_list(args: argparse.Namespace) -> int:
    cps = _store(args).list(args.vm)
    if args.json:
        print(json.dumps([{"vm": c.vm, "tag": c.tag, "path": str(c.path), "size": c.size,
                           "created": c.manifest["created"], "image": c.image,
                           "lab": c.manifest.get("lab")} for c in cps], indent=1))
    elif not cps:
        print("no checkpoint")
    for c in cps if not args.json else ():
        print(c)
    return 0


def cli_delete(args: argparse.Namespace) -> int:
    _store(args).delete(args.vm, args.tag)
    print(f"deleted {args.vm}@{args.tag}")
    return 0


def cli_export(args: argparse.Namespace) -> int:
    store = _store(args)
    cp = store.get(args.vm, args.tag)
    labid = args.lab if args.lab.startswith("lf-") else f"lf-{args.lab}"
    if cp.manifest.get("lab") not in (None, labid, args.lab):
        print(f"note: {args.vm}@{args.tag} was saved in lab {cp.manifest['lab']}")
    out = store.export(args.vm, args.tag, args.file)
    print(f"exported {cp.vm}@{cp.tag} to {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def cli_import(args: argparse.Namespace) -> int:
    store = _store(args)
    cp = store.import_bundle(args.file, replace=args.replace)
    if _major_minor(cp.manifest.get("qemu_version", "")) != _major_minor(qemu_version()):
        print(f"warning: saved with QEMU {cp.manifest.get('qemu_version')}, this host has "
              f"{qemu_version()}: restoring may fail")
    print(f"imported {cp}")
    return 0
