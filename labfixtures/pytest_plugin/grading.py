"""Grading in plain pytest: points, prerequisites, hidden checks, feedback.

    @pytest.mark.points(2)
    def test_gateway(table1, probe):
        '''vm0's default route goes via 203.0.113.129
        fr: la route par défaut de vm0 passe par 203.0.113.129'''
        probe.default_route(table1.vm, via="203.0.113.129")

    @pytest.mark.after("test_gateway")
    @pytest.mark.hidden
    def test_router(table1, probe): ...

- `@pytest.mark.points(N)`: the check's weight (default 1);
- `@pytest.mark.after("test_x", ...)`: if test_x did not pass, this check is "not checked:
  needs <title of test_x>", scores 0 and is not a second mistake;
- `@pytest.mark.hidden`: left out of the student's feedback (Gradescope `hidden`) until
  `--reveal`;
- the docstring's first line is the check's title, a `fr:` line its French title;
- fixtures: `student_lab` (the target of `--lab-grade-target`, built for the module),
  `probe` (a `Prober`: probes that record evidence and fail with a finding), `credit`
  (`credit(ok, total)`: a share of the points if the check then fails).

`--lab-grade-out DIR` writes grade.json, feedback.md/.html (`--lab-lang fr|en`),
results.json and evidence.json there. A check that cannot run (its fixture failed, the
target could not be built) makes the student `not-gradable`, never a silent 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from labfixtures.errors import LabError
from labfixtures.grading import bundles, outputs, untrusted, variants
from labfixtures.grading.evidence import state_of
from labfixtures.grading.feedback import points as fmt_points
from labfixtures.grading.markers import (
    MARKERS,
    check_after,
    check_points,
    lab_title,
    order,
    spec_of,
    usage_error,
)
from labfixtures.grading.messages import LANGUAGES, module_messages
from labfixtures.grading.model import (
    ERROR,
    FAILED,
    GRADED,
    NOT_CHECKED,
    NOT_GRADABLE,
    PARTIAL,
    PASSED,
    CheckFailed,
    CheckResult,
    CheckSpec,
    Finding,
    Grade,
    score_of,
)
from labfixtures.grading.probes import Prober
from labfixtures.lab.build import BuiltLab, build
from labfixtures.lab.lab import Lab
from labfixtures.lab.labfile import load, parse
from labfixtures.lab.labspec import LabFile
from labfixtures.report import drawing

PROP = "labfixtures_grading"  # the user_properties entry a report carries to the controller


@dataclass
class _State:
    """This process's grading state (config.stash)."""

    outcomes: dict[str, str] = field(default_factory=dict)  # test name -> outcome
    results: list[CheckResult] = field(default_factory=list)  # on the controller
    specs: dict[str, CheckSpec] = field(default_factory=dict)  # nodeid -> spec
    state: dict[str, Any] = field(default_factory=dict)
    pending_state: dict[str, Any] | None = None
    highlight: set[str] = field(default_factory=set)  # ports of failed visible checks
    drawing: str | None = None  # the lab drawn, to send to the controller
    messages: dict[str, dict[str, str]] = field(default_factory=dict)
    sent_modules: set[str] = field(default_factory=set)
    lab: str = ""
    started: float = field(default_factory=time.time)
    interrupted: str = ""


@dataclass
class _Progress:
    """One check while it runs (item.stash)."""

    spec: CheckSpec
    needs: tuple[str, ...] = ()
    outcome: str = ""
    finding: Finding | None = None
    error: str = ""
    share: float | None = None
    prober: Prober = field(default_factory=Prober)
    started: float = field(default_factory=time.monotonic)


STATE = pytest.StashKey[_State]()
PROGRESS = pytest.StashKey[_Progress]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("labfixtures-grading", "grading student labs (labfixtures)")
    g.addoption("--lab-grade-out", metavar="DIR", default=None,
                help="write the grade there: grade.json, feedback.md, feedback.html, "
                     "results.json (Gradescope), evidence.json")
    g.addoption("--lab-grade-target", metavar="FILE", default=None,
                help="what `student_lab` grades: a student's lab file (.yaml), or "
                     "checkpoint bundle (.tar, .tar.gz) restored into the grading "
                     "module's REFERENCE lab")
    g.addoption("--lab-grade-student", metavar="ID", default="student",
                help="the student's id in the reports (default: student)")
    g.addoption("--lab-grade-name", metavar="NAME", default="",
                help="the student's name in the reports")
    g.addoption("--lab-grade-seed", metavar="SEED", default=None,
                help="the seed of the student's variant (the `student` fixture, the "
                     "module's VARIANTS); default: the student's id")
    g.addoption("--lab-lang", choices=LANGUAGES, default="en",
                help="the language of the feedback: en or fr (default en)")
    g.addoption("--reveal", action="store_true",
                help="show the hidden checks in the feedback and results.json")


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    config.stash[STATE] = _State()
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Collector(config), "labfixtures-grading-collector")


