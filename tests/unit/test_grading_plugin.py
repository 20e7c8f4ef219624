"""The grading plugin on small grading files without a lab (a real pytest subprocess):
markers and their mistakes, prerequisites, partial credit, hidden checks, not-gradable,
and the files --lab-grade-out writes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

GRADING = '''
"""Arithmetic lab"""
import pytest
from labfixtures.grading.model import CheckFailed, Finding, Message

MESSAGES = {"en": {"hint.two": "two is {expected}"}, "fr": {"hint.two": "deux vaut {expected}"}}

@pytest.mark.points(2)
def test_one():
    """one is one
    fr: un vaut un"""
    assert 1 == 1

@pytest.mark.points(3)
def test_two(probe):
    """two is two
    fr: deux vaut deux"""
    probe.done(False, Message("probe.sysctl", {"key": "two", "target": "math"}),
               Message("where.host", {"host": "here"}), "echo 2", "3",
               Message("expect.value", {"value": "2"}), Message("seen.value", {"value": "3"}),
               hint="hint.two", values={"expected": "2"})

@pytest.mark.after("test_two")
def test_needs_two():
    """needs two"""
    raise AssertionError("must not run")

@pytest.mark.points(4)
def test_partial(credit):
    """three of four"""
    credit(3, 4)
    assert False, "the fourth is wrong"

@pytest.mark.hidden
def test_hidden():
    """the secret check"""
    assert False, "secret failure"
'''


def run(tmp_path, source, *args):
    f = tmp_path / "test_grading_lab.py"
    f.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, "-m", "pytest", str(f), "-q", "-p",
                           "no:cacheprovider", "-o", "addopts=", "--lab-no-reap", *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)


def test_a_grade_with_points_prerequisites_partial_credit_and_hidden_checks(tmp_path):
    out = tmp_path / "out"
    r = run(tmp_path, GRADING, "--lab-grade-out", str(out), "--lab-grade-student", "ann")
    assert "labfixtures grade: 5 / 11" in r.stdout, r.stdout + r.stderr
    grade = json.loads((out / "grade.json").read_text())
    by = {c["spec"]["name"]: c for c in grade["checks"]}
    assert grade["status"] == "graded" and grade["lab"] == "Arithmetic lab"
    assert by["test_one"]["outcome"] == "passed" and by["test_one"]["score"] == 2
    assert by["test_two"]["outcome"] == "failed"
    assert by["test_needs_two"]["outcome"] == "not-checked"
    assert by["test_needs_two"]["needs"] == ["test_two"]
    assert by["test_partial"]["outcome"] == "partial" and by["test_partial"]["score"] == 3
    assert by["test_two"]["probes"][0]["command"] == "echo 2"
    md = (out / "feedback.md").read_text()
    assert "secret" not in md and "1 more check(s)" in md
    assert "- **Hint:** two is 2" in md and "not checked: needs “two is two”" in md
    results = json.loads((out / "results.json").read_text())
    assert results["score"] == 5
    assert [t["visibility"] for t in results["tests"]].count("hidden") == 1
    assert {"evidence.json", "feedback.html"} <= {p.name for p in out.iterdir()}


def test_french_feedback_and_reveal(tmp_path):
    out = tmp_path / "out"
    run(tmp_path, GRADING, "--lab-grade-out", str(out), "--lab-lang", "fr", "--reveal")
    md = (out / "feedback.md").read_text()
    assert "Note : 5 / 11" in md and "| un vaut un |" in md
    assert "- **Piste:** deux vaut 2" in md
    assert "the secret check" in md and "secret failure" in md


def test_a_check_that_cannot_run_makes_the_student_not_gradable(tmp_path):
    out = tmp_path / "out"
    r = run(tmp_path, '''
        import pytest

        @pytest.fixture
        def target():
            raise RuntimeError("the VM does not answer")

        def test_a(target):
            """a"""

        def test_b():
            """b"""
        ''', "--lab-grade-out", str(out))
    grade = json.loads((out / "grade.json").read_text())
    assert grade["status"] == "not-gradable", r.stdout
    assert "the VM does not answer" in grade["reason"]
    assert "could not be graded" in (out / "feedback.md").read_text()


def test_malformed_markers_are_one_usage_error(tmp_path):
    for marker, words in (("points(0)", "positive number"), ("points('2')", "positive"),
                          ("points(1, 2)", "one number"), ("after('test_nope')",
                                                           "no check named 'test_nope'"),
                          ("after(1)", "not a check's name"),
                          ("hidden(True)", "takes no arguments")):
        r = run(tmp_path, f'''
            import pytest

            def test_x():
                pass

            @pytest.mark.{marker}
            def test_y():
                pass
            ''')
        assert r.returncode == 4, (marker, r.stdout, r.stderr)
        assert words in r.stderr and "remedy:" in r.stderr, (marker, r.stderr)


def test_prerequisites_run_first_and_cycles_are_refused(tmp_path):
    out = tmp_path / "out"
    run(tmp_path, '''
        import pytest

        @pytest.mark.after("test_b")
        def test_a():
            pass

        def test_b():
            pass
        ''', "--lab-grade-out", str(out))
    grade = json.loads((out / "grade.json").read_text())
    assert [c["spec"]["name"] for c in grade["checks"]] == ["test_b", "test_a"]
    assert {c["outcome"] for c in grade["checks"]} == {"passed"}
    r = run(tmp_path, '''
        import pytest

        @pytest.mark.after("test_b")
        def test_a():
            pass

        @pytest.mark.after("test_a")
        def test_b():
            pass
        ''')
    assert r.returncode == 4 and "cycle" in r.stderr


def test_the_same_grade_under_xdist(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run(tmp_path, GRADING, "--lab-grade-out", str(one))
    run(tmp_path, GRADING, "--lab-grade-out", str(two), "-n", "2", "--dist", "loadscope")
    a, b = (json.loads((d / "grade.json").read_text()) for d in (one, two))
    assert (b["score"], b["max_score"], b["lab"]) == (5, 11, "Arithmetic lab")
    assert [(c["spec"]["name"], c["outcome"], c["score"]) for c in a["checks"]] == \
        [(c["spec"]["name"], c["outcome"], c["score"]) for c in b["checks"]]
    assert b["messages"]["fr"]["hint.two"] == "deux vaut {expected}"
