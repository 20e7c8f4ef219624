"""One exception type for every mistake a lab user can make.

A `LabError` carries the problem and the remedy separately so that the CLI, the pytest
plugin and a traceback all print the same two short sentences.
"""

from __future__ import annotations


class LabError(Exception):
    """Bad input or an unusable host: what went wrong, and what to do about it."""

    def __init__(self, problem: str, remedy: str = "") -> None:
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{problem}\n  remedy: {remedy}" if remedy else problem)


class CommandError(LabError):
    """An external command (ovs-vsctl, qemu-img...) failed; its stderr is in the message."""

    def __init__(self, argv: list[str], returncode: int, stderr: str, remedy: str = "") -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(
            f"`{' '.join(argv)}` failed (exit {returncode}): {self.stderr or 'no message'}",
            remedy,
        )
