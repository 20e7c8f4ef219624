"""Benchmark the lab host, side by side with Mininet in the same run.

    .venv/bin/python bench/lab_bench.py --runs 5       (needs `ci/setup --bench` for Mininet)

Per run, for labfixtures exactly as for the peer (bench/mininet_peer.py):
  lab_ready      a lab host with its private Open vSwitch ready (namespace, run directory,
                 ovsdb-server, ovs-vswitchd, and its userspace datapath): once per pytest
                 worker. The datapath's one-off ~0.1 s (ovs-vswitchd's TSC estimate, a
                 100 ms sleep, net/ovs.py) is paid here since issue 14; it was in
                 hosts2_up before, and still is in Mininet's hosts2_up;
  hostsN_up      one switch and N veth hosts with addresses, on its ports;
  hostsN_first_ping  h1 -> hN, one ICMP echo;
  hostsN_down    the switch and the hosts removed, the lab host kept (a pytest scope);
                 OVS deletions return without waiting for ovs-vswitchd (net/ovs.py);
  hostsN_down_applied  the same, until ovs-vswitchd has applied it (`OvsServer.sync`): the
                 next measure starts on an idle ovs-vswitchd;
  hosts2_*_warm  the same 2 hosts again on the now warm ovs-vswitchd: what every test
                 after a worker's first one pays (Mininet has no such case: each run
                 of it restarts OVS);
  lab_close      the lab host torn down (daemons stopped, namespaces gone);
  first_test     lab_ready + hosts2_up of the same run: what a worker's first test waits
                 for, wherever the one-off costs sit (Mininet: the same sum).
Issue 14 (old and new code interleaved in one session, 2-CPU VM, load average 3.2-4.0 of
other work, 5 runs each): hosts2_up 0.126-0.150 s median (min 0.124) -> 0.021-0.038 (min
0.020); lab_ready 0.036-0.086 (min 0.033) -> 0.140-0.195 (min 0.136); first_test
0.164-0.241 -> 0.160-0.245: the one-off moved, it did not vanish. Mininet: hosts2_up 0.161.
Medians are printed with min-max and the ratio Mininet / labfixtures, and the load average
at each run (other work on the machine weighs on every figure); the raw runs go to JSON
(--json FILE). Timings are never asserted in tests: this is where they live.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from labfixtures.lab.lab import HostSpec, Lab

SIZES = (2, 64)
KEYS = ["lab_ready"] + [f"hosts{n}_{w}" for n in SIZES
                        for w in ("up", "first_ping", "down", "down_applied")] \
    + ["hosts2_up_warm", "hosts2_down_warm", "lab_close"]
DERIVED = {"first_test": ("lab_ready", "hosts2_up")}  # sums, run by run
TARGETS = {"lab_ready": 0.2, "hosts2_up": 0.05, "hosts2_down": 0.05, "hosts64_up": 0.3,
           "hosts64_down": 0.15}


def measure_once(results: dict[str, list[float]]) -> None:
    t = time.perf_counter()
    lab = Lab.open()
    results["lab_ready"].append(time.perf_counter() - t)
    try:
        for n, suffix in [(2, ""), (64, ""), (2, "_warm")]:
            with lab.scope(f"{n}hosts") as scope:
                t = time.perf_counter()
                sw = scope.switch("s1")
                hosts = scope.veth_hosts(
                    [HostSpec(f"h{i + 1}", addresses=[f"10.0.{i // 250}.{i % 250 + 1}/16"])
                     for i in range(n)], sw)
                results[f"hosts{n}_up{suffix}"].append(time.perf_counter() - t)
                target = hosts[-1].spec.addresses[0].split("/")[0]
                t = time.perf_counter()
                if not hosts[0].ping(target, timeout=2):
                    raise RuntimeError(f"ping h1 -> h{n} failed")
                if not suffix:
                    results[f"hosts{n}_first_ping"].append(time.perf_counter() - t)
                t = time.perf_counter()
            results[f"hosts{n}_down{suffix}"].append(time.perf_counter() - t)
            lab.ovs.sync()
            if not suffix:
                results[f"hosts{n}_down_applied"].append(time.perf_counter() - t)
    finally:
        t = time.perf_counter()
        lab.close()
        results["lab_close"].append(time.perf_counter() - t)


def run_peer(runs: int) -> dict | None:
    script = Path(__file__).with_name("mininet_peer.py")
    try:
        import shutil

        if not shutil.which("mn"):
            print("mininet is not installed (ci/setup --bench): peer skipped", file=sys.stderr)
            return None
        cp = subprocess.run(["/usr/bin/python3", str(script), "--runs", str(runs)],
                            capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        print("the Mininet peer timed out", file=sys.stderr)
        return None
    if cp.returncode != 0:
        print(f"the Mininet peer failed:\n{cp.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(cp.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="repetitions (default 5)")
    ap.add_argument("--no-peer", action="store_true", help="skip the Mininet peer")
    ap.add_argument("--json", type=Path, help="write raw runs and medians here")
    args = ap.parse_args()

    ours: dict[str, list[float]] = {k: [] for k in KEYS}
    loads: list[float] = []
    for i in range(args.runs):
        measure_once(ours)
        loads.append(os.getloadavg()[0])
        print(f"labfixtures run {i + 1}/{args.runs}: lab_ready {ours['lab_ready'][-1]:.3f} "
              f"hosts2_up {ours['hosts2_up'][-1]:.3f} s (load {loads[-1]:.2f})",
              file=sys.stderr)
    peer = None if args.no_peer else run_peer(args.runs)
    for key, parts in DERIVED.items():
        ours[key] = [sum(v) for v in zip(*(ours[p] for p in parts), strict=True)]
        if peer and all(peer["results"].get(p) for p in parts):
            peer["results"][key] = [sum(v) for v in
                                    zip(*(peer["results"][p] for p in parts), strict=False)]

    print(f"\nmedians of {args.runs} runs, seconds ({platform.node()}, "
          f"{platform.release()}, {os.cpu_count()} CPUs, load average per run "
          f"{' '.join(f'{x:.2f}' for x in loads)})")
    print(f"{'measure':<20}{'labfixtures':>12}{'min-max':>14}{'target':>9}{'Mininet':>10}"
          f"{'ratio':>8}")
    summary = {}
    for key in [*KEYS, *DERIVED]:
        mine = statistics.median(ours[key])
        theirs = None
        if peer and key in peer["results"] and peer["results"][key]:
            theirs = statistics.median(peer["results"][key])
        target = TARGETS.get(key)
        ratio = f"{theirs / mine:7.1f}x" if theirs and mine else "       -"
        span = f"{min(ours[key]):.3f}-{max(ours[key]):.3f}"
        print(f"{key:<20}{mine:12.3f}{span:>14}{(f'{target:.2f}' if target else '-'):>9}"
              f"{(f'{theirs:.3f}' if theirs is not None else '-'):>10}{ratio}")
        summary[key] = {"labfixtures": mine, "min": min(ours[key]), "max": max(ours[key]),
                        "mininet": theirs, "target": target}
    if args.json:
        args.json.write_text(json.dumps({"labfixtures": ours, "peer": peer, "loads": loads,
                                         "medians": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
