"""A recorder of named steps: what a grading run did, in order, and how each went.

A lab is often checked as a sequence (the guide's §7: resize the disk, make a partition,
a physical volume, a volume group...): each step depends on the ones before, and a
student wants to know *which* step broke, with what it printed. The recorder runs each
step once, keeps its title, outcome and evidence, stops running steps after the first
failure (they are recorded as not reached), and lets the tests check the steps one by
one, in any test module or plain script:

    steps = StepRecorder()
    steps.command("pvcreate", vm, "pvcreate /dev/vda3")              # in the guest
    steps.call("resize", "qemu-img resize disk +2G", lambda: resize(disk))  # on the host
    ...
    out = steps.require("pvcreate")        # its stdout, or StepFailed naming the step
    print(steps.summary())                 # one line per step: outcome, name, title

A command step passes when it exits with status 0; a call step when it returns (its
return value is kept as `value`, its text as evidence) and fails when it raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from labfixtures.errors import LabError

PASSED, FAILED, NOT_REACHED = "passed", "failed", "not reached"
EVIDENCE_CHARS = 1500  # of stdout and of stderr, shown when a step fails


class CommandResult(Protocol):
    exit_status: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Where a command step runs: a VM (labfixtures' `VM`, an attached VM)."""

    def run(self, cmd: str, timeout: float = ...) -> Any: ...


class StepFailed(AssertionError):
    """A test asked for a step's result and the step did not pass."""


@dataclass
class Step:
    """One step: its NAME (how tests refer to it), its TITLE (the command or what it
    does), its OUTCOME (passed, failed, not reached) and the evidence."""

    name: str
    title: str
    outcome: str
    stdout: str = ""
    stderr: str = ""
    exit_status: int | None = None  # a command step's status
    value: Any = None  # a call step's return value
    reason: str = ""  # why it failed or was not reached
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED

    @property
    def evidence(self) -> str:
        """What the step showed: its output, or why it has none."""
        parts = []
        if self.reason:
            parts.append(self.reason)
        if self.exit_status not in (None, 0):
            parts.append(f"exit status {self.exit_status}")
        if self.stdout.strip():
            parts.append(f"stdout: {self.stdout.strip()[-EVIDENCE_CHARS:]}")
        if self.stderr.strip():
            parts.append(f"stderr: {self.stderr.strip()[-EVIDENCE_CHARS:]}")
        return "\n".join(parts)

    def __str__(self) -> str:
        mark = {PASSED: "ok  ", FAILED: "FAIL", NOT_REACHED: "----"}.get(self.outcome, "?")
        return f"{mark} {self.name}: {self.title}"


@dataclass
class StepRecorder:
    """The steps of one grading run, in the order they ran. FACTS holds whatever the run
    measured along the way (sizes, tokens...) for the tests to compare."""

    title: str = ""
    steps: dict[str, Step] = field(default_factory=dict)
    broken: str | None = None  # the first step that failed: later ones do not run
    facts: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps.values())

    def __getitem__(self, name: str) -> Step:
        return self.steps[name]

    def __contains__(self, name: object) -> bool:
        return name in self.steps

    def _check_new(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a step needs a name (a non-empty string), not {name!r}")
        if name in self.steps:
            raise LabError(f"step {name!r} is recorded twice", "give each step its own name")

    def _not_reached(self, name: str, title: str) -> bool:
        if self.broken is None:
            return False
        self.steps[name] = Step(name, title, NOT_REACHED,
                                reason=f"not reached: step {self.broken!r} failed before it")
        return True

    def _failed(self, step: Step) -> Step:
        self.steps[step.name] = step
        if step.outcome == FAILED and self.broken is None:
            self.broken = step.name
        return step

    def command(self, name: str, target: Runner, cmd: str, *, title: str | None = None,
                timeout: float = 120.0, prefix: str = "") -> Any:
        """Run shell command CMD on TARGET as step NAME (PREFIX, e.g. `export LC_ALL=C; `,
        is run before it but not shown). Returns the command's result, or None if the step
        did not run or raised."""
        self._check_new(name)
        title = title or cmd
        if self._not_reached(name, title):
            return None
        t0 = time.monotonic()
        try:
            r = target.run(f"{prefix}{cmd}", timeout=timeout)
        except Exception as e:  # noqa: BLE001 - recorded, reported by the step's check
            self._failed(Step(name, title, FAILED, reason=_describe(e),
                              seconds=time.monotonic() - t0))
            return None
        self._failed(Step(name, title, PASSED if r.exit_status == 0 else FAILED,
                          stdout=r.stdout, stderr=r.stderr, exit_status=r.exit_status,
                          seconds=time.monotonic() - t0))
        return r

    def call(self, name: str, title: str, fn: Callable[[], Any]) -> Any:
        """Run FN() (on the host, or around a VM) as step NAME. Returns its value, or None
        if the step did not run or raised."""
        self._check_new(name)
        if self._not_reached(name, title):
            return None
        t0 = time.monotonic()
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - recorded, reported by the step's check
            self._failed(Step(name, title, FAILED, reason=_describe(e),
                              seconds=time.monotonic() - t0))
            return None
        self._failed(Step(name, title, PASSED, stdout="" if out is None else str(out),
                          value=out, seconds=time.monotonic() - t0))
        return out

    def fail(self, name: str, title: str, reason: str) -> None:
        """Record step NAME as failed without running anything (a precondition that a
        step's own code found missing); later steps are not run."""
        self._check_new(name)
        if self._not_reached(name, title):
            return
        self._failed(Step(name, title, FAILED, reason=reason))

    def require(self, name: str) -> str:
        """Step NAME's stdout if it passed; StepFailed with the step's title and evidence
        otherwise (or if it never ran)."""
        __tracebackhide__ = True
        step = self.steps.get(name)
        if step is None:
            known = ", ".join(self.steps) or "none"
            raise StepFailed(f"step {name!r} never ran (the run stopped before it, or the "
                             f"name is wrong; recorded steps: {known})")
        if step.outcome == NOT_REACHED:
            raise StepFailed(f"step {name!r} (`{step.title}`): {step.reason}")
        if not step.passed:
            raise StepFailed(f"step {name!r} (`{step.title}`) failed:\n{step.evidence}")
        return step.stdout

    def summary(self) -> str:
        """One line per step (`ok  `, `FAIL`, `----` for not reached), then the evidence of
        the failed one: what a grading report shows."""
        lines = [f"{self.title}:"] if self.title else []
        lines += [f"  {s}" for s in self]
        if self.broken is not None:
            ev = self.steps[self.broken].evidence
            lines.append(f"  first failure, {self.broken!r}:")
            lines += [f"    {line}" for line in ev.splitlines()]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The record as plain data (JSON-ready: values are shown as text)."""
        return {"title": self.title, "broken": self.broken,
                "steps": [{"name": s.name, "title": s.title, "outcome": s.outcome,
                           "exit_status": s.exit_status, "reason": s.reason,
                           "stdout": s.stdout, "stderr": s.stderr,
                           "seconds": round(s.seconds, 3)} for s in self]}


def _describe(e: BaseException) -> str:
    detail = f"{e.problem}\n  remedy: {e.remedy}" if isinstance(e, LabError) and e.remedy \
        else str(e)
    return f"{type(e).__name__}: {detail}"
