"""The guest image cache: where built images live, and how a build stays safe.

Layout of the cache folder (`$LABFIXTURES_CACHE`, default `~/.cache/labfixtures`)::

    keys/id_ed25519{,.pub}      the SSH key pair every image trusts (made once per cache)
    debs/*.deb                  packages fetched with `apt-get download` (file names carry
                                the version, so a new upload is a new file)
    images/NAME-HASH/           one built image: kernel, initramfs, optional disk,
                                manifest.json
    locks/NAME.lock             flock(2) held while NAME is built

Why a hash in the directory name: an image is rebuilt exactly when something that went into
it changed (the recipe's source, its parameters, the versions of the Debian packages used,
the cache's public key), and never otherwise. Why build into a temporary directory and
rename: a crash mid-build leaves no half image that a later run could take for a good one.
Why a lock: pytest-xdist workers start together and would all build the same image.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from labfixtures.guestimages.apt import apt_candidate, apt_signature

ProgressFn = Callable[[str], None]

MANIFEST = "manifest.json"
KEY_NAME = "id_ed25519"


def default_cache_dir() -> Path:
    env = os.environ.get("LABFIXTURES_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "labfixtures"


@dataclass
class GuestImage:
    """A built image: everything a `MachineSpec` needs to boot it and log in."""

    name: str
    recipe_hash: str
    path: Path
    kernel: Path
    initrd: Path | None
    disk: Path | None
    cmdline: str
    ssh_user: str
    private_key: Path
    public_key: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    host_public_key: str = ""
    facts: dict[str, str] = field(default_factory=dict)
    built_at: float = 0.0
    build_seconds: float = 0.0

    def manifest(self) -> dict[str, Any]:
        """What manifest.json holds: file names are relative to the image directory."""
        d = asdict(self)
        for key in ("path", "private_key"):
            d.pop(key)
        for key in ("kernel", "initrd", "disk"):
            if d[key] is not None:
                d[key] = os.path.relpath(d[key], self.path)
        return d

    def write_manifest(self) -> None:
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n")
        tmp.rename(self.path / MANIFEST)

    @classmethod
    def load(cls, path: Path, private_key: Path) -> GuestImage:
        d = json.loads((path / MANIFEST).read_text())
        for key in ("kernel", "initrd", "disk"):
            if d.get(key) is not None:
                d[key] = path / d[key]
        return cls(path=path, private_key=private_key, **d)


class Progress:
    """Prints `[tiny] step 3/8: extracting the kernel` lines, with the time each step took."""

    def __init__(self, name: str, total: int, out: ProgressFn | None = print) -> None:
        self.name, self.total, self.out = name, total, out
        self.i = 0
        self.t0 = self.t = time.monotonic()

    def step(self, what: str) -> None:
        now = time.monotonic()
        self.i += 1
        if self.out:
            self.out(f"[{self.name}] step {self.i}/{self.total}: {what}"
                     + (f" (previous step {now - self.t:.1f}s)" if self.i > 1 else ""))
        self.t = now

    def done(self, what: str) -> None:
        if self.out:
            self.out(f"[{self.name}] {what} in {time.monotonic() - self.t0:.1f}s")


class Recipe(Protocol):
    """A way to build one image. `fingerprint` must be cheap: it decides cache hits."""

    name: str
    description: str

    def fingerprint(self, cache: ImageCache) -> dict[str, Any]: ...

    def build(self, cache: ImageCache, out: Path, progress: Progress) -> GuestImage: ...


def source_digest(*paths: Path) -> dict[str, str]:
    """sha256 of each source file that shapes an image (the recipe, its init scripts)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


