"""A class graded in parallel: each student a `pytest GRADING_FILE --lab-grade-target ...`
subprocess with its own lab host (namespace, Open vSwitch, run id), its own time limit,
its own output folder `OUT/<student>/`.

- A hang, a crash or an unreachable VM stops one student, never the others: after its time
  limit the student's process group gets SIGTERM (its labs torn down), then SIGKILL, and
  whatever it left is removed; the student is `not-gradable` with the reason.
- `OUT/grades.csv` is rewritten after each student, so a killed run loses nothing graded.
- A second run resumes: a student whose grade.json exists is kept (its feedback rendered
  again, e.g. with `reveal`), unless `regrade`.
- `shard=(k, n)`: only every nth student from the kth; `merge()` joins shards' folders.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labfixtures.core.naming import PREFIX
from labfixtures.errors import LabError
from labfixtures.grading import outputs
from labfixtures.grading.feedback import points
from labfixtures.grading.model import GRADED, NOT_GRADABLE, Grade, write_text
from labfixtures.grading.roster import Student, shard
from labfixtures.lab.labhost import destroy_lab, reap, records

GRADES_CSV = "grades.csv"
LOG = "pytest.log"
TERM_GRACE = 15.0  # seconds between SIGTERM (teardown) and SIGKILL


@dataclass
class ClassRun:
    """What `labctl grade` was asked."""

    grading_file: Path
    students: list[Student]
    out: Path
    jobs: int = 1
    timeout: float = 300.0
    shard: tuple[int, int] = (1, 1)
    regrade: bool = False
    reveal: bool = False
    lang: str = "en"
    pytest_args: list[str] = field(default_factory=list)
    attach_key: Path | None = None  # for ssh:// targets
    attach_netns: str | None = None


@dataclass
class _Job:
    student: Student
    proc: subprocess.Popen[bytes]
    run_id: str
    started: float
    log: io.BufferedWriter
    killed: str = ""


def _die_with_parent() -> None:
    # the student's pytest gets SIGTERM (and tears its lab down) if labctl dies
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def target_args(run: ClassRun, s: Student) -> list[str]:
    """How the student's pytest reaches the target: a lab file or bundle to build
    (`--lab-grade-target`), a live lab of `labctl up` (`lab:NAME`: `--lab-attach-lab`),
    or a running machine (`ssh://[USER@]HOST[:PORT]`, or `NAME=ssh://...` to name it
    other than vm0: `--lab-attach`, with the class's --attach-key or the password in
    LABFIXTURES_ATTACH_PASSWORD)."""
    t = s.target
    if t.startswith("lab:"):
        return ["--lab-attach-lab", t[4:]]
    name, sep, rest = t.partition("=ssh://")
    if sep or t.startswith("ssh://"):
        vm, where = (name, rest) if sep else ("vm0", t[6:])
        key = ["--lab-attach-key", str(run.attach_key)] if run.attach_key else []
        netns = ["--lab-attach-netns", run.attach_netns] if run.attach_netns else []
        return ["--lab-attach", f"{vm}={where}", *key, *netns]
    return ["--lab-grade-target", str(s.path)]


def command(run: ClassRun, s: Student, sdir: Path) -> list[str]:
    """The pytest command line that grades student S into SDIR."""
    cmd = [sys.executable, "-m", "pytest", str(run.grading_file.resolve()), "-q",
           "-p", "no:cacheprovider", "-o", "addopts=", "--lab-no-reap",
           *target_args(run, s), "--lab-grade-out", str(sdir),
           "--lab-grade-student", s.student, "--lab-grade-name", s.name,
           "--lab-grade-seed", s.seed or s.student,
           "--lab-lang", run.lang]
    if run.reveal:
        cmd.append("--reveal")
    return cmd + list(run.pytest_args)


def _start(run: ClassRun, s: Student) -> _Job:
    sdir = run.out / s.student
    sdir.mkdir(parents=True, exist_ok=True)
    for stale in (outputs.GRADE_FILE, "feedback.md", "feedback.html", "results.json",
                  "evidence.json"):
        with contextlib.suppress(FileNotFoundError):
            (sdir / stale).unlink()
    rid = secrets.token_hex(3)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT", "PYTEST_ADDOPTS"))}
    env["LABFIXTURES_RUN_ID"] = rid
    log = open(sdir / LOG, "wb")  # noqa: SIM115 - closed when the job ends
    proc = subprocess.Popen(command(run, s, sdir), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, cwd=sdir,
                            start_new_session=True, preexec_fn=_die_with_parent)
    return _Job(s, proc, rid, time.monotonic(), log)


def _signal(job: _Job, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job.proc.pid, sig)


def _clean(job: _Job) -> None:
    """Whatever the student's run left (its labs: namespaces, QEMU, OVS, run dirs)."""
    _signal(job, signal.SIGKILL)
    for rec in records():
        if rec.labid.startswith(f"{PREFIX}{job.run_id}-"):
            destroy_lab(rec.labid)
    reap()


