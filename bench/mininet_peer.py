#!/usr/bin/python3
"""Measure the peer, Mininet 2.3, on the Open vSwitch userspace datapath.

Run with the system interpreter, which has Debian's ``mininet`` module::

    /usr/bin/python3 bench/mininet_peer.py --runs 5

The host is left untouched: the script creates a network namespace ``lf-mn-<pid>`` and a
private run directory, and re-executes itself inside that namespace (``--inside``). There it
starts a private ovsdb-server and ovs-vswitchd (``--disable-system``: this kernel has no OVS
module) and drives Mininet. Mininet's hosts unshare into namespaces of their own from there,
so nothing reaches the root namespace. The outer process always stops the daemons, kills
leftovers, deletes the namespace and the run directory, even on Ctrl-C or error.

Status lines go to stderr; one JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3"
NETNS_PREFIX = "lf-mn-"
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
DAEMONS = ("ovs-vswitchd", "ovsdb-server")
# Every process started below inherits this variable, which is how the outer process finds
# Mininet's host shells on cleanup: they sit in unnamed namespaces `ip netns pids` can't see.
TAG_VAR = "LF_MN_PEER_TAG"
SIZES = (2, 64)  # --sizes changes them (bench/scale.py passes its own)
# Debian's mininet does not pull in iputils-ping, and this machine lacks it: busybox has one.
PING = "ping" if shutil.which("ping") else "busybox ping"


def result_keys(sizes: tuple[int, ...]) -> tuple[str, ...]:
    return ("lab_ready",) + tuple(
        f"hosts{n}_{phase}" for n in sizes for phase in ("up", "first_ping", "down")
    )


def status(message: str) -> None:
    """Status lines go to stderr so that stdout stays pure JSON."""
    print(message, file=sys.stderr, flush=True)


def run(*argv: str) -> str:
    """Run a command, fail loudly with its stderr, return its stdout."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def ovs_env(rundir: Path) -> dict[str, str]:
    """Point every OVS program (daemons, and the ovs-vsctl Mininet runs) at the private dir."""
    return {var: str(rundir) for var in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR")}


# --- processes ------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """True until the process is gone; our own children are reaped on the way.

    waitpid() first: a multi-threaded daemon's leader shows "Z" in /proc while its other
    threads still exit, and only waitpid() tells when it is really reapable.
    """
    with contextlib.suppress(ChildProcessError):
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # not ours: someone else reaps it


def become_subreaper() -> None:
    """Orphans (the --detach'ed daemons, stray Mininet shells) become ours to reap.

    Otherwise they are reparented to PID 1, which on this machine reaps lazily: killed
    daemons linger as zombies in `pgrep -a ovs` after we are gone.
    """
    pr_set_child_subreaper = 36
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_orphans() -> None:
    """Collect every exited child (outer process only: its one real child is done by then)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def terminate(pids: set[int], timeout: float) -> None:
    """SIGTERM, wait up to `timeout` (ovs-vswitchd may need ~1 s), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        pids = {pid for pid in pids if alive(pid)}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
    if still := {pid for pid in pids if alive(pid)}:
        status(f"WARNING: processes survived SIGKILL: {sorted(still)}")


def daemon_pids(rundir: Path) -> set[int]:
    """Pids from the daemons' pidfiles; read them before signalling: daemons delete them."""
    pids = set()
    for name in DAEMONS:
        with contextlib.suppress(OSError, ValueError):
            pids.add(int((rundir / f"{name}.pid").read_text().strip()))
    return pids


def stop_daemons(rundir: Path) -> None:
    """Stop the private ovsdb-server and ovs-vswitchd, if running."""
    terminate(daemon_pids(rundir), timeout=5.0)


def tagged_pids(tag: str) -> set[int]:
    """Processes whose initial environment carries our tag (Mininet shells included)."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.add(int(entry.name))
    return found


def netns_pids(netns: str) -> set[int]:
    """Processes still inside the namespace (ip netns pids)."""
    proc = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return {int(pid) for pid in proc.stdout.split()}


# --- outer process: namespace, run dir, cleanup -----------------------------------------------


def raise_interrupt(signum: int, frame: Any) -> None:
    """Treat SIGTERM like Ctrl-C so that every `finally` clause runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def outer(runs: int, sizes: tuple[int, ...]) -> int:
    """Create the namespace and run dir, run the measurement inside, always clean up."""
    netns = f"{NETNS_PREFIX}{os.getpid()}"
    rundir = Path(tempfile.mkdtemp(prefix=f"{netns}-"))
    env = os.environ | ovs_env(rundir) | {TAG_VAR: netns}
    argv = [
        "ip", "netns", "exec", netns, SYSTEM_PYTHON, str(Path(__file__).resolve()),
        "--inside", "--runs", str(runs), "--rundir", str(rundir),
        "--sizes", ",".join(map(str, sizes)),
    ]  # fmt: skip
    started = time.perf_counter()
    become_subreaper()
    try:
        run("ip", "netns", "add", netns)
        # Own session: a Ctrl-C reaches only us; we forward exactly one SIGINT, so the
        # child's net.stop() is not interrupted by a second one.
        child = subprocess.Popen(argv, env=env, stdout=sys.stderr, start_new_session=True)
        try:
            returncode = child.wait()
        except KeyboardInterrupt:
            status("interrupted: letting the inner process clean up")
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
            raise
        results_file = rundir / "results.json"
        if not results_file.exists():
            status(f"ERROR: inner process exited {returncode} without results")
            return 1
        report = json.loads(results_file.read_text())
        print(json.dumps(report, indent=2))
        for key, values in report["results"].items():
            if values:
                status(f"median {key:20} {statistics.median(values):.3f} s  ({len(values)} runs)")
        status(f"whole run: {time.perf_counter() - started:.1f} s")
        return returncode
    finally:
        cleanup(netns, rundir)


def cleanup(netns: str, rundir: Path) -> None:
    """Stop daemons, kill leftovers, delete namespace and run dir; each step independently."""
    steps = (
        ("stop daemons", lambda: stop_daemons(rundir)),
        (
            "kill leftovers",
            lambda: terminate((netns_pids(netns) | tagged_pids(netns)) - {os.getpid()}, 1.0),
        ),
        ("delete namespace", lambda: delete_netns(netns)),
        ("remove run dir", lambda: shutil.rmtree(rundir, ignore_errors=True)),
        ("reap orphans", reap_orphans),
    )
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # keep going: the next steps still matter
            status(f"WARNING: cleanup: {what} failed: {exc}")


def delete_netns(netns: str) -> None:
    """Delete our namespace if it exists (its veths and OVS taps go with it)."""
    if Path("/run/netns", netns).exists():
        run("ip", "netns", "del", netns)


# --- inner process: private OVS and Mininet ---------------------------------------------------


def start_ovs(rundir: Path) -> float:
    """Fresh db, both daemons, `init`: the figure comparable with our lab host being ready."""
    db = rundir / "conf.db"
    sock = f"unix:{rundir}/db.sock"
    logging = ("--log-file", "-vsyslog:off")  # the host's syslog is not ours to write to
    start = time.perf_counter()
    db.unlink(missing_ok=True)
    run("ovsdb-tool", "create", str(db), OVS_SCHEMA)
    run("ovsdb-server", str(db), f"--remote=p{sock}", "--pidfile", "--detach", *logging)
    run("ovs-vswitchd", sock, "--disable-system", "--pidfile", "--detach", *logging)
    run("ovs-vsctl", f"--db={sock}", "--no-wait", "init")
    return time.perf_counter() - start


def inner(runs: int, rundir: Path, sizes: tuple[int, ...]) -> int:
    """Per run: start a private OVS, measure each size (2 and 64 hosts), stop the OVS.

    The OVS is fresh for every run, so `hosts2_up` includes the one-off cost (~0.1 s) of a
    new ovs-vswitchd's first userspace bridge, as a freshly started lab of ours pays it too.
    """
    from mininet.log import setLogLevel
    from mininet.net import VERSION, Mininet

    setLogLevel("warning")
    # Mininet.init() calls fixLimits(), which raises host-wide sysctls such as kernel.pty.max
    # and fs.file-max: /proc/sys/kernel is not per namespace. Skip it; 65 ptys are plenty.
    Mininet.inited = True
    # a few descriptors per host (pty, pipes): 256 hosts need more than a soft limit of 1024;
    # this process's own limit, raised to its hard limit, nothing host-wide
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    become_subreaper()
    results: dict[str, list[float]] = {key: [] for key in result_keys(sizes)}
    failures: list[str] = []
    ovs_version = run("ovs-vswitchd", "--version").split()[3]
    try:
        for i in range(1, runs + 1):
            try:
                results["lab_ready"].append(start_ovs(rundir))
                check_default_db(rundir)
                for n in sizes:
                    up, ping, down, error = measure(n, rundir)
                    results[f"hosts{n}_up"].append(up)
                    results[f"hosts{n}_first_ping"].append(ping)
                    results[f"hosts{n}_down"].append(down)
                    if error:
                        failures.append(f"run {i}, {n} hosts: {error}")
                        status(f"ERROR: run {i}, {n} hosts: {error}")
            finally:
                stop_daemons(rundir)
            status(
                f"run {i}/{runs}: lab_ready {results['lab_ready'][-1]:.3f} s; "
                + "; ".join(
                    f"{n} hosts up {results[f'hosts{n}_up'][-1]:.3f} / ping "
                    f"{results[f'hosts{n}_first_ping'][-1]:.3f} / down "
                    f"{results[f'hosts{n}_down'][-1]:.3f} s"
                    for n in sizes
                )
            )
    finally:
        report = {
            "mininet_version": VERSION,
            "ovs_version": ovs_version,
            "results": results,
            "failures": failures,
        }
        (rundir / "results.json").write_text(json.dumps(report))
    return 1 if failures else 0


def check_default_db(rundir: Path) -> None:
    """Mininet runs plain `ovs-vsctl`: it must reach our db through OVS_RUNDIR alone."""
    query = ("get", "Open_vSwitch", ".", "_uuid")
    default = run("ovs-vsctl", "-t", "1", *query)
    private = run("ovs-vsctl", f"--db=unix:{rundir}/db.sock", *query)
    if default != private:
        raise RuntimeError("ovs-vsctl without --db does not reach the private db")


def measure(n: int, rundir: Path) -> tuple[float, float, float, str | None]:
    """One switch, n hosts: time up, the first ping h1 -> hn, and down."""
    from mininet.net import Mininet
    from mininet.node import OVSSwitch
    from mininet.topo import SingleSwitchTopo

    class UserspaceOVSSwitch(OVSSwitch):
        """A real subclass: functools.partial(OVSSwitch, ...) silently drops ports past 58."""

        def __init__(self, name: str, **params: Any) -> None:
            params.update(failMode="standalone", datapath="user")
            super().__init__(name, **params)

    net = Mininet(
        topo=SingleSwitchTopo(k=n), switch=UserspaceOVSSwitch, controller=None, build=False
    )
    errors = []
    try:
        start = time.perf_counter()
        net.build()
        net.start()
        up = time.perf_counter() - start

        src, dst = net.get("h1", f"h{n}")
        start = time.perf_counter()
        output = src.cmd(f"{PING} -c1 -W2 {dst.IP()}; echo exit=$?")
        ping = time.perf_counter() - start
        if not output.rstrip().endswith("exit=0"):
            errors.append(f"ping h1 -> h{n} failed: {output.strip()!r}")

        ports = run("ovs-vsctl", f"--db=unix:{rundir}/db.sock", "list-ports", "s1").split()
        if len(ports) != n:
            errors.append(f"s1 has {len(ports)} ports in the private db, expected {n}")
    finally:
        start = time.perf_counter()
        net.stop()
        down = time.perf_counter() - start
    return up, ping, down, "; ".join(errors) or None


def main() -> int:
    """Parse arguments; run as the outer process unless --inside."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rundir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="numbers of hosts, comma-separated (default %(default)s)")
    args = parser.parse_args()
    sizes = tuple(int(n) for n in args.sizes.split(","))
    if os.geteuid() != 0:
        parser.error("must run as root (network namespaces, Open vSwitch)")
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        return (inner(args.runs, args.rundir, sizes) if args.inside
                else outer(args.runs, sizes))
    except KeyboardInterrupt:
        status("interrupted" + (" (inner process cleaned up)" if args.inside else ""))
        return 130


if __name__ == "__main__":
    sys.exit(main())
