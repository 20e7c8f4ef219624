"""`labctl grade` end to end with real labs and VMs: the example class of
scenarios/grading gives exactly expected.csv; a student whose VM hangs is not-gradable
after its time limit while the others finish; a killed run resumes; hidden checks stay out
of the feedback until --reveal; the French feedback reads as French."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from labfixtures.core import netns
from labfixtures.grading import classrun, variants
from labfixtures.grading import roster as rosters

pytestmark = [pytest.mark.root, pytest.mark.vm]

CLASS = Path(__file__).parents[2] / "scenarios" / "grading"
GRADING_FILE = CLASS / "test_table1.py"


def labctl(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labfixtures.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def qemu_pids(marker: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{marker}"], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def roster(tmp: Path, students: dict[str, str]) -> Path:
    """A roster of STUDENTS (id -> lab file text) in TMP."""
    lines = ["student,name,target"]
    for sid, text in students.items():
        (tmp / f"{sid}.yaml").write_text(text)
        lines.append(f"{sid},{sid.title()},{sid}.yaml")
    (tmp / "roster.csv").write_text("\n".join(lines) + "\n")
    return tmp / "roster.csv"


def test_the_example_class_gives_exactly_expected_csv(tmp_path):
    assert subprocess.run([sys.executable, str(CLASS / "make_class.py"), "--check"]
                          ).returncode == 0, "the students' files are what make_class makes"
    out = tmp_path / "grades"
    cp = labctl("grade", str(GRADING_FILE), "--roster", str(CLASS / "roster.csv"),
                "--out", str(out), "-n", "2", "--timeout", "120", "--lang", "fr")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    got = [{k: r[k] for k in ("student", "status", "score", "max_score")}
           for r in rows(out / "grades.csv")]
    assert got == rows(CLASS / "expected.csv"), cp.stdout
    # every student has the four files; the not-gradable one is told why, not given a 0
    for r in got:
        assert {"feedback.md", "feedback.html", "results.json", "evidence.json"} <= {
            p.name for p in (out / r["student"]).iterdir()}
    gina = (out / "gina" / "feedback.md").read_text()
    assert "n'a pas pu être évalué" in gina and "n'est pas une note de 0" in gina
    # the French feedback reads as French, with the lab's own hint
    bob = (out / "bob" / "feedback.md").read_text()
    assert "## À corriger" in bob and "la route par défaut de vm0" in bob
    assert "- **Observé:** default via 203.0.113.190 dev eth0" in bob
    assert "le lab attend 203.0.113.129, l'adresse de sw0-vlan2" in bob
    # the hidden check (VLAN 3 isolation) is out of carol's feedback until --reveal
    carol = out / "carol"
    assert "un hôte du VLAN 3" not in (carol / "feedback.md").read_text()
    assert "1 autre(s) vérification(s)" in (carol / "feedback.md").read_text()
    hidden = [t for t in json.loads((carol / "results.json").read_text())["tests"]
              if t["visibility"] == "hidden"]
    assert len(hidden) == 1 and hidden[0]["score"] == 0
    # feedback.html draws the lab as it was, the port of the failed check in red
    page = (carol / "feedback.html").read_text()
    assert '<figure class="lab"><svg' in page and 'stroke="red"' in page
    # evidence: the probes and the state seen
    ev = json.loads((carol / "evidence.json").read_text())
    assert ev["state"]["switches"]["sw0"]["tap2"] == "access, VLAN 3"
    assert any("203.0.113.130/26" in a for a in ev["state"]["vms"]["vm0"]["addresses"])
    assert any(p["command"].startswith("ovs-vsctl") for c in ev["checks"]
               for p in c["probes"])
    # a second run keeps everyone (resume) and only renders the feedback again
    graded_at = {p: p.stat().st_mtime_ns for p in out.glob("*/grade.json")}
    cp = labctl("grade", str(GRADING_FILE), "--roster", str(CLASS / "roster.csv"),
                "--out", str(out), "--reveal", "--lang", "fr")
    assert cp.returncode == 0 and cp.stdout.count("kept") == 7, cp.stdout + cp.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/grade.json")} == graded_at, \
        "no student was graded again"
    assert "un hôte du VLAN 3 ne peut pas joindre vm0" in (carol / "feedback.md").read_text()
    assert [{k: r[k] for k in ("student", "status", "score", "max_score")}
            for r in rows(out / "grades.csv")] == rows(CLASS / "expected.csv")


def test_a_hanging_vm_is_not_gradable_while_the_others_finish(tmp_path):
    correct = (CLASS / "students" / "alice.yaml").read_text()
    # hank's VM is told apart by its memory size; it is frozen (SIGSTOP) once started
    hank = correct.replace("memory: 256", "memory: 200")
    assert hank != correct
    r = roster(tmp_path, {"alice": correct, "hank": hank})
    frozen: list[int] = []
    stop = threading.Event()

    def freeze() -> None:
        # once QEMU has opened its QMP socket (so the lab sees a machine that started),
        # and before the guest is up: a VM that hangs while booting
        while not stop.is_set():
            for pid in qemu_pids("-m 200 "):
                if pid in frozen:
                    continue
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                qmp = next(a for a in argv if a.startswith(b"unix:")).decode()
                if Path(qmp[5:].split(",")[0]).exists():
                    time.sleep(0.3)
                    os.kill(pid, signal.SIGSTOP)
                    frozen.append(pid)
            time.sleep(0.02)

    watcher = threading.Thread(target=freeze, daemon=True)
    watcher.start()
    try:
        cp = labctl("grade", str(GRADING_FILE), "--roster", str(r), "--out",
                    str(tmp_path / "out"), "-n", "2", "--timeout", "30")
    finally:
        stop.set()
        watcher.join()
    assert frozen, "hank's VM was never seen"
    assert cp.returncode == 0, cp.stdout + cp.stderr
    got = {x["student"]: x for x in rows(tmp_path / "out" / "grades.csv")}
    assert (got["alice"]["status"], got["alice"]["score"]) == ("graded", "13")
    assert (got["hank"]["status"], got["hank"]["score"]) == ("not-gradable", "")
    hank_grade = json.loads((tmp_path / "out" / "hank" / "grade.json").read_text())
    assert "time limit of 30 s" in hank_grade["reason"]
    # nothing of hank's run is left: its QEMU killed (gone once its zombie is reaped)
    deadline = time.monotonic() + 10
    while qemu_pids("-m 200 ") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not qemu_pids("-m 200 ")
    run_id = hank_grade["state"]["lab_run_id"]
    assert not [n for n in netns.list_names() if n.startswith(f"lf-{run_id}-")]


def test_a_killed_run_resumes(tmp_path):
    correct = (CLASS / "students" / "alice.yaml").read_text()
    wrong = (CLASS / "students" / "bob.yaml").read_text()
    r = roster(tmp_path, {"alice": correct, "bob": wrong})
    out = tmp_path / "out"
    before = set(netns.list_names())
    proc = subprocess.Popen([sys.executable, "-m", "labfixtures.cli", "grade",
                             str(GRADING_FILE), "--roster", str(r), "--out", str(out),
                             "-n", "1", "--timeout", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "alice,Alice,graded" not in _text(out / "grades.csv"):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no cleanup of its own; bob's run gets SIGTERM from the kernel
    finally:
        proc.wait()
    graded = rows(out / "grades.csv")
    assert [(x["student"], x["status"]) for x in graded] == [("alice", "graded"),
                                                            ("bob", "pending")]
    cp = labctl("grade", str(GRADING_FILE), "--roster", str(r), "--out", str(out))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "alice: kept (13 / 13)" in cp.stdout
    assert [(x["student"], x["status"], x["score"]) for x in rows(out / "grades.csv")] == [
        ("alice", "graded", "13"), ("bob", "graded", "9")]
    # the killed student's lab was torn down (by its own run on SIGTERM, or the reaper)
    deadline = time.monotonic() + 30
    while set(netns.list_names()) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    # (other runs may create namespaces meanwhile: only ours have an `-eth0` router host)
    leftover = {n for n in set(netns.list_names()) - before if n.endswith("-m-eth0")}
    assert not leftover, leftover


def test_students_with_the_same_vm_settings_share_its_booted_checkpoint(tmp_path):
    """The first student's VM boots and is checkpointed as its boot ends; the next one with
    the same settings comes up from that checkpoint, with the same grade (a damaged one
    is told in the log and the VM boots instead)."""
    correct = (CLASS / "students" / "alice.yaml").read_text()
    store = tmp_path / "store"

    def grade(students: dict[str, str], out: str) -> dict[str, tuple[str, float]]:
        d = tmp_path / out
        d.mkdir()
        run = classrun.ClassRun(grading_file=GRADING_FILE, out=d / "out", jobs=1,
                                students=rosters.read(roster(d, students)), timeout=120,
                                pytest_args=["--lab-checkpoint-store", str(store)])
        return {g.student: (g.status, g.score) for g in classrun.run_class(run, print)}

    assert grade({"alice": correct, "ann": correct}, "a") == {
        "alice": ("graded", 13), "ann": ("graded", 13)}
    saved = [p for p in (store / ".auto" / "vm0").iterdir() if not p.name.startswith(".")]
    assert len(saved) == 1, saved  # one VM setting, one checkpoint, saved by alice's run
    # its memory unpacked to a file: only a restore does that, ann's
    unpacked = list(saved[0].glob("memfile-*"))
    assert unpacked, sorted(p.name for p in saved[0].iterdir())
    for d in unpacked:
        shutil.rmtree(d)
    state = saved[0] / "state.qcow2"
    state.write_bytes(state.read_bytes()[:4096])  # damaged: amy's VM must boot
    assert grade({"amy": correct}, "b") == {"amy": ("graded", 13)}
    log = (tmp_path / "b" / "out" / "amy" / "pytest.log").read_text()
    assert "automatic checkpoint vm0@" in log and "unusable, booting" in log, log


def test_per_student_variants_a_neighbours_lab_file_does_not_pass(tmp_path):
    grading = CLASS / "variants" / "test_vlan_variant.py"
    space = {"vlan": range(10, 40), "tap": range(3, 12)}
    ann, bo = variants.choose("ann", space), variants.choose("bo", space)
    assert ann["tap"] != bo["tap"] and ann["vlan"] != bo["vlan"]
    template = (CLASS / "variants" / "lab.yaml").read_text()
    # ann builds her lab from her sheet; bo hands in a copy of ann's
    (tmp_path / "ann.yaml").write_text(variants.fill(template, ann))
    (tmp_path / "bo.yaml").write_text(variants.fill(template, ann))
    r = tmp_path / "roster.csv"
    r.write_text("student,name,target\nann,Ann,ann.yaml\nbo,Bo,bo.yaml\n")
    cp = labctl("grade", "sheet", str(grading), "--roster", str(r), "--out",
                str(tmp_path / "sheets"))
    assert cp.returncode == 0, cp.stderr
    sheet = (tmp_path / "sheets" / "ann" / "sheet.md").read_text()
    assert f"**tap{ann['tap']}**" in sheet and f"**VLAN {ann['vlan']}**" in sheet
    cp = labctl("grade", str(grading), "--roster", str(r), "--out", str(tmp_path / "out"),
                "-n", "2", "--timeout", "120")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    got = {x["student"]: (x["status"], x["score"]) for x in rows(tmp_path / "out" /
                                                                 "grades.csv")}
    assert got == {"ann": ("graded", "4"), "bo": ("graded", "0")}
    assert f"no port tap{bo['tap']} on sw0" in (tmp_path / "out" / "bo" /
                                                 "feedback.md").read_text()


def test_live_labs_are_graded_in_place_and_a_missing_one_is_not_gradable(tmp_path):
    labs = {"ann": "alice", "bo": "bob"}
    up = []
    try:
        for student, kind in labs.items():
            cp = labctl("up", str(CLASS / "students" / f"{kind}.yaml"), "--name",
                        f"grading-live-{student}")
            assert cp.returncode == 0, cp.stdout + cp.stderr
            up.append(f"grading-live-{student}")
        r = tmp_path / "live.csv"
        r.write_text("student,name,target\n" + "".join(
            f"{s},{s},lab:grading-live-{s}\n" for s in labs) + "gone,Gone,lab:grading-nope\n")
        cp = labctl("grade", str(CLASS / "grade_table1_live.py"), "--roster", str(r),
                    "--out", str(tmp_path / "out"), "-n", "2", "--timeout", "60")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        got = {x["student"]: (x["status"], x["score"]) for x in rows(tmp_path / "out" /
                                                                     "grades.csv")}
        assert got == {"ann": ("graded", "7"), "bo": ("graded", "5"),
                       "gone": ("not-gradable", "")}
        gone = json.loads((tmp_path / "out" / "gone" / "grade.json").read_text())
        assert "grading-nope" in gone["reason"]
        assert "- **Seen:** default via 203.0.113.190 dev eth0" in (
            tmp_path / "out" / "bo" / "feedback.md").read_text()
        # graded in place: the labs are still up
        for name in up:
            assert labctl("ssh", name, "vm0", "--", "true").returncode == 0
    finally:
        for name in up:
            labctl("down", name)
