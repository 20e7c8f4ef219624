"""The pytest plugin: options, fixtures, report header and failure logs.

A thin layer over the library. Each pytest-xdist worker opens one lab host (its own
namespace and Open vSwitch, named with the run id and the worker id) the first time a
test asks for a lab, and every test gets a `lab` scope on it: what the test builds is
undone after it, the namespace and the daemons stay for the next test.

    def test_vlan2(lab, veth_host):
        sw0 = lab.switch("sw0")
        sw0.svi(2, "203.0.113.129/26")
        h = veth_host("h1", sw0, tag=2, addresses=["203.0.113.130/26"])
        assert h.ping("203.0.113.129")
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labfixtures.errors import LabError
from labfixtures.guests.attach import AttachedVM
from labfixtures.lab.lab import Lab, Switch, VethHost
from labfixtures.lab.labhost import reap

# OVS log lines that say nothing about the lab under test (OVS's own test suite keeps
# such a list in OVS_VSWITCHD_STOP).
BENIGN_LOG_PATTERNS = (
    "error receiving data from",  # a port's device vanished while vswitchd polled it
)

_lab_key = pytest.StashKey[Lab]()

# boot once, checkpoint, restore per test: `lab_vm`, @pytest.mark.checkpoint
pytest_plugins = ["labfixtures.pytest_plugin.checkpoint_fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("labfixtures", "network labs (labfixtures)")
    group.addoption("--lab-datapath", choices=("auto", "system", "netdev"), default="auto",
                    help="Open vSwitch datapath: the kernel one (system), userspace "
                         "(netdev), or auto: system when the openvswitch module is loaded")
    group.addoption("--lab-no-reap", action="store_true",
                    help="do not remove labs left by dead runs at start-up")
    group.addoption("--lab-keep-overlays", metavar="DIR", default=None,
                    help="move VM disk overlays to DIR at teardown instead of deleting "
                         "them (to inspect what a test wrote)")
    group.addoption("--lab-attach", action="append", default=[], metavar="NAME=TARGET",
                    help="check a VM that labfixtures did not start: NAME=[USER@]HOST[:PORT] "
                         "(IPv6 in brackets: vm0=root@[fe80::baad:caff:fefe:2%%sw0-vlan2]); "
                         "tests get it from the `attached` fixture. Repeatable.")
    group.addoption("--lab-attach-key", metavar="PATH",
                    help="private key for --lab-attach targets (a password can be given in "
                         "the LABFIXTURES_ATTACH_PASSWORD environment variable instead)")
    group.addoption("--lab-attach-netns", metavar="NS",
                    help="network namespace to reach --lab-attach targets from (default: "
                         "where pytest runs)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root privileges (skipped otherwise)")
    config.addinivalue_line("markers", "vm: boots a QEMU virtual machine")
    # a SIGTERM (CI timeout, `kill`) tears labs down like Ctrl-C does
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)
    is_worker = hasattr(config, "workerinput")
    if not is_worker and not config.getoption("--lab-no-reap") and os.geteuid() == 0:
        removed = reap()
        if removed:
            config._labfixtures_reaped = removed  # type: ignore[attr-defined]


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


def pytest_report_header(config: pytest.Config) -> list[str]:
    from labfixtures.net.ovs import kernel_datapath_available

    lines = []
    dp = config.getoption("--lab-datapath")
    if dp == "auto":
        dp = "system" if kernel_datapath_available() else "netdev (userspace)"
    lines.append(f"labfixtures: Open vSwitch datapath {dp}; privileges: "
                 f"{'root' if os.geteuid() == 0 else 'not root: lab tests will be skipped'}")
    try:
        from labfixtures.qemu import accel

        info = accel.detect()
        lines.append(f"labfixtures: QEMU accelerator {info.name.upper()} ({info.reason})")
    except Exception as e:  # noqa: BLE001 - the header must never break a run
        lines.append(f"labfixtures: QEMU accelerator unknown ({e})")
    removed = getattr(config, "_labfixtures_reaped", None)
    if removed:
        lines.append(f"labfixtures: removed {len(removed)} leftover(s) of dead runs: "
                     + "; ".join(removed))
    return lines


@pytest.fixture(scope="session")
def lab_host(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """This worker's lab host: a private namespace with its own Open vSwitch."""
    if os.geteuid() != 0:
        pytest.skip("labfixtures needs root to build a lab (run under sudo)")
    try:
        keep = request.config.getoption("--lab-keep-overlays")
        lab = Lab.open(datapath=request.config.getoption("--lab-datapath"),
                       keep_overlays=Path(keep).absolute() if keep else None)
    except LabError as e:
        pytest.fail(str(e), pytrace=False)
    request.config.stash[_lab_key] = lab
    yield lab
    lab.close()


