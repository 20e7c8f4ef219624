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
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from labfixtures.errors import CommandError, LabError

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

    def manifest(self) -> dict:
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

    def fingerprint(self, cache: ImageCache) -> dict: ...

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
        sig = _apt_signature()
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


# -- Debian packages -----------------------------------------------------------------------


def _run(argv: list[str], remedy: str = "", timeout: float = 600) -> str:
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise LabError(f"`{argv[0]}` is not installed", remedy) from None
    if cp.returncode != 0:
        raise CommandError(argv, cp.returncode, cp.stderr or cp.stdout, remedy)
    return cp.stdout


def _apt_signature() -> list[int]:
    sig = []
    for p in ("/var/lib/apt/lists", "/etc/apt", "/etc/apt/sources.list",
              "/etc/apt/sources.list.d", "/etc/apt/preferences", "/etc/apt/preferences.d"):
        try:
            sig.append(os.stat(p).st_mtime_ns)
        except OSError:
            sig.append(0)
    return sig


@functools.lru_cache(maxsize=64)
def apt_candidate(package: str) -> tuple[str, str]:
    """(version, Depends line) of PACKAGE's candidate, as APT would install it now."""
    out = _run(["apt-cache", "show", "--no-all-versions", package],
               remedy=f"check that {package} exists for this release; run `apt-get update`")
    fields = dict(re.findall(r"^(Version|Depends): (.*)$", out, re.M))
    if "Version" not in fields:
        raise LabError(f"APT knows no candidate version of {package}", "run `apt-get update`")
    return fields["Version"], fields.get("Depends", "")


def installed_versions(packages: list[str]) -> dict[str, str | None]:
    """Installed version of each package (None if absent), in one dpkg-query call."""
    try:
        cp = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Status}\t${Version}\n",
                             *packages], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return dict.fromkeys(packages)
    found: dict[str, str | None] = dict.fromkeys(packages)
    for line in cp.stdout.splitlines():
        name, status, version = (line.split("\t") + ["", ""])[:3]
        if name in found and status.endswith(" installed"):
            found[name] = version
    return found


def require_installed(packages: list[str]) -> dict[str, str]:
    versions = installed_versions(packages)
    missing = [p for p, v in versions.items() if v is None]
    if missing:
        raise LabError(f"the image recipe needs the host packages {', '.join(missing)}",
                       f"apt-get install {' '.join(missing)}")
    return versions  # type: ignore[return-value]


def apt_download(package: str, version: str, dest: Path) -> Path:
    """`apt-get download PACKAGE=VERSION` into DEST, unless that exact file is there already.

    The file name (`name_version_arch.deb`) is the version record.
    """
    have = [p for p in dest.glob(f"{package}_*.deb")
            if p.name.split("_")[1].replace("%3a", ":") == version]
    if have:
        return have[0]
    with tempfile.TemporaryDirectory(dir=dest, prefix=".dl-") as tmp:
        os.chmod(tmp, 0o755)
        argv = ["apt-get", "download", "-q", f"{package}={version}"]
        if os.geteuid() == 0:  # root cannot hand the directory to _apt's sandbox: skip it
            argv[1:1] = ["-o", "APT::Sandbox::User=root"]
        try:
            cp = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=1800)
        except FileNotFoundError:
            raise LabError("apt-get is not available", "build images on a Debian host") from None
        if cp.returncode != 0:
            raise CommandError(argv, cp.returncode, cp.stderr,
                               "check the APT sources and network access to the mirror; "
                               "run `apt-get update`")
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise LabError(f"apt-get download {package} produced {len(debs)} files", "")
        target = dest / debs[0].name
        debs[0].rename(target)
    return target


def deb_extract(deb: Path, dest: Path, patterns: list[str],
                optional: tuple[str, ...] = ()) -> list[Path]:
    """Extract the members of DEB matching shell PATTERNS (e.g. `./boot/vmlinuz-*`).

    Patterns in OPTIONAL may match nothing (a module this kernel does not have).

    `dpkg-deb --fsys-tarfile | tar --wildcards` writes only what we need: a kernel package
    unpacks to ~400 MB, of which an initramfs needs a dozen modules.
    """
    dest.mkdir(parents=True, exist_ok=True)
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(dest), "--wildcards", *patterns, *optional],
                         stdin=dpkg.stdout, capture_output=True, text=True)
    assert dpkg.stdout is not None
    dpkg.stdout.close()
    dpkg_err = dpkg.stderr.read().decode() if dpkg.stderr else ""
    dpkg.wait()
    if dpkg.returncode != 0:
        raise CommandError(["dpkg-deb", "--fsys-tarfile", str(deb)], dpkg.returncode, dpkg_err)
    errors = [line for line in tar.stderr.splitlines()
              if not any(line.startswith(f"tar: {o}: Not found") for o in optional)
              and not line.startswith("tar: Exiting with failure")]
    if tar.returncode != 0 and errors:
        raise CommandError(["tar", "-x", *patterns], tar.returncode, tar.stderr)
    return [p for p in dest.rglob("*") if p.is_file()]
