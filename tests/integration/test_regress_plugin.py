"""The plugin's side of regression runs, in real pytest sessions: the results file, the
versions as JUnit properties under xdist, flaky tests across repeats, lab errors apart
from failures, and --lab-rerun-failures restarting a failed test from the same checkpoint
of a real VM."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labfixtures.regress.results import Results

VENV_BIN = Path(sys.executable).parent

PLAIN = '''
import os
import pytest
from labfixtures.errors import QemuLaunchError


def test_measures(lab_metric):
    lab_metric("ping_rtt", 0.4, "ms")
    lab_metric("ping_rtt", 0.5, "ms")


def test_sometimes():
    assert os.environ.get("FAIL_THIS_TIME") != "1"


def test_qemu_does_not_start():
    raise QemuLaunchError("vm0", 1, ["qemu-system-x86_64"], "could not load module")


@pytest.fixture
def broken_lab():
    raise RuntimeError("the lab fixture broke")


def test_broken_setup(broken_lab):
    pass
'''


def pytest_run(folder: Path, *args: str, env: dict[str, str] | None = None,
               quiet: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "pytest"), "-p", "no:cacheprovider",
                           *(["-q"] if quiet else []), "--lab-no-reap", *args],
                          cwd=folder, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, **(env or {})))


def by_name(r: Results) -> dict[str, object]:
    return {t.nodeid.split("::")[1]: t for t in r.tests}


def test_results_and_junit_properties_under_xdist(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(PLAIN)
    cp = pytest_run(tmp_path, "-n", "2", "--lab-results", "r.json", "--junitxml", "j.xml",
                    "--lab-results-label", "xdist run")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    r = Results.read(tmp_path / "r.json")
    assert r.run.label == "xdist run"
    t = by_name(r)
    assert [(m.name, m.value, m.unit) for m in t["test_measures"].metrics] == \
        [("ping_rtt", 0.4, "ms"), ("ping_rtt", 0.5, "ms")]  # crossed from a worker
    assert (t["test_qemu_does_not_start"].outcome,
            t["test_qemu_does_not_start"].error_kind) == ("error", "QemuLaunchError")
    assert (t["test_broken_setup"].outcome, t["test_broken_setup"].phase) == \
        ("error", "setup")
    assert t["test_sometimes"].outcome == "pass"
    assert r.versions["qemu"]["version"] and r.versions["host_kernel"] == os.uname().release
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.find("properties") or []}
    assert props["lab_host_kernel"] == os.uname().release
    assert props["lab_qemu_version"] == r.versions["qemu"]["version"]
    assert "lab_image_tiny" in props and props["lab_accelerator"].startswith(
        r.versions["accelerator"])


def test_header_shows_the_versions(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    pass\n")
    cp = pytest_run(tmp_path, quiet=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    header = [ln for ln in cp.stdout.splitlines() if ln.startswith("labfixtures: host kernel")]
    assert header, cp.stdout
    assert f"host kernel {os.uname().release}; QEMU " in header[0]
    assert "Open vSwitch" in header[0] and "Python" in header[0]


def test_a_test_failing_one_time_in_three_is_flaky_with_its_rate(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(PLAIN)
    pytest_run(tmp_path, "--lab-results", "base.json", "-k", "sometimes")
    for i in range(3):
        pytest_run(tmp_path, "--lab-results", f"new/{i}.json", "-k", "sometimes",
                   env={"FAIL_THIS_TIME": "1" if i == 1 else "0"})
    cp = subprocess.run([str(VENV_BIN / "labctl"), "regress", "compare", "base.json", "new"],
                        cwd=tmp_path, capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "`test_plain.py::test_sometimes` — flaky: failed 1 of 3 (33%)" in cp.stdout
    # the same failure in a single run is a regression
    one = subprocess.run([str(VENV_BIN / "labctl"), "regress", "compare", "base.json",
                          "new/1.json"], cwd=tmp_path, capture_output=True, text=True)
    assert one.returncode == 1 and "### Newly failing (1)" in one.stdout


RERUN = '''
import os
from pathlib import Path


def test_fails_once(lab, switch, lab_vm):
    switch.svi(2, "203.0.113.129/26")
    lab.tap(2)
    switch.add_port("tap2", tag=2)
    vm = lab_vm("vm0", tap=2, addresses=["203.0.113.130/26"])
    seen = Path(os.environ["SEEN"])
    # each attempt starts from the checkpoint: nothing the earlier attempt did is there
    fresh = vm.run("test -e /root/touched").exit_status != 0
    vm.run("touch /root/touched")
    with seen.open("a") as f:  # how the VM came up: booted, or restored from a checkpoint
        f.write(f"{vm.loadvm or 'booted'} {fresh}\\n")
    assert len(seen.read_text().splitlines()) > 1, "fails the first time only"
'''


@pytest.mark.vm
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, taps)")
def test_rerun_failures_restarts_from_the_same_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "test_rerun.py").write_text(RERUN)
    seen = tmp_path / "seen.txt"
    rid = secrets.token_hex(3)
    cp = pytest_run(tmp_path, "--lab-rerun-failures", "2", "--lab-results", "r.json",
                    "--lab-checkpoint-store", str(tmp_path / "store"),
                    env={"SEEN": str(seen), "LABFIXTURES_RUN_ID": rid})
    lines = [ln.split() for ln in seen.read_text().splitlines()]
    assert len(lines) == 2, cp.stdout + cp.stderr  # failed, then passed: no third attempt
    # booted once (a private, empty checkpoint store), then restored for the rerun: the
    # same just-booted state, without what the first attempt did
    assert lines[0][0] == "booted" and lines[1][0] != "booted", lines
    assert [f for _, f in lines] == ["True", "True"]
    (t,) = Results.read(tmp_path / "r.json").tests
    assert (t.outcome, t.attempts) == ("fail", ["fail", "pass"])
    assert "attempts: fail, pass" in cp.stdout
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"lf-{rid}" not in spaces
    assert subprocess.run(["pgrep", "-af", f"lf-{rid}"], capture_output=True,
                          text=True).stdout == ""
    assert json.loads((tmp_path / "r.json").read_text())["version"] == 1
