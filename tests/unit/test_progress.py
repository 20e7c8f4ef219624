"""core.progress.StatusLine: one rewritten line on a terminal, plain lines in CI or a log."""

import io
import os
import pty

from labfixtures.core.progress import StatusLine, interactive


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    with StatusLine(out) as line:
        line("[tiny] step 1/3: downloading")
        line("[tiny] step 2/3: building")
        line.note("tiny: built")
    assert out.getvalue() == ("[tiny] step 1/3: downloading\n[tiny] step 2/3: building\n"
                              "tiny: built\n")


def test_one_line_rewritten_in_place_on_a_terminal():
    out = io.StringIO()
    with StatusLine(out, live=True) as line:
        line("[tiny] step 1/3: downloading packages")
        line("[tiny] step 2/3: cpio")
    a, b = "[tiny] step 1/3: downloading packages", "[tiny] step 2/3: cpio"
    # each status overwrites the last, blanking what a longer one left; a newline at exit
    assert out.getvalue() == f"\r{a}\r{a}" + f"\r{b}{' ' * (len(a) - len(b))}\r{b}" + "\n"


def test_note_clears_the_status_first():
    out = io.StringIO()
    line = StatusLine(out, live=True)
    line("working on bob")
    line.note("alice: 8/10")
    assert out.getvalue().endswith("\r" + " " * len("working on bob") + "\ralice: 8/10\n")


def test_a_real_terminal_is_live_unless_ci(monkeypatch):
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            monkeypatch.delenv("CI", raising=False)
            assert interactive(tty)
            monkeypatch.setenv("CI", "true")
            assert not interactive(tty)
            assert not StatusLine(tty).live
    finally:
        os.close(master)
        os.close(slave)
    assert not interactive(io.StringIO())


def test_count_shows_item_of_total():
    out = io.StringIO()
    StatusLine(out).count(3, 7, "grading bob")
    assert out.getvalue().startswith("[3/7] grading bob (")
