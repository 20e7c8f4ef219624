"""labctl end to end: doctor, image list, up / status / ssh / down of the guide's Table 1
lab file, and a wrong lab file refused with file, key and fix, leaving nothing behind."""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labfixtures.core import netns

pytestmark = pytest.mark.root
SEED = Path(__file__).parents[2] / "scenarios" / "labs" / "seed-minimal.yaml"


def labctl(*args: str, timeout: float = 300,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labfixtures.cli", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_doctor_says_a_lab_can_run_here():
    cp = labctl("doctor", "--json")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    data = json.loads(cp.stdout)
    assert data["can_run"] is True
    names = {c["name"]: c for c in data["checks"]}
    assert names["network namespaces"]["status"] == "ok"
    assert names["accelerator"]["found"].split(":")[0] in ("KVM", "TCG")
    text = labctl("doctor").stdout
    assert "A lab can run here." in text


def test_image_list_shows_tiny_built():
    cp = labctl("image", "list")
    assert cp.returncode == 0
    current = [line.split() for line in cp.stdout.splitlines()
               if line.split()[:1] == ["current"] and " tiny-" in line]
    assert current, cp.stdout
    assert "the default kernel" in cp.stdout  # and which kernel package it is on


@pytest.mark.vm
def test_up_status_ssh_down_of_table_1():
    name = f"t{secrets.token_hex(3)}"
    labid = f"lf-{name}"
    cp = labctl("up", str(SEED), "--name", name)
    try:
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert "vm0 answers SSH at fe80::baad:caff:fefe:2%sw0-vlan2" in cp.stdout
        status = labctl("status", name).stdout
        assert "VM vm0: running" in status and "MAC b8:ad:ca:fe:00:02" in status
        assert "Port tap2" in status
        assert f"{labid}: persistent" in labctl("status").stdout
        route = labctl("ssh", name, "vm0", "--", "ip", "route")
        assert route.returncode == 0
        assert "default via 203.0.113.129 dev eth0" in route.stdout
        assert labctl("ssh", name, "vm0", "--", "exit 3").returncode == 3
        # ssh joins CMD into one shell line (as ssh does); exec passes argv word for word
        assert labctl("ssh", name, "vm0", "--", "echo", "a;", "echo", "b").stdout == "a\nb\n"
        cp = labctl("exec", name, "vm0", "--", "sh", "-c", "echo x > /etc/motd")
        assert cp.returncode == 0, cp.stderr
        assert labctl("exec", name, "vm0", "--", "cat", "/etc/motd").stdout == "x\n"
        assert labctl("exec", name, "vm0", "--", "echo", "a;", "echo", "b").stdout == \
            "a; echo b\n"
        # status: the key and the pytest lines that grade the lab
        assert "SSH key: /" in status
        assert f"pytest TESTS --lab-attach-lab {name}" in status
        assert ("--lab-attach vm0=root@[fe80::baad:caff:fefe:2%sw0-vlan2] --lab-attach-key "
                in status) and f"--lab-attach-netns {labid}" in status
        # a persistent lab survives a reaping run
        labctl("clean")
        assert netns.exists(labid)
    finally:
        down = labctl("down", name)
    assert down.returncode == 0, down.stderr
    assert f"removed network namespace {labid}" in down.stdout
    assert not netns.exists(labid)
    assert not Path(f"/run/labfixtures/{labid}").exists()
    assert labctl("down", name).returncode == 2  # already gone: one clear message


def test_wrong_lab_file_is_refused_and_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEED.read_text().replace("memory: 256", "memory: 64")
                   .replace("name: seed-minimal", "name: bad-lab"))
    cp = labctl("up", str(bad))
    assert cp.returncode == 2
    assert cp.stderr.startswith(f"labctl: {bad}: vms.vm0.memory: 64 MB is not enough RAM")
    assert "remedy: RAM size must be above 128MB" in cp.stderr
    assert not netns.exists("lf-bad-lab")
    assert not Path("/run/labfixtures/lf-bad-lab").exists()


def test_failure_during_up_leaves_nothing(tmp_path):
    """A VM whose image is not built fails after the network is up: all of it is undone."""
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: half-built\nswitches:\n  sw0: {}\ntaps:\n  - {number: 2, switch: sw0}\n"
                   "vms:\n  vm0: {image: tiny, nics: [{tap: 2}]}\n")
    cp = labctl("up", str(lab), env={"LABFIXTURES_CACHE": str(tmp_path / "empty-cache")})
    assert cp.returncode == 2
    assert "guest image 'tiny' is not built" in cp.stderr, cp.stderr
    assert not netns.exists("lf-half-built")
    assert not Path("/run/labfixtures/lf-half-built").exists()


def test_a_killed_image_build_leaves_no_work_folder(tmp_path):
    """SIGTERM (a `kill`, a CI timeout) in the middle of `labctl image build`: the image's
    work folder in the cache is removed on the way out, as after Ctrl-C, and labctl says
    it was interrupted (130). The kernel packages are the real cache's: nothing is
    downloaded."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "debs").symlink_to(Path.home() / ".cache" / "labfixtures" / "debs")
    proc = subprocess.Popen([sys.executable, "-m", "labfixtures.cli", "image", "build", "tiny"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "LABFIXTURES_CACHE": str(cache)})
    images = cache / "images"
    deadline = time.monotonic() + 120
    while not list(images.glob(".tiny-*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the build never made its work folder"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert [p.name for p in images.iterdir()] == [], out
