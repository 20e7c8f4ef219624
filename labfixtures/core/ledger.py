"""The ledger: every creation with the function that undoes it, undone in reverse order.

This is the `on_exit` pattern of Open vSwitch's own test suite. `close()` undoes every
entry last-in first-out, even if some fail, and then raises one error naming each failure;
Ctrl-C and SIGTERM are held until the teardown ends, so a second one cannot leave half a
lab.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from labfixtures.errors import LabError


@dataclass
class _Entry:
    what: str
    undo: Callable[[], object]


class Ledger:
    """Creations and their undo functions, undone last-in first-out."""

    def __init__(self, name: str = "lab") -> None:
        self.name = name
        self._entries: list[_Entry] = []
        self._closed = False

    def push(self, what: str, undo: Callable[[], object]) -> None:
        if self._closed:
            raise LabError(f"{self.name} is already torn down", "create a new lab")
        self._entries.append(_Entry(what, undo))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> list[str]:
        return [e.what for e in self._entries]

    def close(self) -> None:
        """Undo everything, even if some steps fail; then raise one error naming them."""
        self._closed = True
        failures: list[str] = []
        with interrupts_deferred():
            while self._entries:
                entry = self._entries.pop()
                try:
                    entry.undo()
                except Exception as e:  # noqa: BLE001 - every step must get its chance
                    failures.append(f"{entry.what}: {e}")
        if failures:
            raise LabError(
                f"teardown of {self.name} left errors:\n  " + "\n  ".join(failures),
                "run `labctl clean` to remove what is left",
            )


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, so that a second one (an impatient
    user; a CI timeout's SIGTERM to a whole pytest-xdist run, which the controller also
    passes on) cannot leave half a lab. Each held signal is raised again at the end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: set[int] = set()

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.add(signum)

    try:
        old = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for held, handler in old.items():
            signal.signal(held, handler)
        for signum in sorted(pending):
            signal.raise_signal(signum)
