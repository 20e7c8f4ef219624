"""The README's two commands timed: where the main job's and the whole suite's time goes.

    sudo .venv/bin/python bench/suite.py [--runs 3] [--which main,whole] [--top 12]

`main` is `pytest scenarios/` (the main job, one xdist worker per CPU), `whole` is
`pytest -n 2 tests/ scenarios/` (what CI runs after ruff and mypy). Each run is timed from
outside: its wall time, the CPU time of pytest and its children (QEMU included; the Open
vSwitch daemons detach and are not counted) and, from those, how much of the cores stayed
idle (time spent waiting: a timeout, a child pytest, SSH retries, a worker with nothing
left to do). pytest's own `--durations=0` report gives each module's worker time (setup,
call and teardown of its tests: a module-scoped VM counts in its first test's setup); the
TOP modules are printed with their median. The CPU time of the QEMU processes is sampled
from /proc four times a second (each QEMU's last quarter second is missed, so it is a lower
bound): it is the guest work under TCG, and that work divided by the cores is the shortest
wall time the run could have with the same guests. The runs are interleaved when both
commands are asked for. A failed run is reported and left out of the figures. Nothing is asserted;
`--json FILE` writes every run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTEST = str(Path(sys.executable).with_name("pytest"))
COMMANDS = {"main": ["scenarios/"], "whole": ["-n", "2", "tests/", "scenarios/"]}
DURATION = re.compile(r"^(\d+\.\d+)s (setup|call|teardown)\s+(\S+?)::")
SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed|error).*?) in (\d+\.\d+)s\b", re.M)


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class QemuCpu:
    """The CPU seconds of every QEMU process seen while running (a context manager)."""

    def __init__(self, period: float = 0.25) -> None:
        self.period = period
        self.seen: dict[tuple[int, int], float] = {}  # (pid, start tick) -> CPU seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:]
            if comm.startswith("qemu-system"):
                f = rest.split()  # field 3 of stat(5) is f[0]: utime f[11], stime f[12]
                self.seen[(int(pid), int(f[19]))] = (int(f[11]) + int(f[12])) / self._tick

    def _watch(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    @property
    def total(self) -> float:
        return sum(self.seen.values())

    def __enter__(self) -> QemuCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Run:
    which: str
    ok: bool
    wall: float
    cpu: float
    workers: int
    pytest: str  # pytest's last line: "143 passed", with failures if any
    modules: dict[str, float] = field(default_factory=dict)  # worker seconds per module
    load_after: float = 0.0
    qemu_cpu: float = 0.0  # CPU seconds of the QEMU processes (a lower bound)
    qemus: int = 0  # how many QEMU processes were seen

    @property
    def idle(self) -> float:
        """The share of the cores' time not spent by pytest and its children."""
        return max(0.0, 1 - self.cpu / (self.wall * self.workers))


def one_run(which: str) -> Run:
    argv = [PYTEST, *COMMANDS[which], "-q", "--durations=0", "-p", "no:randomly"]
    cpu0, t0 = cpu_children(), time.monotonic()
    with QemuCpu() as qemu:
        cp = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.monotonic() - t0, cpu_children() - cpu0
    modules: dict[str, float] = defaultdict(float)
    for line in cp.stdout.splitlines():
        m = DURATION.match(line)
        if m:
            modules[m.group(3)] += float(m.group(1))
    summary = SUMMARY.findall(cp.stdout)
    return Run(which, cp.returncode == 0, wall, cpu,
               2 if which == "whole" else (os.cpu_count() or 1),
               f"{summary[-1][0]} in {summary[-1][1]}s" if summary else cp.stdout[-300:],
               dict(modules), os.getloadavg()[0], qemu.total, len(qemu.seen))


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--which", default="main",
                   help="comma-separated: main (pytest scenarios/), whole (-n 2 tests/ "
                        "scenarios/); default main")
    p.add_argument("--top", type=int, default=12, help="how many modules to list")
    p.add_argument("--json", metavar="FILE", help="write every run there")
    args = p.parse_args()
    kinds = [w for w in args.which.split(",") if w]
    unknown = [w for w in kinds if w not in COMMANDS]
    if unknown:
        p.error(f"--which: {', '.join(unknown)}: choose among {', '.join(COMMANDS)}")
    if os.geteuid() != 0:
        p.error("run it as root, as the README's commands are (namespaces, taps, QEMU)")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{args.runs} run(s) of {', '.join(kinds)}", flush=True)
    runs: list[Run] = []
    for i in range(args.runs):
        for which in kinds:
            r = one_run(which)
            runs.append(r)
            print(f"  {which:<5} run {i + 1}: {r.pytest} | wall {r.wall:.1f} s, "
                  f"CPU {r.cpu:.0f} s, idle {100 * r.idle:.0f}% of {r.workers} cores "
                  f"(load {r.load_after:.1f}); QEMU {r.qemu_cpu:.0f} s of CPU in "
                  f"{r.qemus} processes", flush=True)
    for which in kinds:
        good = [r for r in runs if r.which == which and r.ok]
        if not good:
            print(f"\n{which}: no run passed")
            continue
        print(f"\n{which}: {len(good)} passing run(s), median (min-max)")
        print(f"  wall      {spread([r.wall for r in good])} s")
        print(f"  CPU       {spread([r.cpu for r in good])} s")
        print(f"  idle      {spread([100 * r.idle for r in good])} % of the cores")
        print(f"  QEMU CPU  {spread([r.qemu_cpu for r in good])} s (the guests' work)")
        print(f"  floor     {spread([r.qemu_cpu / r.workers for r in good])} s: the QEMU "
              f"CPU over {good[0].workers} cores, the wall time with nothing but the guests")
        per: dict[str, list[float]] = defaultdict(list)
        for r in good:
            for mod, sec in r.modules.items():
                per[mod].append(sec)
        total = statistics.median(sum(r.modules.values()) for r in good)
        print(f"  worker time of all modules {total:.0f} s; the {args.top} largest:")
        for mod, secs in sorted(per.items(), key=lambda kv: -statistics.median(kv[1]))[
                :args.top]:
            print(f"    {spread(secs)} s  {mod}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) | {"idle": r.idle} for r in runs],
                                              indent=1))
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
