"""A checkpoint's manifest: what was saved, on which image and machine, and every file's hash.

`manifest.json` is written by `Manifest.dumps()` and read by `Manifest.loads()`, nothing
else: the store, the bundles and the CLI all go through this dataclass. The reader checks
the shape before any name from it is used as a path, and reads every format listed in
`READS`:

* format 1 (labfixtures before the checkpoint package split): `vm` in the version-1
  layout of vm.json, a `machine` section that repeated the VM's memory, vCPUs, profile,
  extra arguments and NICs, a `role` per file, the save timings under `save_seconds`;
* format 2 (written now): `vm` is the VM's `VmState` (lab/state.py, vm.json's own
  versioned format, read by its own reader), said once; `machine` holds only what it does
  not say (the accelerator and the QEMU command line); timings under `timings`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labfixtures.errors import CheckpointError, LabError
from labfixtures.lab.state import VmState
from labfixtures.qemu.images import qemu_img_info

if TYPE_CHECKING:
    from labfixtures.guestimages import GuestImage

FORMAT = 2
READS = (1, 2)
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.json.sha256"
STATE_FILE = "state.qcow2"
DISK_FILE = "disk.qcow2"
FILES = (STATE_FILE, DISK_FILE)
MAX_MANIFEST = 1 << 20

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def check_name(value: str, what: str) -> str:
    """VALUE if it can name a checkpoint directory (a VM name, a tag), else CheckpointError."""
    if not isinstance(value, str) or not _NAME_RE.match(value) or ".." in value:
        raise CheckpointError(f"{what} {value!r} is not usable as a checkpoint name",
                              "use letters, digits, '.', '-' or '_' (64 at most, no '/')",
                              reason="invalid")
    return value


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_sha256(path: Path, cache_file: Path | None) -> str:
    """sha256 of PATH, computed once per (path, size, mtime) and kept in CACHE_FILE."""
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    known: dict[str, str] = {}
    if cache_file is not None:
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(cache_file.read_text())
            if isinstance(loaded, dict):
                known = {str(k): str(v) for k, v in loaded.items()}
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


def _str(d: Mapping[str, Any], key: str, where: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise ValueError(f"{where}.{key} is missing")
    return v


def _opt_str(v: object) -> str | None:
    return v if isinstance(v, str) else None


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class ImageIdentity:
    """The base image: name and recipe hash (which covers the recipe, the package versions
    and the cache's SSH key, the key the saved guest trusts), and its disk's sha256."""

    name: str
    recipe_hash: str
    public_key: str = ""
    disk_sha256: str | None = None
    disk_format: str | None = None

    @classmethod
    def of(cls, image: GuestImage, hash_cache: Path | None = None) -> ImageIdentity:
        if image.disk is None:
            return cls(image.name, image.recipe_hash, image.public_key)
        fmt = qemu_img_info(image.disk).get("format")
        return cls(image.name, image.recipe_hash, image.public_key,
                   cached_sha256(image.disk, hash_cache), fmt if isinstance(fmt, str) else None)

    @property
    def label(self) -> str:
        return f"{self.name}-{self.recipe_hash}"


def differences(saved: VmState, current: VmState) -> list[str]:
    """What differs between the machine a checkpoint was saved on (SAVED) and CURRENT's,
    among what a saved guest cannot survive: memory, vCPUs, profile, QEMU arguments, and
    its NICs (tap, user mode, MAC, queues)."""
    out = [f"{k}: checkpoint {a!r}, VM {b!r}" for k, a, b in (
        ("profile", saved.profile, current.profile),
        ("memory_mb", saved.memory_mb, current.memory_mb),
        ("vcpus", saved.vcpus, current.vcpus),
        ("extra_args", list(saved.extra_args), list(current.extra_args))) if a != b]
    w = [(n.tap, n.user, n.mac, n.queues) for n in saved.nics]
    h = [(n.tap, n.user, n.mac, n.queues) for n in current.nics]
    if w != h:
        out.append(f"NICs (tap, user, mac, queues): checkpoint {w}, VM {h}")
    return out


@dataclass(frozen=True)
class Manifest:
    """One checkpoint's manifest (see the module's doc for the formats)."""

    tag: str
    vm: VmState
    image: ImageIdentity
    files: Mapping[str, FileEntry]
    created: float
    lab: str | None = None
    accel: str | None = None
    qemu_argv: tuple[str, ...] = ()
    qemu_version: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files.values())

    # -- the one reader ------------------------------------------------------------------

    @classmethod
    def loads(cls, raw: bytes | str, where: str = "manifest") -> Manifest:
        """Parse and check a manifest (any format in READS); CheckpointError("invalid")."""
        try:
            d = json.loads(raw)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            return cls.from_dict(d)
        except CheckpointError:
            raise
        except (LabError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{where} is not a valid checkpoint manifest ({e})",
                                  "create checkpoints and bundles with labfixtures "
                                  "(`labctl checkpoint save`/`export`)",
                                  reason="invalid", path=where) from None

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        return cls.loads((directory / MANIFEST).read_bytes(), str(directory / MANIFEST))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        fmt = d.get("format")
        if fmt not in READS:
            raise ValueError(f"format {fmt!r}, this labfixtures reads {READS}")
        tag = check_name(_str(d, "tag", "manifest"), "checkpoint tag")
        vm = d.get("vm")
        img = d.get("image")
        files = d.get("files")
        if not isinstance(vm, Mapping) or not isinstance(img, Mapping):
            raise ValueError("vm or image is missing")
        if not isinstance(files, Mapping) or STATE_FILE not in files:
            raise ValueError(f"files must list {STATE_FILE}")
        entries: dict[str, FileEntry] = {}
        for name, meta in files.items():
            if name not in FILES:
                raise ValueError(f"unexpected file {name!r}")
            sha, size = meta.get("sha256"), meta.get("size")
            if not isinstance(sha, str) or not _SHA_RE.match(sha) or \
                    not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError(f"bad sha256 or size for {name}")
            entries[name] = FileEntry(sha, size)
        machine = d.get("machine") or {}
        timings = d.get("timings" if fmt >= 2 else "save_seconds") or {}
        created = d.get("created", 0.0)
        return cls(
            tag=tag, vm=_vm_state(vm),
            image=ImageIdentity(_str(img, "name", "image"), _str(img, "recipe_hash", "image"),
                                str(img.get("public_key") or ""),
                                _opt_str(img.get("disk_sha256")),
                                _opt_str(img.get("disk_format"))),
            files=entries, created=float(created) if isinstance(created, int | float) else 0.0,
            lab=_opt_str(d.get("lab")), accel=_opt_str(machine.get("accel")),
            qemu_argv=tuple(str(a) for a in machine.get("qemu_argv") or ()),
            qemu_version=str(d.get("qemu_version") or ""),
            timings={str(k): float(v) for k, v in timings.items()}, format=fmt)

    # -- the one writer ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Format 2 (FORMAT), whatever format this manifest was read from."""
        return {"format": FORMAT, "tag": self.tag, "created": self.created, "lab": self.lab,
                "vm": self.vm.to_dict(),
                "image": {"name": self.image.name, "recipe_hash": self.image.recipe_hash,
                          "public_key": self.image.public_key,
                          "disk_sha256": self.image.disk_sha256,
                          "disk_format": self.image.disk_format},
                "machine": {"accel": self.accel, "qemu_argv": list(self.qemu_argv)},
                "qemu_version": self.qemu_version,
                "files": {n: {"sha256": f.sha256, "size": f.size}
                          for n, f in sorted(self.files.items())},
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}

    def dumps(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode()

    def write(self, directory: Path) -> bytes:
        raw = self.dumps()
        (directory / MANIFEST).write_bytes(raw)
        return raw


def _vm_state(d: Mapping[str, Any]) -> VmState:
    vm = VmState.from_dict(dict(d), "the manifest's vm")
    check_name(vm.name, "VM name")
    return vm


def file_entries(directory: Path, names: Sequence[str] = FILES) -> dict[str, FileEntry]:
    """The FileEntry of each of NAMES present in DIRECTORY."""
    return {n: FileEntry(sha256_file(directory / n), (directory / n).stat().st_size)
            for n in names if (directory / n).exists()}
