"""guestimages.bzimage: the kernel inside a bzImage, found by its boot header and unpacked
whatever the flavour compressed it with (xz for Debian's generic kernel, lz4 for cloud)."""

import gzip
import lzma
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from labfixtures.errors import LabError
from labfixtures.guestimages.bzimage import bzimage_payload, extract_vmlinux

ELF = b"\x7fELF" + bytes(range(256)) * 64


def bzimage(payload: bytes, setup_sects: int = 3, offset: int = 100) -> bytes:
    """A bzImage as the kernel's build lays it out: boot sector and setup, then the
    protected-mode part holding the payload (with its uncompressed size appended)."""
    head = bytearray((setup_sects + 1) * 512)
    head[0x1F1] = setup_sects
    head[0x202:0x206] = b"HdrS"
    body = b"\0" * offset + payload + struct.pack("<I", len(ELF))
    struct.pack_into("<II", head, 0x248, offset, len(payload) + 4)
    return bytes(head) + body + b"\0" * 64


@pytest.mark.parametrize("compress", [lzma.compress, gzip.compress], ids=["xz", "gzip"])
def test_the_kernel_is_unpacked_from_the_payload_the_header_points_at(tmp_path, compress):
    src = tmp_path / "vmlinuz"
    src.write_bytes(bzimage(compress(ELF)))
    extract_vmlinux(src, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == ELF


@pytest.mark.skipif(shutil.which("lz4") is None, reason="the lz4 tool is not installed")
def test_an_lz4_kernel_the_cloud_flavours_is_unpacked_by_the_lz4_tool(tmp_path):
    packed = subprocess.run(["lz4", "-l", "-c", "-q"], input=ELF, capture_output=True,
                            check=True).stdout  # -l: the legacy frame the kernel uses
    src = tmp_path / "vmlinuz"
    src.write_bytes(bzimage(packed))
    assert bzimage_payload(src.read_bytes())[0] == "lz4"
    extract_vmlinux(src, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == ELF
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vmlinux", "vmlinuz"]


def test_no_boot_header_or_an_unknown_compression_is_one_clear_error(tmp_path: Path):
    with pytest.raises(LabError, match="is not a bzImage"):
        bzimage_payload(b"\0" * 4096, "vmlinuz")
    with pytest.raises(LabError, match="compressed in a way") as e:
        bzimage_payload(bzimage(b"BZh9" + b"\0" * 64), "vmlinuz")  # bzip2
    assert "xz, lz4, zstd or gzip" in e.value.remedy


def test_a_payload_shorter_than_its_header_says_is_refused(tmp_path):
    data = bytearray(bzimage(lzma.compress(ELF)))
    struct.pack_into("<I", data, len(data) - 64 - 4, len(ELF) + 1)  # the size appended
    (tmp_path / "vmlinuz").write_bytes(bytes(data))
    with pytest.raises(LabError, match="not an ELF kernel of the size its header says"):
        extract_vmlinux(tmp_path / "vmlinuz", tmp_path / "vmlinux")
