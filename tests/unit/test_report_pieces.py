"""The report's pure pieces: the frames table and pcap, PNG reading, file names, the
GitLab attachment lines, the environment rows, labctl draw's format choice."""

import io
import struct
import zlib

import pytest
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import rdpcap

from labfixtures.cli import draw
from labfixtures.errors import LabError
from labfixtures.pytest_plugin import htmlreport
from labfixtures.regress.versions import ImageVersion, QemuVersion, Versions
from labfixtures.report import artifacts, frames, png


def captured() -> list[frames.CapturedFrame]:
    sent = Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff", type=0x88B5) / Raw(b"p")
    hop = Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / \
        Dot1Q(vlan=3, type=0x88B5) / Raw(b"p")
    return [frames.CapturedFrame("sent from a (eth0)", sent),
            frames.CapturedFrame("heard on c (eth0)", hop, offending=True)]


def test_rows_decode_vlan_and_protocol_and_mark_the_offending_frame():
    rows = frames.rows(captured())
    assert [(r.vlan, r.protocol, r.offending) for r in rows] == [
        ("untagged", "ethertype 0x88b5", False), ("3", "ethertype 0x88b5", True)]
    text = frames.table_text(captured()).splitlines()
    assert text[0].split() == ["#", "where", "source", "destination", "VLAN", "protocol"]
    assert text[2].endswith("<== offending") and "<==" not in text[1]
    table = frames.table_html(captured())
    assert table.count('class="lf-offending"') == 1


def test_pcap_reads_back_in_order():
    back = rdpcap(io.BytesIO(frames.pcap(captured())))
    assert len(back) == 2 and back[1][Dot1Q].vlan == 3


def test_frames_ride_on_the_exception_only():
    e = frames.attach(AssertionError("leak"), captured(), highlight=["c", None])
    assert isinstance(e, AssertionError) and len(frames.of(e)) == 2
    assert frames.highlighted(e) == {"c"}
    assert frames.of(AssertionError("x")) == [] and frames.of(None) == []
    assert frames.highlighted(None) == set()


def _png(rows: list[bytes], ctype: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))
    w = len(rows[0]) // png.CHANNELS[ctype]
    ihdr = struct.pack(">IIBBBBB", w, len(rows), 8, ctype, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return png.MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + \
        chunk(b"IEND", b"")


def test_png_pixels_and_colours():
    data = _png([bytes([0, 0, 0, 255, 255, 255]), bytes([221, 232, 245, 0, 0, 0])])
    image = png.decode(data)
    assert (image.width, image.height) == (2, 2) == artifacts.png_size(data)
    assert image.pixel(0, 1) == (221, 232, 245)
    assert image.colours()[(0, 0, 0)] == 2
    with pytest.raises(ValueError):
        png.decode(b"GIF89a")


def test_file_names_and_gitlab_attachment_lines():
    assert artifacts.file_name("tests/x.py::test_a[1-2]") == "tests_x.py_test_a_1-2"
    assert htmlreport._text_name("labfixtures: VM vm0: serial console, last lines (/run/x)") \
        == "vm-vm0-serial-console-last-lines.txt"
    assert htmlreport.attachment_lines(["/a/lab.svg", "/a/frames.pcap"]) == \
        "[[ATTACHMENT|/a/lab.svg]]\n[[ATTACHMENT|/a/frames.pcap]]"


def test_environment_rows():
    v = Versions(host_kernel="6.1.0", qemu=QemuVersion("/usr/bin/q", "7.2.22"),
                 openvswitch="3.1.0", accelerator="tcg", accelerator_reason="no vmx",
                 images={"tiny": ImageVersion("tiny", "abc", "6.1.0-57-amd64")})
    rows = htmlreport.environment(v)
    assert rows["QEMU accelerator"] == "tcg (no vmx)"
    assert rows["Lab host kernel"] == "6.1.0" and "Guest image tiny" in rows


def test_draw_format_from_option_suffix_or_default():
    assert draw.output_format(None, None) == "mermaid"
    assert draw.output_format(None, "lab.svg") == "svg"
    assert draw.output_format(None, "lab.gv") == "dot"
    assert draw.output_format("png", "lab.svg") == "png"
    with pytest.raises(LabError):
        draw.output_format(None, "lab.jpeg")
    assert draw.is_labfile("x.yml") and not draw.is_labfile("seed-minimal")
