#!/usr/bin/env python3
"""Make the example class reproducibly: one lab file per student in `students/`, and
`roster.csv`. Each student's lab file is the guide's Table 1 lab
(`scenarios/labs/seed-minimal.yaml`) with, for all but one, one typical mistake:

    alice   correct
    bob     wrong gateway (203.0.113.190, in the subnet but not the SVI)
    carol   tap2 in the wrong VLAN (3 instead of 2)
    dave    forwarding off on the lab host
    erin    wrong MAC on vm0's NIC (b8:ad:ca:fe:00:20: not tap2's)
    frank   missing address (no IPv4 address, hence no default route)
    gina    unreachable VM (no NIC at all): not gradable, never a silent 0

    python scenarios/grading/make_class.py          # writes them next to this script
    python scenarios/grading/make_class.py --check  # exit 1 if the files differ
"""

from __future__ import annotations

import copy
import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SEED = HERE.parent / "labs" / "seed-minimal.yaml"


def _nic(lab: dict[str, Any]) -> dict[str, Any]:
    nic: dict[str, Any] = lab["vms"]["vm0"]["nics"][0]
    return nic


def wrong_gateway(lab: dict[str, Any]) -> None:
    _nic(lab)["gateway"] = "203.0.113.190"


def wrong_vlan(lab: dict[str, Any]) -> None:
    lab["taps"][0]["vlan"] = 3


def forwarding_off(lab: dict[str, Any]) -> None:
    lab["forwarding"] = False


def wrong_mac(lab: dict[str, Any]) -> None:
    _nic(lab)["mac"] = "b8:ad:ca:fe:00:20"


def missing_address(lab: dict[str, Any]) -> None:
    del _nic(lab)["addresses"]
    del _nic(lab)["gateway"]


def no_nic(lab: dict[str, Any]) -> None:
    lab["vms"]["vm0"]["nics"] = []


STUDENTS: list[tuple[str, str, Callable[[dict[str, Any]], None] | None]] = [
    ("alice", "Alice Martin", None),
    ("bob", "Bob Bernard", wrong_gateway),
    ("carol", "Carol Dubois", wrong_vlan),
    ("dave", "Dave Thomas", forwarding_off),
    ("erin", "Erin Robert", wrong_mac),
    ("frank", "Frank Petit", missing_address),
    ("gina", "Gina Durand", no_nic),
]


def files() -> dict[Path, str]:
    """Every file the class is made of, by path, with its text."""
    seed = yaml.safe_load(SEED.read_text())
    out: dict[Path, str] = {}
    roster = io.StringIO()
    w = csv.writer(roster, lineterminator="\n")
    w.writerow(["student", "name", "target"])
    for student, name, mistake in STUDENTS:
        lab = copy.deepcopy(seed)
        lab["name"] = f"table1-{student}"
        if mistake is not None:
            mistake(lab)
        what = mistake.__name__.replace("_", " ") if mistake else "correct"
        out[HERE / "students" / f"{student}.yaml"] = (
            f"# {name}: the guide's Table 1 lab ({what}); made by make_class.py\n"
            + yaml.safe_dump(lab, sort_keys=False))
        w.writerow([student, name, f"students/{student}.yaml"])
    out[HERE / "roster.csv"] = roster.getvalue()
    return out


def main(argv: list[str]) -> int:
    wanted = files()
    if "--check" in argv:
        stale = [p for p, text in wanted.items()
                 if not p.is_file() or p.read_text() != text]
        for p in stale:
            print(f"differs: {p}")
        return 1 if stale else 0
    for p, text in wanted.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        print(f"wrote {p.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
