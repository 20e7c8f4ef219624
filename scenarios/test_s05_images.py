"""Guide §5, "Création d'une machine virtuelle": the disk image file.

    ~/vm$ qemu-img create -f raw vm0-debian-stable-amd64.raw 80G
    Formatting 'vm0-debian-stable-amd64.raw', fmt=raw size=85899345920

    ~/vm$ du -hs vm0-debian-stable-amd64.raw
    0      vm0-debian-stable-amd64.raw

    « Le format d'image créé [...] est baptisé raw. Il s'agit d'un format brut [...] sur
    lequel seuls les secteurs écrits entraînent une réservation d'espace. Ce choix de format
    peut être modifié par la suite puisqu'il est toujours possible de convertir une image
    d'un format à un autre après coup. »

Pure qemu-img: no VM is needed to check these claims. (The installation from an ISO that
follows in the guide needs the Debian guest: that is scenario A.4, not this one.)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from labfixtures.qemu import qemu_img_info

GIB = 2**30
MIB = 2**20


def qemu_img(*args: str) -> str:
    cp = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, f"qemu-img {' '.join(args)} failed: {cp.stderr}"
    return cp.stdout


def used_bytes(path: Path) -> int:
    """What `du` counts: allocated blocks, not the apparent size."""
    return os.stat(path).st_blocks * 512


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.fixture
def vm_dir(tmp_path: Path) -> Path:
    d = tmp_path / "vm"
    d.mkdir()
    return d


def test_a_new_raw_image_of_80g_uses_no_space(vm_dir):
    image = vm_dir / "vm0-debian-stable-amd64.raw"
    out = qemu_img("create", "-f", "raw", str(image), "80G")
    assert out.strip() == f"Formatting '{image}', fmt=raw size=85899345920"
    assert image.stat().st_size == 80 * GIB, "the apparent size is the 80G asked for"
    # The guide's `du` printed 0. Since QEMU 4.2, qemu-img writes the first block of a raw
    # image (so that QEMU can probe the alignment of its O_DIRECT I/O): `du` prints 4,0K.
    assert used_bytes(image) <= 64 * 1024, (
        f"`du` should show (almost) nothing for a new raw image, a sparse file; it shows "
        f"{used_bytes(image)} bytes for an 80G image")
    info = qemu_img_info(image)
    assert (info["format"], info["virtual-size"]) == ("raw", 80 * GIB)


def test_only_written_sectors_take_space(vm_dir):
    image = vm_dir / "vm0.raw"
    qemu_img("create", "-f", "raw", str(image), "80G")
    write_at(image, 40 * GIB, os.urandom(MIB))  # 1 MiB in the middle of the disk
    used = used_bytes(image)
    assert MIB <= used < 2 * MIB, (
        f"after writing 1 MiB, the image should use about 1 MiB, it uses {used} bytes")
    assert image.stat().st_size == 80 * GIB, "writing inside the image does not grow it"


def test_raw_to_qcow2_and_back_keeps_the_content(vm_dir):
    raw = vm_dir / "vm0.raw"
    qemu_img("create", "-f", "raw", str(raw), "64M")
    pattern = os.urandom(3 * MIB)
    write_at(raw, 0, b"labfixtures guide 5: first sector")
    write_at(raw, 10 * MIB, pattern)
    write_at(raw, 64 * MIB - 512, b"last sector".ljust(512, b"."))
    before = sha256(raw)

    qcow2 = vm_dir / "vm0.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2))
    info = qemu_img_info(qcow2)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 64 * MIB)
    assert qcow2.stat().st_size < 16 * MIB, (
        f"a qcow2 holds only the written clusters: {qcow2.stat().st_size} bytes for "
        "~3 MiB of data")
    cp = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(raw),
                         str(qcow2)], capture_output=True, text=True)
    assert cp.returncode == 0, f"qemu-img compare: {cp.stdout}{cp.stderr}"

    back = vm_dir / "vm0-back.raw"
    qemu_img("convert", "-f", "qcow2", "-O", "raw", str(qcow2), str(back))
    assert back.stat().st_size == 64 * MIB
    assert sha256(back) == before, "raw -> qcow2 -> raw changed the disk's content"
    assert used_bytes(back) < 8 * MIB, "the converted raw image stays sparse"


def test_compare_sees_a_changed_sector(vm_dir):
    """The control for the test above: a one-byte change is seen by hash and by compare."""
    raw = vm_dir / "vm0.raw"
    qemu_img("create", "-f", "raw", str(raw), "8M")
    qcow2 = vm_dir / "vm0.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2))
    write_at(raw, 5 * MIB, b"\x01")
    cp = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(raw),
                         str(qcow2)], capture_output=True, text=True)
    assert cp.returncode == 1 and "Content mismatch at offset 5242880" in cp.stdout, (
        cp.stdout + cp.stderr)
