"""`labctl regress compare`: two runs' results files compared (labfixtures.regress)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from labfixtures.regress import compare as cmp
from labfixtures.regress.results import read_many


def _write(path: str, text: str) -> None:
    # $GITHUB_STEP_SUMMARY is shared by a job's steps: add to it, do not replace it
    mode = "a" if path == os.environ.get("GITHUB_STEP_SUMMARY") else "w"
    with open(Path(path), mode) as f:
        f.write(text)


def cmd_compare(args: argparse.Namespace) -> int:
    base, new = read_many(args.base), read_many(args.new)
    c = cmp.compare(base, new)
    md = cmp.to_markdown(c, " ".join(args.base), " ".join(args.new))
    print(md, end="")
    if args.markdown:
        _write(args.markdown, md)
    if args.junit:
        _write(args.junit, cmp.to_junit(c))
    return c.exit_status


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser(
        "regress", help="compare runs (pytest --lab-results) across kernel/QEMU upgrades",
        description="Regression runs: `pytest --lab-results FILE.json` records what a run "
                    "ran on and each test's outcome and metrics; these commands compare "
                    "such runs.")
    rs = r.add_subparsers(dest="regress_command", metavar="ACTION")
    rs.required = True
    c = rs.add_parser(
        "compare", help="BASE against NEW: newly failing, fixed, flaky, lab errors, metrics",
        description="Compare two runs. BASE and NEW are results files, or folders of them "
                    "(repeated runs: flaky rates and the noise of metrics are measured "
                    "across them). Exit status: 0 no regression, 1 regression (a test "
                    "newly failing, a metric worse beyond the noise), 2 could not compare "
                    "(unreadable file, no test in common, lab errors in NEW).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  labctl regress compare base.json new.json --markdown "
               "\"$GITHUB_STEP_SUMMARY\" --junit regress.xml")
    c.add_argument("base", nargs=1, metavar="BASE", help="results of the reference run")
    c.add_argument("new", nargs=1, metavar="NEW", help="results of the run to check")
    c.add_argument("--markdown", metavar="FILE", help="write the report as Markdown "
                   "(appended when FILE is $GITHUB_STEP_SUMMARY)")
    c.add_argument("--junit", metavar="FILE", help="write the comparison as JUnit XML")
    c.set_defaults(func=cmd_compare)
