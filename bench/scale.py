"""How cost grows: veth hosts (beside Mininet) and tiny VMs started together.

    .venv/bin/python bench/scale.py [--runs 3] [--vm-runs 1] [--hosts 2,8,32,128,256]
                                    [--vms 1,4,8,16,32] [--memory 128] [--no-peer]
                                    [--tb-size 32|default] [--balloon] [--restore]
                                    [--out /tmp/labfixtures-bench/scale]
    (needs `ci/setup --bench`: Mininet for the peer, matplotlib for the drawing)

Veth hosts, per size N (one lab host, as a pytest worker keeps it):
  up          one switch and N veth hosts with addresses on its ports;
  first_ping  h1 -> hN, one ICMP echo;
  down        the switch and the hosts removed (the lab host kept). OVS deletions do not
              wait for ovs-vswitchd (net/ovs.py `OvsServer.delete`);
  down_applied  down, plus the wait until ovs-vswitchd has applied it (`OvsServer.sync`),
              so that the next `up` starts on an idle ovs-vswitchd.
Mininet (bench/mininet_peer.py, same userspace datapath) is measured for the same sizes in
the same run.

Tiny VMs, per count K: K taps on one switch (VLAN 2, an SVI), K `lab.vm(..., start=False)`,
then every QEMU launched (8 launches at a time: each waits for its QMP socket) before any
is waited for; `all_ready` is the wall time from the first launch to the last VM answering
`true` over SSH (key exchange and login included). Memory per VM, read once all are ready:
VmRSS of each QEMU process; its RssAnon (private: guest RAM, TCG code buffer, QEMU's own);
its PSS (pages shared between the QEMUs, such as the mapped kernel file, counted once in
all); and the machine's MemAvailable drop divided by K (in the JSON and the table only:
other programs on the machine make it noisy). --tb-size sets the TCG translation cache
(MiB, `default`: QEMU's 1 GiB; labfixtures' own otherwise), --balloon adds virtio-balloon
with free page reporting (bench/boot.py --rss breaks one VM's memory down further).
--restore: the K VMs are restored together from one checkpoint of a booted VM, on its
memory file (checkpoint/memfile.py; the one-time unpack is done before), each in a lab of
its own with the user-mode NIC it was saved with (a checkpoint holds one MAC and one port).

Writes OUT.json (raw runs, medians, min-max, load averages) and OUT.png (the curves).
Timings are reported, never asserted (docs/host-facts.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labfixtures import checkpoint as ck  # noqa: E402
from labfixtures.lab.lab import HostSpec, Lab  # noqa: E402
from labfixtures.net.ovs import PortSpec  # noqa: E402

HOST_SIZES = (2, 8, 32, 128, 256)
VM_COUNTS = (1, 4, 8, 16, 32)
GOAL_VMS, GOAL_WALL, GOAL_RSS_MB = 32, 60.0, 100.0
SEED_TAG = "scale-seed"


def loadavg() -> float:
    return os.getloadavg()[0]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def host_address(i: int) -> str:
    return f"10.0.{i // 250}.{i % 250 + 1}"


def measure_hosts(lab: Lab, n: int) -> dict[str, float]:
    out: dict[str, float] = {"load": loadavg()}
    with lab.scope(f"{n}hosts") as scope:
        t = time.perf_counter()
        sw = scope.switch("s1")
        hosts = scope.veth_hosts([HostSpec(f"h{i + 1}", addresses=[f"{host_address(i)}/16"])
                                  for i in range(n)], sw)
        out["up"] = time.perf_counter() - t
        t = time.perf_counter()
        if not hosts[0].ping(host_address(n - 1), timeout=5):
            raise RuntimeError(f"ping h1 -> h{n} failed")
        out["first_ping"] = time.perf_counter() - t
        t = time.perf_counter()
    out["down"] = time.perf_counter() - t
    lab.ovs.sync()
    out["down_applied"] = time.perf_counter() - t
    return out


def run_peer(sizes: tuple[int, ...], runs: int) -> dict[str, Any] | None:
    import shutil

    if not shutil.which("mn"):
        print("mininet is not installed (ci/setup --bench): peer skipped", file=sys.stderr)
        return None
    script = Path(__file__).with_name("mininet_peer.py")
    load = loadavg()
    cp = subprocess.run(["/usr/bin/python3", str(script), "--runs", str(runs),
                         "--sizes", ",".join(map(str, sizes))],
                        capture_output=True, text=True, timeout=3600)
    if cp.returncode != 0:
        print(f"the Mininet peer failed:\n{cp.stderr[-2000:]}", file=sys.stderr)
        return None
    report: dict[str, Any] = json.loads(cp.stdout)
    report["load_before"] = load
    return report


def rss_kib(pid: int) -> tuple[int, int, int]:
    """VmRSS, Pss and RssAnon of PID, in KiB."""
    rss = pss = anon = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("RssAnon:"):
            anon = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss, anon


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_vms(lab: Lab, k: int, memory: int, profile: str,
                config: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"load": loadavg()}
    with lab.scope(f"{k}vms") as scope:
        sw = scope.switch("sw0")
        sw.svi(2, "10.20.0.254/24")
        taps = [scope.tap(10 + i) for i in range(k)]
        sw.add_ports([PortSpec(t, tag=2) for t in taps])
        vms = [scope.vm(f"vm{i}", tap=10 + i, addresses=[f"10.20.0.{i + 1}/24"],
                        memory=memory, profile=profile, start=False) for i in range(k)]
        for vm in vms:  # more MachineSpec fields (tb_size_mb, balloon)
            vm.opts.extra_config.update(config or {})
        avail = mem_available_mib()
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:  # all launched before any is waited for
            list(pool.map(lambda vm: vm.start(wait=False), vms))
        out["launch_all"] = time.monotonic() - t0
        wait_all(out, vms, t0, avail, booted=True)
        t = time.monotonic()
    out["down"] = time.monotonic() - t
    return out


def wait_all(out: dict[str, Any], vms: list[Any], t0: float, avail: float,
             booted: bool) -> None:
    """Each VM answering `true` over SSH (after its ready marker if BOOTED), the times
    from T0, then every QEMU's memory and the machine's (AVAIL: MemAvailable before)."""
    ready = []
    for vm in vms:
        if booted:
            vm.wait_ready(timeout=300)
        vm.run("true", check=True, timeout=60)
        ready.append(time.monotonic() - t0)
    out["all_ready"] = time.monotonic() - t0
    out["ready_each"] = ready
    mem = [rss_kib(vm.machine.pid) for vm in vms if vm.machine and vm.machine.pid]
    out["rss_mib"] = [r / 1024 for r, _, _ in mem]
    out["pss_mib"] = [p / 1024 for _, p, _ in mem]
    out["anon_mib"] = [a / 1024 for _, _, a in mem]
    out["avail_drop_mib_per_vm"] = (avail - mem_available_mib()) / len(vms)
    out["load_end"] = loadavg()


def measure_restored(k: int, store: ck.CheckpointStore) -> dict[str, Any]:
    """K VMs restored together from one checkpoint of a booted VM (a class starting from
    the teacher's checkpoint), on its memory file (checkpoint/memfile.py). A checkpoint
    holds one MAC and one forwarded port, so each VM gets a lab of its own (a namespace,
    no Open vSwitch) and the user-mode NIC it was saved with."""
    out: dict[str, Any] = {"load": loadavg()}
    with contextlib.ExitStack() as stack:
        labs = [stack.enter_context(Lab.open(start_ovs=False)) for _ in range(k)]
        avail = mem_available_mib()
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            vms = list(pool.map(lambda lab: ck.restore_into(lab, "vm0", SEED_TAG,
                                                            store=store, wait=False), labs))
        out["launch_all"] = time.monotonic() - t0
        wait_all(out, vms, t0, avail, booted=False)
        t = time.monotonic()
    out["down"] = time.monotonic() - t
    return out


def seed_checkpoint(memory: int, profile: str) -> ck.CheckpointStore:
    """A checkpoint of a booted tiny VM in a new store, restored once (which unpacks its
    memory file, a one-time cost left out of the figures)."""
    store = ck.CheckpointStore(Path(tempfile.mkdtemp(prefix="lf-scale-cp-")))
    with Lab.open(start_ovs=False) as seed:
        vm = seed.vm("vm0", user=True, memory=memory, profile=profile)
        ck.save(vm, SEED_TAG, store=store)
        ck.restore(vm, SEED_TAG, store=store)
    return store


def draw(report: dict[str, Any], png: Path) -> None:
    # matplotlib: the bench extra (ci/setup --bench), imported only where it draws
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 5.2))
    hosts = report["hosts"]["medians"]
    sizes = [int(n) for n in hosts]
    for phase, style, color, label in (
            ("up", "o-", "C0", "labfixtures up"), ("down", "s-", "C1", "labfixtures down"),
            ("down_applied", "v:", "C1", "labfixtures down, applied by ovs-vswitchd")):
        ax1.plot(sizes, [hosts[str(n)][phase]["median"] for n in sizes], style,
                 color=color, label=label)
    peer = report.get("mininet_medians") or {}
    for phase, style in (("up", "o--"), ("down", "s--")):
        pts = [(n, peer[f"hosts{n}_{phase}"]["median"]) for n in sizes
               if f"hosts{n}_{phase}" in peer]
        if pts:
            ax1.plot(*zip(*pts, strict=True), style, color="C0" if phase == "up" else "C1",
                     alpha=0.55, label=f"Mininet {phase}")
    if sizes:  # --hosts '' measures VMs only
        ax1.set_xscale("log", base=2)
        ax1.set_yscale("log")
    ax1.set_xticks(sizes, [str(n) for n in sizes])
    ax1.set_xlabel("veth hosts on one switch")
    ax1.set_ylabel("seconds (median, log scale)")
    ax1.set_title("Veth hosts up / down, beside Mininet")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)

    vms = report.get("vms", {}).get("medians", {})
    counts = [int(k) for k in vms]
    if counts:
        ax2.plot(counts, [vms[str(k)]["all_ready"]["median"] for k in counts], "o-",
                 color="C2", label="all SSH-ready (wall)")
        ax2.plot(counts, [vms[str(k)]["launch_all"]["median"] for k in counts], "^:",
                 color="C2", alpha=0.6, label="all QEMUs launched")
        ax2.axhline(GOAL_WALL, color="red", ls="--", lw=1,
                    label=f"goal: {GOAL_VMS} VMs ≤ {GOAL_WALL:.0f} s")
        ax2.set_xticks(counts, [str(k) for k in counts])
        ax2.set_xlabel("tiny VMs started together")
        ax2.set_ylabel("seconds from the first launch")
        ax2.set_title(f"Tiny VMs to SSH, {os.cpu_count()} cores, TCG")
        ax2.grid(True, alpha=0.3)
        ax2.legend(fontsize=8)

        ax3.plot(counts, [vms[str(k)]["rss_mib"]["median"] for k in counts], "o-",
                 color="C4", label="RSS per VM (median)")
        ax3.fill_between(counts, [vms[str(k)]["rss_mib"]["min"] for k in counts],
                         [vms[str(k)]["rss_mib"]["max"] for k in counts], color="C4",
                         alpha=0.15, label="RSS min-max")
        ax3.plot(counts, [vms[str(k)]["pss_mib"]["median"] for k in counts], "s--",
                 color="C5", label="PSS per VM (median)")
        ax3.plot(counts, [vms[str(k)]["anon_mib"]["median"] for k in counts], "^:",
                 color="C6", label="anonymous RSS per VM (median)")
        ax3.axhline(GOAL_RSS_MB, color="red", ls="--", lw=1,
                    label=f"goal: ≤ {GOAL_RSS_MB:.0f} MB each")
        ax3.set_ylim(bottom=0)
        ax3.set_xticks(counts, [str(k) for k in counts])
        ax3.set_xlabel("tiny VMs started together")
        ax3.set_ylabel("MiB per QEMU process")
        ax3.set_title(f"Resident memory per VM ({report['vm_memory']} MiB guest RAM)")
        ax3.grid(True, alpha=0.3)
        ax3.legend(fontsize=8)
    else:
        for ax in (ax2, ax3):
            ax.set_axis_off()
    fig.suptitle(f"labfixtures scale — {platform.node()}, load average "
                 f"{report['load_start']:.1f} at start, {report['load_end']:.1f} at end",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="veth repetitions (default 3)")
    ap.add_argument("--vm-runs", type=int, default=1, help="VM repetitions (default 1)")
    ap.add_argument("--hosts", default=",".join(map(str, HOST_SIZES)))
    ap.add_argument("--vms", default=",".join(map(str, VM_COUNTS)),
                    help="VM counts; empty: no VMs")
    ap.add_argument("--memory", type=int, default=128, help="guest RAM per VM, MiB")
    ap.add_argument("--profile", default="fast")
    ap.add_argument("--tb-size", default="",
                    help="TCG translation cache, MiB, or 'default' (QEMU's); "
                         "default: labfixtures' own")
    ap.add_argument("--balloon", action="store_true",
                    help="virtio-balloon with free page reporting in each VM")
    ap.add_argument("--restore", action="store_true",
                    help="restore the VMs from one checkpoint of a booted VM (each in a "
                         "lab of its own) instead of booting them")
    ap.add_argument("--no-peer", action="store_true", help="skip Mininet")
    ap.add_argument("--out", type=Path, default=Path("/tmp/labfixtures-bench/scale"),
                    help="writes OUT.json and OUT.png")
    args = ap.parse_args()
    config: dict[str, Any] = {}
    if args.tb_size:
        config["tb_size_mb"] = None if args.tb_size == "default" else int(args.tb_size)
    if args.balloon:
        config["balloon"] = True
    sizes = tuple(int(n) for n in args.hosts.split(",") if n)
    counts = tuple(int(k) for k in args.vms.split(",") if k)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    report: dict[str, Any] = {"node": platform.node(), "kernel": platform.release(),
                              "cpus": os.cpu_count(), "load_start": loadavg(),
                              "vm_memory": args.memory, "vm_profile": args.profile,
                              "vm_config": config,
                              "vm_start": "restored" if args.restore else "booted"}
    raw: dict[str, list[dict[str, float]]] = {str(n): [] for n in sizes}
    vm_raw: dict[str, list[dict[str, Any]]] = {str(k): [] for k in counts}
    store: ck.CheckpointStore | None = None
    lab = Lab.open()
    try:
        for r in range(args.runs):
            for n in sizes:
                raw[str(n)].append(measure_hosts(lab, n))
            print(f"veth run {r + 1}/{args.runs}: " + ", ".join(
                f"{n}: up {raw[str(n)][-1]['up']:.3f} down {raw[str(n)][-1]['down']:.3f}"
                for n in sizes), file=sys.stderr, flush=True)
        store = seed_checkpoint(args.memory, args.profile) if args.restore and counts \
            else None
        for r in range(args.vm_runs):
            for k in counts:
                m = measure_restored(k, store) if store is not None else \
                    measure_vms(lab, k, args.memory, args.profile, config)
                vm_raw[str(k)].append(m)
                print(f"vm run {r + 1}/{args.vm_runs}: {k} VMs all ready "
                      f"{m['all_ready']:.1f} s (launch {m['launch_all']:.2f} s), RSS median "
                      f"{statistics.median(m['rss_mib']):.0f} MiB max "
                      f"{max(m['rss_mib']):.0f}, load {m['load']:.1f}",
                      file=sys.stderr, flush=True)
    finally:
        lab.close()
        if store is not None:
            shutil.rmtree(store.root, ignore_errors=True)
    report["hosts"] = {"runs": raw, "medians": {
        n: {k: summary([r[k] for r in runs])
            for k in ("up", "first_ping", "down", "down_applied", "load")}
        for n, runs in raw.items()}}
    if counts:
        report["vms"] = {"runs": vm_raw, "medians": {
            k: {"all_ready": summary([r["all_ready"] for r in runs]),
                "launch_all": summary([r["launch_all"] for r in runs]),
                "down": summary([r["down"] for r in runs]),
                "load": summary([r["load"] for r in runs]),
                "rss_mib": summary([x for r in runs for x in r["rss_mib"]]),
                "pss_mib": summary([x for r in runs for x in r["pss_mib"]]),
                "anon_mib": summary([x for r in runs for x in r["anon_mib"]]),
                "avail_drop_mib_per_vm": summary([r["avail_drop_mib_per_vm"] for r in runs])}
            for k, runs in vm_raw.items()}}
    peer = None if args.no_peer else run_peer(sizes, args.runs)
    report["mininet"] = peer
    if peer:
        report["mininet_medians"] = {k: summary(v) for k, v in peer["results"].items() if v}
    report["load_end"] = loadavg()

    json_path, png_path = args.out.with_suffix(".json"), args.out.with_suffix(".png")
    json_path.write_text(json.dumps(report, indent=1))
    try:
        draw(report, png_path)
    except ModuleNotFoundError as e:  # the figures are in the JSON and printed below
        print(f"no {png_path.name}: {e.name} is missing (`ci/setup --bench` installs it "
              "in .venv-bench)", file=sys.stderr)
        png_path = None

    print(f"\nveth hosts, medians of {args.runs} (min-max), seconds; load at start "
          f"{report['load_start']:.1f}")
    print(f"{'N':>5}{'up':>22}{'down':>22}{'down applied':>22}{'Mininet up':>14}"
          f"{'Mininet down':>14}")
    pm = report.get("mininet_medians", {})
    for n in sizes:
        m = report["hosts"]["medians"][str(n)]
        row = f"{n:>5}"
        for k in ("up", "down", "down_applied"):
            row += f"{m[k]['median']:>8.3f} ({m[k]['min']:.3f}-{m[k]['max']:.3f})"
        for k in ("up", "down"):
            v = pm.get(f"hosts{n}_{k}")
            row += f"{v['median']:>14.3f}" if v else f"{'-':>14}"
        print(row)
    if counts:
        print(f"\ntiny VMs {report['vm_start']} together ({args.memory} MiB each, profile "
              f"{args.profile}"
              f"{', ' + str(config) if config else ''}), medians of {args.vm_runs}")
        print(f"{'K':>5}{'all ready s':>14}{'launch s':>10}{'RSS MiB med/max':>18}"
              f"{'anon MiB':>10}{'PSS MiB med':>13}{'avail drop/VM':>15}{'load':>7}")
        for k in counts:
            m = report["vms"]["medians"][str(k)]
            print(f"{k:>5}{m['all_ready']['median']:>14.1f}{m['launch_all']['median']:>10.2f}"
                  f"{m['rss_mib']['median']:>10.0f}/{m['rss_mib']['max']:<7.0f}"
                  f"{m['anon_mib']['median']:>10.0f}{m['pss_mib']['median']:>13.0f}"
                  f"{m['avail_drop_mib_per_vm']['median']:>15.0f}{m['load']['median']:>7.1f}")
    print(f"\nwrote {json_path}" + (f" and {png_path}" if png_path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
