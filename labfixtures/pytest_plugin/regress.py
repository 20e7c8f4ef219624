"""The plugin's side of regression runs (labfixtures.regress):

- `--lab-qemu NAME|PATH`: the session runs on another QEMU (a build fetched by
  `labctl qemu fetch`, or any binary or wrapper script): `qemu.builds.use()` selects it,
  every machine's command line names it, and the run's record says which;
- `--lab-checkpoint-qemu NAME|PATH|host`: the automatic checkpoints are those of that QEMU,
  restored on the session's (a bisection's steps start from the known-good one's state);
- `--lab-guest-kernel PACKAGE`: the session's tiny guest is the one built on that kernel;
- the versions a run runs on, in the report header and as JUnit test-suite properties
  (added on the controller: they work under pytest-xdist);
- `lab_metric(name, value, unit)`: a fixture that records a measurement of the test (kept
  as a `user_properties` entry `lab_metric:NAME:UNIT`, so it crosses from xdist workers to
  the controller and shows in JUnit as a test-case property);
- `--lab-results FILE.json`: per test, its outcome (a lab that did not work is an `error`,
  not a failure: `regress.results.failure_outcome`), duration, attempts and metrics;
- `guide_step(...)`: a command of the reference guide as a student types it, with its
  verdict (works / works with a different output / refused) and fix (regress.guide);
- `--lab-rerun-failures N`: a failed test is run again up to N times (its function-scoped
  fixtures again, so `lab_vm` restores the same checkpoint instead of booting); every
  attempt is recorded and the report is the first attempt's.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _pytest.junitxml import xml_key
from _pytest.runner import call_and_report

from labfixtures.errors import LabError
from labfixtures.guestimages import kernels
from labfixtures.pytest_plugin.checkpoint_fixtures import CAME_UP_PREFIX
from labfixtures.qemu import builds
from labfixtures.regress import qemusel, versions
from labfixtures.regress.guide import GuideStep, tool_version
from labfixtures.regress.results import (
    Metric,
    Results,
    RunInfo,
    TestResult,
    failure_outcome,
)

METRIC_PREFIX = "lab_metric:"
GUIDE_PREFIX = "lab_guide:"
GUIDE_MARKER = ("guide_commands: runs the reference guide's commands as a student types "
                "them and records whether each still works (guide_step fixture)")
VERSIONS = pytest.StashKey[versions.Versions]()
#: what --lab-qemu and --lab-guest-kernel changed for the session, undone at the end
QEMU_SELECTION = pytest.StashKey[contextlib.ExitStack]()
RECORDER = pytest.StashKey["Recorder"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("labfixtures", "network labs (labfixtures)")
    group.addoption("--lab-qemu", metavar="NAME|PATH", default=None,
                    help="run every VM of the session on this QEMU: a build fetched by "
                         "`labctl qemu fetch VERSION` (its version, see `labctl qemu "
                         "list`) or the path of a binary or wrapper script")
    group.addoption("--lab-checkpoint-qemu", metavar="NAME|PATH|host", default=None,
                    help="automatic checkpoints (lab_vm) are those saved on this QEMU, and "
                         "only this QEMU saves them; on the session's QEMU (--lab-qemu) "
                         "they are restored, or the VM boots if that fails (used by "
                         "`labctl regress bisect --qemu`)")
    group.addoption("--lab-guest-kernel", metavar="PACKAGE[=VERSION]", default=None,
                    help="the tiny guest of this session is built on this Debian kernel "
                         "package (e.g. linux-image-6.1.0-50-amd64): its own cache entry, "
                         "built by `labctl image build tiny --kernel PACKAGE`")
    group.addoption("--lab-results", metavar="FILE.json", default=None,
                    help="write the run's results for `labctl regress compare`: versions "
                         "(kernel, QEMU, images, OVS...), and per test its outcome, "
                         "duration, attempts and lab_metric() measurements")
    group.addoption("--lab-results-label", metavar="TEXT", default="",
                    help="a name for this run in the results file (e.g. 'qemu 7.2.22')")
    group.addoption("--lab-rerun-failures", metavar="N", type=int, default=0,
                    help="run a failed test up to N more times (from the same checkpoint "
                         "with lab_vm) and record every attempt: a test that passes on a "
                         "rerun is reported flaky by `labctl regress compare`")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", GUIDE_MARKER)
    if config.getoption("--lab-rerun-failures") < 0:
        raise pytest.UsageError("--lab-rerun-failures N: N must be 0 or more")
    reference = config.getoption("--lab-checkpoint-qemu")
    if reference:
        try:
            config.option.lab_checkpoint_qemu = str(qemusel.resolve(reference))
        except LabError as e:
            raise pytest.UsageError(f"{e.problem}\n  remedy: {e.remedy}") from None
    asked = config.getoption("--lab-qemu")
    if asked:
        try:
            stack = config.stash.setdefault(QEMU_SELECTION, contextlib.ExitStack())
            stack.enter_context(builds.use(qemusel.resolve(asked)))
        except LabError as e:
            raise pytest.UsageError(f"{e.problem}\n  remedy: {e.remedy}") from None
    kernel = config.getoption("--lab-guest-kernel")
    if kernel:
        try:
            kernels.parse(kernel)
        except LabError as e:
            raise pytest.UsageError(f"--lab-guest-kernel: {e.problem}\n  remedy: {e.remedy}"
                                    ) from None
        config.stash.setdefault(QEMU_SELECTION, contextlib.ExitStack()).enter_context(
            kernels.tiny_on(kernel))
    path = config.getoption("--lab-results")
    if path and not _is_worker(config):
        rec = Recorder(Path(path).absolute(), config.getoption("--lab-results-label"))
        config.stash[RECORDER] = rec
        config.pluginmanager.register(rec, "labfixtures-results")


def pytest_unconfigure(config: pytest.Config) -> None:
    stack = config.stash.get(QEMU_SELECTION, None)
    if stack is not None:
        stack.close()
    rec = config.stash.get(RECORDER, None)
    if rec is not None:
        config.pluginmanager.unregister(rec)


def _recording(config: pytest.Config) -> bool:
    return bool(config.getoption("--lab-results") or config.getoption("xmlpath", None))


def run_versions(config: pytest.Config) -> versions.Versions:
    """What this session runs on, asked once (guest images only for a recorded run: their
    recipe hashes take a few seconds)."""
    v = config.stash.get(VERSIONS, None)
    if v is None:
        v = versions.collect(config.getoption("--lab-qemu") or "",
                             images=_recording(config),
                             guest_kernel=config.getoption("--lab-guest-kernel") or "")
        config.stash[VERSIONS] = v
    return v


def pytest_report_header(config: pytest.Config) -> list[str]:
    try:
        return run_versions(config).header_lines()
    except Exception as e:  # noqa: BLE001 - the header must never break a run
        return [f"labfixtures: versions unknown ({e})"]


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    xml = config.stash.get(xml_key, None)
    if xml is None or _is_worker(config):
        return
    for name, value in run_versions(config).properties():
        xml.add_global_property(name, value)


@pytest.fixture
def lab_metric(request: pytest.FixtureRequest) -> Callable[..., None]:
    """`lab_metric(name, value, unit="")`: record a measurement of this test (boot to SSH
    in s, ping round trip in ms, TCP throughput in Mbit/s...). `labctl regress compare`
    compares it between runs; the unit says whether lower or higher is better."""

    def record(name: str, value: float, unit: str = "") -> None:
        if not name or ":" in name:
            raise LabError(f"metric name {name!r} is not usable",
                           "use a non-empty name without ':' (e.g. boot_to_ssh)")
        v = float(value)
        if not math.isfinite(v):
            raise LabError(f"metric {name} = {value!r} is not a finite number",
                           "record a measured number")
        request.node.user_properties.append((f"{METRIC_PREFIX}{name}:{unit}", v))

    return record


@pytest.fixture
def guide_step(request: pytest.FixtureRequest) -> Iterator[Callable[..., GuideStep]]:
    """`step = guide_step("A.3", "qemu-img create -b MASTER -f qcow2 DIFF", tool="qemu-img",
    fix="add -F qcow2")`, then `step.works()`, `step.differs(what)` or `step.refused(why)`:
    one command of the guide as a student types it, recorded in the results file (a step
    left without a verdict fails the test)."""
    steps: list[GuideStep] = []

    def make(step: str, command: str, *, tool: str, fix: str = "") -> GuideStep:
        s = GuideStep(step, command, fix=fix, tool=tool, tool_version=tool_version(tool))
        steps.append(s)
        return s

    yield make
    for s in steps:
        request.node.user_properties.append((f"{GUIDE_PREFIX}{s.step}", json.dumps(s.to_json())))
    undecided = [s.command for s in steps if not s.verdict]
    if undecided:
        pytest.fail(f"guide steps left without a verdict: {undecided}", pytrace=False)


def guide_of(user_properties: list[tuple[str, object]]) -> list[GuideStep]:
    return [GuideStep.from_json(json.loads(str(v))) for k, v in user_properties
            if isinstance(k, str) and k.startswith(GUIDE_PREFIX)]


def came_up_of(user_properties: list[tuple[str, object]]) -> dict[str, str]:
    """How each VM came up (checkpoint_fixtures.boot_once): the first attempt's."""
    out: dict[str, str] = {}
    for k, v in user_properties:
        if isinstance(k, str) and k.startswith(CAME_UP_PREFIX):
            out.setdefault(k[len(CAME_UP_PREFIX):], str(v))
    return out


