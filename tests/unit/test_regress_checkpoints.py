"""Pure parts of bisecting from checkpoints and of the cached version probes."""

from __future__ import annotations

from pathlib import Path

from labfixtures.pytest_plugin.regress import came_up_of
from labfixtures.regress.bisect import Step, steps_table
from labfixtures.regress.results import TestResult
from labfixtures.regress.versions import UNKNOWN, cached_probe


def test_a_step_says_how_its_vms_came_up() -> None:
    assert Step("host", "pass", 9.0, {"vm0": "booted"}).start == "cold boot"
    assert Step("7.2.18", "pass", 3.0, {"vm0": "restored"}).start == "restored"
    assert Step("x", "pass", 3.0, {"vm0": "restored", "vm1": "booted"}).start == "mixed"
    assert Step("x", "pass", 1.0).start == "no VM"
    s = Step("7.2.18", "pass", 35.2, {"vm0": "booted: restore failed: no SSH"})
    assert s.describe() == "7.2.18: pass in 35.2 s, cold boot (vm0: booted: restore failed: no SSH)"
    assert "| 1 | 7.2.18 | pass | cold boot | 35.2 s |" in steps_table([s])


def test_came_up_keeps_the_first_attempt_and_round_trips() -> None:
    props: list[tuple[str, object]] = [("lab_came_up:vm0", "restored"), ("x", 1),
                                       ("lab_came_up:vm0", "booted")]
    assert came_up_of(props) == {"vm0": "restored"}
    t = TestResult("t.py::a", "pass", came_up={"vm0": "restored"})
    assert TestResult.from_json(t.to_json()).came_up == {"vm0": "restored"}
    assert TestResult.from_json({"nodeid": "t.py::a", "outcome": "pass"}).came_up == {}


def test_a_probe_is_asked_again_only_when_its_file_changes(tmp_path: Path) -> None:
    binary, cache = tmp_path / "qemu", tmp_path / "probes.json"
    binary.write_text("one")
    calls: list[int] = []

    def probe() -> list[str]:
        calls.append(1)
        return ["7.2.22", "pkg"]

    assert cached_probe("qemu", [binary], probe, cache) == ["7.2.22", "pkg"]
    assert cached_probe("qemu", [binary], probe, cache) == ["7.2.22", "pkg"]
    assert len(calls) == 1
    binary.write_text("a rebuilt binary")
    cached_probe("qemu", [binary], probe, cache)
    assert len(calls) == 2
    # an unknown answer is not kept
    assert cached_probe("ovs", [binary], lambda: [UNKNOWN], cache) == [UNKNOWN]
    assert "ovs" not in cache.read_text()