def _finish(run: ClassRun, job: _Job) -> Grade:
    job.log.close()
    sdir = run.out / job.student.student
    s = job.student
    gfile = sdir / outputs.GRADE_FILE
    if job.killed:
        _clean(job)
        grade = Grade(s.student, s.name, str(s.target), NOT_GRADABLE, job.killed,
                      grading_file=str(run.grading_file), started=time.time())
    elif gfile.is_file():
        try:
            return Grade.read(gfile)
        except (OSError, ValueError, KeyError) as e:
            grade = Grade(s.student, s.name, str(s.target), NOT_GRADABLE,
                          f"its grade.json is unreadable ({e})",
                          grading_file=str(run.grading_file))
    else:
        _clean(job)
        tail = _tail(sdir / LOG)
        grade = Grade(s.student, s.name, str(s.target), NOT_GRADABLE,
                      f"the grading run ended without a grade (exit {job.proc.returncode})"
                      + (f": {tail}" if tail else ""), grading_file=str(run.grading_file))
    grade.finished = time.time()
    grade.state = {"lab_run_id": job.run_id, "log": str(sdir / LOG)}
    outputs.write(grade, sdir, run.lang, run.reveal)
    return grade


def _tail(log: Path) -> str:
    """The error the log ends with: pytest's `ERROR: ...` (and its remedy), else the last
    `E ...` or `...Error` line, else the last line."""
    with contextlib.suppress(OSError):
        lines = [ln.rstrip() for ln in log.read_text(errors="replace").splitlines()
                 if ln.strip()]
        for i in range(len(lines) - 1, -1, -1):
            if lines[i].startswith("ERROR:"):
                return " ".join(ln.strip() for ln in lines[i:i + 2])[:400]
        errors = [ln for ln in lines if "Error" in ln or ln.startswith("E ")]
        return (errors or lines or [""])[-1].strip()[:400]
    return ""


def run_class(run: ClassRun, progress: Callable[[str], object] = print,
              status: Callable[[str], object] | None = None) -> list[Grade]:
    """Grade RUN's shard of students, RUN.jobs at a time; returns their grades in roster
    order (and writes OUT/grades.csv after each one). PROGRESS gets a line per student
    graded; STATUS, if given, a live status about once a second (who is being graded)."""
    if not run.grading_file.is_file():
        raise LabError(f"grading file {run.grading_file} does not exist",
                       "give the path of a pytest module, e.g. scenarios/grading/test_table1.py")
    if run.jobs < 1 or run.timeout <= 0:
        raise LabError("-n must be at least 1 and --timeout positive", "e.g. -n 2 --timeout 120")
    mine = shard(run.students, *run.shard)
    run.out.mkdir(parents=True, exist_ok=True)
    grades: dict[str, Grade] = {}
    todo: list[Student] = []
    for s in mine:
        gfile = run.out / s.student / outputs.GRADE_FILE
        if not run.regrade and gfile.is_file():
            with contextlib.suppress(OSError, ValueError, KeyError):
                grades[s.student] = Grade.read(gfile)
                outputs.render(grades[s.student], gfile.parent, run.lang, run.reveal)
                progress(f"{s.student}: kept ({_summary(grades[s.student])}); "
                         "--regrade to grade again")
                continue
        todo.append(s)
    write_grades(run.out, _entries(mine, grades))
    reap()  # once, here: the students' runs do not reap (they would race each other)
    running: list[_Job] = []
    done = len(grades)
    shown = 0.0
    try:
        while todo or running:
            while todo and len(running) < run.jobs:
                running.append(_start(run, todo.pop(0)))
            time.sleep(0.1)
            if status is not None and time.monotonic() - shown >= 1.0:
                shown = time.monotonic()
                status(f"[{done}/{len(mine)}] grading " + ", ".join(
                    f"{j.student.student} ({shown - j.started:.0f} s)" for j in running))
            for job in list(running):
                elapsed = time.monotonic() - job.started
                if job.proc.poll() is None:
                    if elapsed > run.timeout and not job.killed:
                        job.killed = (f"the time limit of {run.timeout:g} s was reached "
                                      "(a VM that hangs or does not answer?)")
                        _signal(job, signal.SIGTERM)
                    elif job.killed and elapsed > run.timeout + TERM_GRACE:
                        _signal(job, signal.SIGKILL)
                    continue
                running.remove(job)
                grade = _finish(run, job)
                grades[job.student.student] = grade
                done += 1
                progress(f"[{done}/{len(mine)}] {job.student.student}: {_summary(grade)} "
                         f"({elapsed:.1f} s)")
                write_grades(run.out, _entries(mine, grades))
    except BaseException:
        for job in running:
            _signal(job, signal.SIGTERM)
        for job in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                job.proc.wait(TERM_GRACE)
            _clean(job)
            job.log.close()
        write_grades(run.out, _entries(mine, grades))
        raise
    result = [grades[s.student] for s in mine]
    write_grades(run.out, result)
    return result


