"""regress.compare on results made by hand (pure logic: no lab), and the results file's
reader and writer."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from labfixtures.regress import compare as cmp
from labfixtures.regress import guide
from labfixtures.regress.guide import GuideStep
from labfixtures.regress.results import (
    Metric,
    Results,
    ResultsError,
    RunInfo,
    TestResult,
    read_many,
)
from labfixtures.regress.versions import QemuVersion, Versions


def run(label: str, *tests: TestResult, qemu: str = "7.2.19") -> Results:
    v = Versions(host_kernel="6.1.0", qemu=QemuVersion("/usr/bin/qemu-system-x86_64", qemu))
    return Results(RunInfo(label=label), v.to_json(), list(tests))


def t(nodeid: str, outcome: str, *attempts: str, metrics: list[Metric] | None = None,
      message: str = "", error_kind: str = "") -> TestResult:
    return TestResult(nodeid, outcome, attempts=list(attempts), metrics=metrics or [],  # type: ignore[arg-type]
                      message=message, error_kind=error_kind)


BASE = run("base", t("a::ok", "pass"), t("a::breaks", "pass"), t("a::mended", "fail"),
           t("a::broken", "fail"), t("a::gone", "pass"), t("a::shaky", "pass"))
NEW = run("new", t("a::ok", "pass"), t("a::breaks", "fail", message="assert 0 == 1"),
          t("a::mended", "pass"), t("a::broken", "fail"), t("a::fresh", "pass"),
          t("a::shaky", "fail", "fail", "pass", "pass"), qemu="7.2.15")


def test_each_category_from_base_to_new() -> None:
    c = cmp.compare(BASE, NEW)
    assert c.newly_failing == ["a::breaks"]
    assert c.fixed == ["a::mended"]
    assert c.still_failing == ["a::broken"]
    assert c.new_tests == ["a::fresh"]
    assert c.removed == ["a::gone"]
    assert c.flaky == ["a::shaky"]
    assert c.unchanged == ["a::ok"]
    assert c.exit_status == cmp.REGRESSION
    assert ("lab_qemu_version", "7.2.19", "7.2.15") in c.version_changes


def test_flaky_test_reported_with_its_rate_not_as_a_regression() -> None:
    # failed one time in three (a rerun after a failure, then one more pass)
    new = run("new", t("a::ok", "pass"), t("a::shaky", "fail", "fail", "pass", "pass"))
    base = run("base", t("a::ok", "pass"), t("a::shaky", "pass"))
    c = cmp.compare(base, new)
    assert c.flaky == ["a::shaky"] and not c.newly_failing
    st = c.new_status["a::shaky"]
    assert (st.fails, st.passes) == (1, 2) and st.fail_rate == pytest.approx(1 / 3)
    assert c.exit_status == cmp.NO_REGRESSION
    md = cmp.to_markdown(c)
    assert "flaky: failed 1 of 3 (33%)" in md


def test_flakiness_across_repeated_runs(tmp_path) -> None:
    for i, outcome in enumerate(["pass", "fail", "pass"]):
        run(f"r{i}", t("a::x", outcome)).write(tmp_path / "new" / f"{i}.json")
    new = read_many([tmp_path / "new"])
    c = cmp.compare(run("base", t("a::x", "pass")), new)
    assert c.flaky == ["a::x"] and c.exit_status == 0


def test_a_run_compared_with_itself_exits_0() -> None:
    c = cmp.compare(NEW, NEW)
    assert c.exit_status == cmp.NO_REGRESSION
    assert not c.newly_failing and not c.metrics and not c.version_changes


def test_lab_errors_are_not_test_failures_and_mean_could_not_compare() -> None:
    new = run("new", t("a::ok", "pass"), t("a::vm", "error", error_kind="QemuLaunchError",
                                            message="QEMU exited with status 1"))
    base = run("base", t("a::ok", "pass"), t("a::vm", "pass"))
    c = cmp.compare(base, new)
    assert c.lab_errors == ["a::vm"] and not c.newly_failing
    assert c.exit_status == cmp.CANNOT_COMPARE
    junit = ET.fromstring(cmp.to_junit(c))
    (case,) = [e for e in junit.iter("testcase") if e.get("name") == "vm"]
    assert case.find("error") is not None and case.find("failure") is None
    assert junit.get("errors") == "1" and junit.get("failures") == "0"


def test_lab_errors_already_in_base_do_not_stop_the_comparison() -> None:
    both = run("r", t("a::ok", "pass"), t("a::vm", "error", error_kind="ImageError"))
    c = cmp.compare(both, both)
    assert c.lab_errors == ["a::vm"] and c.exit_status == cmp.NO_REGRESSION


def test_lab_errors_of_new_tests_do_not_stop_the_comparison() -> None:
    base = run("b", t("a::ok", "pass"))
    new = run("n", t("a::ok", "pass"), t("a::added", "error", error_kind="ImageError"))
    c = cmp.compare(base, new)
    assert c.lab_errors == ["a::added"] and c.exit_status == cmp.NO_REGRESSION


def test_regression_wins_over_lab_errors_and_no_common_test_cannot_compare() -> None:
    new = run("new", t("a::ok", "fail"), t("a::vm", "error"))
    base = run("base", t("a::ok", "pass"), t("a::vm", "pass"))
    assert cmp.compare(base, new).exit_status == cmp.REGRESSION
    assert cmp.compare(run("b", t("x::1", "pass")), run("n", t("y::1", "pass"))
                       ).exit_status == cmp.CANNOT_COMPARE


def boot(*values: float) -> list[Metric]:
    return [Metric("boot_to_ssh", v, "s") for v in values]


def test_metric_beyond_the_measured_noise_is_a_regression() -> None:
    base = run("b", t("a::x", "pass", metrics=boot(2.30, 2.32, 2.28, 2.31)))
    slower = run("n", t("a::x", "pass", metrics=boot(2.60, 2.62, 2.58, 2.61)))
    c = cmp.compare(base, slower)
    (m,) = c.metric_regressions
    assert m.measured and m.verdict == "worse" and m.relative == pytest.approx(0.13, abs=0.01)
    assert c.exit_status == cmp.REGRESSION
    assert "boot_to_ssh: 2.302 -> 2.603 s (+13%, worse" in cmp.to_markdown(c)
    faster = run("n", t("a::x", "pass", metrics=boot(2.00, 2.02, 1.98, 2.01)))
    c = cmp.compare(base, faster)
    assert [m.verdict for m in c.metrics] == ["better"] and c.exit_status == 0


def test_the_same_difference_within_a_larger_noise_is_not_reported() -> None:
    # +13% again, but the runs themselves vary by ±30%
    base = run("b", t("a::x", "pass", metrics=boot(1.6, 3.0, 2.0, 2.6)))
    new = run("n", t("a::x", "pass", metrics=boot(1.9, 3.3, 2.3, 2.9)))
    assert cmp.compare(base, new).metrics == []


def test_one_sample_per_side_is_shown_but_not_a_regression() -> None:
    base = run("b", t("a::x", "pass", metrics=boot(2.0)))
    new = run("n", t("a::x", "pass", metrics=boot(3.0)))
    c = cmp.compare(base, new)
    (m,) = c.metrics
    assert not m.measured and m.verdict == "worse" and not m.regression
    assert c.exit_status == 0
    assert cmp.compare(base, run("n", t("a::x", "pass", metrics=boot(2.2)))).metrics == []


def test_throughput_is_better_higher() -> None:
    mb = [Metric("tcp", v, "Mbit/s") for v in (900, 910, 905)]
    less = [Metric("tcp", v, "Mbit/s") for v in (600, 610, 605)]
    c = cmp.compare(run("b", t("a::x", "pass", metrics=mb)),
                    run("n", t("a::x", "pass", metrics=less)))
    assert [m.verdict for m in c.metrics] == ["worse"] and c.exit_status == 1


def test_junit_names_the_newly_failing_test() -> None:
    junit = ET.fromstring(cmp.to_junit(cmp.compare(BASE, NEW)))
    failed = [e.get("name") for e in junit.iter("testcase") if e.find("failure") is not None]
    assert failed == ["breaks"]
    props = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert props["verdict"] == "regression"
    assert props["lab_qemu_version"] == "7.2.19 -> 7.2.15"


def test_results_file_round_trip_and_refusals(tmp_path) -> None:
    path = NEW.write(tmp_path / "r.json")
    back = Results.read(path)
    assert back.tests == NEW.tests and back.versions == NEW.versions
    data = json.loads(path.read_text())
    assert data["format"] == "labfixtures-results" and data["version"] == 1
    data["version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="format version 99"):
        Results.read(path)
    path.write_text("{}")
    with pytest.raises(ResultsError, match="not a labfixtures results file"):
        Results.read(path)
    with pytest.raises(ResultsError, match="cannot be read"):
        Results.read(tmp_path / "missing.json")


def step(verdict: str, version: str) -> GuideStep:
    return GuideStep("A.3", "qemu-img create -b M -f qcow2 D", verdict, "refused" if
                     verdict == "refused" else "", "add -F qcow2", "qemu-img", version)


def test_a_guide_step_that_stops_working_is_a_regression_with_its_fix() -> None:
    base = run("b", TestResult("g::a3", "pass", guide=[step("works", "5.2.0")]))
    new = run("n", TestResult("g::a3", "pass", guide=[step("refused", "7.2.22")]))
    c = cmp.compare(base, new)
    (g,) = c.guide_broken
    assert g.kind == "newly broken" and c.exit_status == cmp.REGRESSION
    md = cmp.to_markdown(c)
    assert ("newly broken: the guide's step A.3 (`qemu-img create -b M -f qcow2 D`) breaks "
            "on qemu-img 7.2.22: refused — fix: add -F qcow2 (it worked on qemu-img 5.2.0)"
            ) in md
    assert cmp.compare(new, new).exit_status == cmp.NO_REGRESSION  # still broken: known
    assert [x.kind for x in cmp.compare(new, base).guide_steps] == ["fixed"]
    differs = run("n", TestResult("g::a3", "pass", guide=[step("differs", "7.2.22")]))
    assert [x.kind for x in cmp.compare(base, differs).guide_broken] == ["newly different"]
    assert not differs.tests[0].guide[0].broken


def test_a_much_slower_test_is_shown_without_a_verdict() -> None:
    base = run("b", TestResult("a::x", "pass", duration=0.5),
               TestResult("a::y", "pass", duration=0.5))
    new = run("n", TestResult("a::x", "pass", duration=35.0),
              TestResult("a::y", "pass", duration=1.5))  # 3x but only 1 s more
    c = cmp.compare(base, new)
    assert c.slower == [("a::x", 0.5, 35.0)] and c.exit_status == cmp.NO_REGRESSION
    assert "- `a::x`: 0.5 s -> 35.0 s" in cmp.to_markdown(c)


@pytest.mark.parametrize("said, number", [
    ("ovs-vsctl (Open vSwitch) 3.1.0\nDB Schema 8.3.1", "3.1.0"),
    ("OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.17 1 Jul 2025", "9.2p1"),
    ("ip utility, iproute2-6.1.0, libbpf 1.1.0", "6.1.0"),
    ("ps from procps-ng 4.0.2", "4.0.2"),
    ("GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)", "5.2.15"),
    ("qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u17)\nCopyright", "7.2.22"),
    ("parted (GNU parted) 3.5", "3.5"),
    ("\n\nsomething without a number", "something without a number"),
    ("", "unknown"),
])
def test_a_tools_version_is_its_number_not_its_banner(said: str, number: str) -> None:
    assert guide.version_in(said) == number
