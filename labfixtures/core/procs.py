"""Processes we start and must be sure to end: liveness that survives pid reuse, and a
terminate-then-kill with a grace period (ovs-vswitchd sometimes needs ~1 s on SIGTERM)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first);
    [] if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), or None."""
    fields = _stat(pid)
    return int(fields[19]) if len(fields) > 19 else None


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def children(pid: int | None = None) -> list[int]:
    """The live child processes of PID (this process by default), from /proc."""
    parent = str(os.getpid() if pid is None else pid)
    return [int(p) for p in os.listdir("/proc") if p.isdigit()
            and (f := _stat(p))[1:2] == [parent] and f[0] != "Z"]


def interrupt_on_sigterm(forward_to: Callable[[], Iterable[int]] | None = None) -> None:
    """Make a SIGTERM (`kill`, a CI job's timeout) unwind like Ctrl-C, so that every
    `finally` and context manager on the way out undoes what it made. With FORWARD_TO
    (pytest-xdist's workers: their labs are theirs to undo), the first SIGTERM is passed on
    to the processes it gives and this one goes on, to hear them wind down at their own
    pace; a second SIGTERM interrupts it too. Left alone if the program already handles
    SIGTERM its own way."""
    forwarded = False

    def interrupt(signum: int, frame: object) -> None:
        nonlocal forwarded
        pids = [] if forwarded or forward_to is None else list(forward_to())
        if not pids:
            raise KeyboardInterrupt("SIGTERM")
        forwarded = True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


def become_subreaper() -> None:
    """Adopt the daemons we start with --detach: when their parent exits they become our
    children, so we can reap them. Otherwise they stay zombies (`<defunct>` in `pgrep`)
    until PID 1 gets to them, which on some hosts is a long time."""
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _gone(pid: int) -> bool:
    """Reap PID if it is our child and has exited; otherwise ask /proc."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not alive(pid)
    return done == pid


def terminate(pids: Iterable[int], grace: float = 1.5) -> None:
    """SIGTERM every pid, wait up to GRACE seconds, SIGKILL the survivors; reap our
    children (a multi-threaded daemon looks like a zombie in /proc before it can be
    reaped, so waitpid is the only reliable judge for them)."""
    pending = list(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pending:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pending and time.monotonic() < deadline:
            pending = [p for p in pending if not _gone(p)]
            if pending:
                time.sleep(0.005)
        if not pending:
            return
