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


class CheckpointError(LabError):
    """A checkpoint or a bundle that is missing, damaged, unsafe or does not fit.

    `vm` and `tag` name the checkpoint (when known), `path` the bundle or directory, and
    `reason` says what is wrong, for code to test: "missing", "exists", "corrupt",
    "truncated", "invalid" (not a checkpoint, or an unreadable manifest), "unsafe" (a
    member path outside its folder, a link, a device), "too-large", "mismatch" (another
    base image or machine), "not-running".
    """

    def __init__(self, problem: str, remedy: str = "", *, reason: str, vm: str | None = None,
                 tag: str | None = None, path: str | None = None) -> None:
        self.reason = reason
        self.vm = vm
        self.tag = tag
        self.path = path
        super().__init__(problem, remedy)

    @property
    def checkpoint(self) -> str | None:
        """`VM@TAG`, when both are known."""
        return f"{self.vm}@{self.tag}" if self.vm and self.tag else None