def _entries(students: list[Student], grades: dict[str, Grade]) -> list[Grade | Student]:
    return [grades.get(s.student, s) for s in students]


def _summary(g: Grade) -> str:
    if g.status == GRADED:
        return f"{points(g.score)} / {points(g.max_score)}"
    return f"not-gradable: {g.reason}"


def check_columns(grades: list[Grade]) -> list[str]:
    cols: list[str] = []
    for g in grades:
        for c in g.checks:
            if c.spec.name not in cols:
                cols.append(c.spec.name)
    return cols


def grades_csv(entries: Sequence[Grade | Student]) -> str:
    """grades.csv: student,name,status,score,max_score, then the points of each check,
    one row per entry in its order. A not-gradable student, or one not graded yet (a
    `Student` entry: `pending`), has no score: never a 0."""
    grades = [g for g in entries if isinstance(g, Grade)]
    cols = check_columns(grades)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "name", "status", "score", "max_score", *cols])
    for g in entries:
        if isinstance(g, Student):
            w.writerow([g.student, g.name, "pending", "", "", *("" for _ in cols)])
        elif g.status == GRADED:
            by = {c.spec.name: points(c.score) for c in g.checks}
            w.writerow([g.student, g.name, g.status, points(g.score), points(g.max_score),
                        *(by.get(c, "") for c in cols)])
        else:
            w.writerow([g.student, g.name, g.status, "", "", *("" for _ in cols)])
    return buf.getvalue()


def write_grades(out: Path, entries: Sequence[Grade | Student]) -> Path:
    path = out / GRADES_CSV
    write_text(path, grades_csv(entries))
    return path


def merge(dirs: list[Path], out: Path) -> list[Grade]:
    """Join the folders of several shards into OUT: every student folder copied (if OUT is
    not where it is) and one grades.csv, students in the order of the shards' grades.csv."""
    grades: dict[str, Grade] = {}
    for d in dirs:
        order = []
        with contextlib.suppress(OSError):
            order = [r["student"] for r in csv.DictReader((d / GRADES_CSV).open())]
        found = sorted(p.parent.name for p in d.glob(f"*/{outputs.GRADE_FILE}"))
        for sid in order + [f for f in found if f not in order]:
            gfile = d / sid / outputs.GRADE_FILE
            if not gfile.is_file():
                continue
            if sid in grades:
                raise LabError(f"student {sid} is graded in two of the folders to merge",
                               "merge the folders of different shards of one class")
            grades[sid] = Grade.read(gfile)
            if d.resolve() != out.resolve():
                shutil.copytree(d / sid, out / sid, dirs_exist_ok=True)
    if not grades:
        raise LabError("no graded student in " + ", ".join(map(str, dirs)),
                       "give the --out folders of `labctl grade` runs")
    result = list(grades.values())
    write_grades(out, result)
    return result