def metrics_of(user_properties: list[tuple[str, object]]) -> list[Metric]:
    out = []
    for key, value in user_properties:
        if isinstance(key, str) and key.startswith(METRIC_PREFIX):
            name, _, unit = key[len(METRIC_PREFIX):].partition(":")
            out.append(Metric(name, float(value), unit))  # type: ignore[arg-type]
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    if rep.failed:  # decided where the exception is; xdist carries these to the controller
        exc = call.excinfo.value if call.excinfo is not None else None
        setattr(rep, "lab_outcome", failure_outcome(exc, rep.when))  # noqa: B010
        setattr(rep, "lab_error_kind", type(exc).__name__ if exc is not None else "")  # noqa: B010


def _attempt_outcome(reports: list[pytest.TestReport]) -> str:
    for r in reports:
        if r.failed:
            return str(getattr(r, "lab_outcome", "error"))
    if any(r.skipped and r.when in ("setup", "call") for r in reports):
        return "skip"
    return "pass"


def _attempt(item: pytest.Item) -> list[pytest.TestReport]:
    """Setup and call of ITEM as `runtestprotocol` does them (`_finish` tears down; the
    private request reset is what lets a test run twice, as in pytest-rerunfailures)."""
    hasrequest = hasattr(item, "_request")
    if hasrequest and not item._request:  # type: ignore[attr-defined]
        item._initrequest()  # type: ignore[attr-defined]
    reports = [call_and_report(item, "setup", log=False)]
    if reports[0].passed and not item.config.getoption("setuponly", False):
        reports.append(call_and_report(item, "call", log=False))
    return reports


