#!/usr/bin/env python3
"""Make checkpoint bundles of the example class: for each student given, build the
student's lab file, boot vm0, save a checkpoint `submitted` and export it as
OUT/<student>.tar, as a student would hand one in (`labctl checkpoint export`).

    sudo .venv/bin/python scenarios/grading/make_bundles.py OUT alice bob [...]

Needs root and the tiny image; a few seconds per student. The bundles are not kept in
the repository (they hold a VM's memory): the integration tests and bench/grading.py
make them when they need them.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from labfixtures import checkpoint
from labfixtures.lab.build import build
from labfixtures.lab.lab import Lab
from labfixtures.lab.labfile import load

HERE = Path(__file__).resolve().parent
TAG = "submitted"


def make(students: list[str], out: Path) -> list[Path]:
    """OUT/<student>.tar for each of STUDENTS (their lab files in students/)."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    with Lab.open() as host:
        for student in students:
            with host.scope(student) as lab, tempfile.TemporaryDirectory() as tmp:
                built = build(load(HERE / "students" / f"{student}.yaml"), lab)
                store = checkpoint.CheckpointStore(tmp)
                checkpoint.save(built.vms["vm0"], TAG, store=store)
                made.append(checkpoint.export("vm0", TAG, out / f"{student}.tar",
                                              store=store))
    return made


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    for p in make(sys.argv[2:], Path(sys.argv[1])):
        print(f"{p} ({p.stat().st_size >> 20} MB)")
