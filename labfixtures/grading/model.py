"""What a grade is made of: checks (a test with points), their outcomes, the findings of a
failed check, and a student's grade, written as `grade.json` (version 1).

A finding is kept as catalogue keys and parameters, not as text: the same grade renders
in English or French, and can be rendered again later (`--reveal`) without regrading.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GRADE_VERSION = 1

#: a check's outcome
PASSED, FAILED, PARTIAL, NOT_CHECKED, ERROR = "passed", "failed", "partial", "not-checked", \
    "error"
OUTCOMES = (PASSED, FAILED, PARTIAL, NOT_CHECKED, ERROR)
#: a student's status in grades.csv
GRADED, NOT_GRADABLE = "graded", "not-gradable"


@dataclass(frozen=True)
class Message:
    """A catalogue KEY and its parameters (`messages.render` makes it text)."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def text(cls, text: str) -> Message:
        """Text that needs no translation (a table row, an address, a command)."""
        return cls("text", {"text": text})

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "params": {k: _plain(v) for k, v in self.params.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Message | None:
        if d is None:
            return None
        params = {k: (Message.from_json(v["message"]) if isinstance(v, dict)
                      and "message" in v else v) for k, v in d.get("params", {}).items()}
        return cls(d["key"], params)


def as_message(value: Message | str | None) -> Message | None:
    return value if value is None or isinstance(value, Message) else Message.text(value)


@dataclass(frozen=True)
class Finding:
    """Why a check failed: what was probed, from where, what was expected, what was seen,
    and a hint where one is known. DETAILS is the raw text (an assertion's message)."""

    probe: Message | None = None
    where: Message | None = None
    expected: Message | None = None
    seen: Message | None = None
    hint: Message | None = None
    details: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: (v.to_json() if isinstance(v, Message) else v)
                for k, v in (("probe", self.probe), ("where", self.where),
                             ("expected", self.expected), ("seen", self.seen),
                             ("hint", self.hint), ("details", self.details))}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Finding | None:
        if d is None:
            return None
        m = {k: Message.from_json(d.get(k)) for k in ("probe", "where", "expected", "seen",
                                                       "hint")}
        return cls(m["probe"], m["where"], m["expected"], m["seen"], m["hint"],
                   d.get("details", ""))


class CheckFailed(AssertionError):
    """A check's failure with its finding (and, for partial credit, the SHARE in [0, 1]
    of the check's points still earned). The probes raise it; a grading file may too."""

    def __init__(self, finding: Finding, share: float = 0.0,
                 render: Callable[[Message], str] | None = None) -> None:
        """RENDER makes a message text for pytest's own report (the probes give the
        English catalogue's); the feedback renders the finding again, in its language."""
        self.finding = finding
        self.share = min(1.0, max(0.0, share))
        parts = []
        for label, m in (("probed", finding.probe), ("from", finding.where),
                         ("expected", finding.expected), ("seen", finding.seen),
                         ("hint", finding.hint)):
            if m is not None:
                parts.append(f"{label}: {(render or _english)(m)}")
        if finding.details:
            parts.append(finding.details)
        super().__init__("\n".join(parts) or "check failed")


def _english(m: Message) -> str:
    # the plain rendering used in the exception's text (pytest's own report); the
    # feedback renders through the catalogue instead
    if m.key == "text":
        return str(m.params.get("text", ""))
    return m.key + (f" {m.params}" if m.params else "")


@dataclass(frozen=True)
class CheckSpec:
    """A check as the grading file declares it: the test's NAME, its TITLE by language
    (the docstring's first line, and a `fr:` line), POINTS, the checks it comes AFTER,
    and whether it is HIDDEN from the student until the teacher reveals it."""

    name: str
    title: dict[str, str]
    points: float = 1.0
    after: tuple[str, ...] = ()
    hidden: bool = False

    def title_in(self, lang: str) -> str:
        return self.title.get(lang) or self.title.get("en") or self.name

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["after"] = list(self.after)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CheckSpec:
        return cls(d["name"], dict(d["title"]), float(d.get("points", 1.0)),
                   tuple(d.get("after", ())), bool(d.get("hidden", False)))


