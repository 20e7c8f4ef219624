"""The image cache's inventory (`labctl image list`) and prune, on a cache of manifests in a
temporary folder (nothing is built or booted; the default kernel is APT's answer, asked
once), and the checks of `kernel=` at the VM API."""

from __future__ import annotations

from pathlib import Path

import pytest

from labfixtures import guestimages
from labfixtures.core import cpus
from labfixtures.errors import ImageError
from labfixtures.guestimages import GuestImage, ImageCache, inventory, kernels
from labfixtures.guestimages.tiny import RECIPE as TINY
from labfixtures.lab.vm import image_of
from labfixtures.lab.vmspec import VmOptions

VARIANT = "linux-image-6.1.0-99-amd64=6.1.999-1"


def build(c: ImageCache, h: str, package: str, version: str, built_at: float) -> Path:
    d = c.image_dir("tiny", h)
    d.mkdir(parents=True)
    (d / "vmlinux").write_bytes(b"\0" * 8192)
    GuestImage("tiny", h, d, d / "vmlinux", None, None, "", "root", c.private_key,
               packages={package: version}, built_at=built_at).write_manifest()
    return d


@pytest.fixture(scope="module")
def default_kernel(tmp_path_factory) -> tuple[str, str]:
    return TINY.kernel_package(ImageCache(tmp_path_factory.mktemp("apt")))


@pytest.fixture
def cache(tmp_path, default_kernel) -> ImageCache:
    """A default build, an older one (stale), a kernel variant and an interrupted build."""
    c = ImageCache(tmp_path)
    build(c, c.recipe_hash(TINY), *default_kernel, 3.0)
    build(c, "0123456789abcdef", *default_kernel, 1.0)
    pkg, version = kernels.parse(VARIANT)
    build(c, c.recipe_hash(kernels.TinyOnKernel(kernel=VARIANT)), pkg, version, 2.0)
    (c.images_dir / ".tiny-fedcba9876543210.x1y2").mkdir()
    return c


def kinds(c: ImageCache) -> dict[str, str]:
    return {e.path.name: e.kind for e in inventory.entries(c)}


def test_each_build_is_current_a_kernel_variant_stale_or_partial(cache, default_kernel):
    es = {e.kind: e for e in inventory.entries(cache)}
    assert sorted(kinds(cache).values()) == ["current", "kernel", "partial", "stale"]
    assert es["current"].kernel == " ".join(default_kernel) and es["current"].default_kernel
    assert es["kernel"].kernel == "linux-image-6.1.0-99-amd64 6.1.999-1"
    assert not es["kernel"].default_kernel
    assert es["stale"].path.name == "tiny-0123456789abcdef"
    assert es["current"].size >= 8192


def test_prune_dry_run_removes_nothing(cache):
    before = kinds(cache)
    result = inventory.prune(cache, dry_run=True)
    assert sorted(e.kind for e in result.removed) == ["partial", "stale"]
    assert kinds(cache) == before


def test_prune_keeps_current_builds_and_kernel_variants(cache):
    result = inventory.prune(cache)
    assert sorted(e.kind for e in result.removed) == ["partial", "stale"]
    assert result.freed >= 8192
    assert sorted(kinds(cache).values()) == ["current", "kernel"]
    assert kernels.get_tiny(VARIANT, cache).kernel.exists()


def test_prune_all_kernels_and_keep(cache):
    result = inventory.prune(cache, all_kernels=True, keep={"tiny-0123456789abcdef"})
    assert sorted(e.kind for e in result.removed) == ["kernel", "partial"]
    assert [(e.path.name, why) for e, why in result.kept] == [
        ("tiny-0123456789abcdef", "a checkpoint was saved on it")]
    assert sorted(kinds(cache).values()) == ["current", "stale"]


def test_kernel_goes_with_image_tiny_only():
    with pytest.raises(ImageError, match="debian image cannot be built on another kernel"):
        image_of(VmOptions(image="debian", kernel="linux-image-6.1.0-50-amd64"))
    with pytest.raises(ImageError, match="not a Debian kernel image package"):
        image_of(VmOptions(image="tiny", kernel="6.1.0-50"))


def test_an_unbuilt_kernel_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LABFIXTURES_CACHE", str(tmp_path))
    with pytest.raises(ImageError) as e:
        image_of(VmOptions(image="tiny", kernel=VARIANT))
    assert e.value.remedy.startswith(f"run `labctl image build tiny --kernel {VARIANT}`")


@pytest.mark.parametrize(("share", "host", "debian", "tiny"), [
    (None, 2, 2, 1),     # alone on a 2-core host: the debian guest's two vCPUs
    ("1", 2, 1, 1),      # one of two xdist workers on it: one each
    ("8", 2, 2, 1),      # a share above the host's CPUs is the host's
    ("0", 4, 1, 1),      # never below one
    ("many", 2, 2, 1),   # not a number: the host's
    (None, 1, 1, 1),     # a one-CPU host
])
def test_default_vcpus_follow_the_process_cpu_share(monkeypatch, share, host, debian, tiny):
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: host)
    if share is None:
        monkeypatch.delenv(guestimages.CPU_SHARE_ENV, raising=False)
    else:
        monkeypatch.setenv(guestimages.CPU_SHARE_ENV, share)
    assert guestimages.default_vcpus("debian") == debian
    assert guestimages.default_vcpus("tiny") == tiny
    assert guestimages.default_vcpus("debian", "guide") == 1  # the script's count