# -- markers -------------------------------------------------------------------------------

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    by_module: dict[str, set[str]] = {}
    for item in items:
        by_module.setdefault(item.nodeid.split("::")[0], set()).add(
            getattr(item, "originalname", None) or item.name)
    for item in items:
        known = by_module[item.nodeid.split("::")[0]]
        for m in item.iter_markers("points"):
            wrong = check_points(m)
            if wrong:
                raise usage_error(item, m, wrong, "write @pytest.mark.points(2)")
        for m in item.iter_markers("after"):
            wrong = check_after(m, known)
            if wrong:
                raise usage_error(item, m, wrong, 'write @pytest.mark.after("test_name", ...)')
        for m in item.iter_markers("hidden"):
            if m.args or m.kwargs:
                raise usage_error(item, m, "it takes no arguments", "write @pytest.mark.hidden")
        item.stash[PROGRESS] = _Progress(spec_of(item))
    items[:] = order(items)


# -- running a check -----------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    prog = item.stash.get(PROGRESS, None)
    if prog is None:
        return
    prog.started = time.monotonic()
    outcomes = item.config.stash[STATE].outcomes
    needs = tuple(n for n in prog.spec.after if outcomes.get(n, PASSED) != PASSED)
    if needs:
        prog.needs = needs
        pytest.skip(f"not checked: needs {', '.join(needs)}")


@pytest.fixture
def probe(request: pytest.FixtureRequest) -> Prober:
    """Probes that record what they probed (evidence.json) and fail with a finding the
    feedback renders in the student's language: `probe.default_route(vm, via=...)`,
    `probe.port_vlan(switch, "tap2", 2)`, `probe.addresses(vm, [...])` (partial credit),
    `probe.reachable(vm, addr)`, `probe.ssh(...)`... (labfixtures.grading.probes)."""
    prog = request.node.stash.get(PROGRESS, None)
    return prog.prober if prog is not None else Prober()


@pytest.fixture
def credit(request: pytest.FixtureRequest) -> Callable[[float, float], None]:
    """`credit(ok, total)`: if the check then fails, it still earns ok/total of its
    points (partial credit), e.g. 2 of the 3 addresses it checks are right."""

    def give(ok: float, total: float = 1.0) -> None:
        if total <= 0 or ok < 0:
            raise ValueError(f"credit({ok}, {total}): 0 <= ok <= total and total > 0")
        prog = request.node.stash.get(PROGRESS, None)
        if prog is not None:
            prog.share = min(1.0, ok / total)

    return give


@pytest.fixture(scope="module")
def student_lab(lab_host: Lab, request: pytest.FixtureRequest) -> Iterator[BuiltLab]:
    """The student's lab named by `--lab-grade-target`, for the whole module: a lab file
    (built, booted, reachable), or a checkpoint bundle (.tar, .tar.gz: imported into a
    private store, its VM restored, confined, into the network of the module's
    `REFERENCE` lab file). The state it is in is recorded (evidence.json) before it is
    torn down. If it cannot be built, restored or reached the student is not-gradable.
    Without the option: the module's `REFERENCE` lab file (the teacher's solution), a path
    relative to the grading module."""
    module_dir = Path(str(request.path)).parent
    reference = getattr(request.module, "REFERENCE", None)
    ref_path = module_dir / reference if reference else None
    target = request.config.getoption("--lab-grade-target") or ref_path
    if not target:
        pytest.fail("no target to grade: give --lab-grade-target STUDENT.yaml (or set "
                    "REFERENCE = 'solution.yaml' in the grading module)", pytrace=False)
    path = Path(target)
    with lab_host.scope(f"grading {path.stem}") as scoped:
        try:
            if bundles.is_bundle(path):
                if ref_path is None:
                    raise LabError("a bundle is restored into the grading file's lab, and "
                                   "this grading file has none",
                                   "set REFERENCE = 'lab.yaml' in the grading module")
                built = bundles.restore(path, _reference(request, ref_path), scoped,
                                        scoped.rundir / "submitted-checkpoints")
            elif path == ref_path:
                built = build(_reference(request, path), scoped, make_vm=_vms(request, scoped))
            else:
                spec = load(path)
                untrusted.check(spec, untrusted.Limits.of(getattr(request.module, "LIMITS",
                                                                   None)))
                built = build(spec, scoped, make_vm=_vms(request, scoped))
        except LabError as e:
            pytest.fail(f"{e.problem}" + (f" ({e.remedy})" if e.remedy else ""),
                        pytrace=False)
        try:
            yield built
        finally:
            st = request.config.stash[STATE]
            st.pending_state = state_of(scoped, built.vms, built.hosts)
            st.drawing = _drawing(scoped, st.highlight)


