"""The guide's own commands, typed as a student types them: do they still work here?

Before a term a teacher wants to know which steps of the lab instructions still work on
the new Debian, kernel and QEMU. Each test below runs one command the guide shows, word for
word, and records a verdict through the `guide_step` fixture (works as the guide shows /
works with a different output / refused), with the version of the tool and the fix; then
it checks that the fix does what the guide wanted. `labctl regress guide RESULTS.json`
lists the steps that no longer work as shown; `labctl regress compare` says which version
broke one.

    pytest -m guide_commands scenarios/ --lab-results guide.json
    labctl regress guide guide.json
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.guide_commands


def sh(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def backing_of(image: Path) -> tuple[str | None, str | None]:
    info = json.loads(sh("qemu-img", "info", "--output=json", image).stdout)
    return info.get("backing-filename"), info.get("backing-filename-format")


def test_a3_diff_img_creates_the_differential_image(guide_step, tmp_path: Path) -> None:
    """A.3 `diff-img.sh`: `qemu-img create -b $1 -f $image_format $2 >/dev/null`, then
    `exit 0`. The script hides qemu-img's answer and its status: a refusal leaves no
    differential image while the script says all is well."""
    step = guide_step("A.3", "qemu-img create -b MASTER.qcow2 -f qcow2 DIFF.qcow2",
                      tool="qemu-img",
                      fix="add `-F qcow2` (the backing file's format) to diff-img.sh's "
                          "qemu-img create, and drop `>/dev/null` so that a refusal shows")
    master, diff = tmp_path / "vm0-master.qcow2", tmp_path / "vm0-diff.qcow2"
    assert sh("qemu-img", "create", "-q", "-f", "qcow2", master, "64M").returncode == 0
    cp = sh("qemu-img", "create", "-b", master.name, "-f", "qcow2", diff.name, cwd=tmp_path)
    if cp.returncode != 0 or not diff.exists():
        step.refused(cp.stderr.strip().splitlines()[0] if cp.stderr.strip() else
                     f"exit status {cp.returncode}, no image made")
    elif backing_of(diff) != (master.name, "qcow2") and backing_of(diff)[0] != master.name:
        step.differs(f"the differential image's backing file is {backing_of(diff)}")
    else:
        step.works()
    # the fix does what the guide wants: a differential image on top of the master
    diff.unlink(missing_ok=True)
    fixed = sh("qemu-img", "create", "-b", master.name, "-F", "qcow2", "-f", "qcow2",
               diff.name, cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert backing_of(diff) == (master.name, "qcow2")


def test_s5_raw_image_is_created_sparse(guide_step, tmp_path: Path) -> None:
    """§5: `qemu-img create -f raw vm0-debian-stable-amd64.raw 80G` prints
    `Formatting 'vm0-debian-stable-amd64.raw', fmt=raw size=85899345920`."""
    step = guide_step("§5", "qemu-img create -f raw vm0-debian-stable-amd64.raw 80G",
                      tool="qemu-img")
    cp = sh("qemu-img", "create", "-f", "raw", "vm0-debian-stable-amd64.raw", "80G",
            cwd=tmp_path)
    shown = "Formatting 'vm0-debian-stable-amd64.raw', fmt=raw size=85899345920"
    if cp.returncode != 0:
        step.refused(cp.stderr.strip())
    elif cp.stdout.strip() != shown:
        step.differs(f"prints {cp.stdout.strip()!r}")
    else:
        step.works()
    image = tmp_path / "vm0-debian-stable-amd64.raw"
    assert image.stat().st_size == 80 * 2**30


def test_s5_du_of_the_new_image(guide_step, tmp_path: Path) -> None:
    """§5: `du -hs vm0-debian-stable-amd64.raw` shows `0`: nothing is allocated yet."""
    step = guide_step("§5", "du -hs vm0-debian-stable-amd64.raw", tool="qemu-img",
                      fix="nothing to fix: qemu-img (4.2 and later) writes the first "
                          "block of a raw image so that probing it works; the rest stays "
                          "sparse")
    assert sh("qemu-img", "create", "-q", "-f", "raw", "vm0-debian-stable-amd64.raw",
              "80G", cwd=tmp_path).returncode == 0
    out = sh("du", "-hs", "vm0-debian-stable-amd64.raw", cwd=tmp_path).stdout.split()[0]
    if out == "0":
        step.works()
    else:
        step.differs(f"du shows {out}, not 0")
    # what the guide wants to show holds either way: an 80G file that takes (almost) nothing
    assert os.stat(tmp_path / "vm0-debian-stable-amd64.raw").st_blocks * 512 < 2**20


def test_s5_the_raw_image_converts_to_another_format(guide_step, tmp_path: Path) -> None:
    """§5 says a raw image can always be converted to another format afterwards (« il est
    toujours possible de convertir une image d'un format à un autre après coup »), without
    showing the command: the usual one is checked, on the guide's 80G raw image. It must
    give a qcow2 image with the same content that takes no more room than the raw one."""
    step = guide_step("§5", "qemu-img convert -f raw -O qcow2 vm0-debian-stable-amd64.raw "
                      "vm0-debian-stable-amd64.qcow2", tool="qemu-img")
    raw, qcow2 = "vm0-debian-stable-amd64.raw", "vm0-debian-stable-amd64.qcow2"
    assert sh("qemu-img", "create", "-q", "-f", "raw", raw, "80G", cwd=tmp_path
              ).returncode == 0
    cp = sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2, cwd=tmp_path)
    said = (cp.stdout + cp.stderr).strip()
    if cp.returncode != 0:
        step.refused(said.splitlines()[0] if said else f"exit status {cp.returncode}")
    elif said:
        step.differs(f"prints {said.splitlines()[0]!r}")
    else:
        step.works()
    info = json.loads(sh("qemu-img", "info", "--output=json", qcow2, cwd=tmp_path).stdout)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 80 * 2**30), info
    same = sh("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, qcow2, cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    assert info["actual-size"] < 2**20, f"the qcow2 image takes {info['actual-size']} bytes"


def test_s7_resize_the_raw_master(guide_step, tmp_path: Path) -> None:
    """§7: `qemu-img resize vm0-debian-testing-amd64-base.raw +20G` prints `Image
    resized.`"""
    step = guide_step("§7", "qemu-img resize vm0-debian-testing-amd64-base.raw +20G",
                      tool="qemu-img",
                      fix="`qemu-img resize -f raw ...` says only `Image resized.`")
    name = "vm0-debian-testing-amd64-base.raw"
    assert sh("qemu-img", "create", "-q", "-f", "raw", name, "1G", cwd=tmp_path
              ).returncode == 0
    cp = sh("qemu-img", "resize", name, "+20G", cwd=tmp_path)
    said = (cp.stderr + cp.stdout).strip()
    if cp.returncode != 0:
        step.refused(said.splitlines()[0])
    elif said != "Image resized.":
        step.differs(said.splitlines()[0])
    else:
        step.works()
    assert (tmp_path / name).stat().st_size == 21 * 2**30
    fixed = sh("qemu-img", "resize", "-f", "raw", name, "+1G", cwd=tmp_path)
    assert (fixed.returncode, (fixed.stdout + fixed.stderr).strip()) == (0, "Image resized.")


@pytest.mark.root
def test_s9_tuntap_add_with_group_kvm_and_multi_queue(guide_step, lab) -> None:
    """§9: `sudo ip tuntap add mode tap dev tap1 group kvm multi_queue`, then `ip addr ls
    tap1` shows `tap1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default
    qlen 1000` (in the lab's namespace, not the host's)."""
    step = guide_step("§9", "ip tuntap add mode tap dev tap1 group kvm multi_queue",
                      tool="ip")
    cp = lab.run(["ip", "tuntap", "add", "mode", "tap", "dev", "tap1", "group", "kvm",
                  "multi_queue"], check=False)
    try:
        if not cp.ok:
            step.refused((cp.stderr or cp.stdout).strip())
        else:
            shown = ("tap1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN "
                     "group default qlen 1000")
            first = lab.run(["ip", "addr", "ls", "tap1"]).stdout.splitlines()[0]
            got = first.split(": ", 1)[1]  # the interface index differs from the guide's
            if got == shown:
                step.works()
            else:
                step.differs(f"ip addr ls tap1 shows {got!r}")
        details = json.loads(lab.run(["ip", "-j", "-d", "link", "show", "tap1"]).stdout)[0]
        assert details["linkinfo"]["info_data"]["multi_queue"] is True
    finally:
        lab.run(["ip", "tuntap", "del", "mode", "tap", "dev", "tap1", "multi_queue"],
                check=False)
