"""`labctl grade`: a class graded in parallel, and the merge of shards.

    labctl grade GRADING_FILE --roster ROSTER.csv --out DIR [-n N] [--timeout S]
                 [--shard K/N] [--regrade] [--reveal] [--lang fr|en]
    labctl grade merge DIR... [--out DIR]
    labctl grade sheet GRADING_FILE --roster ROSTER.csv --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labfixtures.cli.common import need_root
from labfixtures.core.progress import StatusLine
from labfixtures.errors import LabError
from labfixtures.grading import classrun, roster, variants
from labfixtures.grading.feedback import points
from labfixtures.grading.model import GRADED, write_text

DESCRIPTION = """Grade a class: each student of ROSTER (CSV: student,name,target[,seed];
a target is the student's lab file, a checkpoint bundle .tar/.tar.gz, a live lab of
`labctl up` as lab:NAME, or a running machine as ssh://USER@HOST:PORT) is graded by
GRADING_FILE (a pytest module with @pytest.mark.points, after, hidden) in its own sandbox
lab, N at a time, each with its own time limit. Writes DIR/grades.csv (status graded or
not-gradable, never a silent 0) and, per student, DIR/<student>/feedback.md,
feedback.html, results.json (Gradescope), evidence.json and grade.json. Run it again to
resume: students already graded are kept unless --regrade (their feedback is rendered
again, e.g. with --reveal).

`labctl grade merge DIR... [--out DIR]` joins the folders of --shard runs.
`labctl grade sheet GRADING_FILE --roster ROSTER.csv --out DIR` writes each student's
instructions, DIR/<student>/sheet.md, from the grading file's SHEET and VARIANTS (drawn
from the roster's seed, or the student's id)."""

EXAMPLES = """examples:
  sudo labctl grade scenarios/grading/test_table1.py \\
      --roster scenarios/grading/roster.csv --out grades/ -n 2 --timeout 120
  sudo labctl grade ... --out grades/ --reveal         show the hidden checks (no regrading)
  sudo labctl grade ... --shard 1/2 --out part1/       one CI job of two
  labctl grade merge part1/ part2/ --out grades/
  labctl grade sheet lab3.py --roster roster.csv --out sheets/   per-student instructions
"""


def pytest_args(args: argparse.Namespace) -> list[str]:
    """What each student's pytest gets from labctl grade's own options."""
    return ["--lab-no-checkpoints"] if args.no_checkpoints else []


def cmd_grade(args: argparse.Namespace) -> int:
    if args.what[0] == "merge" and not Path("merge").exists():
        if len(args.what) < 2:
            raise LabError("labctl grade merge needs the folders to merge",
                           "labctl grade merge part1/ part2/ --out grades/")
        dirs = [Path(d) for d in args.what[1:]]
        out = Path(args.out) if args.out else dirs[0]
        grades = classrun.merge(dirs, out)
        print(f"{len(grades)} student(s) in {out / classrun.GRADES_CSV}")
        return 0
    if args.what[0] == "sheet" and not Path("sheet").exists():
        return _sheets(args)
    if len(args.what) != 1:
        raise LabError(f"one grading file, not {len(args.what)}: {' '.join(args.what)}",
                       "labctl grade GRADING_FILE --roster ROSTER.csv --out DIR")
    if not args.roster or not args.out:
        raise LabError("labctl grade needs --roster and --out",
                       "labctl grade GRADING_FILE --roster ROSTER.csv --out DIR")
    need_root()
    run = classrun.ClassRun(
        grading_file=Path(args.what[0]), students=roster.read(args.roster),
        out=Path(args.out), jobs=args.n, timeout=args.timeout,
        shard=roster.parse_shard(args.shard), regrade=args.regrade, reveal=args.reveal,
        lang=args.lang, attach_key=Path(args.attach_key) if args.attach_key else None,
        attach_netns=args.attach_netns,
        pytest_args=pytest_args(args))
    # each student's result on stdout as before; the live line only on a terminal
    with StatusLine(sys.stdout) as line:
        grades = classrun.run_class(run, progress=line.note,
                                    status=line if line.live else None)
    graded = [g for g in grades if g.status == GRADED]
    print(f"{len(graded)} graded, {len(grades) - len(graded)} not gradable: "
          f"{Path(args.out) / classrun.GRADES_CSV}")
    for g in grades:
        if g.status != GRADED:
            print(f"  {g.student}: not-gradable: {g.reason}")
        else:
            print(f"  {g.student}: {points(g.score)} / {points(g.max_score)}")
    return 0


def _sheets(args: argparse.Namespace) -> int:
    """`labctl grade sheet GRADING_FILE --roster R --out DIR`: DIR/<student>/sheet.md."""
    if len(args.what) != 2 or not args.roster or not args.out:
        raise LabError("labctl grade sheet needs one grading file, --roster and --out",
                       "labctl grade sheet GRADING_FILE --roster ROSTER.csv --out DIR")
    module = variants.load_module(Path(args.what[1]).resolve())
    students = roster.read(args.roster)
    for s in students:
        out = Path(args.out) / s.student / "sheet.md"
        write_text(out, variants.sheet(module, s.seed or s.student, s.student, s.name))
    print(f"{len(students)} sheet(s) in {args.out}/<student>/sheet.md")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    g = sub.add_parser("grade", help="grade a class of student labs in parallel",
                       description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("what", nargs="+", metavar="GRADING_FILE | merge DIR... | sheet FILE",
                   help="the grading file (a pytest module), `merge` and folders, or "
                        "`sheet` and a grading file")
    g.add_argument("--roster", metavar="CSV", help="student,name,target[,seed]")
    g.add_argument("--out", metavar="DIR", help="where grades.csv and the students' "
                                                "folders go")
    g.add_argument("-n", type=int, default=1, metavar="N",
                   help="students graded at once (default 1; each has its own lab)")
    g.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="each student's time limit in seconds (default 300): past it, "
                        "the student is not-gradable and the others go on")
    g.add_argument("--shard", default="1/1", metavar="K/N",
                   help="grade only shard K of N (every Nth student from the Kth)")
    g.add_argument("--regrade", action="store_true",
                   help="grade again the students already graded in DIR")
    g.add_argument("--reveal", action="store_true",
                   help="show the hidden checks in feedback.md and results.json")
    g.add_argument("--lang", choices=("en", "fr"), default="en",
                   help="the feedback's language (default en)")
    g.add_argument("--no-checkpoints", action="store_true",
                   help="boot every student's VMs (by default a VM whose settings an "
                        "earlier student had comes up from the checkpoint of that boot)")
    g.add_argument("--attach-key", metavar="PATH",
                   help="private key for ssh:// targets (or the password in "
                        "LABFIXTURES_ATTACH_PASSWORD); lab:NAME targets need none")
    g.add_argument("--attach-netns", metavar="NS",
                   help="the namespace ssh:// targets are reached from")
    g.set_defaults(func=cmd_grade)
