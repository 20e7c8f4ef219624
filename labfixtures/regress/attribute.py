"""Which upgrade broke a test, when a kernel and QEMU were both upgraded.

From four cells of a matrix — OLD (old kernel, old QEMU), NEW (new kernel, new QEMU) and
the two crossed ones — each test newly failing from OLD to NEW gets a verdict:

- `qemu`: it fails with the new QEMU on the old kernel, passes with the new kernel on
  the old QEMU;
- `kernel`: the other way round;
- `either`: it fails in both crossed cells (each upgrade alone breaks it);
- `both`: it passes in both crossed cells: only the two upgrades together break it;
- `unknown`: a crossed cell errored, is flaky or lacks the test (the lab did not say).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from labfixtures.regress.compare import Status, compare, status_of
from labfixtures.regress.matrix import Cell
from labfixtures.regress.results import Results, ResultsError

VERDICTS = ("qemu", "kernel", "either", "both", "unknown")


@dataclass(frozen=True)
class Attribution:
    nodeid: str
    verdict: str
    new_qemu_only: str  # the test's status with the new QEMU on the old kernel
    new_kernel_only: str  # ... with the new kernel on the old QEMU

    def describe(self) -> str:
        what = {"qemu": "the QEMU upgrade", "kernel": "the kernel upgrade",
                "either": "each upgrade alone", "both": "only both upgrades together",
                "unknown": "undecided"}[self.verdict]
        return (f"{self.nodeid}: broken by {what} (new QEMU on the old kernel: "
                f"{self.new_qemu_only}; new kernel on the old QEMU: {self.new_kernel_only})")


def crossed(old: Cell, new: Cell) -> tuple[Cell, Cell]:
    """(new QEMU on the old kernel, new kernel on the old QEMU)."""
    return Cell(old.kernel, new.qemu), Cell(new.kernel, old.qemu)


def _status(r: Results, nodeid: str) -> Status | None:
    rs = r.by_nodeid().get(nodeid)
    return status_of(rs) if rs else None


def verdict(qemu_only: Status | None, kernel_only: Status | None) -> str:
    a = qemu_only.status if qemu_only else "missing"
    b = kernel_only.status if kernel_only else "missing"
    if {a, b} <= {"pass", "fail"}:
        return {("fail", "pass"): "qemu", ("pass", "fail"): "kernel",
                ("fail", "fail"): "either", ("pass", "pass"): "both"}[(a, b)]
    return "unknown"


def attribute(old: Cell, new: Cell, runs: Mapping[Cell, Results]) -> list[Attribution]:
    """A verdict for each test newly failing from OLD to NEW (RUNS holds the four cells)."""
    q_cell, k_cell = crossed(old, new)
    missing = [c.label() for c in (old, new, q_cell, k_cell) if c not in runs]
    if missing:
        raise ResultsError(", ".join(missing), "no results for these cells",
                           "run them: `labctl regress attribute` runs the missing cells")
    out = []
    for nodeid in compare(runs[old], runs[new]).newly_failing:
        qs, ks = _status(runs[q_cell], nodeid), _status(runs[k_cell], nodeid)
        out.append(Attribution(nodeid, verdict(qs, ks),
                               qs.describe() if qs else "missing",
                               ks.describe() if ks else "missing"))
    return out


def to_markdown(old: Cell, new: Cell, found: list[Attribution]) -> str:
    lines = [f"## labfixtures regress attribute: {old.label()} → {new.label()}", ""]
    if not found:
        lines.append("No test newly fails: nothing to attribute.")
    for a in found:
        lines.append(f"- `{a.nodeid}`: **{a.verdict}** — {a.describe().split(': ', 1)[1]}")
    return "\n".join(lines) + "\n"
