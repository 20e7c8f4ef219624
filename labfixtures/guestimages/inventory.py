"""What the image cache holds, and pruning what no current recipe gives any more.

    for e in inventory.entries():          # every build: its kind, kernel, size
        print(e.path.name, e.kind, e.kernel)
    inventory.prune(dry_run=True)          # what `labctl image prune --dry-run` lists

Kinds of entry (`Entry.kind`):

* `current`: the build a recipe name gives now (`image="tiny"`, `image="debian"`);
* `kernel`: a tiny build on another kernel, current for its package and version
  (`kernel="PACKAGE"` or `"PACKAGE=VERSION"` gets it), see `kernels.classify`;
* `stale`: a build whose hash no current recipe gives (the recipe's sources, a package it
  uses or the cache's key changed since): nothing selects it any more, except a
  checkpoint saved on it;
* `partial`: the leftover of a build that was interrupted (`.NAME-HASH.*`).

`prune()` removes stale and partial entries, and kernel variants too when asked; never
the current builds, never a build a running QEMU uses (its kernel or disk on the command
line), never one in KEEP (the CLI passes the images of named checkpoints). It holds each
recipe's build lock meanwhile, so a build in progress is not taken for a leftover.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from labfixtures.guestimages import kernels
from labfixtures.guestimages.cache import MANIFEST, GuestImage, ImageCache, Recipe
from labfixtures.guestimages.debian import RECIPE as DEBIAN
from labfixtures.guestimages.tiny import RECIPE as TINY

#: the recipes by name as shipped (a session's --lab-guest-kernel swaps `tiny` in
#: guestimages.RECIPES; the default stays the default here)
DEFAULTS: dict[str, Recipe] = {TINY.name: TINY, DEBIAN.name: DEBIAN}


@dataclass
class Entry:
    """One directory of the cache's images/ folder."""

    name: str  # the recipe name
    path: Path
    kind: str  # current, kernel, stale, partial
    size: int  # bytes on disk
    image: GuestImage | None = None  # None for a partial build
    kernel: str = ""  # the kernel package and version, "PACKAGE VERSION"
    default_kernel: bool = False  # the kernel that `linux-image-amd64` depends on now
    in_use: bool = False  # a running QEMU uses it

    @property
    def recipe_hash(self) -> str:
        return self.image.recipe_hash if self.image else ""


def disk_usage(path: Path) -> int:
    """Bytes allocated under PATH (sparse disks count what they use, like `du`)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


def paths_in_use() -> set[str]:
    """Every argument of every running QEMU's command line (image files show there)."""
    found: set[str] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu" in os.path.basename(argv[0]):
            for a in argv[1:]:
                found.update(part.split("=", 1)[-1] for part in a.decode(
                    errors="replace").split(","))
    return found


def _used(path: Path, used: set[str]) -> bool:
    prefix = str(path) + "/"
    return any(u.startswith(prefix) for u in used)


def _kernel(img: GuestImage) -> tuple[str, str]:
    return kernels.kernel_of(img)


def entries(cache: ImageCache | Path | str | None = None) -> list[Entry]:
    """Every build and leftover of the cache, by recipe name then newest first."""
    c = cache if isinstance(cache, ImageCache) else ImageCache(cache)
    used = paths_in_use()
    default_pkg = ""
    out: list[Entry] = []
    for name, recipe in sorted(DEFAULTS.items()):
        if name == TINY.name:
            default_pkg = " ".join(TINY.kernel_package(c)) if c.built(name) else ""
            kinds = [(b.image, {"default": "current"}.get(b.kind, b.kind))
                     for b in kernels.classify(c)]
        else:
            h = c.recipe_hash(recipe) if c.built(name) else ""
            kinds = [(img, "current" if img.recipe_hash == h else "stale")
                     for img in c.built(name)]
        for img, kind in kinds:
            kernel = " ".join(_kernel(img)).strip()
            out.append(Entry(name, img.path, kind, disk_usage(img.path), img, kernel,
                             name == TINY.name and kernel == default_pkg,
                             _used(img.path, used)))
        seen = {e.path for e in out}
        for d in sorted(c.images_dir.glob(f"{name}-*")) + sorted(
                c.images_dir.glob(f".{name}-*")):
            if d not in seen and d.is_dir() and not (d / MANIFEST).exists():
                out.append(Entry(name, d, "partial", disk_usage(d),
                                 in_use=_used(d, used)))
    return out


@dataclass
class Pruned:
    """What `prune()` removed (or would remove), and what it kept of its kinds, and why."""

    removed: list[Entry] = field(default_factory=list)
    kept: list[tuple[Entry, str]] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(e.size for e in self.removed)


def prune(cache: ImageCache | Path | str | None = None, *, all_kernels: bool = False,
          dry_run: bool = False, keep: Iterable[str] = ()) -> Pruned:
    """Remove the stale and partial entries (and the kernel variants with ALL_KERNELS);
    KEEP: directory names (`tiny-HASH`) to keep whatever their kind, such as the images
    named checkpoints were saved on. Nothing is removed with DRY_RUN."""
    c = cache if isinstance(cache, ImageCache) else ImageCache(cache)
    kept = set(keep)
    doomed = {"stale", "partial"} | ({"kernel"} if all_kernels else set())
    result = Pruned()
    for name in sorted(DEFAULTS):
        lock = contextlib.nullcontext() if dry_run else c.lock(name, print)
        with lock:  # no build of NAME runs meanwhile: a partial entry is a leftover
            for e in entries(c):
                if e.name != name or e.kind not in doomed:
                    continue
                if e.in_use:
                    result.kept.append((e, "a running QEMU uses it"))
                elif e.path.name in kept:
                    result.kept.append((e, "a checkpoint was saved on it"))
                else:
                    if not dry_run:
                        shutil.rmtree(e.path)
                    result.removed.append(e)
    return result
