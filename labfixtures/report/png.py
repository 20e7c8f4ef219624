"""Just enough PNG reading to tell whether a picture shows something: a VM's screendump,
a browser's screenshot of a report (8-bit grey, RGB, grey+alpha and RGBA, not
interlaced; the formats QEMU and Chromium write). No imaging library needed."""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from dataclasses import dataclass

MAGIC = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]  # unfiltered scanlines, CHANNELS bytes per pixel

    def pixel(self, x: int, y: int) -> tuple[int, ...]:
        c = self.channels
        px = tuple(self.rows[y][x * c:(x + 1) * c])
        return px[:3] if c >= 3 else (px[0],) * 3

    def colours(self, box: tuple[int, int, int, int] | None = None, step: int = 1
                ) -> Counter[tuple[int, ...]]:
        """How many pixels of each RGB colour in BOX (x0, y0, x1, y1; default all)."""
        x0, y0, x1, y1 = box or (0, 0, self.width, self.height)
        return Counter(self.pixel(x, y) for y in range(y0, min(y1, self.height), step)
                       for x in range(x0, min(x1, self.width), step))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def decode(data: bytes) -> Image:
    if not data.startswith(MAGIC):
        raise ValueError("not a PNG")
    pos, idat, ihdr = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    if depth != 8 or ctype not in CHANNELS or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {ctype}, "
                         f"interlace {interlace})")
    c = CHANNELS[ctype]
    raw = zlib.decompress(idat)
    stride = width * c
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - c] if i >= c else 0
            b = prev[i]
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                line[i] = (line[i] + _paeth(a, b, prev[i - c] if i >= c else 0)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return Image(width, height, c, rows)


__all__ = ["Image", "decode"]
