"""eventually/consistently (pure logic, real clock with short timeouts)."""

import pytest

from assertions import consistently, eventually


def test_eventually_returns_once_the_check_passes():
    calls = []

    def check():
        calls.append(1)
        assert len(calls) >= 3, "not yet"
        return "done"

    assert eventually(check, timeout=2, interval=0.001) == "done"
    assert len(calls) == 3


def test_eventually_fails_with_the_last_message_and_the_wait():
    def check():
        raise AssertionError("routing table:\n    default via 10.0.2.2")

    with pytest.raises(AssertionError) as e:
        eventually(check, timeout=0.05, interval=0.01, what="default route")
    text = str(e.value)
    assert text.startswith("default route: still failing after 0.05s")
    assert "default via 10.0.2.2" in text


def test_eventually_treats_false_as_not_yet():
    with pytest.raises(AssertionError, match="returned False"):
        eventually(lambda: False, timeout=0.02, interval=0.005)


def test_consistently_fails_as_soon_as_the_check_breaks():
    state = {"n": 0}

    def check():
        state["n"] += 1
        assert state["n"] < 3, "the VLAN 3 host got an answer"

    with pytest.raises(AssertionError, match="(?s)stopped holding.*VLAN 3 host got an answer"):
        consistently(check, duration=5, interval=0.001)


def test_consistently_passes_when_it_holds():
    consistently(lambda: True, duration=0.03, interval=0.01)
