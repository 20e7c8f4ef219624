"""Grading figures: a class of N students graded end to end, from checkpoint bundles or
from lab files.

    sudo .venv/bin/python bench/grading.py [--students 30] [-n 2] [--timeout 120]
                                           [--targets bundles|lab-files]

`bundles` (default): the bundles are made first (not timed): alice (correct), bob (wrong
gateway) and frank (no address) from scenarios/grading, booted, saved and exported as
students would; the class is N students cycling over them. `lab-files`: the class cycles
over the same three students' lab files, and is graded twice in the same run, first with
`--no-checkpoints` (every VM booted), then as `labctl grade` does by default (a VM whose
settings an earlier student had comes up from the checkpoint of that boot: the first
student of each setting boots, unless an earlier run saved it), and the ratio is printed.
Each run is `labctl grade scenarios/grading/test_table1.py -n N`, timed: its wall time,
the CPU time of it and its children (pytest, QEMU: the Open vSwitch daemons detach and are
not counted), and per student the time from its pytest's start to its grade (grade.json).
The goal of issue 10: <= 120 s wall with -n 2 on 2 cores, <= 4 s of work per student.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASS = ROOT / "scenarios" / "grading"
KINDS = ("alice", "bob", "frank")


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def grade(args: argparse.Namespace, roster: Path, out: Path, *extra: str
          ) -> tuple[float, float] | None:
    """One timed `labctl grade` of ROSTER into OUT: (wall, CPU) seconds, None if it failed."""
    cpu0, t0 = cpu_children(), time.monotonic()
    cp = subprocess.run([sys.executable, "-m", "labfixtures.cli", "grade",
                         str(CLASS / "test_table1.py"), "--roster", str(roster),
                         "--out", str(out), "-n", str(args.n), "--timeout",
                         str(args.timeout), "--regrade", *extra],
                        capture_output=True, text=True, cwd=ROOT)
    wall, cpu = time.monotonic() - t0, cpu_children() - cpu0
    if cp.returncode != 0:
        print(cp.stdout[-3000:], cp.stderr[-3000:], sep="\n")
        return None
    rows = list(csv.DictReader((out / "grades.csv").open()))
    per = []
    for r in rows:
        g = json.loads((out / r["student"] / "grade.json").read_text())
        per.append(g["finished"] - g["started"])
    statuses = {s: sum(1 for r in rows if r["status"] == s) for s in
                {r["status"] for r in rows}}
    print(f"{args.students} students, -n {args.n}, {os.cpu_count()} CPUs"
          f"{' ' + ' '.join(extra) if extra else ''}: "
          f"{wall:.1f} s wall ({wall / args.students:.2f} s per student), "
          f"CPU {cpu:.1f} s ({cpu / args.students:.2f} s per student); {statuses}")
    print(f"  per student, pytest start -> grade: median {statistics.median(per):.2f} s "
          f"(min {min(per):.2f}, max {max(per):.2f}); load average now "
          f"{os.getloadavg()[0]:.2f}")
    return wall, cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", type=int, default=30)
    p.add_argument("-n", type=int, default=2)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--targets", choices=("bundles", "lab-files"), default="bundles")
    p.add_argument("--keep", metavar="DIR", help="keep the class's outputs in DIR")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="lf-bench-grading-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        roster = work / "roster.csv"
        if args.targets == "bundles":
            t0 = time.monotonic()
            subprocess.run([sys.executable, str(CLASS / "make_bundles.py"), str(work),
                            *KINDS], check=True, capture_output=True)
            print(f"bundles made in {time.monotonic() - t0:.1f} s (not counted): "
                  + ", ".join(f"{k} {(work / f'{k}.tar').stat().st_size >> 20} MiB"
                              for k in KINDS))
            target = "{}.tar"
        else:
            target = str(CLASS / "students" / "{}.yaml")
        roster.write_text("student,name,target\n" + "".join(
            f"s{i:03d},Student {i},{target.format(KINDS[i % len(KINDS)])}\n"
            for i in range(args.students)))
        if args.targets == "bundles":
            return 0 if grade(args, roster, work / "out") else 1
        booted = grade(args, roster, work / "booted", "--no-checkpoints")
        restored = grade(args, roster, work / "restored")
        if booted is None or restored is None:
            return 1
        print(f"checkpoints / boots: wall {restored[0] / booted[0]:.2f}, "
              f"CPU {restored[1] / booted[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
