"""Guide A.3, "Gestion des images différentielles": a disposable VM on top of a master.

    #!/bin/bash  (diff-img.sh)
    image_format="${1##*.}"
    qemu-img create -b $1 -f $image_format $2 >/dev/null

    « L'intérêt de cette opération est de pouvoir lancer une instance de système virtuel
    « jetable ». En effet, on peut considérer que toutes les opérations effectuées sur
    l'image différentielle n'ont pas à être conservées. Dans ce cas, il suffit d'effacer le
    fichier d'image différentielle après usage. »

The master here is a small qcow2 disk holding a known pattern; the differential image is
made by labfixtures' `create_overlay` (diff-img.sh, plus the `-F` that today's qemu-img
requires); a tiny VM gets the differential image as its disk `vda`, reads the master's
pattern through it, writes over it, and is shut down. The teacher's checks: the writes are
in the differential image and nowhere else, the master is byte for byte what it was, and
a fresh differential image (the old one deleted) shows the master's state again.

This module still boots its VM, once, in a module-scoped fixture (`module_lab`), instead
of getting it from `lab_vm`'s automatic checkpoint: the VM must write to its disk, and
QEMU restores a saved state (`-loadvm`) only if every writable disk holds that snapshot,
which the freshly made differential image does not ("Snapshot 'auto-...' does not exist
in one or more devices"; `lab_vm` would then boot after all, every time). Nor does a
per-test VM fit: the tests are the checks of one disposable-VM session, made once by the
fixture and only read (the VM is stopped before the first test).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from labfixtures.qemu import create_overlay, qemu_img_info

pytestmark = [pytest.mark.root, pytest.mark.vm]

MIB = 2**20
BASE_TEXT = b"master image of guide A.3"  # at offset 1 MiB of the master
WRITE_OFFSET = MIB  # where the VM writes over it
N = 30  # the VM's number: user-mode networking, SSH forwarded from 2230


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_disk(image: Path, offset: int, size: int, tmp: Path) -> bytes:
    """What a guest would read at OFFSET: the image (and its backing chain) made raw."""
    raw = tmp / f"{image.stem}-read.raw"
    raw.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    with open(raw, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    raw.unlink()
    return data


def compare(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", "compare", str(a), str(b)], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def disposable(module_lab, tmp_path_factory):
    """Master, differential image, a VM that reads and writes it, then shuts down."""
    d = tmp_path_factory.mktemp("a3")
    seed = d / "seed.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(seed), "8M"], check=True)
    with open(seed, "r+b") as f:
        f.seek(WRITE_OFFSET)
        f.write(BASE_TEXT)
        f.seek(4 * MIB)
        f.write(os.urandom(MIB))
    master = d / "vm0-master.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(seed),
                    str(master)], check=True)
    seed.unlink()
    os.chmod(master, 0o644)
    before = {"sha256": sha256(master), "mtime": master.stat().st_mtime_ns}

    overlay = create_overlay(master, d / "vm0-diff.qcow2")
    overlay_size_before = overlay.stat().st_size
    vm = module_lab.vm("vm0", tap=N, user=True, extra_args=[
        "-drive", f"if=none,id=drive0,format=qcow2,file={overlay}",
        "-device", "virtio-blk-device,drive=drive0"])

    # QEMU opens the master read-only: find its descriptor and its access mode
    modes = []
    for fd in Path(f"/proc/{vm.machine.pid}/fd").iterdir():
        try:
            if Path(os.readlink(fd)) == master:
                flags = int(Path(f"/proc/{vm.machine.pid}/fdinfo/{fd.name}").read_text()
                            .split("flags:")[1].split()[0], 8)
                modes.append(flags & os.O_ACCMODE)
        except OSError:
            continue

    marker = f"written by vm0 {secrets.token_hex(8)}"
    seen_before = vm.run(f"dd if=/dev/vda bs=1 skip={WRITE_OFFSET} count={len(BASE_TEXT)} "
                         "2>/dev/null", check=True).stdout
    vm.run(f"printf '%s' '{marker}' | dd of=/dev/vda bs=1 seek={WRITE_OFFSET} conv=notrunc "
           "2>/dev/null && sync && echo 3 > /proc/sys/vm/drop_caches", check=True)
    seen_after = vm.run(f"dd if=/dev/vda bs=1 skip={WRITE_OFFSET} count={len(marker)} "
                        "2>/dev/null", check=True).stdout
    vm.stop()  # "après usage": QEMU flushes and closes the images
    return SimpleNamespace(
        dir=d, master=master, overlay=overlay, before=before, marker=marker,
        master_fd_modes=modes, seen_before=seen_before, seen_after=seen_after,
        overlay_size_before=overlay_size_before)


def test_the_differential_image_is_backed_by_the_master(disposable):
    chain = qemu_img_info(disposable.overlay, backing_chain=True)
    assert [Path(i["filename"]) for i in chain] == [disposable.overlay, disposable.master], (
        f"expected the chain vm0-diff.qcow2 -> vm0-master.qcow2, qemu-img info says: "
        f"{[(i['filename'], i.get('backing-filename')) for i in chain]}")
    top = chain[0]
    assert top["format"] == "qcow2" and top["backing-filename-format"] == "qcow2"
    assert top["virtual-size"] == chain[1]["virtual-size"] == 8 * MIB
    assert "backing-filename" not in chain[1], "the master itself has no backing file"


def test_the_vm_sees_the_master_through_the_differential_image(disposable):
    assert disposable.seen_before == BASE_TEXT.decode(), (
        f"the VM read {disposable.seen_before!r} at 1 MiB of vda, the master holds "
        f"{BASE_TEXT!r} there")


def test_the_vm_reads_back_what_it_wrote(disposable):
    assert disposable.seen_after == disposable.marker


def test_qemu_never_opens_the_master_for_writing(disposable):
    assert disposable.master_fd_modes, "QEMU had the master open (as the backing file)"
    assert set(disposable.master_fd_modes) == {os.O_RDONLY}, (
        f"QEMU opened the master with access modes {disposable.master_fd_modes}, "
        "expected read-only only")


def test_the_master_is_unchanged(disposable):
    master = disposable.master
    assert sha256(master) == disposable.before["sha256"], "the VM's writes changed the master"
    assert master.stat().st_mtime_ns == disposable.before["mtime"], "the master was written to"
    assert read_disk(master, WRITE_OFFSET, len(BASE_TEXT), disposable.dir) == BASE_TEXT


def test_the_writes_are_in_the_differential_image(disposable):
    data = read_disk(disposable.overlay, WRITE_OFFSET, len(disposable.marker), disposable.dir)
    assert data == disposable.marker.encode(), (
        f"at 1 MiB the differential image reads {data!r}, the VM wrote "
        f"{disposable.marker!r}")
    assert disposable.overlay.stat().st_size > disposable.overlay_size_before
    cp = compare(disposable.master, disposable.overlay)
    assert cp.returncode == 1 and f"offset {WRITE_OFFSET}" in cp.stdout, (
        f"qemu-img compare master diff: {cp.stdout}{cp.stderr}")


def test_deleting_the_differential_image_gives_the_master_back(disposable, tmp_path):
    """« il suffit d'effacer le fichier d'image différentielle après usage »"""
    used = tmp_path / "vm0-diff.qcow2"
    used.write_bytes(disposable.overlay.read_bytes())  # this test's own copy to delete
    used.unlink()
    fresh = create_overlay(disposable.master, tmp_path / "vm0-diff.qcow2")
    cp = compare(disposable.master, fresh)
    assert cp.returncode == 0, f"a new differential image differs from the master: {cp.stdout}"
    assert read_disk(fresh, WRITE_OFFSET, len(BASE_TEXT), tmp_path) == BASE_TEXT
