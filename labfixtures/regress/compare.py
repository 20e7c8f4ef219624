"""Two runs compared: what newly fails, what was fixed, what is flaky, what the lab itself
broke, and which metrics moved beyond the noise measured in the runs.

    cmp = compare(Results.read("base.json"), Results.read("new.json"))
    print(to_markdown(cmp)); sys.exit(cmp.exit_status)

Each side may be several runs of the same thing (`results.read_many`): a test then has
several results, and its metrics several samples.

- A test's status on one side: `pass`, `fail`, `flaky` (both passes and failures among its
  attempts, reruns included: its failure rate is kept), `error` (the lab did not work: only
  errors, nothing tested), `skip`.
- Categories, from BASE to NEW: newly failing (pass -> fail), fixed (fail -> pass), still
  failing (fail -> fail), flaky (flaky in NEW, with its rate: never a regression), new tests
  (absent from BASE), removed tests (absent from NEW), lab errors (error in NEW: a QEMU that
  does not start, an image that is not built; not counted as test failures).
- Metrics: the samples of one metric of one test, BASE against NEW. With two samples or
  more on each side, a change is *beyond the noise* when the difference of the means
  exceeds NOISE_FACTOR standard errors (Welch's). With one sample on a side, the noise is
  unknown: a change beyond FALLBACK_RELATIVE of the base is shown, marked unmeasured, and
  does not count as a regression. Whether higher is better comes from the unit.
- The guide's commands (regress.guide): a step that worked in BASE and not in NEW is
  newly broken, a regression like a newly failing test.
- Exit status: 1 if anything regressed (newly failing, a metric worse beyond the noise, a
  guide step newly broken); otherwise 2 if the comparison could not be made (no test in
  common, or lab errors in NEW on tests that BASE ran: those tests were not tested);
  otherwise 0. A run compared with itself exits 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from labfixtures.regress import guide
from labfixtures.regress.results import Results, TestResult
from labfixtures.regress.versions import Versions, differences

NOISE_FACTOR = 3.0
FALLBACK_RELATIVE = 0.25
LOWER_IS_BETTER = {"s", "ms", "us", "µs", "ns", "min", "%", "loss", "retransmits"}
HIGHER_IS_BETTER_SUFFIX = "/s"  # bit/s, Mbit/s, MB/s, ops/s...

NO_REGRESSION, REGRESSION, CANNOT_COMPARE = 0, 1, 2
#: a test's duration is shown when it grew this many times, and by this many seconds
#: (informative: what a timing change means is the metrics' business)
SLOWER_FACTOR, SLOWER_SECONDS = 3.0, 5.0


@dataclass(frozen=True)
class Status:
    """One test on one side: its status over every attempt of every run."""

    status: str  # pass, fail, flaky, error, skip
    passes: int = 0
    fails: int = 0
    errors: int = 0
    message: str = ""
    error_kind: str = ""

    @property
    def fail_rate(self) -> float:
        n = self.passes + self.fails
        return self.fails / n if n else 0.0

    def describe(self) -> str:
        if self.status == "flaky":
            return f"flaky: failed {self.fails} of {self.passes + self.fails} " \
                   f"({self.fail_rate:.0%})"
        return self.status


def status_of(results: Sequence[TestResult]) -> Status:
    attempts = [a for r in results for a in (r.attempts or [r.outcome])]
    passes, fails = attempts.count("pass"), attempts.count("fail")
    errors = attempts.count("error")
    failed = next((r for r in results if r.outcome in ("fail", "error")), None)
    msg = failed.message if failed else ""
    kind = next((r.error_kind for r in results if r.error_kind), "")
    if passes and fails:
        st = "flaky"
    elif fails:
        st = "fail"
    elif passes:
        st = "pass"
    elif errors:
        st = "error"
    else:
        st = "skip"
    return Status(st, passes, fails, errors, msg, kind)


def better(unit: str) -> str:
    """'lower', 'higher' or '' (unknown: a change is shown, never a regression)."""
    if unit in LOWER_IS_BETTER:
        return "lower"
    if unit.endswith(HIGHER_IS_BETTER_SUFFIX):
        return "higher"
    return ""


@dataclass(frozen=True)
class MetricChange:
    nodeid: str
    name: str
    unit: str
    base: tuple[float, ...]
    new: tuple[float, ...]
    measured: bool  # noise measured from repeats on both sides
    threshold: float  # the difference that counts as beyond the noise
    verdict: str  # 'worse', 'better' or 'changed' (unknown direction)

    @property
    def base_mean(self) -> float:
        return statistics.fmean(self.base)

    @property
    def new_mean(self) -> float:
        return statistics.fmean(self.new)

    @property
    def relative(self) -> float:
        return (self.new_mean - self.base_mean) / abs(self.base_mean) if self.base_mean \
            else math.inf

    @property
    def regression(self) -> bool:
        return self.measured and self.verdict == "worse"

    def describe(self) -> str:
        noise = (f"noise ±{self.threshold:.3g} {self.unit} ({NOISE_FACTOR:g} standard "
                 f"errors, {len(self.base)}+{len(self.new)} samples)" if self.measured
                 else f"one sample: noise unknown, shown beyond {FALLBACK_RELATIVE:.0%}")
        return (f"{self.name}: {self.base_mean:.4g} -> {self.new_mean:.4g} {self.unit} "
                f"({self.relative:+.0%}, {self.verdict}; {noise})")


def metric_change(nodeid: str, name: str, unit: str, base: Sequence[float],
                  new: Sequence[float]) -> MetricChange | None:
    """The change of one metric if it is beyond the noise (or, unmeasured, the fallback)."""
    if not base or not new:
        return None
    mb, mn = statistics.fmean(base), statistics.fmean(new)
    measured = len(base) >= 2 and len(new) >= 2
    if measured:
        se = math.sqrt(statistics.variance(base) / len(base)
                       + statistics.variance(new) / len(new))
        threshold = NOISE_FACTOR * se
    else:
        threshold = FALLBACK_RELATIVE * abs(mb)
    if abs(mn - mb) <= threshold or mn == mb:
        return None
    direction = better(unit)
    if not direction:
        verdict = "changed"
    else:
        verdict = "worse" if (mn > mb) == (direction == "lower") else "better"
    return MetricChange(nodeid, name, unit, tuple(base), tuple(new), measured, threshold,
                        verdict)


def _samples(results: Sequence[TestResult]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for r in results:
        for m in r.metrics:
            out.setdefault((m.name, m.unit), []).append(m.value)
    return out


@dataclass
class Comparison:
    base: Results
    new: Results
    base_status: dict[str, Status] = field(default_factory=dict)
    new_status: dict[str, Status] = field(default_factory=dict)
    newly_failing: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    still_failing: list[str] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)
    new_tests: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    lab_errors: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    metrics: list[MetricChange] = field(default_factory=list)
    version_changes: list[tuple[str, str, str]] = field(default_factory=list)
    guide_steps: list[guide.StepChange] = field(default_factory=list)
    slower: list[tuple[str, float, float]] = field(default_factory=list)  # id, base, new

    @property
    def guide_broken(self) -> list[guide.StepChange]:
        """Steps of the guide that worked as shown in BASE and no longer do in NEW."""
        return [g for g in self.guide_steps if g.kind.startswith("newly")]

    @property
    def metric_regressions(self) -> list[MetricChange]:
        return [m for m in self.metrics if m.regression]

    @property
    def new_lab_errors(self) -> list[str]:
        """Lab errors in NEW on tests that BASE ran (passed, failed or flaky there): those
        could not be compared. A new test, or one BASE could not run either, is listed
        but does not stop the comparison."""
        return [i for i in self.lab_errors
                if (b := self.base_status.get(i)) is not None
                and b.status in ("pass", "fail", "flaky")]

    @property
    def comparable(self) -> bool:
        return bool(set(self.base_status) & set(self.new_status))

    @property
    def exit_status(self) -> int:
        if self.newly_failing or self.metric_regressions or self.guide_broken:
            return REGRESSION
        if not self.comparable or self.new_lab_errors:
            return CANNOT_COMPARE
        return NO_REGRESSION

    @property
    def verdict(self) -> str:
        return {REGRESSION: "regression", CANNOT_COMPARE: "could not compare",
                NO_REGRESSION: "no regression"}[self.exit_status]


def compare(base: Results, new: Results) -> Comparison:
    b_tests, n_tests = base.by_nodeid(), new.by_nodeid()
    c = Comparison(base, new,
                   {k: status_of(v) for k, v in b_tests.items()},
                   {k: status_of(v) for k, v in n_tests.items()})
    c.version_changes = differences(Versions.from_json(base.versions),
                                    Versions.from_json(new.versions))
    for nodeid in sorted(n_tests):
        ns = c.new_status[nodeid]
        bs = c.base_status.get(nodeid)
        if ns.status == "error":
            c.lab_errors.append(nodeid)
        elif ns.status == "skip":
            c.skipped.append(nodeid)
        elif ns.status == "flaky":
            c.flaky.append(nodeid)
        elif bs is None or bs.status in ("skip", "error"):
            c.new_tests.append(nodeid)
        elif ns.status == "fail" and bs.status == "pass":
            c.newly_failing.append(nodeid)
        elif ns.status == "fail":
            c.still_failing.append(nodeid)
        elif bs.status == "fail":
            c.fixed.append(nodeid)
        else:
            c.unchanged.append(nodeid)
        if bs is not None:
            bm, nm = _samples(b_tests[nodeid]), _samples(n_tests[nodeid])
            for (name, unit) in sorted(set(bm) & set(nm)):
                ch = metric_change(nodeid, name, unit, bm[(name, unit)], nm[(name, unit)])
                if ch is not None:
                    c.metrics.append(ch)
    c.removed = sorted(set(b_tests) - set(n_tests))
    for nodeid in sorted(set(b_tests) & set(n_tests)):
        b = statistics.fmean(t.duration for t in b_tests[nodeid])
        n = statistics.fmean(t.duration for t in n_tests[nodeid])
        if n > SLOWER_FACTOR * b and n - b > SLOWER_SECONDS:
            c.slower.append((nodeid, b, n))
    c.guide_steps = guide.changes([g for t in base.tests for g in t.guide],
                                  [g for t in new.tests for g in t.guide])
    return c


# -- output ---------------------------------------------------------------------------


def _label(r: Results, default: str) -> str:
    return r.run.label or default


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(c: Comparison, base_name: str = "BASE", new_name: str = "NEW") -> str:
    """A report for a merge request or $GITHUB_STEP_SUMMARY."""
    b, n = _label(c.base, base_name), _label(c.new, new_name)
    out = [f"## labfixtures regress compare: {c.verdict} (exit {c.exit_status})", "",
           f"`{_md(b)}` ({len(c.base_status)} tests) → `{_md(n)}` "
           f"({len(c.new_status)} tests)", ""]
    if c.version_changes:
        out += ["### What changed", "", f"| | {_md(b)} | {_md(n)} |", "|---|---|---|"]
        out += [f"| {k} | {_md(x)} | {_md(y)} |" for k, x, y in c.version_changes]
        out.append("")

    def section(title: str, ids: list[str], detail: bool = True) -> None:
        if not ids:
            return
        out.extend([f"### {title} ({len(ids)})", ""])
        for i in ids:
            st = c.new_status.get(i) or c.base_status[i]
            extra = ""
            if title.startswith(("Flaky", "New")):
                extra = f" — {st.describe()}"
            if detail and st.message and st.status != "pass":
                extra += f" — {_md(st.message)[:300]}"
            if st.error_kind:
                extra += f" ({st.error_kind})"
            out.append(f"- `{_md(i)}`{extra}")
        out.append("")

    section("Newly failing", c.newly_failing)
    if c.metric_regressions:
        out += [f"### Metrics worse beyond the noise ({len(c.metric_regressions)})", ""]
        out += [f"- `{_md(m.nodeid)}` {_md(m.describe())}" for m in c.metric_regressions]
        out.append("")
    steps = [g for g in c.guide_steps if g.kind != "works"]
    if steps:
        out += [f"### The guide's commands ({len(steps)} not as the guide shows)", ""]
        out += [f"- {g.kind}: {_md(g.describe())}" for g in steps]
        out.append("")
    section("Lab errors: the lab did not work, nothing was tested", c.lab_errors)
    section("Flaky: fail only sometimes, not a regression", c.flaky)
    section("Fixed", c.fixed, detail=False)
    section("Still failing", c.still_failing)
    section("New tests", c.new_tests)
    section("Removed tests", c.removed, detail=False)
    others = [m for m in c.metrics if not m.regression]
    if others:
        out += [f"### Other metric changes ({len(others)})", ""]
        out += [f"- `{_md(m.nodeid)}` {_md(m.describe())}" for m in others]
        out.append("")
    if c.slower:
        out += [f"### Much slower tests ({len(c.slower)}): not a verdict, a lead", ""]
        out += [f"- `{_md(i)}`: {b:.1f} s -> {n:.1f} s" for i, b, n in c.slower]
        out.append("")
    out.append(f"{len(c.unchanged)} unchanged, {len(c.skipped)} skipped.")
    return "\n".join(out) + "\n"


def to_junit(c: Comparison) -> str:
    """The comparison as JUnit XML: a newly failing test or a worse metric is a failure, a
    lab error an error, a test still failing is skipped with the reason (known, not new)."""
    suite = ET.Element("testsuite", name="labfixtures regress compare")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="verdict", value=c.verdict)
    for k, x, y in c.version_changes:
        ET.SubElement(props, "property", name=k, value=f"{x} -> {y}")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def case(name: str, kind: str = "", message: str = "", text: str = "") -> None:
        classname, _, short = name.rpartition("::")
        el = ET.SubElement(suite, "testcase", classname=classname or "regress", name=short)
        counts["tests"] += 1
        if kind:
            ET.SubElement(el, kind, message=message).text = text or message
            counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]] \
                += 1

    for i in sorted(c.new_status):
        st, bs = c.new_status[i], c.base_status.get(i)
        if i in c.newly_failing:
            case(i, "failure", f"newly failing (passed in base): {st.message}")
        elif i in c.lab_errors:
            case(i, "error", f"lab error ({st.error_kind or 'setup'}): {st.message}")
        elif i in c.still_failing:
            case(i, "skipped", f"still failing (failed in base too): {st.message}")
        elif i in c.flaky:
            case(i)
            ET.SubElement(suite[-1], "system-out").text = f"{st.describe()}: not a regression"
        elif st.status == "skip":
            case(i, "skipped", "skipped")
        elif st.status == "fail" and (bs is None or bs.status != "pass"):
            case(i, "skipped", f"fails, with no passing base to compare: {st.message}")
        else:
            case(i)
    for m in c.metric_regressions:
        case(f"{m.nodeid}::metric[{m.name}]", "failure", m.describe())
    for g in c.guide_steps:
        if g.kind != "works" and g.kind != "fixed":
            case(f"guide::step {g.new.step}: {g.new.command}",
                 "failure" if g.kind.startswith("newly") else "skipped", g.describe())
    for k, v in counts.items():
        suite.set(k, str(v))
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, "unicode") + "\n"
