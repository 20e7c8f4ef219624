"""The frames a scapy-based check sent and captured, kept for the report of a failed test.

A check (`assertions.vlan`) attaches them to the AssertionError it raises (`attach`);
the pytest plugin reads them back (`of`) and gives the reader a Wireshark `.pcap` (one
file, every frame in order) and a short decoded table (where, source, destination, VLAN
id, protocol) with the offending frames marked.
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

ATTRIBUTE = "lab_frames"  # the AssertionError's attribute that carries them
HIGHLIGHT = "lab_highlight"  # and the one naming the ports to draw in red
E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True)
class CapturedFrame:
    """FRAME (a scapy packet) sent or heard WHERE (`sent from h1 (eth0)`); OFFENDING
    marks the frames that make the check fail (a frame heard in another VLAN)."""

    where: str
    frame: Any
    offending: bool = False


@dataclass(frozen=True)
class Row:
    number: int
    where: str
    src: str
    dst: str
    vlan: str
    protocol: str
    offending: bool


def attach(exc: E, frames: Iterable[CapturedFrame], highlight: Iterable[str | None] = ()
           ) -> E:
    """EXC with FRAMES attached (for `raise attach(AssertionError(...), frames)`), and the
    names of the switch ports to HIGHLIGHT in the lab's drawing (where a frame leaked)."""
    setattr(exc, ATTRIBUTE, list(frames))
    setattr(exc, HIGHLIGHT, sorted({h for h in highlight if h}))
    return exc


def highlighted(exc: BaseException | None) -> set[str]:
    """The ports a failed check names for the drawing (none for any other exception)."""
    found = getattr(exc, HIGHLIGHT, None)
    return {h for h in found if isinstance(h, str)} if isinstance(found, list) else set()


def of(exc: BaseException | None) -> list[CapturedFrame]:
    """The frames attached to EXC (none for any other exception)."""
    found = getattr(exc, ATTRIBUTE, None)
    return [f for f in found if isinstance(f, CapturedFrame)] if isinstance(found, list) \
        else []


def _protocol(pkt: Any) -> str:
    from scapy.layers.l2 import Dot1Q  # scapy loads slowly: only when frames are decoded

    layer = pkt
    while isinstance(layer.payload, Dot1Q):
        layer = layer.payload
    ethertype = getattr(layer, "type", None)
    upper = layer.payload
    name = upper.name if upper is not None and upper.name not in ("Raw", "NoPayload") \
        else ""
    if name:
        return name
    return f"ethertype 0x{ethertype:04x}" if isinstance(ethertype, int) else "?"


def rows(frames: Iterable[CapturedFrame]) -> list[Row]:
    """One decoded line per frame: source, destination, VLAN id(s), protocol."""
    from scapy.layers.l2 import Dot1Q

    out = []
    for i, f in enumerate(frames, 1):
        pkt = f.frame
        vids = []
        layer = pkt
        while layer.haslayer(Dot1Q):
            layer = layer[Dot1Q]
            vids.append(str(layer.vlan))
            layer = layer.payload
        out.append(Row(i, f.where, str(getattr(pkt, "src", "?")),
                       str(getattr(pkt, "dst", "?")), ",".join(vids) or "untagged",
                       _protocol(pkt), f.offending))
    return out


def pcap(frames: Iterable[CapturedFrame]) -> bytes:
    """FRAMES as a pcap file (Ethernet link type), for Wireshark or tcpdump -r."""
    from scapy.utils import PcapWriter

    buf = io.BytesIO()
    writer = PcapWriter(buf, linktype=1, sync=True)  # wrpcap would close BUF
    writer.write_header(None)
    for f in frames:
        writer.write(f.frame)
    writer.flush()
    return buf.getvalue()


HEADER = ("#", "where", "source", "destination", "VLAN", "protocol", "")


def table_text(frames: Iterable[CapturedFrame]) -> str:
    lines = [list(HEADER)]
    for r in rows(frames):
        lines.append([str(r.number), r.where, r.src, r.dst, r.vlan, r.protocol,
                      "<== offending" if r.offending else ""])
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def table_html(frames: Iterable[CapturedFrame]) -> str:
    """An HTML table; offending rows are red and say so."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = []
    for r in rows(frames):
        style = ' class="lf-offending" style="color:#b00;font-weight:bold"' \
            if r.offending else ""
        cells = [str(r.number), r.where, r.src, r.dst, r.vlan, r.protocol,
                 "offending" if r.offending else ""]
        body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                    + "</tr>")
    return ('<table class="lf-frames" border="1" cellpadding="3" '
            f'style="border-collapse:collapse"><tr>{head}</tr>{"".join(body)}</table>')


__all__ = ["ATTRIBUTE", "HIGHLIGHT", "CapturedFrame", "Row", "attach", "highlighted", "of",
           "pcap", "rows", "table_html", "table_text"]
