"""The kernel inside a bzImage (`vmlinuz`), uncompressed once at image build.

Under TCG a bzImage spends ~3 s of every boot inflating itself; the ELF inside it boots at
once through its PVH entry. Where the compressed kernel lies is read from the boot header
(setup_sects, payload_offset, payload_length), not searched for, and its compression from
its first bytes: Debian compresses its generic and rt flavours with xz, its cloud flavour
with lz4.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from pathlib import Path

from labfixtures.core.runner import run
from labfixtures.errors import LabError

__all__ = ["bzimage_payload", "extract_vmlinux"]

#: the payload's first bytes -> its compression, as the kernel's build writes them
_PAYLOAD_MAGIC = {b"\xfd7zXZ\x00": "xz", b"\x02\x21\x4c\x18": "lz4", b"\x28\xb5\x2f\xfd": "zstd",
                  b"\x1f\x8b": "gzip"}


def bzimage_payload(data: bytes, name: str = "vmlinuz") -> tuple[str, bytes, int]:
    """The compressed kernel inside a bzImage (DATA), read from its boot header
    (setup_sects, payload_offset, payload_length): its compression, the compressed bytes,
    and the size once uncompressed (the 4 bytes the build appends)."""
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        raise LabError(f"{name} is not a bzImage (no boot header)",
                       "give a Debian linux-image package's vmlinuz")
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = data[start:start + length]
    kind = next((k for m, k in _PAYLOAD_MAGIC.items() if payload.startswith(m)), None)
    if kind is None or length < 8:
        raise LabError(f"the kernel in {name} is compressed in a way this recipe does not know",
                       "use a kernel compressed with xz, lz4, zstd or gzip (CONFIG_KERNEL_*)")
    (size,) = struct.unpack("<I", payload[-4:])
    return kind, payload[:-4], size


def extract_vmlinux(vmlinuz: Path, out: Path) -> None:
    """The uncompressed kernel (ELF with a PVH note) from inside bzImage: xz (Debian's
    generic and rt flavours), lz4 (its cloud flavour), zstd or gzip."""
    kind, payload, size = bzimage_payload(vmlinuz.read_bytes(), vmlinuz.name)
    if kind == "xz":
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    elif kind == "gzip":
        elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    else:  # no decoder in Python's standard library: the lz4 and zstd tools
        packed = out.with_name(out.name + f".{kind}")
        packed.write_bytes(payload)
        try:
            dest = ["-o", out] if kind == "zstd" else [out]
            run([kind, "-d", "-f", "-q", packed, *dest], timeout=300,
                missing=f"apt-get install {kind}")
        finally:
            packed.unlink(missing_ok=True)
        elf = out.read_bytes()
    if not elf.startswith(b"\x7fELF") or len(elf) != size:
        raise LabError(f"the {kind} stream in {vmlinuz.name} is not an ELF kernel of the "
                       f"size its header says ({len(elf)} bytes, not {size})",
                       "the package may be damaged: apt-get download it again")
    out.write_bytes(elf)