@pytest.fixture
def lab(lab_host: Lab, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A lab for one test: everything it creates is undone after the test."""
    with lab_host.scope(request.node.name) as scoped:
        request.node.stash[_lab_key] = scoped
        yield scoped
    problems = [p for p in lab_host.ovs.log_problems()
                if not any(b in p for b in BENIGN_LOG_PATTERNS)]
    if problems:
        pytest.fail("Open vSwitch logged errors during this test:\n  " +
                    "\n  ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def attached(request: pytest.FixtureRequest) -> Iterator[dict[str, AttachedVM]]:
    """The VMs given with --lab-attach, by name (empty without the option)."""
    cfg = request.config
    vms: dict[str, AttachedVM] = {}
    try:
        for spec in cfg.getoption("--lab-attach"):
            vm = AttachedVM.parse(spec, key=cfg.getoption("--lab-attach-key"),
                                  password=os.environ.get("LABFIXTURES_ATTACH_PASSWORD"),
                                  netns=cfg.getoption("--lab-attach-netns"))
            if vm.name in vms:
                raise LabError(f"--lab-attach names {vm.name!r} twice", "one target per name")
            vms[vm.name] = vm
    except LabError as e:
        pytest.fail(str(e), pytrace=False)
    yield vms
    for vm in vms.values():
        vm.close()


def _image(name: str):
    from labfixtures import guestimages

    try:
        return guestimages.get(name)
    except LabError as e:
        # a suite that skips the image it claims to test proves nothing: fail, with the fix
        pytest.fail(f"{e.problem}\n  remedy: {e.remedy} (./ci/setup does it)", pytrace=False)


@pytest.fixture(scope="session")
def tiny_image():
    """The cached `tiny` guest image (kernel + busybox/dropbear initramfs)."""
    return _image("tiny")


@pytest.fixture(scope="session")
def debian_image():
    """The cached `debian` guest image (bookworm on msdos + LVM vm0, installed by ISO)."""
    return _image("debian")


@pytest.fixture
def switch(lab: Lab) -> Switch:
    """An Open vSwitch bridge `sw0` (the guide's switch)."""
    return lab.switch("sw0")


@pytest.fixture
def veth_host(lab: Lab) -> Callable[..., VethHost]:
    """Factory: `veth_host(name, switch=None, tag=..., addresses=[...], gateway=...)`."""
    return lab.veth_host


@pytest.fixture
def tap(lab: Lab) -> Callable[..., str]:
    """Factory: `tap(N, group="kvm", multi_queue=True)` creates tapN in the lab."""
    return lab.tap


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if report.passed or report.when == "teardown" and report.skipped:
        return
    lab = item.stash.get(_lab_key, None)
    if lab is None:
        return
    try:
        report.sections.append(("labfixtures: lab state", lab.status()))
        logs = list(lab.ovs.logs)
        for vm in lab.vms.values():
            if vm.machine is not None:
                logs += [vm.machine.cmdline_file, vm.machine.serial_log,
                         vm.machine.stderr_log]
        for log in logs:
            if log.exists() and log.stat().st_size:
                tail = log.read_text(errors="replace").splitlines()[-40:]
                report.sections.append((f"labfixtures: {log.name} (last lines)",
                                        "\n".join(tail)))
    except Exception as e:  # noqa: BLE001 - a report must never hide the failure itself
        report.sections.append(("labfixtures", f"could not collect the lab state: {e}"))
