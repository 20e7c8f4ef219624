"""The ledger: every creation with the function that undoes it, undone in reverse order.

This is the `on_exit` pattern of Open vSwitch's own test suite. `close()` undoes every
entry last-in first-out, even if some fail, and then raises one error naming each failure;
Ctrl-C is held until the teardown ends, so a second Ctrl-C cannot leave half a lab.
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
        with sigint_deferred():
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
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so a second Ctrl-C cannot leave half a lab."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, FrameType | None]] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append((signum, frame))

    try:
        old = signal.signal(signal.SIGINT, hold)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if pending:
            raise KeyboardInterrupt
