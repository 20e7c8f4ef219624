"""A VM's teardown leaves nothing: no QEMU process, no overlay, no namespace, no run
directory; and `keep_overlays` keeps the overlay (only) when asked. The base image never
changes."""

import dataclasses
import hashlib
import subprocess

import pytest

from labfixtures import guestimages
from labfixtures.core import netns
from labfixtures.lab.lab import Lab

pytestmark = [pytest.mark.root, pytest.mark.vm]


@pytest.fixture
def tiny_with_disk(tmp_path):
    """The tiny image plus a small qcow2 base disk, so that the VM gets an overlay (the
    tiny guest boots from its initramfs and leaves the disk alone)."""
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    return dataclasses.replace(guestimages.get("tiny"), disk=base)


def qemu_pids_of(labid: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{labid}"], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_vm_teardown_leaves_nothing(tiny_with_disk):
    base_hash = sha(tiny_with_disk.disk)
    with Lab.open() as lab:
        labid, rundir = lab.labid, lab.rundir
        sw = lab.switch("sw0")
        lab.tap(2)
        sw.add_port("tap2", tag=2)
        vm = lab.vm("vm0", tap=2, image=tiny_with_disk, addresses=["192.0.2.2/24"])
        overlay = vm.overlay
        assert overlay is not None and overlay.exists()
        info = subprocess.run(["qemu-img", "info", "-U", str(overlay)], capture_output=True,
                              text=True).stdout
        assert str(tiny_with_disk.disk) in info  # a differential image of the base
        assert vm.run("echo written > /tmp/x && cat /tmp/x").stdout == "written\n"
        pid = vm.machine.pid
        assert netns.pids(labid) and pid in netns.pids(labid)
    assert not netns.exists(labid)
    assert not rundir.exists()
    assert not overlay.exists()
    assert not qemu_pids_of(labid)
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
    assert sha(tiny_with_disk.disk) == base_hash


def test_overlays_are_kept_when_asked(tiny_with_disk, tmp_path):
    keep = tmp_path / "kept"
    with Lab.open(keep_overlays=keep) as lab:
        labid = lab.labid
        lab.tap(3)
        vm = lab.vm("vm1", tap=3, image=tiny_with_disk)
    kept = keep / f"{labid}-vm1.qcow2"
    assert vm.kept_overlay == kept and kept.exists()
    assert not netns.exists(labid)