def _finish(item: pytest.Item, nextitem: Any) -> pytest.TestReport:
    rep = call_and_report(item, "teardown", log=False, nextitem=nextitem)
    if hasattr(item, "_request"):
        item._request = False
        item.funcargs = None  # type: ignore[attr-defined]
    return rep


def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """With --lab-rerun-failures N: the test's attempts, its first one reported."""
    n = item.config.getoption("--lab-rerun-failures")
    if n <= 0:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    attempts: list[str] = []
    logged: list[pytest.TestReport] = []
    while True:
        reports = _attempt(item)
        attempts.append(_attempt_outcome(reports))
        again = attempts[-1] == "fail" and len(attempts) <= n
        # between attempts only the test's own fixtures go: "the next item" is then its
        # parent (module or class), whose fixtures (a module's VM, a checkpoint) stay
        teardown = _finish(item, item.parent if again else nextitem)
        if not logged:
            logged = reports + [teardown]
        elif not again and teardown.failed:
            logged.append(teardown)
        if not again:
            break
    for r in logged:
        setattr(r, "lab_attempts", attempts)  # noqa: B010
        if len(attempts) > 1 and r.when == "call":
            r.sections.append(("labfixtures: reruns", "attempts: " + ", ".join(attempts)))
        item.ihook.pytest_runtest_logreport(report=r)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


@dataclass
class _Record:
    duration: float = 0.0
    ran: str = "skip"  # pass or skip, from the setup and call phases
    failure: tuple[str, str, str, str] | None = None  # outcome, phase, kind, message
    attempts: list[str] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    guide: list[GuideStep] = field(default_factory=list)
    came_up: dict[str, str] = field(default_factory=dict)

    def result(self, nodeid: str) -> TestResult:
        outcome, phase, kind, message = self.failure or (self.ran, "", "", "")
        return TestResult(nodeid, outcome, self.duration, phase, message, kind,  # type: ignore[arg-type]
                          list(self.attempts), list(self.metrics), list(self.guide),
                          dict(self.came_up))


class Recorder:
    """A plugin on the controller: every test's reports, written at the end of the session
    (under xdist the workers' reports arrive here, with their attributes)."""

    def __init__(self, path: Path, label: str) -> None:
        self.path, self.label = path, label
        self.started = time.time()
        self.tests: dict[str, _Record] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        r = self.tests.setdefault(report.nodeid, _Record())
        r.duration += report.duration
        if report.failed and r.failure is None:
            outcome = getattr(report, "lab_outcome", "")
            if outcome not in ("fail", "error"):
                outcome = "fail" if report.when == "call" else "error"
            crash = getattr(report.longrepr, "reprcrash", None)
            text = crash.message if crash is not None else str(report.longrepr)
            r.failure = (outcome, report.when,
                         getattr(report, "lab_error_kind", "") if outcome == "error" else "",
                         text.strip().split("\n")[0][:500])
        if report.when == "call" or (report.when == "setup" and report.skipped):
            r.ran = "pass" if report.passed else "skip"
        if report.when == "teardown":
            r.metrics = metrics_of(list(report.user_properties))
            r.guide = guide_of(list(report.user_properties))
            r.came_up = came_up_of(list(report.user_properties))
        attempts = getattr(report, "lab_attempts", None)
        if attempts:
            r.attempts = [str(a) for a in attempts]

    def results(self, config: pytest.Config) -> Results:
        run = RunInfo(self.label, self.started, time.time() - self.started,
                      [str(a) for a in config.invocation_params.args])
        return Results(run, run_versions(config).to_json(),
                       [r.result(nodeid) for nodeid, r in self.tests.items()])

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.results(session.config).write(self.path)
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"labfixtures: results written to {path}")
