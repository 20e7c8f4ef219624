"""Teardown is complete: after a failing test, after SIGKILL (the next run or `labctl clean`
reaps), and the root namespace is the same before and after a whole run.

These run a separate pytest on a small lab test file, as a user would.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labfixtures.core import netns

pytestmark = pytest.mark.root

LAB_TEST = '''
import os, time
from pathlib import Path

def test_builds_then_fails(lab, switch, veth_host):
    switch.svi(2, "203.0.113.129/26")
    lab.enable_forwarding()
    lab.tap(2, group="kvm", multi_queue=True)
    switch.add_port("tap2", tag=2)
    h = veth_host("h1", switch, tag=2, addresses=["203.0.113.130/26"])
    assert h.ping("203.0.113.129")
    marker = os.environ.get("LF_MARKER")
    if marker:
        Path(marker).write_text(lab.labid)
        time.sleep(120)
    assert False, "this test fails on purpose"
'''


def child_env(run_id: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT")) and k != "LABFIXTURES_RUN_ID"}
    env["LABFIXTURES_RUN_ID"] = run_id
    env.update(extra)
    return env


def snapshot() -> dict[str, object]:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        fwd4 = f.read()
    with open("/proc/sys/net/ipv6/conf/all/forwarding") as f:
        fwd6 = f.read()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {"links": sorted(line.split(":")[1].strip() for line in links.splitlines()),
            "ip_forward": fwd4, "ipv6_forwarding": fwd6}


def mine(run_id: str) -> list[str]:
    return [n for n in netns.list_names() if n.startswith(f"lf-{run_id}")]


def ovs_in(run_id: str) -> list[int]:
    return [p for n in mine(run_id) for p in netns.pids(n)]


def run_child(tmp_path: Path, run_id: str, *args: str, **extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_lab_child.py").write_text(LAB_TEST)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_lab_child.py"), *args],
                          cwd=tmp_path, env=child_env(run_id, **extra),
                          capture_output=True, text=True, timeout=120)


def start_lab_child(tmp_path: Path, run_id: str) -> tuple[subprocess.Popen, Path]:
    """Start a pytest whose test builds a lab, writes its id to a marker file and sleeps;
    return once the lab is up (the caller kills it)."""
    marker = tmp_path / "ready"
    (tmp_path / "test_lab_child.py").write_text(LAB_TEST)
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(tmp_path / "test_lab_child.py")],
        cwd=tmp_path, env=child_env(run_id, LF_MARKER=str(marker)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    if not marker.exists():
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        raise AssertionError("the child lab never came up")
    return child, marker


def kill(child: subprocess.Popen) -> None:
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def test_failing_test_leaves_nothing_and_host_is_untouched(tmp_path):
    before = snapshot()
    cp = run_child(tmp_path, "a11a11")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "this test fails on purpose" in cp.stdout
    # a failed test's report carries the lab's state and the OVS logs
    assert "labfixtures: lab state" in cp.stdout
    assert "ovs-vswitchd.log" in cp.stdout
    # ...for a student: warnings and errors only, no INFO chatter shown as trouble
    assert "|INFO|" not in cp.stdout
    assert "Open vSwitch warnings and errors" in cp.stdout
    assert mine("a11a11") == []
    assert not Path("/run/labfixtures/lf-a11a11-m").exists()
    assert snapshot() == before


def test_sigkill_leaves_a_record_that_the_next_run_reaps(tmp_path):
    child, marker = start_lab_child(tmp_path, "b22b22")
    kill(child)
    labid = marker.read_text()
    assert labid == "lf-b22b22-m"
    # the dead run left its lab: namespaces, OVS daemons, run directory with the record
    assert set(mine("b22b22")) == {labid, f"{labid}-h1"}
    assert ovs_in("b22b22"), "the OVS daemons should have outlived SIGKILL"
    assert Path(f"/run/labfixtures/{labid}/record.json").exists()

    # the next run reaps it, and says so in its header
    (tmp_path / "test_noop.py").write_text("def test_nothing():\n    pass\n")
    cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         str(tmp_path / "test_noop.py")], cwd=tmp_path,
                        env=child_env("c33c33"), capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert mine("b22b22") == []
    assert not Path(f"/run/labfixtures/{labid}").exists()


def test_labctl_clean_reaps_and_prints_what_it_removed(tmp_path):
    child, _ = start_lab_child(tmp_path, "d44d44")
    try:
        status = subprocess.run([sys.executable, "-m", "labfixtures.cli.main", "status"],
                                capture_output=True, text=True, timeout=30).stdout
        assert "lf-d44d44-m: pid" in status and "alive" in status
        # a live owner's lab is not touched
        cp = subprocess.run([sys.executable, "-m", "labfixtures.cli.main", "clean"],
                            capture_output=True, text=True, timeout=30)
        assert "lf-d44d44-m" not in cp.stdout
        assert mine("d44d44")
    finally:
        kill(child)
    cp = subprocess.run([sys.executable, "-m", "labfixtures.cli.main", "clean"],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0
    assert "removed network namespace lf-d44d44-m" in cp.stdout
    assert "removed network namespace lf-d44d44-m-h1" in cp.stdout
    assert "process(es) of lf-d44d44-m" in cp.stdout
    assert mine("d44d44") == []


def test_two_xdist_workers_do_not_collide(tmp_path):
    tests = "\n".join(
        f"def test_{i}(lab, switch, veth_host):\n"
        f"    h = veth_host('h1', switch, tag=2, addresses=['192.0.2.1/24'])\n"
        f"    switch.svi(2, '192.0.2.254/24')\n"
        f"    assert h.ping('192.0.2.254')\n"
        for i in range(6))
    (tmp_path / "test_many.py").write_text(tests)
    cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         "-n", "2", str(tmp_path / "test_many.py")], cwd=tmp_path,
                        env=child_env("e55e55"), capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "6 passed" in cp.stdout
    assert [n for n in netns.list_names() if "e55e55" in n] == []


def test_reaper_spares_a_live_lab_whose_name_looks_like_a_host(tmp_path):
    """A live lab lf-<run>-w0.2-named must survive another run's reaper, although its name
    reads like a veth host of a lab lf-<run>-w0.2 that has no record (seen in CI)."""
    from labfixtures.lab.lab import Lab

    with Lab.open("lf-abc123-w7.2-named") as lab:
        lab.switch("sw0")
        (tmp_path / "test_noop.py").write_text("def test_nothing():\n    pass\n")
        cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(tmp_path / "test_noop.py")], cwd=tmp_path,
                            env=child_env("f11f11"), capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert netns.exists(lab.ns)
        assert lab.ovs.vsctl("list-br").split() == ["sw0"]  # its OVS still answers


XDIST_CHILD = '''
import os, time
from pathlib import Path
import pytest

@pytest.fixture
def slow_to_undo():
    yield
    time.sleep(6)  # undone before the lab, as a VM that takes its time to power off

def test_a(lab, switch, veth_host, slow_to_undo):
    veth_host("h1", switch, tag=2, addresses=["192.0.2.1/24"])
    Path(os.environ["LF_MARKER"], "a").write_text(lab.labid)
    time.sleep(120)

def test_b(lab, switch, veth_host, slow_to_undo):
    veth_host("h1", switch, tag=2, addresses=["192.0.2.1/24"])
    Path(os.environ["LF_MARKER"], "b").write_text(lab.labid)
    time.sleep(120)
'''


def test_sigterm_to_an_xdist_run_tears_every_workers_lab_down(tmp_path):
    """`kill PID` of a `pytest -n 2` (its controller only, not its process group): the
    controller passes the SIGTERM on to its workers and waits while they undo their labs.
    Before, the controller stopped at once and xdist killed its workers 10 s later, in
    the middle of a teardown this long (a fixture taking 6 s, then the lab)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "test_xdist_child.py").write_text(XDIST_CHILD)
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
         "--dist", "load", str(tmp_path / "test_xdist_child.py")],
        cwd=tmp_path, env=child_env("f66f66", LF_MARKER=str(markers)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while len(list(markers.iterdir())) < 2 and time.monotonic() < deadline \
                and child.poll() is None:
            time.sleep(0.05)
        assert len(mine("f66f66")) >= 2, "both workers' labs should be up"
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            kill(child)
    assert mine("f66f66") == [], "a worker's lab outlived the SIGTERM"
    daemons = subprocess.run(["pgrep", "-af", "lf-f66f66-"], capture_output=True, text=True)
    assert daemons.stdout == "", f"processes of its labs are left: {daemons.stdout}"
    assert not any(Path("/run/labfixtures").glob("lf-f66f66-*"))
    assert "keyboard-interrupt" in out, out  # each worker said it was interrupted
