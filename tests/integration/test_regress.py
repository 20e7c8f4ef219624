"""Regression runs end to end, on real parts: a real tiny VM booting and answering SSH on a
tap, once on the installed QEMU and once on a "new QEMU" that differs from it in one known
way; `labctl regress compare` on the two results files.

The "new QEMU" is a wrapper around the installed binary that drops `mac=` from the NIC
options: QEMU starts, the guest boots, but its NIC gets QEMU's default MAC instead of the
guide's b8:ad:ca:fe:00:02, so the EUI-64 link-local address the lab reaches it on is wrong
and SSH fails. A test that does not use QEMU (two veth hosts pinging) passes on both.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labfixtures.guestimages import kernels
from labfixtures.qemu import builds
from labfixtures.regress import matrix
from labfixtures.regress.qemusel import builds_root
from labfixtures.regress.results import Results

pytestmark = [
    pytest.mark.vm,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, taps)"),
]

VENV_BIN = Path(sys.executable).parent
QEMU = shutil.which("qemu-system-x86_64")

INNER = '''
import os


def test_vm_answers_ssh_on_its_tap(lab, switch, lab_metric):
    switch.svi(2, "203.0.113.129/26")
    lab.tap(2)
    switch.add_port("tap2", tag=2)
    vm = lab.vm("vm0", tap=2, addresses=["203.0.113.130/26"])
    lab_metric("boot_to_ready", vm.boot_seconds, "s")
    exe = os.environ.get("EXPECT_QEMU_EXE")  # the binary that must be running this VM
    if exe:
        assert os.path.realpath(f"/proc/{vm.machine.pid}/exe") == exe
    # a sound guest answers within a second or two even under load; on the "new QEMU" (no
    # MAC) lab.vm() has already failed: QEMU's NIC does not have the MAC the lab gave it
    vm.ssh(deadline=8)
    assert vm.run("hostname").stdout.strip() == "vm0"
    record = os.environ.get("RECORD_KERNEL_TO")  # the kernel the guest really runs
    if record:
        with open(record, "a") as f:
            f.write(vm.run("uname -r").stdout)


def test_veth_hosts_ping(lab, switch, veth_host):
    a = veth_host("h1", switch, tag=3, addresses=["198.51.100.1/24"])
    veth_host("h2", switch, tag=3, addresses=["198.51.100.2/24"])
    assert a.ping("198.51.100.2")
'''

WRAPPER = '''#!{python}
"""A "new QEMU": the installed one, except that NIC options lose their mac=."""
import os, re, sys
args = [re.sub(r",mac=[^,]*", "", a) if a.startswith("virtio-net") else a
        for a in sys.argv[1:]]
os.execv({qemu!r}, [{qemu!r}] + args)
'''


def inner_run(tmp: Path, name: str, *options: str, exe: str = "") -> tuple[Results, str]:
    """Run the inner tests in their own pytest, as CI would: its results and output."""
    rid = secrets.token_hex(3)
    results = tmp / f"{name}.json"
    env = dict(os.environ, LABFIXTURES_RUN_ID=rid, EXPECT_QEMU_EXE=exe)
    cp = subprocess.run(
        [str(VENV_BIN / "pytest"), "-p", "no:cacheprovider", "--lab-no-reap", "-q",
         "--lab-results", str(results), "--lab-results-label", name, *options,
         str(tmp / "test_inner.py")],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert results.exists(), cp.stdout + cp.stderr
    no_leftovers(rid)  # the host is clean afterwards: no namespace, no QEMU of that run
    return Results.read(results), cp.stdout


def no_leftovers(rid: str) -> None:
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"lf-{rid}" not in spaces
    procs = subprocess.run(["pgrep", "-af", f"lf-{rid}"], capture_output=True, text=True)
    assert procs.stdout == ""


def outcomes(r: Results) -> dict[str, str]:
    return {t.nodeid.split("::")[1]: t.outcome for t in r.tests}


@pytest.fixture
def inner(tmp_path: Path) -> Path:
    (tmp_path / "test_inner.py").write_text(INNER)
    return tmp_path


def make_wrapper(folder: Path) -> Path:
    wrapper = folder / "qemu-new"
    wrapper.write_text(WRAPPER.format(python=sys.executable, qemu=QEMU))
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86 is not installed")
def test_a_new_qemu_that_drops_the_mac_is_reported_as_a_regression(inner: Path) -> None:
    wrapper = make_wrapper(inner)
    base, out = inner_run(inner, "installed")
    assert outcomes(base) == {"test_vm_answers_ssh_on_its_tap": "pass",
                              "test_veth_hosts_ping": "pass"}, out
    new, out = inner_run(inner, "wrapper", "--lab-qemu", str(wrapper))
    assert outcomes(new) == {"test_vm_answers_ssh_on_its_tap": "fail",
                             "test_veth_hosts_ping": "pass"}, out
    # said at once, by QEMU's own account of the NIC, not after SSH waited in vain
    assert ("the MACs 52:54:00:12:34:56, not b8:ad:ca:fe:00:02 that its command line asks"
            in out), out

    # what each run ran on, recorded: the same QEMU version, another binary
    assert base.versions["qemu"]["binary"] == os.path.realpath(QEMU)
    assert new.versions["qemu"]["binary"] == str(wrapper)
    assert new.versions["qemu"]["version"] == base.versions["qemu"]["version"]
    assert new.versions["qemu"]["package"] == ""  # no package owns the wrapper
    assert base.versions["qemu"]["package"] == "qemu-system-x86"
    (boot,) = base.by_nodeid()[base.tests[0].nodeid][0].metrics
    assert boot.name == "boot_to_ready" and boot.unit == "s" and boot.value > 0

    labctl = str(VENV_BIN / "labctl")
    md, junit = inner / "report.md", inner / "report.xml"
    cp = subprocess.run([labctl, "regress", "compare", str(inner / "installed.json"),
                         str(inner / "wrapper.json"), "--markdown", str(md),
                         "--junit", str(junit)], capture_output=True, text=True)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    report = md.read_text()
    newly = report.split("### Newly failing (1)")[1].split("###")[0]
    assert "test_inner.py::test_vm_answers_ssh_on_its_tap" in newly
    assert "test_veth_hosts_ping" not in newly
    assert f"| lab_qemu_binary | {os.path.realpath(QEMU)} | {wrapper} |" in report
    assert 'name="test_vm_answers_ssh_on_its_tap"' in junit.read_text()

    # the same run compared with itself: no regression
    same = subprocess.run([labctl, "regress", "compare", str(inner / "installed.json"),
                           str(inner / "installed.json")], capture_output=True, text=True)
    assert same.returncode == 0, same.stdout


def test_a_session_on_a_fetched_qemu_build(inner: Path) -> None:
    """`labctl qemu fetch` (APT's sources) then `pytest --lab-qemu VERSION`: the VM runs on
    that build, and the results say so."""
    host_pkg = builds.package_of(QEMU)[1] if QEMU else ""
    others = [v for v in builds.available_versions() if v != host_pkg]
    if not others:
        pytest.skip("APT offers no other qemu-system-x86 version than the installed one")
    version = others[0]
    cp = subprocess.run([str(VENV_BIN / "labctl"), "qemu", "fetch", version],
                        capture_output=True, text=True, timeout=1800)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    build = builds.find_build(builds_root(), version)
    assert build is not None and build.qemu_version

    listed = subprocess.run([str(VENV_BIN / "labctl"), "qemu", "list"],
                            capture_output=True, text=True).stdout
    assert f"fetched  {build.qemu_version:<10} {version}" in listed

    r, out = inner_run(inner, "fetched", "--lab-qemu", version, "-k", "vm_answers",
                       exe=str(build.path / "tree/usr/bin/qemu-system-x86_64"))
    assert outcomes(r) == {"test_vm_answers_ssh_on_its_tap": "pass"}, out
    q = r.versions["qemu"]
    assert (q["version"], q["package_version"], q["selected"]) == \
        (build.qemu_version, version, version)
    assert q["binary"] == str(build.launcher)


#: another kernel of the archive than the one the tiny recipe takes by default
OTHER_KERNEL = "linux-image-6.1.0-50-amd64"


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86 is not installed")
def test_attribute_blames_the_qemu_upgrade_and_clears_the_kernel(inner: Path) -> None:
    """Old cell: the default kernel on the installed QEMU. New cell: another kernel on the
    wrapper QEMU (drops mac=). `labctl regress attribute` runs the four cells and blames
    QEMU: the new kernel on the old QEMU passes, the new QEMU on the old kernel fails."""
    other = kernels.build_tiny(OTHER_KERNEL, progress=None)  # the "new kernel"
    default = kernels.build_tiny(None, progress=None)
    if other.facts["kernel_release"] == default.facts["kernel_release"]:
        pytest.skip(f"{OTHER_KERNEL} is the default kernel now: pick another one")
    wrapper = make_wrapper(inner)
    rid = secrets.token_hex(3)
    seen = inner / "kernels.txt"
    out = inner / "cells"
    cp = subprocess.run(
        [str(VENV_BIN / "labctl"), "regress", "attribute",
         "--kernel", "default", OTHER_KERNEL, "--qemu", "host", str(wrapper),
         "--out", str(out), "--markdown", str(inner / "attribute.md"),
         "--", "-p", "no:cacheprovider", "--lab-no-reap", "-q", str(inner / "test_inner.py")],
        cwd=inner, capture_output=True, text=True, timeout=1200,
        env=dict(os.environ, LABFIXTURES_RUN_ID=rid, RECORD_KERNEL_TO=str(seen)))
    no_leftovers(rid)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    report = (inner / "attribute.md").read_text()
    assert "`test_inner.py::test_vm_answers_ssh_on_its_tap`: **qemu**" in report, report
    assert "test_veth_hosts_ping" not in report  # passes everywhere: nothing to attribute

    runs = matrix.load(out)
    assert len(runs) == 4
    table = matrix.table(runs)
    row = next(line for line in table.splitlines() if "test_vm_answers" in line)
    assert row.count("FAIL") == 2 and row.count("pass") == 2, table
    # the guests really ran both kernels (on the installed QEMU, where SSH works)
    assert set(seen.read_text().split()) == {default.facts["kernel_release"],
                                             other.facts["kernel_release"]}
    recorded = {c: r.versions["images"]["tiny"]["kernel_package"] for c, r in runs.items()}
    assert recorded[matrix.Cell(OTHER_KERNEL, str(wrapper))] == OTHER_KERNEL


def test_the_guides_a3_command_is_reported_broken_with_its_fix(tmp_path: Path) -> None:
    """The guide's A.3 `qemu-img create -b MASTER -f qcow2 DIFF` is refused by the installed
    qemu-img (QEMU 7.2: no backing format): the scenario records it, `labctl regress guide`
    reports it with the fix, and the fix itself is checked by the scenario."""
    scenario = Path(__file__).parents[2] / "scenarios" / "test_guide_commands.py"
    results = tmp_path / "guide.json"
    cp = subprocess.run([str(VENV_BIN / "pytest"), "-p", "no:cacheprovider", "-q",
                         "--lab-results", str(results), "-k", "a3", str(scenario)],
                        capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr  # the fix works
    (a3,) = [g for t in Results.read(results).tests for g in t.guide]
    img_version = subprocess.run(["qemu-img", "--version"], capture_output=True,
                                 text=True).stdout.split()[2]
    assert (a3.step, a3.verdict, a3.tool_version) == ("A.3", "refused", img_version)
    report = subprocess.run([str(VENV_BIN / "labctl"), "regress", "guide", str(results)],
                            capture_output=True, text=True)
    assert report.returncode == 1
    assert (f"the guide's step A.3 (`qemu-img create -b MASTER.qcow2 -f qcow2 DIFF.qcow2`) "
            f"breaks on qemu-img {img_version}: ") in report.stdout
    assert "Backing file specified without backing format" in report.stdout
    assert "fix: add `-F qcow2`" in report.stdout


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86 is not installed")
def test_bisect_names_the_first_bad_qemu(inner: Path) -> None:
    """Three QEMUs old to new: the host's, a fetched build when APT offers one, and the
    wrapper that drops mac=; `labctl regress bisect` names the wrapper as the first bad."""
    wrapper = make_wrapper(inner)
    fetched = builds.list_builds(builds_root())
    versions = ["host", *[b.version for b in fetched[:1]], str(wrapper)]
    rid = secrets.token_hex(3)
    cp = subprocess.run(
        [str(VENV_BIN / "labctl"), "regress", "bisect", "--qemu", *versions,
         "--test", "test_inner.py::test_vm_answers_ssh_on_its_tap", "--out", "steps",
         "--", "-p", "no:cacheprovider", "--lab-no-reap", "-q"],
        cwd=inner, capture_output=True, text=True, timeout=1200,
        env=dict(os.environ, LABFIXTURES_RUN_ID=rid))
    no_leftovers(rid)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert (f"test_inner.py::test_vm_answers_ssh_on_its_tap: qemu first bad version: "
            f"{wrapper} (last good: {versions[-2]}") in cp.stdout
    # each step ran the one test only
    for r in matrix.load(inner / "steps").values():
        assert [t.nodeid for t in r.tests] == ["test_inner.py::test_vm_answers_ssh_on_its_tap"]


CHECKPOINTED = '''
def test_vm_from_a_checkpoint(lab, switch, lab_vm):
    switch.svi(2, "203.0.113.129/26")
    lab.tap(2)
    switch.add_port("tap2", tag=2)
    vm = lab_vm("vm0", tap=2, addresses=["203.0.113.130/26"])
    assert vm.run("hostname").stdout.strip() == "vm0"
    assert vm.machine.qmp("query-name")["name"] == "vm0"  # what QEMU says of itself
'''

#: two more "QEMUs" around the installed one: BIGGER gives the guest more memory (a saved
#: state of 256 MiB cannot be loaded: the restore fails, the step boots, the test passes);
#: RENAMED names the machine otherwise (the state loads; the test, run after the restore,
#: sees QEMU's new name and fails: a regression that shows after a restore)
REWRITE = '''#!{python}
import os, sys
args = [{new!r} if a == {old!r} else a for a in sys.argv[1:]]
os.execv({qemu!r}, [{qemu!r}] + args)
'''


def rewriting_qemu(folder: Path, name: str, old: str, new: str) -> Path:
    path = folder / name
    path.write_text(REWRITE.format(python=sys.executable, qemu=QEMU, old=old, new=new))
    path.chmod(0o755)
    return path


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86 is not installed")
def test_bisect_steps_start_from_the_good_qemus_checkpoint(tmp_path: Path) -> None:
    """Three QEMUs: the host's (good: its step boots and saves the checkpoint), one that
    cannot load that checkpoint (the step falls back to a cold boot, the test passes) and
    a bad one (restored from the checkpoint, the test fails): the bisect names the bad one
    and each step says how its VM came up."""
    (tmp_path / "test_cp.py").write_text(CHECKPOINTED)
    bigger = rewriting_qemu(tmp_path, "qemu-bigger", "256", "320")
    renamed = rewriting_qemu(tmp_path, "qemu-renamed", "vm0", "vm0-renamed")
    rid = secrets.token_hex(3)
    cp = subprocess.run(
        [str(VENV_BIN / "labctl"), "regress", "bisect", "--qemu", "host", str(bigger),
         str(renamed), "--test", "test_cp.py::test_vm_from_a_checkpoint", "--out", "steps",
         "--markdown", "steps.md", "--", "-p", "no:cacheprovider", "--lab-no-reap", "-q",
         "--lab-checkpoint-store", str(tmp_path / "store")],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200,
        env=dict(os.environ, LABFIXTURES_RUN_ID=rid))
    no_leftovers(rid)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert (f"test_cp.py::test_vm_from_a_checkpoint: qemu first bad version: {renamed} "
            f"(last good: {bigger}; 3 runs)") in cp.stdout
    came_up = {r.versions["qemu"]["selected"] or "host": r.tests[0].came_up["vm0"]
               for r in matrix.load(tmp_path / "steps").values()}
    assert came_up["host"] == "booted", came_up  # an empty store: the good QEMU saves
    assert came_up[str(renamed)] == "restored", came_up  # from the host's checkpoint
    assert came_up[str(bigger)].startswith("booted: restore failed"), came_up
    # what QEMU said: the checkpoint's memory file is smaller than its -m (memfile.py)
    assert "does not match the size of the memory backend" in came_up[str(bigger)], came_up
    table = (tmp_path / "steps.md").read_text()
    assert f"| 2 | {renamed} | fail | restored |" in table, table
    assert f"| 3 | {bigger} | pass | cold boot |" in table, table
    # only the good QEMU saved: one automatic checkpoint in the store
    assert len(list((tmp_path / "store" / ".auto" / "vm0").iterdir())) == 1