def titles_from_doc(doc: str | None, name: str) -> dict[str, str]:
    """A check's titles from its docstring: the first line is the title (English, or the
    only one); a line `fr: ...` (or `en: ...`) gives the title in that language."""
    titles: dict[str, str] = {}
    lines = [ln.strip() for ln in (doc or "").strip().splitlines()]
    if lines and lines[0]:
        titles["en"] = lines[0]
    for ln in lines[1:]:
        for lang in ("fr", "en"):
            if ln.lower().startswith(f"{lang}:") and ln[3:].strip():
                titles[lang] = ln[3:].strip()
    if not titles:
        titles["en"] = name.removeprefix("test_").replace("_", " ")
    return titles


@dataclass
class CheckResult:
    """A check's outcome and the points it earned. NEEDS: the prerequisites that failed
    (for NOT_CHECKED); ERROR: why the check could not run (for ERROR)."""

    spec: CheckSpec
    outcome: str
    score: float = 0.0
    finding: Finding | None = None
    needs: tuple[str, ...] = ()
    error: str = ""
    duration: float = 0.0
    probes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec.to_json(), "outcome": self.outcome, "score": self.score,
                "finding": self.finding.to_json() if self.finding else None,
                "needs": list(self.needs), "error": self.error,
                "duration": round(self.duration, 3), "probes": self.probes}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CheckResult:
        return cls(CheckSpec.from_json(d["spec"]), d["outcome"], float(d.get("score", 0)),
                   Finding.from_json(d.get("finding")), tuple(d.get("needs", ())),
                   d.get("error", ""), float(d.get("duration", 0)),
                   list(d.get("probes", [])))


def score_of(points: float, outcome: str, share: float = 0.0) -> float:
    """The points a check earns: all if passed, SHARE of them if partial, else none.
    Rounded to hundredths so that a grade reads the same everywhere."""
    if outcome == PASSED:
        return points
    if outcome == PARTIAL:
        return math.floor(points * share * 100 + 1e-9) / 100
    return 0.0


@dataclass
class Grade:
    """One student's grade: STATUS `graded` or `not-gradable` (with the REASON), the
    checks' results, the STATE of the lab seen when graded, and when."""

    student: str
    name: str = ""
    target: str = ""
    status: str = GRADED
    reason: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    grading_file: str = ""
    started: float = 0.0
    finished: float = 0.0
    #: the lab's title, and the grading file's own messages (to render again later)
    lab: str = ""
    messages: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the student's lab drawn when graded (an <svg> element; "" if Graphviz is missing)
    drawing: str = ""
    version: int = GRADE_VERSION

    @property
    def score(self) -> float:
        return round(sum(c.score for c in self.checks), 2)

    @property
    def max_score(self) -> float:
        return round(sum(c.spec.points for c in self.checks), 2)

    def visible(self, reveal: bool) -> list[CheckResult]:
        return [c for c in self.checks if reveal or not c.spec.hidden]

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.spec.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "student": self.student, "name": self.name,
                "target": self.target, "status": self.status, "reason": self.reason,
                "score": self.score, "max_score": self.max_score,
                "grading_file": self.grading_file, "started": self.started,
                "finished": self.finished, "lab": self.lab, "messages": self.messages,
                "checks": [c.to_json() for c in self.checks], "state": self.state,
                "drawing": self.drawing}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Grade:
        if int(d.get("version", 0)) > GRADE_VERSION:
            raise ValueError(f"grade.json version {d.get('version')} is newer than this "
                             f"labfixtures reads ({GRADE_VERSION})")
        return cls(d["student"], d.get("name", ""), d.get("target", ""),
                   d.get("status", GRADED), d.get("reason", ""),
                   [CheckResult.from_json(c) for c in d.get("checks", [])],
                   dict(d.get("state", {})), d.get("grading_file", ""),
                   float(d.get("started", 0)), float(d.get("finished", 0)),
                   d.get("lab", ""), dict(d.get("messages", {})), d.get("drawing", ""),
                   int(d.get("version", GRADE_VERSION)))

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> Grade:
        return cls.from_json(json.loads(path.read_text()))


def write_json(path: Path, data: Any) -> None:
    """Write DATA as JSON, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def _plain(v: Any) -> Any:
    if isinstance(v, Message):  # a message inside a message, e.g. "none" in a list
        return {"message": v.to_json()}
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return str(v)
