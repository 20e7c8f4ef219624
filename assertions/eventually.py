"""Retry a check until a deadline: for state that converges (DAD, ARP, a VM's DHCP).

    eventually(lambda: assert_default_route(vm, via="203.0.113.129"), timeout=10)
    consistently(lambda: assert_unreachable(h3, "203.0.113.129"), duration=1)

A check is a callable that raises AssertionError (or returns False) while the state is not
there yet. On timeout, the last failure is raised with how long we waited, so the student
sees the real table, not "timed out".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _attempt(check: Callable[[], T]) -> tuple[bool, T | None, AssertionError | None]:
    try:
        result = check()
    except AssertionError as e:
        return False, None, e
    if result is False:
        return False, None, None
    return True, result, None


def _check_args(func: str, check: object, timeout: object, interval: object) -> None:
    __tracebackhide__ = True
    from ._types import check_number

    if not callable(check):
        raise TypeError(
            f"{func}(): check must be a function to call again and again, not "
            f"{check!r:.60} (the result of calling it once).\n"
            f"  fix: {func}(lambda: assert_reachable(vm, '203.0.113.129'), ...)")
    check_number(func, "timeout" if func == "eventually" else "duration", timeout, 0, 3600)
    check_number(func, "interval", interval, 0, 60)


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
               what: str = "") -> T:
    """Call CHECK until it passes; return its result. Fail with its last message."""
    __tracebackhide__ = True
    _check_args("eventually", check, timeout, interval)
    deadline = time.monotonic() + timeout
    tries = 0
    while True:
        tries += 1
        ok, result, error = _attempt(check)
        if ok:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            detail = str(error) if error else "the check returned False"
            label = f"{what}: " if what else ""
            raise AssertionError(
                f"{label}still failing after {timeout:g}s ({tries} tries):\n{detail}"
            ) from error
        time.sleep(interval)


def consistently(check: Callable[[], object], duration: float = 1.0,
                 interval: float = 0.1, what: str = "") -> None:
    """CHECK must pass on every try for DURATION seconds (absence that must last)."""
    __tracebackhide__ = True
    _check_args("consistently", check, duration, interval)
    deadline = time.monotonic() + duration
    while True:
        ok, _, error = _attempt(check)
        if not ok:
            label = f"{what}: " if what else ""
            detail = str(error) if error else "the check returned False"
            raise AssertionError(f"{label}stopped holding within {duration:g}s:\n{detail}"
                                 ) from error
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)