class ImageCache:
    """The cache folder; `build()` is the one place that decides whether to rebuild."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"ImageCache({str(self.root)!r})"

    def _dir(self, sub: str) -> Path:
        d = self.root / sub
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def images_dir(self) -> Path:
        return self._dir("images")

    @property
    def debs_dir(self) -> Path:
        return self._dir("debs")

    # -- SSH key pair ------------------------------------------------------------------

    @property
    def private_key(self) -> Path:
        return self.root / "keys" / KEY_NAME

    def public_key(self) -> str:
        """The cache's public key (OpenSSH line), generating the pair on first use."""
        self.ensure_keypair()
        return (self.private_key.parent / (KEY_NAME + ".pub")).read_text().strip()

    def ensure_keypair(self) -> Path:
        """ed25519 via `cryptography` (a paramiko dependency): no ssh-keygen needed."""
        priv = self.private_key
        pub = priv.parent / (KEY_NAME + ".pub")
        if priv.exists() and pub.exists():
            return priv
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        keys = self._dir("keys")
        os.chmod(keys, 0o700)
        with self.lock("keys"):
            if priv.exists() and pub.exists():
                return priv
            key = Ed25519PrivateKey.generate()
            priv_pem = key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.OpenSSH,
                                         serialization.NoEncryption())
            pub_line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH)
            tmp = keys / f".{KEY_NAME}.{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(priv_pem)
            (keys / (KEY_NAME + ".pub.tmp")).write_bytes(pub_line + b" labfixtures\n")
            (keys / (KEY_NAME + ".pub.tmp")).rename(pub)
            tmp.rename(priv)
        return priv

    # -- locking and atomic builds -------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, progress: ProgressFn | None = None) -> Iterator[None]:
        """Exclusive flock on locks/NAME.lock; says so when it has to wait for another build."""
        path = self._dir("locks") / f"{name}.lock"
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "?"
                if progress:
                    progress(f"[{name}] waiting for another build (pid {holder}) to finish")
                fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            try:
                yield
            finally:
                f.truncate(0)
                fcntl.flock(f, fcntl.LOCK_UN)

    def image_dir(self, name: str, recipe_hash: str) -> Path:
        return self.images_dir / f"{name}-{recipe_hash}"

    def load(self, name: str, recipe_hash: str) -> GuestImage | None:
        d = self.image_dir(name, recipe_hash)
        if not (d / MANIFEST).exists():
            return None
        return GuestImage.load(d, self.private_key)

    def built(self, name: str) -> list[GuestImage]:
        """Every complete image of NAME in the cache, newest first (whatever its hash)."""
        found = []
        for d in self.images_dir.glob(f"{name}-*"):
            if (d / MANIFEST).exists():
                with contextlib.suppress(ValueError, TypeError, OSError):
                    found.append(GuestImage.load(d, self.private_key))
        return sorted(found, key=lambda im: im.built_at, reverse=True)

    def recipe_hash(self, recipe: Recipe) -> str:
        fp = recipe.fingerprint(self)
        fp = {"recipe": recipe.name, "public_key": self.public_key(), **fp}
        blob = json.dumps(fp, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def build(self, recipe: Recipe, progress: ProgressFn | None = print,
              force: bool = False) -> GuestImage:
        """Return the image for RECIPE, building it only if its hash is not in the cache."""
        h = self.recipe_hash(recipe)
        if not force and (img := self.load(recipe.name, h)):
            return img
        with self.lock(recipe.name, progress):
            if not force and (img := self.load(recipe.name, h)):
                return img  # another worker built it while we waited
            final = self.image_dir(recipe.name, h)
            tmp = Path(tempfile.mkdtemp(prefix=f".{recipe.name}-{h}.", dir=self.images_dir))
            os.chmod(tmp, 0o755)
            t0 = time.monotonic()
            try:
                img = recipe.build(self, tmp, _progress_for(recipe, progress))
                img.recipe_hash = h
                img.built_at = time.time()
                img.build_seconds = round(time.monotonic() - t0, 2)
                img.write_manifest()
                if final.exists():
                    shutil.rmtree(final)
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        img = self.load(recipe.name, h)
        assert img is not None
        return img

    def apt_candidate(self, package: str) -> tuple[str, str]:
        """`apt_candidate`, remembered on disk until APT's lists or sources change.

        `apt-cache` takes ~1 s to load its cache on these machines, and the hash is needed
        by every `get()`; the answer only changes after `apt-get update` (which renames
        files into /var/lib/apt/lists) or an edit under /etc/apt.
        """
        memo = self.root / "apt-candidates.json"
        sig = apt_signature()
        try:
            data = json.loads(memo.read_text())
        except (OSError, ValueError):
            data = {}
        if data.get("signature") != sig:
            data = {"signature": sig, "packages": {}}
        if package not in data["packages"]:
            data["packages"][package] = list(apt_candidate(package))
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.rename(memo)
        version, depends = data["packages"][package]
        return version, depends

    def prune(self, name: str, keep: str) -> list[Path]:
        """Remove images of NAME other than hash KEEP, and leftovers of crashed builds."""
        removed = []
        for d in self.images_dir.glob(f"{name}-*"):
            if d.name != f"{name}-{keep}":
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
        for d in self.images_dir.glob(f".{name}-*"):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        return removed


def _progress_for(recipe: Recipe, out: ProgressFn | None) -> Progress:
    return Progress(recipe.name, getattr(recipe, "steps", 1), out)
