"""Progress of long work (image builds, a class of students, a matrix run) on one line.

On a terminal the line is rewritten in place (`\\r`, cleared to its end, cut to the
terminal's width); in CI (`CI` set to true/1/yes) or when the stream is not a terminal
(a log file, a pipe), every update is a plain line of its own, so logs keep them all.

    with StatusLine() as line:              # stderr by default
        build(..., progress=line)           # a `Callable[[str], None]`: each update
        line.note("tiny: built")            # a line that stays, above the status
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import TextIO

CI_VALUES = ("1", "true", "yes")


def interactive(stream: TextIO) -> bool:
    """Whether STREAM is a terminal a line can be rewritten on (not in CI)."""
    if os.environ.get("CI", "").strip().lower() in CI_VALUES:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


class StatusLine:
    """One updating line on a terminal, plain lines elsewhere (see the module)."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None,
                 prefix: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = interactive(self.stream) if live is None else live
        self.prefix = prefix
        self._shown = 0  # characters of the status now on the terminal
        self.t0 = time.monotonic()

    def _width(self) -> int:
        return max(20, shutil.get_terminal_size((100, 24)).columns - 1)

    def __call__(self, text: str) -> None:
        """Show TEXT as the current status."""
        text = self.prefix + " ".join(str(text).split("\n"))
        if not self.live:
            self.stream.write(text + "\n")
        else:
            text = text if len(text) <= self._width() else text[:self._width() - 1] + "…"
            self.stream.write("\r" + text + " " * max(0, self._shown - len(text)) + "\r"
                              + text)
            self._shown = len(text)
        self.stream.flush()

    update = __call__

    def count(self, done: int, total: int, what: str) -> None:
        """`[3/7] what (12 s)`: the status of item DONE of TOTAL."""
        self(f"[{done}/{total}] {what} ({time.monotonic() - self.t0:.0f} s)")

    def clear(self) -> None:
        if self.live and self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
        self._shown = 0

    def note(self, text: str) -> None:
        """A line that stays (a result), written above the status."""
        self.clear()
        self.stream.write(self.prefix + text + "\n")
        self.stream.flush()

    def done(self) -> None:
        """Leave the last status on its own line (on a terminal)."""
        if self.live and self._shown:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = 0

    def __enter__(self) -> StatusLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.done()


__all__ = ["StatusLine", "interactive"]
