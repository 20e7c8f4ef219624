"""The tiny guest on another Debian kernel package, as its own cache entry.

    img = kernels.build_tiny("linux-image-6.1.0-50-amd64")      # APT's version of it
    img = kernels.build_tiny("linux-image-6.1.0-50-amd64=6.1.176-1")
    vm = lab.vm("vm0", tap=2, image=img)                          # one VM on that kernel
    vm = lab.vm("vm0", tap=2, kernel="linux-image-6.1.0-50-amd64") # the same, if built

The recipe is the tiny one with the kernel package given instead of the one
`linux-image-amd64` depends on: the package is part of the recipe's fingerprint, so the
build is another `tiny-HASH` entry of the cache, beside the default one (neither replaces
the other). `with kernels.tiny_on(PACKAGE):` makes it *the* tiny image of the process (what
`image="tiny"` and the `tiny_image` fixture get): `pytest --lab-guest-kernel PACKAGE` does
that for a session. `get_tiny(PACKAGE)` finds a build without building (what
`lab.vm(..., kernel=PACKAGE)` uses, like `image="tiny"` uses `guestimages.get`).

A build records its kernel in its packages (`linux-image-*`); the recipe hash depends on
that package and version, not on how it was asked for, so `tiny` on the package that
`linux-image-amd64` depends on *is* the default build. `classify()` tells, for a build in
the cache, whether it is the default, a kernel variant, or stale (`labctl image list`,
`labctl image prune`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import labfixtures.guestimages as _images
from labfixtures.errors import ImageError
from labfixtures.guestimages.cache import GuestImage, ImageCache, ProgressFn
from labfixtures.guestimages.tiny import RECIPE as TINY
from labfixtures.guestimages.tiny import TinyRecipe

PACKAGE_RE = re.compile(r"linux-image-[0-9][A-Za-z0-9.+~-]*")


def parse(kernel: str) -> tuple[str, str]:
    """'PACKAGE' or 'PACKAGE=VERSION' -> (package, version or '')."""
    package, _, version = kernel.partition("=")
    if not PACKAGE_RE.fullmatch(package):
        raise ImageError("tiny", f"{kernel!r} is not a Debian kernel image package",
                       "give a versioned package such as linux-image-6.1.0-50-amd64 "
                       "(`apt-cache search --names-only '^linux-image-[0-9]'`), "
                       "optionally =VERSION")
    return package, version


@dataclass
class TinyOnKernel(TinyRecipe):
    """The tiny recipe on KERNEL ('PACKAGE' or 'PACKAGE=VERSION')."""

    kernel: str = ""

    def __post_init__(self) -> None:
        parse(self.kernel)
        self.description = f"{TINY.description}, on {self.kernel}"

    @property
    def build_command(self) -> str:
        """What builds this image (the remedy when it is missing)."""
        return f"labctl image build tiny --kernel {self.kernel}"

    def kernel_package(self, cache: ImageCache) -> tuple[str, str]:
        package, version = parse(self.kernel)
        return package, version or cache.apt_candidate(package)[0]


def tiny_recipe(kernel: str | None) -> TinyRecipe:
    """The tiny recipe, on KERNEL if given (None or '': the default kernel)."""
    return TinyOnKernel(kernel=kernel) if kernel else TINY


def build_tiny(kernel: str | None, cache: ImageCache | Path | str | None = None,
               progress: ProgressFn | None = print, force: bool = False) -> GuestImage:
    """Build (or find in the cache) the tiny image on KERNEL."""
    c = cache if isinstance(cache, ImageCache) else ImageCache(cache)
    return c.build(tiny_recipe(kernel), progress, force=force)


@contextlib.contextmanager
def tiny_on(kernel: str | None) -> Iterator[TinyRecipe]:
    """Within the block, `tiny` means the tiny image on KERNEL for this process."""
    recipe = tiny_recipe(kernel)
    old = _images.RECIPES[TINY.name]
    _images.RECIPES[TINY.name] = recipe
    try:
        yield recipe
    finally:
        _images.RECIPES[TINY.name] = old


def _cache(cache: ImageCache | Path | str | None) -> ImageCache:
    return cache if isinstance(cache, ImageCache) else ImageCache(cache)


_found: dict[tuple[str, str], GuestImage] = {}


def get_tiny(kernel: str, cache: ImageCache | Path | str | None = None) -> GuestImage:
    """The cached tiny image on KERNEL for the current inputs; never builds (an ImageError
    whose remedy is `labctl image build tiny --kernel KERNEL` if it is not built)."""
    c = _cache(cache)
    key = (kernel, str(c.root))
    if key in _found and _found[key].path.exists():
        return _found[key]
    recipe = TinyOnKernel(kernel=kernel)
    img = c.load(TINY.name, c.recipe_hash(recipe))
    if img is None:
        package, _ = parse(kernel)
        others = [f"{b.recipe_hash} ({kernel_of(b)[1]})" for b in c.built(TINY.name)
                  if kernel_of(b)[0] == package]
        raise ImageError(
            TINY.name,
            f"the tiny guest on {kernel} is not built in {c.root}"
            + (f" for the current recipe and packages (older builds: {', '.join(others)})"
               if others else ""),
            f"run `{recipe.build_command}` (about 10 s; or "
            f"`guestimages.kernels.build_tiny({kernel!r})`)")
    _found[key] = img
    return img


def kernel_of(img: GuestImage) -> tuple[str, str]:
    """(package, version) of the kernel IMG was built on ('', '' if it names none)."""
    for package, version in sorted(img.packages.items()):
        if PACKAGE_RE.fullmatch(package):
            return package, version
    return "", ""


@dataclass
class TinyBuild:
    """A tiny build of the cache, classified: `kind` is "default" (the build `tiny` gets),
    "kernel" (current for its kernel package and version, not the default one), or "stale"
    (no current recipe gives its hash: the recipe's sources or host packages changed)."""

    image: GuestImage
    package: str
    version: str
    kind: str


def classify(cache: ImageCache | Path | str | None = None) -> list[TinyBuild]:
    """Every tiny build of the cache with its kernel and kind, newest first. Asks APT only
    for the default kernel (remembered on disk); a variant's hash is computed from the
    package and version it records, so nothing is downloaded."""
    c = _cache(cache)
    default = c.recipe_hash(TINY)
    found = []
    for img in c.built(TINY.name):
        package, version = kernel_of(img)
        if img.recipe_hash == default:
            kind = "default"
        elif package and version and img.recipe_hash == c.recipe_hash(
                TinyOnKernel(kernel=f"{package}={version}")):
            kind = "kernel"
        else:
            kind = "stale"
        found.append(TinyBuild(img, package, version, kind))
    return found
