"""The tiny guest on another Debian kernel package, as its own cache entry.

    img = kernels.build_tiny("linux-image-6.1.0-50-amd64")      # APT's version of it
    img = kernels.build_tiny("linux-image-6.1.0-50-amd64=6.1.176-1")
    vm = lab.vm("vm0", tap=2, image=img)                          # one VM on that kernel

The recipe is the tiny one with the kernel package given instead of the one
`linux-image-amd64` depends on: the package is part of the recipe's fingerprint, so the
build is another `tiny-HASH` entry of the cache, beside the default one (neither replaces
the other). `with kernels.tiny_on(PACKAGE):` makes it *the* tiny image of the process (what
`image="tiny"` and the `tiny_image` fixture get): `pytest --lab-guest-kernel PACKAGE` does
that for a session.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import labfixtures.guestimages as _images
from labfixtures.errors import LabError
from labfixtures.guestimages.cache import GuestImage, ImageCache, ProgressFn
from labfixtures.guestimages.tiny import RECIPE as TINY
from labfixtures.guestimages.tiny import TinyRecipe

PACKAGE_RE = re.compile(r"linux-image-[0-9][A-Za-z0-9.+~-]*")


def parse(kernel: str) -> tuple[str, str]:
    """'PACKAGE' or 'PACKAGE=VERSION' -> (package, version or '')."""
    package, _, version = kernel.partition("=")
    if not PACKAGE_RE.fullmatch(package):
        raise LabError(f"{kernel!r} is not a Debian kernel image package",
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
