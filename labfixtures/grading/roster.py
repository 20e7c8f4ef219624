"""The class list: a CSV file with the columns `student,name,target` and an optional
`seed`. A student id becomes a folder name, so it is checked (letters, digits, `.`, `_`,
`-`); a target is a path relative to the roster's folder, or absolute.

    student,name,target
    alice,Alice Martin,students/alice.yaml
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from labfixtures.errors import LabError

COLUMNS = ("student", "name", "target")
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Student:
    student: str
    name: str
    target: str  # as written in the roster
    path: Path   # the target resolved against the roster's folder
    seed: str = ""


def read(path: str | Path) -> list[Student]:
    """The students of roster PATH, in its order; every mistake reported at once."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise LabError(f"cannot read the roster {p}: {e.strerror}",
                       "give a CSV file with the columns student,name,target") from None
    rows = list(csv.DictReader(text.splitlines()))
    header = next(csv.reader(text.splitlines()), [])
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise LabError(f"roster {p}: no column {', '.join(missing)} (columns: "
                       f"{', '.join(header) or 'none'})",
                       "the first line must be: student,name,target (and optionally ,seed)")
    students: list[Student] = []
    mistakes: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        sid = (row.get("student") or "").strip()
        target = (row.get("target") or "").strip()
        if not STUDENT_ID.fullmatch(sid):
            mistakes.append(f"line {line}: student id {sid!r} is not valid (letters, "
                            "digits, '.', '_', '-'; it becomes a folder name)")
            continue
        if sid in seen:
            mistakes.append(f"line {line}: student {sid} is already on line {seen[sid]}")
            continue
        seen[sid] = line
        if not target:
            mistakes.append(f"line {line}: student {sid} has no target")
            continue
        # lab:NAME and ssh:// targets are not paths (kept as written, `target`)
        resolved = Path(target) if Path(target).is_absolute() else p.parent / target
        students.append(Student(sid, (row.get("name") or "").strip(), target,
                                resolved.resolve(), (row.get("seed") or "").strip()))
    if mistakes:
        raise LabError(f"roster {p}: " + "; ".join(mistakes[:20])
                       + (f" (and {len(mistakes) - 20} more)" if len(mistakes) > 20 else ""),
                       "fix these lines of the roster")
    return students


def shard(students: list[Student], k: int, n: int) -> list[Student]:
    """Shard K of N (1-based): every Nth student from the Kth, so shards are balanced."""
    if not 1 <= k <= n:
        raise LabError(f"shard {k}/{n} does not exist", "give --shard K/N with 1 <= K <= N")
    return [s for i, s in enumerate(students) if i % n == k - 1]


def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise LabError(f"--shard {text!r} is not K/N", "e.g. --shard 1/3 (the first of 3)")
    return int(m.group(1)), int(m.group(2))
