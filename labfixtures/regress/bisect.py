"""The first bad version of one component, when more than two are available.

    found = bisect(["7.2.15", "7.2.18", "7.2.19", "7.2.22"], is_good)

VERSIONS go from old to new; the oldest is taken as good and the newest as bad (both are
checked first: a bisection between two good versions proves nothing). IS_GOOD(version)
runs the test on that version and says True (passes), False (fails) or None (could not
tell: a lab error, a skip; that version is left out, as `git bisect skip` does).

Steps from a checkpoint (`labctl regress bisect --qemu`): the first step, on the known-good
QEMU, saves the VMs' automatic checkpoints (`pytest --lab-checkpoint-qemu GOOD`); every
other step restores them on its own QEMU (same guest, same machine type: QEMU's versioned
machine types keep a release's streams loadable by its patch releases) and boots only when
the restore fails. `Step` is one step as the output reports it. A kernel bisection shares
nothing: each step's guest is another image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from labfixtures.errors import LabError


@dataclass(frozen=True)
class Step:
    """One run of the test: its version, its status, its wall time, how its VMs came up
    (`{"vm0": "restored"}`, `booted`, `booted: restore failed: ...`)."""

    version: str
    status: str  # pass, fail, error, skip, flaky, missing
    seconds: float
    came_up: dict[str, str] = field(default_factory=dict)

    @property
    def start(self) -> str:
        """`restored`, `cold boot`, `mixed` (some VMs restored) or `no VM`."""
        hows = {"restored" if h == "restored" else "cold boot" for h in self.came_up.values()}
        return "no VM" if not hows else hows.pop() if len(hows) == 1 else "mixed"

    def describe(self) -> str:
        why = "; ".join(f"{vm}: {h}" for vm, h in sorted(self.came_up.items())
                        if h != "restored" and h != "booted")
        return (f"{self.version}: {self.status} in {self.seconds:.1f} s, {self.start}"
                + (f" ({why})" if why else ""))


def steps_table(steps: Sequence[Step]) -> str:
    """Markdown: each step, how it started and its wall time."""
    lines = ["| step | version | test | VMs | wall time |", "|---|---|---|---|---|"]
    lines += [f"| {i} | {s.version} | {s.status} | {s.start} | {s.seconds:.1f} s |"
              for i, s in enumerate(steps, 1)]
    return "\n".join(lines) + "\n"


@dataclass
class BisectResult:
    first_bad: str | None  # None: undecided (skipped versions around the change)
    last_good: str | None
    tried: list[tuple[str, bool | None]] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)  # when undecided: where it lies

    def describe(self) -> str:
        if self.first_bad is not None:
            return f"first bad version: {self.first_bad} (last good: {self.last_good}; " \
                   f"{len(self.tried)} runs)"
        return "undecided between " + ", ".join(self.candidates) + " (could not be tested)"


def bisect(versions: Sequence[str], is_good: Callable[[str], bool | None]) -> BisectResult:
    if len(versions) < 2:
        raise LabError("bisecting needs two versions at least", "give the good and the bad one")
    tried: list[tuple[str, bool | None]] = []

    def check(v: str) -> bool | None:
        r = is_good(v)
        tried.append((v, r))
        return r

    if check(versions[0]) is not True:
        raise LabError(f"the oldest version {versions[0]} does not pass",
                       "start from a version where the test passes")
    if check(versions[-1]) is not False:
        raise LabError(f"the newest version {versions[-1]} does not fail",
                       "nothing to bisect: the test passes (or could not run) there")
    lo, hi = 0, len(versions) - 1  # versions[lo] good, versions[hi] bad
    skipped: set[int] = set()
    while hi - lo > 1:
        inside = [i for i in range(lo + 1, hi) if i not in skipped]
        if not inside:
            return BisectResult(None, versions[lo], tried, list(versions[lo:hi + 1]))
        mid = min(inside, key=lambda i: abs(i - (lo + hi) / 2))
        r = check(versions[mid])
        if r is None:
            skipped.add(mid)
        elif r:
            lo = mid
        else:
            hi = mid
    return BisectResult(versions[hi], versions[lo], tried)