def _vms(request: pytest.FixtureRequest, lab: Lab) -> Callable[..., Any]:
    """How a student's VMs come up: as `booted_vm` brings them, from the automatic
    checkpoint of a VM just booted with the same settings (image, NICs, addresses, memory,
    QEMU) when one exists, else booted and checkpointed. Most of a class hands in the same
    VM settings: each student after the first has it in 0.5 s instead of a 2.7 s boot,
    in the very state a boot gives. Nothing of a student's run is in that state: it is
    saved as the boot ends, before any check; `--lab-no-checkpoints` boots every VM."""
    booted_vm = request.getfixturevalue("booted_vm")
    return lambda name, **kw: booted_vm(lab, name, **kw)


@pytest.fixture(scope="module")
def student(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The student's variant: the grading module's VARIANTS drawn from the roster's seed
    (`--lab-grade-seed`, default the student's id), e.g. {"vlan": 7, "tap": 12}."""
    return _variant(request)


def _variant(request: pytest.FixtureRequest) -> dict[str, Any]:
    config = request.config
    seed = config.getoption("--lab-grade-seed") or config.getoption("--lab-grade-student")
    return variants.choose(seed, getattr(request.module, "VARIANTS", {}))


def _reference(request: pytest.FixtureRequest, path: Path) -> LabFile:
    """The REFERENCE lab file, filled in with the student's variant if there are VARIANTS."""
    if not getattr(request.module, "VARIANTS", None):
        return load(path)
    text = variants.fill(path.read_text(), _variant(request), str(path))
    return parse(yaml.safe_load(text), str(path))


def _drawing(lab: Lab, highlight: set[str]) -> str:
    """The lab as it is, drawn, the ports of failed (visible) checks in red; "" if it
    cannot be (no Graphviz): the feedback goes without it."""
    try:
        return drawing.inline_svg(drawing.snapshot(lab), highlight=highlight)
    except (LabError, OSError):
        return ""


def record_state(config: pytest.Config, state: dict[str, Any]) -> None:
    """For a grading file's own target fixture: the state to keep in evidence.json."""
    config.stash[STATE].pending_state = state


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    prog = item.stash.get(PROGRESS, None)
    if prog is None:
        return
    if rep.when in ("setup", "call") and not prog.outcome:
        _phase(prog, rep, call)
    if rep.when != "teardown":
        return
    if not prog.outcome:
        prog.outcome = PASSED
    share = prog.share or 0.0
    if prog.outcome == FAILED and share > 0:
        prog.outcome = PARTIAL
    result = CheckResult(prog.spec, prog.outcome,
                         score_of(prog.spec.points, prog.outcome, share), prog.finding,
                         prog.needs, prog.error, time.monotonic() - prog.started,
                         prog.prober.records)
    st = item.config.stash[STATE]
    name = getattr(item, "originalname", None) or item.name
    if st.outcomes.get(name, PASSED) == PASSED:  # a parametrized check: its worst case
        st.outcomes[name] = result.outcome
    payload: dict[str, Any] = {"check": result.to_json()}
    module = getattr(item, "module", None)
    mname = getattr(module, "__name__", "")
    if module is not None and mname not in st.sent_modules:
        st.sent_modules.add(mname)
        payload["messages"] = module_messages(module)
        payload["lab"] = lab_title(module)
    if result.finding and result.finding.probe and not prog.spec.hidden:
        port = result.finding.probe.params.get("port")
        if isinstance(port, str):
            st.highlight.add(port)
    if st.pending_state is not None:
        payload["state"], st.pending_state = st.pending_state, None
    if st.drawing is not None:
        payload["drawing"], st.drawing = st.drawing, None
    rep.user_properties.append((PROP, payload))


def _phase(prog: _Progress, rep: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    if rep.passed:
        return
    if prog.needs:
        prog.outcome = NOT_CHECKED
        return
    exc = call.excinfo.value if call.excinfo is not None else None
    if rep.skipped:
        prog.outcome, prog.error = ERROR, f"skipped: {_skip_reason(rep)}"
    elif rep.when == "call" and isinstance(exc, CheckFailed):
        prog.outcome, prog.finding = FAILED, exc.finding
        if exc.share and prog.share is None:
            prog.share = exc.share
    elif rep.when == "call" and isinstance(exc, AssertionError | pytest.fail.Exception):
        text = str(exc).strip() or (call.excinfo.exconly() if call.excinfo else "")
        prog.outcome, prog.finding = FAILED, Finding(details=text)
    else:
        if isinstance(exc, LabError):
            text = exc.problem + (f" ({exc.remedy})" if exc.remedy else "")
        elif isinstance(exc, pytest.fail.Exception):
            text = str(exc.msg or exc)
        elif exc is not None:
            text = f"{type(exc).__name__}: {exc}"
        else:
            text = rep.longreprtext.strip().splitlines()[-1] if rep.longreprtext else "?"
        prog.outcome, prog.error = ERROR, text


def _skip_reason(rep: pytest.TestReport) -> str:
    lr = rep.longrepr
    return str(lr[2]) if isinstance(lr, tuple) and len(lr) == 3 else str(lr)


# -- the grade (on the controller) ---------------------------------------------------------

class _Collector:
    """On the controller (the only process under xdist that sees every report): each
    check's result, the module's messages and title, the state seen."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            collect(self.config.stash[STATE], report)


def collect(st: _State, report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key != PROP or not isinstance(value, dict):
            continue
        payload: dict[str, Any] = value
        st.results.append(CheckResult.from_json(payload["check"]))
        for lang, entries in payload.get("messages", {}).items():
            st.messages.setdefault(lang, {}).update(entries)
        if payload.get("lab") and not st.lab:
            st.lab = payload["lab"]
        if "state" in payload:
            st.state.update(payload["state"])
        if payload.get("drawing"):
            st.drawing = payload["drawing"]


def grade_of(config: pytest.Config, exitstatus: int) -> Grade:
    """The grade from the checks' results; not-gradable if a check could not run or the
    run was stopped (Ctrl-C, SIGTERM, an internal error)."""
    st = config.stash[STATE]
    g = Grade(student=config.getoption("--lab-grade-student"),
              name=config.getoption("--lab-grade-name"),
              target=config.getoption("--lab-grade-target") or "",
              checks=list(st.results), state=st.state,
              grading_file=",".join(str(a) for a in config.args), started=st.started,
              finished=time.time(), lab=st.lab, messages=st.messages,
              drawing=st.drawing or "")
    errors = [c for c in g.checks if c.outcome == ERROR]
    if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
        g.status, g.reason = NOT_GRADABLE, "the grading run was stopped before its end"
    elif not g.checks:
        g.status, g.reason = NOT_GRADABLE, "the grading file has no checks"
    elif errors:
        g.status, g.reason = NOT_GRADABLE, errors[0].error
    else:
        g.status = GRADED
    return g


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or STATE not in config.stash:
        return
    out = config.getoption("--lab-grade-out")
    if not out:
        return
    g = grade_of(config, int(exitstatus))
    outputs.write(g, Path(out), config.getoption("--lab-lang"),
                  config.getoption("--reveal"))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config
                            ) -> None:
    st = config.stash.get(STATE, None)
    if st is None or not st.results or not config.getoption("--lab-grade-out"):
        return
    g = grade_of(config, exitstatus)
    line = (f"labfixtures grade: {fmt_points(g.score)} / {fmt_points(g.max_score)}"
            if g.status == GRADED else f"labfixtures grade: not-gradable ({g.reason})")
    terminalreporter.write_line(f"{line} -> {config.getoption('--lab-grade-out')}")

