"""Checkpoint figures: save time, state size, restore -> SSH ready; scenario suite wall time.

    sudo .venv/bin/python bench/checkpoint.py [--runs 7] [--suite]

1. The tiny guest (`--image debian`: the debian guest, 512 MB, 1 vCPU, with its disk) on
   tap2 of the Table 1 lab: a cold boot to SSH ready (for comparison),
   `checkpoint.save` (the guest's pause and the whole call), the state's size, then RUNS
   restores (`checkpoint.restore`: a tiny VM's QEMU restarted on the checkpoint's memory
   file, checkpoint/memfile.py) timed from the moment QEMU is started to the first
   successful SSH login, and to a first command's answer; the memory of the booted VM and
   of the last restored one.
2. With --suite: the wall time of `pytest scenarios/ -n 2` with checkpoint reuse (the
   default), first with a cold automatic store (an empty temporary one, so the first
   request per VM setting boots; the cache's own checkpoints are left alone), then warm
   (the same store again: every VM is restored), and with `--lab-no-checkpoints`.
   `--suite-arg ARG` (repeatable) adds ARG to those pytest runs, e.g.
   `--suite-arg=--ignore=scenarios/test_a4_iso_install.py` to leave a module out.

Medians (and min/max) are printed; nothing is asserted (docs/host-facts.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labfixtures import checkpoint as ck  # noqa: E402
from labfixtures.lab.lab import Lab  # noqa: E402


def fmt(xs: list[float]) -> str:
    return (f"median {statistics.median(xs):.3f} s (min {min(xs):.3f}, max {max(xs):.3f}, "
            f"n={len(xs)})")


def memory(vm: object) -> str:
    """The VM's QEMU: resident and proportional memory, and the part of its RSS that is
    file pages (a restored VM's RAM file, the kernel, libraries: shared between QEMUs)."""
    pid = vm.machine.pid  # type: ignore[attr-defined]
    f = {ln.split(":")[0]: int(ln.split()[1]) for ln in
         Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("Rss")}
    pss = next(int(ln.split()[1]) for ln in
               Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
               if ln.startswith("Pss:"))
    rss = f["RssAnon"] + f["RssFile"] + f["RssShmem"]
    return (f"QEMU RSS {rss / 1024:.0f} MiB (anon {f['RssAnon'] / 1024:.0f}, file "
            f"{f['RssFile'] / 1024:.0f}), PSS {pss / 1024:.0f} MiB")


def restore_bench(runs: int, image: str = "tiny") -> None:
    store = ck.CheckpointStore(Path(tempfile.mkdtemp(prefix="lf-bench-cp-")))
    try:
        with Lab.open() as lab:
            sw0 = lab.switch("sw0")
            sw0.svi(2, "203.0.113.129/26")
            lab.tap(2)
            sw0.add_port("tap2", tag=2)
            t0 = time.monotonic()
            size = {"memory": 512, "vcpus": 1} if image == "debian" else {}
            vm = lab.vm("vm0", tap=2, addresses=["203.0.113.130/26"],
                        gateway="203.0.113.129", image=image, **size)
            vm.run("echo saved > /root/f && sync", check=True)
            boot = time.monotonic() - t0
            print(f"cold boot -> SSH command answered: {boot:.2f} s "
                  f"(ready marker at {vm.boot_seconds:.2f} s); {memory(vm)}")
            saves, pauses = [], []
            for i in range(3):
                t = time.monotonic()
                cp = ck.save(vm, f"b{i}", store=store)
                saves.append(time.monotonic() - t)
                pauses.append(cp.manifest.timings["paused"])
            print(f"save (whole call: snapshot, manifest, sha256): {fmt(saves)}")
            print(f"save (guest paused): {fmt(pauses)}")
            print(f"state size: {cp.size / 2**20:.1f} MiB "
                  f"({cp.manifest.files[ck.STATE_FILE].size} bytes)")
            ready, answered, calls = [], [], []
            for _ in range(runs):
                t = time.monotonic()
                ck.restore(vm, "b0", store=store, wait=True)
                calls.append(time.monotonic() - t)
                assert vm.boot_seconds is not None and vm.machine is not None
                ready.append(vm.boot_seconds)
                out = vm.run("cat /root/f", check=True).stdout
                answered.append(vm.machine.uptime())
                assert out == "saved\n"
            print(f"restore: QEMU start -> SSH login done: {fmt(ready)}")
            print(f"restore: QEMU start -> first command answered: {fmt(answered)}")
            print(f"restore: whole call (stop, copy state, start, SSH): {fmt(calls)}")
            if vm.overlay is None:
                print(f"restore: the first one's whole call, which unpacks memfile-*/: "
                      f"{calls[0]:.3f} s")
            print(f"restored VM: {memory(vm)}")
    finally:
        shutil.rmtree(store.root, ignore_errors=True)


def suite_bench(args: list[str]) -> None:
    store = Path(tempfile.mkdtemp(prefix="lf-bench-suite-"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("LABFIXTURES_RUN_ID", "PYTEST_XDIST_WORKER")}
    shown = " ".join(["pytest scenarios/ -n 2", *args])
    try:
        for label, extra in (("with checkpoint reuse (cold auto store)",
                              [f"--lab-checkpoint-store={store}"]),
                             ("with checkpoint reuse (warm auto store)",
                              [f"--lab-checkpoint-store={store}"]),
                             ("without (--lab-no-checkpoints)", ["--lab-no-checkpoints"])):
            t = time.monotonic()
            cp = subprocess.run([sys.executable, "-m", "pytest", "scenarios/", "-n", "2",
                                 "-q", *args, *extra],
                                cwd=ROOT, capture_output=True, text=True, env=env)
            wall = time.monotonic() - t
            tail = (cp.stdout.strip().splitlines() or ["?"])[-1]
            print(f"{shown} {label}: {wall:.1f} s wall ({tail}; load average "
                  f"{os.getloadavg()[0]:.2f})")
            if cp.returncode != 0:
                print(cp.stdout[-3000:], cp.stderr[-2000:], sep="\n")
    finally:
        shutil.rmtree(store, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--image", choices=("tiny", "debian"), default="tiny",
                   help="the guest: tiny (no disk, memory file) or debian (512 MB, 1 vCPU, "
                        "its overlay restored beside its memory)")
    p.add_argument("--suite", action="store_true", help="also time pytest scenarios/ -n 2")
    p.add_argument("--suite-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for those pytest runs (repeatable), e.g. "
                        "--suite-arg=--ignore=scenarios/test_s07_lvm.py")
    args = p.parse_args()
    print(f"QEMU {ck.qemu_version()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")
    restore_bench(args.runs, args.image)
    if args.suite:
        suite_bench(args.suite_arg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
