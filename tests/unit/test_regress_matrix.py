"""regress.matrix and regress.attribute on results made by hand (pure logic)."""

from __future__ import annotations

import pytest

from labfixtures.errors import LabError
from labfixtures.regress import attribute as attr
from labfixtures.regress import matrix
from labfixtures.regress.bisect import bisect
from labfixtures.regress.matrix import Cell
from labfixtures.regress.results import Results, ResultsError, RunInfo, TestResult
from labfixtures.regress.versions import QemuVersion, Versions

OLD_K, NEW_K = "default", "linux-image-6.1.0-50-amd64"
OLD_Q, NEW_Q = "host", "1:7.2+dfsg-7+deb12u15"


def cell_run(cell: Cell, **outcomes: str) -> Results:
    v = Versions(qemu=QemuVersion(selected="" if cell.qemu == "host" else cell.qemu),
                 guest_kernel="" if cell.kernel == "default" else cell.kernel)
    return Results(RunInfo(label=cell.label(), duration=12.0), v.to_json(),
                   [TestResult(f"s.py::{name}", o) for name, o in outcomes.items()])  # type: ignore[arg-type]


def test_cells_shards_and_arguments() -> None:
    cs = matrix.cells([OLD_K, NEW_K], [OLD_Q, NEW_Q])
    assert len(cs) == 4 and cs[0] == Cell(OLD_K, OLD_Q)
    assert cs[0].pytest_args() == []
    assert Cell(NEW_K, NEW_Q).pytest_args() == ["--lab-guest-kernel", NEW_K,
                                                "--lab-qemu", NEW_Q]
    a, b = matrix.shard(cs, 1, 2), matrix.shard(cs, 2, 2)
    assert sorted(a + b) == sorted(cs) and not set(a) & set(b)
    assert matrix.parse_shard("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "x"):
        with pytest.raises(LabError):
            matrix.parse_shard(bad)
    assert ":" not in Cell(NEW_K, NEW_Q).name and "/" not in Cell(OLD_K, "/opt/q").name


def test_results_folder_round_trip_and_table(tmp_path) -> None:
    for c, o in ((Cell(OLD_K, OLD_Q), "pass"), (Cell(NEW_K, "/opt/qemu-new"), "fail")):
        cell_run(c, boot=o, ping="pass").write(matrix.results_file(tmp_path, c))
    runs = matrix.load(tmp_path)
    assert set(runs) == {Cell(OLD_K, OLD_Q), Cell(NEW_K, "/opt/qemu-new")}  # path kept
    table = matrix.table(runs)
    assert "| `s.py::boot` | pass | FAIL |" in table
    assert "| wall time | 12 s | 12 s |" in table
    with pytest.raises(ResultsError):
        matrix.load(tmp_path / "empty")


def four(boot: tuple[str, str, str, str]) -> dict[Cell, Results]:
    """BOOT: the test's outcome in old, new, new-QEMU-only, new-kernel-only."""
    old, new = Cell(OLD_K, OLD_Q), Cell(NEW_K, NEW_Q)
    q, k = attr.crossed(old, new)
    return {c: cell_run(c, boot=o, ping="pass") for c, o in zip((old, new, q, k), boot,
                                                                strict=True)}


@pytest.mark.parametrize("outcomes,verdict", [
    (("pass", "fail", "fail", "pass"), "qemu"),
    (("pass", "fail", "pass", "fail"), "kernel"),
    (("pass", "fail", "fail", "fail"), "either"),
    (("pass", "fail", "pass", "pass"), "both"),
    (("pass", "fail", "error", "pass"), "unknown"),
])
def test_attribution_verdicts(outcomes: tuple[str, str, str, str], verdict: str) -> None:
    old, new = Cell(OLD_K, OLD_Q), Cell(NEW_K, NEW_Q)
    (a,) = attr.attribute(old, new, four(outcomes))
    assert (a.nodeid, a.verdict) == ("s.py::boot", verdict)


def test_nothing_to_attribute_without_a_regression_and_missing_cells_refused() -> None:
    old, new = Cell(OLD_K, OLD_Q), Cell(NEW_K, NEW_Q)
    assert attr.attribute(old, new, four(("pass", "pass", "fail", "fail"))) == []
    runs = four(("pass", "fail", "fail", "pass"))
    del runs[Cell(NEW_K, OLD_Q)]
    with pytest.raises(ResultsError, match="no results for these cells"):
        attr.attribute(old, new, runs)
    md = attr.to_markdown(old, new, attr.attribute(old, new, four(("pass", "fail", "fail",
                                                                  "pass"))))
    assert "`s.py::boot`: **qemu** — broken by the QEMU upgrade" in md


def test_bisect_finds_the_first_bad_version_and_skips_untestable_ones() -> None:
    versions = [f"v{i}" for i in range(9)]
    bad_from = 5
    r = bisect(versions, lambda v: int(v[1:]) < bad_from)
    assert (r.first_bad, r.last_good) == ("v5", "v4")
    assert len(r.tried) <= 2 + 3  # both ends, then log2(9) steps
    untestable = {"v4"}
    r = bisect(versions, lambda v: None if v in untestable else int(v[1:]) < bad_from)
    assert r.first_bad is None and r.candidates == ["v3", "v4", "v5"]
    with pytest.raises(LabError, match="does not fail"):
        bisect(versions, lambda v: True)
