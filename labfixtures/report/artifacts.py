"""What a report shows of a lab at the moment a test failed, as files: the lab drawn (SVG),
each VM's screen (PNG, QMP `screendump`, for machines with a display), the frames of a
scapy-based check (`.pcap` and a decoded table), and text (logs, command lines).

An `Artifact` is bytes with a file name and a title; `save` writes a list of them into a
folder (the paths GitLab's JUnit view attaches). The pytest plugin turns them into
pytest-html extras.
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from labfixtures.errors import LabError
from labfixtures.lab.lab import Lab
from labfixtures.lab.vm import VM
from labfixtures.report import drawing, frames

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KINDS = ("svg", "png", "pcap", "text", "html", "file")  # file: for the folder only


@dataclass(frozen=True)
class Artifact:
    name: str  # a file name: lab.svg, vm0-screen.png, frames.pcap, vm0-serial.txt
    title: str  # what a reader is told it is
    kind: str  # one of KINDS
    data: bytes


def file_name(text: str) -> str:
    """TEXT made into a safe file name (a test id, a section title)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.")[:120] or "x"


def lab_drawing(lab: Lab, png: bool = False, highlight: Collection[str] = ()
                ) -> list[Artifact]:
    """LAB drawn as it is now (read back from OVS and netlink), as SVG (and PNG, for the
    folder: a JUnit viewer shows an image attachment, not always an SVG); the ports named
    in HIGHLIGHT (those of a failed check) in red."""
    pic = drawing.snapshot(lab)
    title = f"lab {lab.labid} at the moment of failure" + (
        f" (in red: {', '.join(sorted(highlight))})" if highlight else "")
    out = [Artifact("lab.svg", title, "svg", drawing.render(pic, "svg", highlight))]
    if png:
        out.append(Artifact("lab.png", title, "file", drawing.render(pic, "png", highlight)))
    return out


def has_display(vm: VM) -> bool:
    """Whether VM's machine may have a screen to dump: a running `pc`, `q35` or `guide`
    machine (microvm has none). Its screendump still fails (QmpError, "no console") unless
    it has a display device: the guide profile's qxl, or `extra_args=["-vga", "std"]`."""
    m = vm.machine
    return m is not None and m.running and m.spec.profile != "fast"


def screendump(vm: VM) -> bytes:
    """VM's screen now, as PNG (QMP `screendump`, format png: QEMU 7.2 or later)."""
    if not has_display(vm):
        raise LabError(f"VM {vm.name} has no screen to dump",
                       "the 'fast' profile (microvm) has no display: use profile 'pc'")
    assert vm.machine is not None
    out = vm.machine.run_dir / f"{vm.name}.screen.png"
    out.unlink(missing_ok=True)
    try:
        vm.machine.qmp("screendump", filename=str(out), format="png")
        data = out.read_bytes()
    finally:
        out.unlink(missing_ok=True)
    if not data.startswith(PNG_MAGIC):
        raise LabError(f"QEMU's screendump of {vm.name} is not a PNG",
                       "QEMU 7.2 or later writes PNG (format: png)")
    return data


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, from its IHDR."""
    if not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def screens(lab: Lab) -> list[Artifact]:
    out = []
    for vm in lab.vms.values():
        if has_display(vm):
            with contextlib.suppress(LabError, OSError):  # QmpError: no display device
                out.append(Artifact(f"{vm.name}-screen.png", f"VM {vm.name}: its screen",
                                    "png", screendump(vm)))
    return out


def frame_artifacts(captured: list[frames.CapturedFrame]) -> list[Artifact]:
    """The frames of a failed check: a pcap, the decoded table (HTML and text)."""
    if not captured:
        return []
    return [Artifact("frames.pcap", "the frames of the check (open with Wireshark)", "pcap",
                     frames.pcap(captured)),
            Artifact("frames.html", "the frames of the check, decoded", "html",
                     frames.table_html(captured).encode()),
            Artifact("frames.txt", "the frames of the check, decoded", "text",
                     frames.table_text(captured).encode())]


def save(artifacts: Iterable[Artifact], folder: Path) -> list[Path]:
    """Write ARTIFACTS into FOLDER (created); their absolute paths, pictures first (GitLab
    links the first attachment of a test as its screenshot)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for a in sorted(artifacts, key=lambda a: not a.name.endswith(".png")):
        path = (folder / file_name(a.name)).absolute()
        path.write_bytes(a.data)
        paths.append(path)
    return paths


__all__ = ["Artifact", "file_name", "frame_artifacts", "has_display", "lab_drawing",
           "png_size", "save", "screendump", "screens"]
