"""The results file of a run (`pytest --lab-results FILE.json`), as data.

One reader (`Results.read`) and one writer (`Results.write`); the file carries its format
name and version so that a newer labfixtures reads an older file, and refuses, with the
remedy, a file written by a newer one::

    {"format": "labfixtures-results", "version": 1,
     "run": {"label": "...", "started": 1796043433.1, "duration": 12.5, "argv": [...]},
     "versions": {"host_kernel": "6.1.0-57-amd64", "qemu": {...}, "images": {...}, ...},
     "tests": [{"nodeid": "scenarios/test_s10.py::test_ping", "outcome": "pass",
                "duration": 3.2, "attempts": ["fail", "pass"], "phase": "call",
                "message": "", "error_kind": "",
                "metrics": [{"name": "boot_to_ssh", "value": 2.31, "unit": "s"}],
                "guide": [{"step": "A.3", "command": "qemu-img create -b ...",
                           "verdict": "refused", "fix": "add -F qcow2", ...}],
                "came_up": {"vm0": "restored"}}]}

Outcomes, as KernelCI separates them: `pass`, `fail` (the test found a problem), `error`
(the lab itself did not work: QEMU did not start, an image is missing; nothing was
tested), `skip`. `attempts` lists every run of the test (`--lab-rerun-failures`), the first
one first; `outcome` is the first attempt's. `guide` (optional) holds the guide's
commands that a `guide_commands` scenario ran, with their verdicts (regress.guide);
`came_up` (optional) how each VM of `lab_vm` came up: `restored` from its automatic
checkpoint, `booted`, or `booted: WHY` when a restore was not possible.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from labfixtures.errors import (
    BootError,
    GuestCommandError,
    HostResourceError,
    ImageError,
    LabError,
    NicMacError,
    QemuLaunchError,
    QmpError,
)
from labfixtures.regress.guide import GuideStep

FORMAT = "labfixtures-results"
VERSION = 1
Outcome = Literal["pass", "fail", "error", "skip"]
OUTCOMES: tuple[str, ...] = ("pass", "fail", "error", "skip")


#: what says that the lab itself did not work, whatever the phase: nothing was tested
LAB_ERRORS: tuple[type[BaseException], ...] = (QemuLaunchError, ImageError, HostResourceError)
#: what a fixture may raise when the thing under test broke (a guest that no longer boots
#: on a new kernel is a failure, not a lab error)
SETUP_FAILURES: tuple[type[BaseException], ...] = (AssertionError, BootError, GuestCommandError,
                                                   NicMacError, QmpError)


def failure_outcome(exc: BaseException | None, phase: str) -> Outcome:
    """`fail` or `error` for a test that raised EXC in PHASE (setup, call, teardown)."""
    if isinstance(exc, LAB_ERRORS):
        return "error"
    if phase == "call" or isinstance(exc, SETUP_FAILURES):
        return "fail"
    return "error"


class ResultsError(LabError):
    """A results file that cannot be read: missing, not JSON, not ours, or too new."""

    def __init__(self, path: Path | str, problem: str, remedy: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {problem}", remedy)


@dataclass(frozen=True)
class Metric:
    """One measurement a test recorded with `lab_metric(name, value, unit)`."""

    name: str
    value: float
    unit: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Metric:
        return cls(str(d["name"]), float(d["value"]), str(d.get("unit", "")))


@dataclass
class TestResult:
    """One test of a run."""

    __test__ = False  # not a pytest test class, despite its name

    nodeid: str
    outcome: Outcome
    duration: float = 0.0
    phase: str = "call"  # where the first attempt's failure happened: setup, call, teardown
    message: str = ""  # the failure's first line
    error_kind: str = ""  # for `error`: the exception type (QemuLaunchError, ImageError...)
    attempts: list[str] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    guide: list[GuideStep] = field(default_factory=list)  # the guide's commands it ran
    #: how each VM of `lab_vm` came up: restored, booted, or `booted: WHY` (no restore)
    came_up: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if not self.attempts:
            self.attempts = [self.outcome]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TestResult:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["metrics"] = [Metric.from_json(m) for m in d.get("metrics", [])]
        known["attempts"] = [str(a) for a in d.get("attempts", [])]
        known["guide"] = [GuideStep.from_json(g) for g in d.get("guide", [])]
        known["came_up"] = {str(k): str(v) for k, v in dict(d.get("came_up", {})).items()}
        return cls(**known)


@dataclass
class RunInfo:
    label: str = ""  # what the user called this run (`--lab-results-label`), or ""
    started: float = 0.0  # time.time()
    duration: float = 0.0
    argv: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunInfo:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Results:
    """A run: what it ran on (`versions`, see regress.versions) and each test's result."""

    run: RunInfo = field(default_factory=RunInfo)
    versions: dict[str, Any] = field(default_factory=dict)
    tests: list[TestResult] = field(default_factory=list)
    version: int = VERSION

    def by_nodeid(self) -> dict[str, list[TestResult]]:
        out: dict[str, list[TestResult]] = {}
        for t in self.tests:
            out.setdefault(t.nodeid, []).append(t)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "run": asdict(self.run),
                "versions": self.versions, "tests": [t.to_json() for t in self.tests]}

    def write(self, path: Path | str) -> Path:
        """Write atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        tmp.rename(path)
        return path

    @classmethod
    def from_json(cls, d: Any, path: Path | str = "<results>") -> Results:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ResultsError(path, "is not a labfixtures results file",
                               "give a file written by `pytest --lab-results FILE.json`")
        version = d.get("version")
        if not isinstance(version, int) or version < 1:
            raise ResultsError(path, f"has no usable format version ({version!r})",
                               "give a file written by `pytest --lab-results FILE.json`")
        if version > VERSION:
            raise ResultsError(path, f"is format version {version}; this labfixtures reads "
                                     f"up to version {VERSION}",
                               "compare with the labfixtures that wrote it, or upgrade")
        try:
            return cls(run=RunInfo.from_json(d.get("run", {})),
                       versions=dict(d.get("versions", {})),
                       tests=[TestResult.from_json(t) for t in d.get("tests", [])],
                       version=version)
        except (KeyError, TypeError, ValueError) as e:
            raise ResultsError(path, f"is damaged: {e}",
                               "write it again with `pytest --lab-results`") from None

    @classmethod
    def read(cls, path: Path | str) -> Results:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise ResultsError(path, f"cannot be read: {e.strerror}",
                               "check the path (a file written by `pytest --lab-results`)"
                               ) from None
        except ValueError as e:
            raise ResultsError(path, f"is not JSON: {e}",
                               "give a file written by `pytest --lab-results FILE.json`"
                               ) from None
        return cls.from_json(data, path)


def read_many(paths: Iterable[Path | str]) -> Results:
    """Several runs of the same thing (repeats) read as one: tests appear once per run.

    A directory stands for every `*.json` file in it. The versions are the first run's.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    if not files:
        raise ResultsError(", ".join(map(str, paths)), "holds no results file",
                           "give FILE.json files written by `pytest --lab-results`")
    runs = [Results.read(f) for f in files]
    merged = Results(run=runs[0].run, versions=runs[0].versions)
    for r in runs:
        merged.tests.extend(r.tests)
    return merged
