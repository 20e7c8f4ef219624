"""A class run's bookkeeping with real subprocesses but no lab: a hang and a crash are
not-gradable while the others are graded, grades.csv follows, a second run resumes."""

from __future__ import annotations

import csv
import json
import os
import textwrap

import pytest

from labfixtures.grading import classrun, roster

GRADING = '''
import os
import time

import pytest


@pytest.fixture
def who(request):
    return request.config.getoption("--lab-grade-student")


@pytest.mark.points(2)
def test_behaves(who):
    """the student's lab behaves"""
    if who == "hang":
        time.sleep(120)
    if who == "crash":
        os._exit(3)
    assert who != "wrong", "the answer is wrong"
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="the class run reaps dead labs (root)")
def test_a_hang_and_a_crash_stop_no_one_and_a_second_run_resumes(tmp_path):
    (tmp_path / "test_class.py").write_text(textwrap.dedent(GRADING))
    (tmp_path / "roster.csv").write_text("student,name,target\n" + "".join(
        f"{s},{s.title()},x.yaml\n" for s in ("ok", "hang", "crash", "wrong")))
    run = classrun.ClassRun(tmp_path / "test_class.py", roster.read(tmp_path / "roster.csv"),
                            tmp_path / "out", jobs=4, timeout=8, pytest_args=["-p",
                                                                              "no:xdist"])
    lines: list[str] = []
    status: list[str] = []
    grades = classrun.run_class(run, progress=lines.append, status=status.append)
    by = {g.student: g for g in grades}
    # the live status names who is being graded while the hang runs out its time
    assert any(s.startswith("[") and "grading hang (" in s for s in status), status
    assert (by["ok"].status, by["ok"].score) == ("graded", 2)
    assert (by["wrong"].status, by["wrong"].score) == ("graded", 0)
    assert by["hang"].status == "not-gradable" and "time limit of 8 s" in by["hang"].reason
    assert by["crash"].status == "not-gradable"
    assert "ended without a grade (exit 3)" in by["crash"].reason
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").open()))
    assert [(r["student"], r["status"], r["score"]) for r in rows] == [
        ("ok", "graded", "2"), ("hang", "not-gradable", ""), ("crash", "not-gradable", ""),
        ("wrong", "graded", "0")]
    assert "could not be graded" in (tmp_path / "out" / "hang" / "feedback.md").read_text()
    # resume: nobody graded again; --regrade grades again
    lines.clear()
    classrun.run_class(run, progress=lines.append)
    assert sum("kept" in ln for ln in lines) == 4, lines
    run.regrade, run.students = True, [s for s in run.students if s.student == "ok"]
    before = json.loads((tmp_path / "out" / "ok" / "grade.json").read_text())["started"]
    classrun.run_class(run, progress=lines.append)
    assert json.loads((tmp_path / "out" / "ok" / "grade.json").read_text())["started"] \
        != before


def test_no_checkpoints_reaches_each_students_pytest(tmp_path):
    """`labctl grade --no-checkpoints` becomes `--lab-no-checkpoints` on every student's
    pytest command line (the flag `booted_vm` reads), and is absent by default."""
    from labfixtures.cli import grade as grade_cli
    from labfixtures.cli.main import build_parser

    def argv(*flags: str) -> list[str]:
        args = build_parser().parse_args(["grade", "g.py", "--roster", "r.csv", "--out",
                                          str(tmp_path), *flags])
        run = classrun.ClassRun(grading_file=tmp_path / "g.py", students=[],
                                out=tmp_path, pytest_args=grade_cli.pytest_args(args))
        s = roster.Student("ann", "Ann", "ann.yaml", tmp_path / "ann.yaml")
        return classrun.command(run, s, tmp_path / "ann")

    assert "--lab-no-checkpoints" in argv("--no-checkpoints")
    assert "--lab-no-checkpoints" not in argv()
