"""Guest images built from Debian packages, cached by recipe hash.

    img = guestimages.build("tiny")        # builds once, then returns the cached image
    img = guestimages.get("tiny")          # cached image, or a LabError saying how to build
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labfixtures.core.cpus import CPU_SHARE_ENV, cpu_share
from labfixtures.errors import ImageError
from labfixtures.guestimages.cache import (
    GuestImage,
    ImageCache,
    ProgressFn,
    Recipe,
    default_cache_dir,
)
from labfixtures.guestimages.config import GuestConfig, InterfaceConfig, Route
from labfixtures.guestimages.debian import RECIPE as DEBIAN
from labfixtures.guestimages.tiny import RECIPE as TINY
from labfixtures.qemu.spec import TB_SIZE_MB

__all__ = [
    "GuestConfig", "GuestImage", "ImageCache", "ImageInfo", "InterfaceConfig", "Route",
    "CPU_SHARE_ENV", "RECIPES", "build", "cpu_share", "default_cache_dir", "default_tb_size",
    "default_vcpus", "get",
    "list_images", "recipe",
]

RECIPES: dict[str, Recipe] = {TINY.name: TINY, DEBIAN.name: DEBIAN}


#: vCPUs of a VM of the image when none are asked for. The debian guest's boot runs udev's
#: coldplug beside its services: under TCG two vCPUs bring it to SSH in ~9 s instead of
#: ~13 s (bench/debian_boot.py --vcpus 1/2, docs/host-facts.md). The tiny guest boots one
#: shell script: a second vCPU would only cost memory.
DEFAULT_VCPUS = {DEBIAN.name: 2}


def default_vcpus(image: str, profile: str = "fast") -> int:
    """The image's default vCPU count, never more than this process's CPU share
    (`cpu_share()`). On the `guide` profile 1, which there means the script's own count
    (qemu/guide.py)."""
    if profile == "guide":
        return 1
    return max(1, min(DEFAULT_VCPUS.get(image, 1), cpu_share()))


#: TCG translation cache (MiB) of a VM of the image when none is asked for; other images get
#: qemu.spec.TB_SIZE_MB (32: the tiny guest's memory). The debian guest runs far more code
#: (systemd, udev, apt, python): at 32 MiB the cache is flushed and code translated again
#: over and over, and its boot takes ~40 % longer (bench/debian_boot.py --tb-size).
DEFAULT_TB_SIZE_MB = {DEBIAN.name: 256}


def default_tb_size(image: str) -> int:
    """The image's TCG translation cache size, MiB (`-accel tcg,tb-size=`)."""
    return DEFAULT_TB_SIZE_MB.get(image, TB_SIZE_MB)


def _cache(cache: ImageCache | Path | str | None) -> ImageCache:
    return cache if isinstance(cache, ImageCache) else ImageCache(cache)


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ImageError(name, f"no guest image recipe named {name!r}",
                         f"use one of: {', '.join(sorted(RECIPES))}") from None


def build(name: str, cache: ImageCache | Path | str | None = None,
          progress: ProgressFn | None = print, force: bool = False) -> GuestImage:
    """Build image NAME unless the cache already holds it for the current inputs."""
    return _cache(cache).build(recipe(name), progress, force=force)


_current: dict[tuple[str, str, str], GuestImage] = {}


def get(name: str, cache: ImageCache | Path | str | None = None) -> GuestImage:
    """The cached image NAME for the current inputs; never builds (builds take minutes)."""
    c = _cache(cache)
    r = recipe(name)
    kernel: str = getattr(r, "kernel", "")  # kernels.tiny_on() swaps in a kernel variant
    key = (name, str(c.root), kernel)
    if key in _current and _current[key].path.exists():
        return _current[key]
    img = c.load(name, c.recipe_hash(r))
    if img is None:
        # a kernel variant has older builds only on its package
        package = kernel.partition("=")[0]
        stale = [b for b in c.built(name) if not package or package in b.packages]
        raise ImageError(
            name,
            f"guest image {name!r}{' on ' + kernel if kernel else ''} is not built in "
            f"{c.root}"
            + (" for the current recipe and packages (an older build exists)" if stale else ""),
            f"run `{getattr(r, 'build_command', f'labctl image build {name}')}`",
        )
    _current[key] = img
    return img


@dataclass
class ImageInfo:
    name: str
    description: str
    current: GuestImage | None
    others: list[GuestImage]


def list_images(cache: ImageCache | Path | str | None = None) -> list[ImageInfo]:
    """Every recipe, with its up-to-date build if any and the stale builds kept."""
    c = _cache(cache)
    infos = []
    for name, r in sorted(RECIPES.items()):
        h = c.recipe_hash(r)
        builds = c.built(name)
        current = next((b for b in builds if b.recipe_hash == h), None)
        infos.append(ImageInfo(name, r.description, current,
                               [b for b in builds if b is not current]))
    return infos
