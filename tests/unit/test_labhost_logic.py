"""Naming, lab-id validation and the ledger's order (pure logic, no root needed)."""

import os
import signal

import pytest

from labfixtures.errors import LabError
from labfixtures.lab import labhost
from labfixtures.lab.labhost import Ledger


def test_worker_id(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert labhost.worker_id() == "w3"
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert labhost.worker_id() == "m"


def test_run_id_is_shared_by_xdist_workers(monkeypatch):
    monkeypatch.delenv("LABFIXTURES_RUN_ID", raising=False)
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "9f3c2a77d1e04b6b")
    assert labhost.run_id() == "9f3c2a"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert labhost.default_labid() == "lf-9f3c2a-w1"


@pytest.mark.parametrize("bad", ["sw0", "lf-", "lf-a b", "lf-" + "x" * 50, "lf-a/b"])
def test_bad_lab_ids_are_refused(bad):
    with pytest.raises(LabError) as e:
        labhost.check_labid(bad)
    assert e.value.remedy


def test_pytest_labid_pattern_matches_hosts_of_the_lab():
    m = labhost._PYTEST_LABID.match("lf-9f3c2a-w1-my-host")
    assert m and m.group(1) == "lf-9f3c2a-w1"
    assert labhost._PYTEST_LABID.match("lf-mn-1234") is None


def test_ledger_undoes_in_reverse_order():
    done = []
    ledger = Ledger()
    for i in range(3):
        ledger.push(f"step {i}", lambda i=i: done.append(i))
    ledger.close()
    assert done == [2, 1, 0]


def test_ledger_runs_every_undo_and_reports_all_failures():
    done = []
    ledger = Ledger("lab-x")

    def boom():
        raise RuntimeError("device busy")

    ledger.push("first", lambda: done.append("first"))
    ledger.push("broken", boom)
    ledger.push("last", lambda: done.append("last"))
    with pytest.raises(LabError, match="broken: device busy") as e:
        ledger.close()
    assert done == ["last", "first"]
    assert "labctl clean" in e.value.remedy


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_undo_waits_for_its_end(sig):
    """Ctrl-C or SIGTERM (a second one, while a run is already stopping) must not leave
    half a lab: both are held until the last undo, then raised again."""
    done = []
    ledger = Ledger()
    ledger.push("first", lambda: done.append("first"))
    ledger.push("signalled", lambda: (os.kill(os.getpid(), sig), done.append("signalled")))
    old = signal.signal(signal.SIGTERM, _interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            ledger.close()
    finally:
        signal.signal(signal.SIGTERM, old)
    assert done == ["signalled", "first"]


def _interrupted(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def test_closed_ledger_refuses_new_entries():
    ledger = Ledger()
    ledger.close()
    with pytest.raises(LabError, match="already torn down"):
        ledger.push("late", lambda: None)


def test_second_lab_of_a_worker_gets_a_dotted_suffix(monkeypatch, tmp_path):
    monkeypatch.setenv("LABFIXTURES_RUN_ID", "abcdef")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert labhost.default_labid(tmp_path) == "lf-abcdef-m"
    (tmp_path / "lf-abcdef-m").mkdir()
    assert labhost.default_labid(tmp_path) == "lf-abcdef-m.2"
    m = labhost._PYTEST_LABID.match("lf-abcdef-m.2-h1")
    assert m and m.group(1) == "lf-abcdef-m.2"
