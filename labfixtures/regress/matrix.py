"""A matrix of runs: guest kernels × QEMU builds, one pytest run per cell.

    cells = matrix.cells(["default", "linux-image-6.1.0-50-amd64"],
                         ["host", "1:7.2+dfsg-7+deb12u15"])
    for cell in matrix.shard(cells, 1, 2):          # this CI job's share
        matrix.run_cell(cell, ["scenarios/"], Path("results"))
    print(matrix.table(matrix.load(Path("results"))))

A cell is a pytest run with `--lab-guest-kernel` and `--lab-qemu` (nothing for the default
kernel and the host's QEMU) writing `--lab-results DIR/CELL.json`; the file name says which
cell it is, so the results of several CI jobs (shards) put in one folder make the table.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from labfixtures.errors import LabError
from labfixtures.regress.compare import status_of
from labfixtures.regress.qemusel import HOST
from labfixtures.regress.results import Results, ResultsError

DEFAULT_KERNEL = "default"
HOST_QEMU = HOST
_SAFE = re.compile(r"[^A-Za-z0-9.+~_-]")


@dataclass(frozen=True, order=True)
class Cell:
    """One configuration: a guest kernel package (or 'default') and a QEMU (or 'host')."""

    kernel: str = DEFAULT_KERNEL
    qemu: str = HOST_QEMU

    @property
    def name(self) -> str:
        """The cell as a file name: `kernel=default,qemu=1_7.2+dfsg-7+deb12u15`."""
        return f"kernel={_SAFE.sub('_', self.kernel)},qemu={_SAFE.sub('_', self.qemu)}"

    def label(self) -> str:
        return f"kernel {self.kernel}, QEMU {self.qemu}"

    def pytest_args(self) -> list[str]:
        args = []
        if self.kernel != DEFAULT_KERNEL:
            args += ["--lab-guest-kernel", self.kernel]
        if self.qemu != HOST_QEMU:
            args += ["--lab-qemu", self.qemu]
        return args


def cells(kernels: Sequence[str], qemus: Sequence[str]) -> list[Cell]:
    """Every kernel with every QEMU, in order (no kernel given: the default; no QEMU: the
    host's)."""
    return [Cell(k, q) for k, q in itertools.product(kernels or [DEFAULT_KERNEL],
                                                      qemus or [HOST_QEMU])]


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), 1 <= K <= N."""
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise LabError(f"shard {text!r} is not K/N with 1 <= K <= N",
                       "give e.g. --shard 1/4 in the first of four parallel jobs")
    return int(m.group(1)), int(m.group(2))


def shard(all_cells: Sequence[Cell], k: int, n: int) -> list[Cell]:
    """The cells job K of N runs: every N-th cell from the K-th (the jobs split them all)."""
    return list(all_cells[k - 1::n])


def results_file(out: Path, cell: Cell) -> Path:
    return out / f"{cell.name}.json"


@dataclass(frozen=True)
class CellRun:
    cell: Cell
    results: Path
    returncode: int
    seconds: float


def run_cell(cell: Cell, pytest_args: Sequence[str], out: Path,
             pytest: Sequence[str] = (sys.executable, "-m", "pytest"),
             timeout: float | None = None) -> CellRun:
    """Run pytest on CELL; its results file (its own exit status is pytest's: a failing test
    is not an error of the matrix)."""
    out.mkdir(parents=True, exist_ok=True)
    path = results_file(out, cell)
    argv = [*pytest, *cell.pytest_args(), "--lab-results", str(path),
            "--lab-results-label", cell.label(), *pytest_args]
    t0 = time.monotonic()
    cp = subprocess.run(argv, timeout=timeout)
    if not path.exists():
        raise LabError(f"the run of cell {cell.label()} wrote no results (pytest exit "
                       f"{cp.returncode})", f"run it by hand to see why: {' '.join(argv)}")
    return CellRun(cell, path, cp.returncode, time.monotonic() - t0)


def cell_of(results: Results) -> Cell:
    """The cell a run ran on, from what it recorded (--lab-guest-kernel, --lab-qemu)."""
    v = results.versions
    return Cell(str(v.get("guest_kernel") or DEFAULT_KERNEL),
                str(v.get("qemu", {}).get("selected") or HOST_QEMU))


def load(folder: Path) -> dict[Cell, Results]:
    """Every cell's results in FOLDER (files named by `results_file`)."""
    found = {}
    for p in sorted(folder.glob("kernel=*,qemu=*.json")):
        r = Results.read(p)
        found[cell_of(r)] = r
    if not found:
        raise ResultsError(folder, "holds no matrix results (kernel=...,qemu=....json)",
                           "run `labctl regress matrix ... --out FOLDER` first")
    return found


SYMBOL = {"pass": "pass", "fail": "FAIL", "error": "ERROR", "skip": "skip", "flaky": "flaky"}


def table(runs: Mapping[Cell, Results]) -> str:
    """Markdown: one row per test, one column per cell (the default kernel and the host's
    QEMU first: the reference cell is the first column)."""
    order = sorted(runs, key=lambda c: (c.kernel != DEFAULT_KERNEL, c.kernel,
                                        c.qemu != HOST_QEMU, c.qemu))
    tests = sorted({t.nodeid for r in runs.values() for t in r.tests})
    head = ["test"] + [c.label() for c in order]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by = {c: runs[c].by_nodeid() for c in order}
    for nodeid in tests:
        row = [f"`{nodeid}`"]
        for c in order:
            rs = by[c].get(nodeid)
            if not rs:
                row.append("—")
                continue
            st = status_of(rs)
            row.append(SYMBOL[st.status] + (f" {st.fail_rate:.0%}" if st.status == "flaky"
                                            else ""))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("| wall time | " + " | ".join(f"{runs[c].run.duration:.0f} s" for c in order)
                 + " |")
    return "\n".join(lines) + "\n"
