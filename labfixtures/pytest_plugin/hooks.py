"""The plugin's hooks: configure (markers, SIGTERM, the start-up reaper, attach targets),
the report header, marker checks at collection, and what a failed test's report shows."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from labfixtures.core import procs
from labfixtures.guestimages import CPU_SHARE_ENV
from labfixtures.lab.labhost import reap
from labfixtures.net.ovs import kernel_datapath_available
from labfixtures.pytest_plugin import attach, report
from labfixtures.pytest_plugin.stash import ATTACH, LAB_HOST, REAPED, TEST_LAB
from labfixtures.qemu import accel

MARKERS = (
    "root: needs root privileges; skipped, with the reason, when pytest does not run as "
    "root",
    "vm: boots a QEMU virtual machine",
    "checkpoint(tag, vm=None): lab_vm() restores the stored checkpoint VM@TAG instead of "
    "booting (vm= a name or list of names; default all)",
    "slow(seconds): a long module or test (a Debian guest, an installation: SECONDS on a "
    "quiet 2-core machine); its module is started first so that xdist's workers end "
    "together; -m 'not slow' leaves it out",
)
CHECKPOINT_USAGE = ('write @pytest.mark.checkpoint("TAG") or '
                    '@pytest.mark.checkpoint("TAG", vm="vm0") (vm= a name or a list of names)')
NOT_ROOT_REASON = "needs root privileges (marked `root`): run pytest under sudo"

# the lab fixture that lives for one test, and what to use in a longer-lived fixture
SCOPE_HINT = (
    "labfixtures: `lab` (and `switch`, `veth_host`, `tap`, `lab_file`) live for one test, "
    "so a module- or session-scoped fixture cannot use them. In a module-scoped fixture "
    "use `lab_file_module(\"file.yaml\")`, or open a scope of the worker's lab host:\n"
    "    @pytest.fixture(scope=\"module\")\n"
    "    def table1(lab_host):\n"
    "        with lab_host.scope(\"table1\") as lab:\n"
    "            ...build on lab...\n"
    "            yield lab")
PER_TEST_FIXTURES = ("lab", "switch", "veth_host", "tap", "lab_file", "lab_vm",
                     "vm_from_checkpoint")


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    is_worker = hasattr(config, "workerinput")
    # a SIGTERM tears labs down like Ctrl-C does; an xdist controller passes it on to its
    # workers and waits for them (xdist would kill a worker still undoing its lab)
    procs.interrupt_on_sigterm(None if is_worker else lambda: _xdist_workers(config))
    if is_worker:
        _share_cpus(config)
    if not is_worker and not config.getoption("--lab-no-reap") and os.geteuid() == 0:
        config.stash[REAPED] = reap()
    config.stash[ATTACH] = attach.read_options(config)


def _xdist_workers(config: pytest.Config) -> list[int]:
    """The pids of this controller's xdist workers: its children (it starts no lab and no
    other process), if it runs xdist at all."""
    return procs.children() if config.pluginmanager.hasplugin("dsession") else []


def _share_cpus(config: pytest.Config) -> None:
    """In an xdist worker, the host's CPUs shared between the workers (guestimages.
    cpu_share): a debian VM then gets the vCPUs its worker's share holds, not the host's.
    A value set by the user is kept."""
    workers = int(getattr(config, "workerinput", {}).get("workercount") or 1)
    os.environ.setdefault(CPU_SHARE_ENV, str(max(1, (os.cpu_count() or 1) // workers)))


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    dp = config.getoption("--lab-datapath")
    if dp == "auto":
        dp = "system" if kernel_datapath_available() else "netdev (userspace)"
    lines.append(f"labfixtures: Open vSwitch datapath {dp}; privileges: "
                 f"{'root' if os.geteuid() == 0 else 'not root: lab tests will be skipped'}")
    try:
        info = accel.detect()
        lines.append(f"labfixtures: QEMU accelerator {info.name.upper()} ({info.reason})")
    except Exception as e:  # noqa: BLE001 - the header must never break a run
        lines.append(f"labfixtures: QEMU accelerator unknown ({e})")
    removed = config.stash.get(REAPED, [])
    if removed:
        lines.append(f"labfixtures: removed {len(removed)} leftover(s) of dead runs: "
                     + "; ".join(removed))
    plan = config.stash.get(ATTACH, None)
    if plan is not None and plan.vms:
        lines.append("labfixtures: attached " + ", ".join(
            f"{v.name}={attach.target_text(v)}" + (f" in {v.netns}" if v.netns else "")
            for v in plan.vms.values()))
    return lines


def check_checkpoint_marker(mark: pytest.Mark) -> str | None:
    """What is wrong with a `checkpoint` marker, or None."""
    unknown = set(mark.kwargs) - {"tag", "vm"}
    if unknown:
        return f"unknown argument(s) {', '.join(sorted(unknown))}"
    tags = list(mark.args) + ([mark.kwargs["tag"]] if "tag" in mark.kwargs else [])
    if len(tags) != 1:
        return "it needs exactly one checkpoint tag" if not tags else \
            f"it takes one tag, not {len(tags)}: {tags!r}"
    if not isinstance(tags[0], str) or not tags[0]:
        return f"the tag must be a non-empty string, not {tags[0]!r}"
    vm = mark.kwargs.get("vm")
    if vm is not None and not isinstance(vm, str) and not (
            isinstance(vm, list | tuple) and vm and all(isinstance(v, str) for v in vm)):
        return f"vm= must be a VM name or a list of names, not {vm!r}"
    return None


def slow_seconds(item: pytest.Item) -> float:
    """What `@pytest.mark.slow(seconds)` says of ITEM (0 when unmarked)."""
    mark = item.get_closest_marker("slow")
    if mark is None:
        return 0.0
    seconds = mark.args[0] if mark.args else mark.kwargs.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise pytest.UsageError(f"{item.nodeid}: marker @pytest.mark.slow{_call(mark)} needs "
                                "the seconds it takes\n  remedy: write @pytest.mark.slow(90)")
    return float(seconds)


def longest_modules_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """ITEMS with the modules marked `slow` first, the longest first; each module's tests
    stay together and in order, the others keep their order. xdist hands modules out in
    this order with --dist loadscope --no-loadscope-reorder (the checkout's options;
    without the second, xdist sorts modules by their number of tests and a one-test
    installation started last, the other worker idle for a minute)."""
    cost: dict[str, float] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        cost[module] = max(cost.get(module, 0.0), slow_seconds(item))
    if not any(cost.values()):
        return items
    rank = {m: i for i, m in enumerate(sorted(cost, key=lambda m: -cost[m]))}
    return sorted(items, key=lambda it: rank[it.nodeid.split("::", 1)[0]])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items[:] = longest_modules_first(items)
    for item in items:
        for mark in item.iter_markers("checkpoint"):
            wrong = check_checkpoint_marker(mark)
            if wrong:
                raise pytest.UsageError(
                    f"{item.nodeid}: marker @pytest.mark.checkpoint{_call(mark)}: {wrong}\n"
                    f"  remedy: {CHECKPOINT_USAGE}")
        for name in ("root", "vm"):
            for mark in item.iter_markers(name):
                if mark.args or mark.kwargs:
                    raise pytest.UsageError(
                        f"{item.nodeid}: marker @pytest.mark.{name}{_call(mark)} takes no "
                        f"arguments\n  remedy: write @pytest.mark.{name}")
        if item.get_closest_marker("root") is not None and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason=NOT_ROOT_REASON))


def _call(mark: pytest.Mark) -> str:
    args = [repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()]
    return f"({', '.join(args)})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    if rep.passed or rep.when == "teardown" and rep.skipped:
        return
    if rep.when == "setup" and rep.failed and "ScopeMismatch" in str(rep.longrepr) \
            and any(f"fixture {name} " in str(rep.longrepr) for name in PER_TEST_FIXTURES):
        rep.sections.append(("labfixtures: a per-test fixture in a longer-lived one",
                             SCOPE_HINT))
        return
    lab = item.stash.get(TEST_LAB, None)
    if lab is None and "lab_host" in getattr(item, "fixturenames", ()):
        lab = item.config.stash.get(LAB_HOST, None)
    if lab is None:
        return
    try:
        rep.sections.extend(report.failure_sections(lab))
    except Exception as e:  # noqa: BLE001 - a report must never hide the failure itself
        rep.sections.append(("labfixtures", f"could not collect the lab state: {e}"))
