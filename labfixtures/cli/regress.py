"""`labctl regress compare`: two runs' results files compared (labfixtures.regress)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from labfixtures.core.progress import StatusLine
from labfixtures.errors import LabError
from labfixtures.regress import attribute as attr
from labfixtures.regress import compare as cmp
from labfixtures.regress import matrix
from labfixtures.regress.bisect import Step, bisect, steps_table
from labfixtures.regress.compare import status_of
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


def cmd_guide(args: argparse.Namespace) -> int:
    run = read_many(args.results)
    steps = [g for t in run.tests for g in t.guide]
    if not steps:
        raise LabError("these results hold no guide step",
                       "run the guide's commands: pytest -m guide_commands scenarios/ "
                       "--lab-results FILE.json")
    broken = [g for g in steps if g.broken]
    other = [g for g in steps if not g.as_shown]
    lines = ["## The guide's commands", "",
             f"{len(steps) - len(other)} of {len(steps)} work as the guide shows, "
             f"{len(broken)} refused.", ""]
    lines += [f"- {g.describe()}" for g in other]
    md = "\n".join(lines) + "\n"
    print(md, end="")
    if args.markdown:
        _write(args.markdown, md)
    return cmp.REGRESSION if broken else cmp.NO_REGRESSION


def _pytest_args(args: argparse.Namespace) -> list[str]:
    rest = list(args.pytest_args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    return rest


def cmd_matrix(args: argparse.Namespace) -> int:
    out = Path(args.out)
    all_cells = matrix.cells(args.kernel, args.qemu)
    k, n = matrix.parse_shard(args.shard)
    mine = matrix.shard(all_cells, k, n)
    with StatusLine(sys.stdout, prefix="labctl regress: ") as line:
        for i, cell in enumerate(mine, 1):
            if args.reuse and matrix.results_file(out, cell).exists():
                line.note(f"{cell.label()}: results already in {out}, kept")
                continue
            line.count(i, len(mine), f"running {cell.label()}")
            run = matrix.run_cell(cell, _pytest_args(args), out)
            line.note(f"{cell.label()}: pytest exit {run.returncode} in "
                      f"{run.seconds:.0f} s, {run.results}")
    table = matrix.table(matrix.load(out))
    print(table, end="")
    if args.markdown:
        _write(args.markdown, table)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    table = matrix.table(matrix.load(Path(args.folder)))
    print(table, end="")
    if args.markdown:
        _write(args.markdown, table)
    return 0


def cmd_attribute(args: argparse.Namespace) -> int:
    out = Path(args.out)
    old = matrix.Cell(args.kernel[0], args.qemu[0])
    new = matrix.Cell(args.kernel[1], args.qemu[1])
    if old == new:
        raise LabError("the old and new cells are the same",
                       "give --kernel OLD NEW and --qemu OLD NEW (one of them may repeat)")

    def results(cell: matrix.Cell) -> None:
        if not matrix.results_file(out, cell).exists():
            print(f"labctl regress: running {cell.label()}", flush=True)
            matrix.run_cell(cell, _pytest_args(args), out)

    results(old)
    results(new)
    runs = matrix.load(out)
    if cmp.compare(runs[old], runs[new]).newly_failing:  # only then the crossed cells
        for cell in attr.crossed(old, new):
            results(cell)
        runs = matrix.load(out)
    found = attr.attribute(old, new, runs)
    md = attr.to_markdown(old, new, found)
    print(md, end="")
    if args.markdown:
        _write(args.markdown, md)
    return cmp.REGRESSION if found else cmp.NO_REGRESSION


KERNEL_NO_CHECKPOINT = ("a kernel bisection boots every step: each step's guest is another "
                        "image, so no checkpoint can be shared between steps")


def _bisect_options(args: argparse.Namespace, component: str, first: str) -> list[str]:
    """The pytest options of every step: how checkpoints are used."""
    if args.no_checkpoints:
        return ["--lab-no-checkpoints"]
    return ["--lab-checkpoint-qemu", first] if component == "qemu" else []


def cmd_bisect(args: argparse.Namespace) -> int:
    out = Path(args.out)
    component, versions = ("qemu", args.qemu) if args.qemu else ("kernel", args.kernel)
    options = _bisect_options(args, component, versions[0])
    if component == "kernel":
        print(f"labctl regress: {KERNEL_NO_CHECKPOINT}", flush=True)
    elif not args.no_checkpoints:
        print(f"labctl regress: steps start from the checkpoints of {versions[0]} (saved "
              "by its step, restored on each other QEMU; a cold boot where that fails)",
              flush=True)
    steps: list[Step] = []

    def cell(version: str) -> matrix.Cell:
        if component == "qemu":
            return matrix.Cell(args.other or matrix.DEFAULT_KERNEL, version)
        return matrix.Cell(version, args.other or matrix.HOST_QEMU)

    def is_good(version: str) -> bool | None:
        c = cell(version)
        print(f"labctl regress: bisect step: {c.label()}", flush=True)
        run = matrix.run_cell(c, [*_pytest_args(args), *options, args.test], out)
        results = matrix.load(out)[c].by_nodeid()
        found = next((rs for nodeid, rs in results.items() if nodeid.endswith(args.test)
                      or args.test.endswith(nodeid)), None)
        st = status_of(found).status if found else "missing"
        step = Step(version, st, run.seconds, dict(found[0].came_up) if found else {})
        steps.append(step)
        print(f"labctl regress: step {len(steps)}: {step.describe()}", flush=True)
        return {"pass": True, "fail": False}.get(st)

    try:
        result = bisect(versions, is_good)
    finally:
        if steps:
            table = steps_table(steps)
            print(table, end="")
            if args.markdown:
                _write(args.markdown, table)
    print(f"{args.test}: {component} {result.describe()}")
    return 0 if result.first_bad is not None else cmp.CANNOT_COMPARE


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

    g = rs.add_parser(
        "guide", help="the guide's commands that no longer work as shown, with the fix",
        description="From the results of `pytest -m guide_commands scenarios/ "
                    "--lab-results FILE.json`: each step of the guide that is refused or "
                    "prints something else, the version of the tool, and the fix. Exit 1 "
                    "if a step is refused.")
    g.add_argument("results", nargs="+", metavar="RESULTS")
    g.add_argument("--markdown", metavar="FILE", help="write the list there too")
    g.set_defaults(func=cmd_guide)

    m = rs.add_parser(
        "matrix", help="run pytest on each guest kernel × QEMU cell, print the table",
        description="Run PYTEST_ARGS once per cell (each --kernel with each --qemu), each "
                    "writing OUT/kernel=K,qemu=Q.json, then print a Markdown table of tests "
                    "× cells from every results file in OUT (those of other shards "
                    "included).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  labctl regress matrix --kernel default --kernel "
               "linux-image-6.1.0-50-amd64 --qemu host --qemu 1:7.2+dfsg-7+deb12u15 "
               "--shard 1/2 -- scenarios/")
    m.add_argument("--kernel", action="append", default=[], metavar="PACKAGE",
                   help="a guest kernel package, or 'default' (repeatable)")
    m.add_argument("--qemu", action="append", default=[], metavar="VERSION|PATH",
                   help="a QEMU (labctl qemu list), or 'host' (repeatable)")
    m.add_argument("--out", default="regress-results", metavar="DIR",
                   help="where the cells' results go (default: regress-results)")
    m.add_argument("--shard", default="1/1", metavar="K/N",
                   help="run only the K-th of N shares of the cells (one per CI job)")
    m.add_argument("--reuse", action="store_true",
                   help="do not run a cell whose results are already in DIR")
    m.add_argument("--markdown", metavar="FILE", help="write the table there too")
    m.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="-- PYTEST_ARGS")
    m.set_defaults(func=cmd_matrix)

    t = rs.add_parser("table", help="the table of a matrix's results folder",
                      description="Print the tests × cells table of the results in FOLDER "
                                  "(e.g. after collecting the shards' artifacts).")
    t.add_argument("folder")
    t.add_argument("--markdown", metavar="FILE", help="write the table there too")
    t.set_defaults(func=cmd_table)

    a = rs.add_parser(
        "attribute", help="which upgrade (kernel or QEMU) broke each newly failing test",
        description="Run (or reuse from OUT) the old cell and the new cell; if tests newly "
                    "fail, run the two crossed cells (new QEMU on the old kernel, new "
                    "kernel on the old QEMU) and say for each test: qemu, kernel, either "
                    "(each alone breaks it), both (only together) or unknown. Exit 1 if a "
                    "test newly fails, 0 otherwise.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  labctl regress attribute --kernel default "
               "linux-image-6.1.0-50-amd64 --qemu host 1:7.2+dfsg-7+deb12u15 -- scenarios/")
    a.add_argument("--kernel", nargs=2, metavar=("OLD", "NEW"),
                   default=[matrix.DEFAULT_KERNEL, matrix.DEFAULT_KERNEL],
                   help="old and new guest kernel packages ('default' for the recipe's)")
    a.add_argument("--qemu", nargs=2, metavar=("OLD", "NEW"),
                   default=[matrix.HOST_QEMU, matrix.HOST_QEMU],
                   help="old and new QEMU ('host', a fetched version, or a path)")
    a.add_argument("--out", default="regress-results", metavar="DIR",
                   help="results of the cells (reused when present)")
    a.add_argument("--markdown", metavar="FILE", help="write the verdicts there too")
    a.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="-- PYTEST_ARGS")
    a.set_defaults(func=cmd_attribute)

    b = rs.add_parser(
        "bisect", help="the first version of QEMU or of the kernel that breaks a test",
        description="Run TEST on versions of one component, old to new (the first must "
                    "pass, the last fail), halving the range each step; a version where "
                    "the test cannot run (a lab error) is skipped. Each step is one cell "
                    "written to OUT. QEMU: the first step saves its VMs' state just after "
                    "boot (automatic checkpoints, lab_vm) and every other step restores it "
                    "on its own QEMU, booting only where that fails; each step says which "
                    "and its wall time. Kernel: " + KERNEL_NO_CHECKPOINT + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  labctl regress bisect --qemu host "
               "1:7.2+dfsg-7+deb12u15 --test scenarios/test_s10_vm.py::test_ping -- -q\n"
               "PYTEST_ARGS are options only: each step runs TEST alone.")
    which = b.add_mutually_exclusive_group(required=True)
    which.add_argument("--qemu", nargs="+", metavar="V",
                       help="QEMU builds, old to new (host, fetched versions, paths)")
    which.add_argument("--kernel", nargs="+", metavar="PACKAGE",
                       help="guest kernel packages, old to new (default, linux-image-...)")
    b.add_argument("--with", dest="other", metavar="VALUE",
                   help="the other component, fixed (default: the default kernel / host QEMU)")
    b.add_argument("--test", required=True, metavar="NODEID", help="the test to bisect")
    b.add_argument("--out", default="regress-bisect", metavar="DIR")
    b.add_argument("--no-checkpoints", action="store_true",
                   help="boot the VMs in every step (pytest --lab-no-checkpoints)")
    b.add_argument("--markdown", metavar="FILE", help="write the steps' table there too")
    b.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="-- PYTEST_ARGS")
    b.set_defaults(func=cmd_bisect)
