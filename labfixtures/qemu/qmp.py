"""The one QMP client of labfixtures: a small synchronous wrapper over qemu.qmp's legacy API.

    with QmpClient("/run/.../vm0.qmp", name="vm0").connect(timeout=15) as qmp:
        qmp.command("stop")
        print(qmp.hmp("info status"))

Every failure is a `QmpError` (command, error, machine): QEMU refusing a command (its
error class and description), the connection breaking, or no connection at all.
QEMU accepts one QMP client per socket at a time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp import ExecuteError
from qemu.qmp.legacy import QEMUMonitorProtocol

from labfixtures.errors import QmpError


class QmpClient:
    """A QMP connection to the QEMU listening on SOCKET (a Unix socket path).

    NAME (the machine's) goes into error messages; TIMEOUT bounds each command.
    """

    def __init__(self, socket: Path | str, *, name: str = "", timeout: float | None = 60.0
                 ) -> None:
        self.socket = Path(socket)
        self.name = name
        self.timeout = timeout
        self.greeting: dict[str, Any] | None = None
        self._qmp: QEMUMonitorProtocol | None = None

    @property
    def connected(self) -> bool:
        return self._qmp is not None

    def connect(self, timeout: float = 0.0, poll: float = 0.01,
                check: Callable[[], None] | None = None) -> QmpClient:
        """Connect, retrying until TIMEOUT seconds have passed (0: one attempt).

        CHECK is called before each attempt and may raise to give up early (e.g. when the
        QEMU process being waited for has exited).
        """
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            if check is not None:
                check()
            if self.socket.exists():
                qmp = QEMUMonitorProtocol(str(self.socket), nickname=self.name or None)
                try:
                    greeting = qmp.connect()
                except Exception as e:  # noqa: BLE001 - retried until the deadline
                    last = e
                    with contextlib.suppress(Exception):
                        qmp.close()
                else:
                    qmp.settimeout(self.timeout)
                    self._qmp = qmp
                    self.greeting = dict(greeting) if greeting else None
                    return self
            if time.monotonic() >= deadline:
                break
            time.sleep(poll)
        what = f"cannot reach QMP socket {self.socket}" + (
            f" after {timeout:g}s" if timeout else "")
        raise QmpError("connect", f"{what}: {last or 'no such socket'}", self.name,
                       "is the VM running? QEMU accepts one QMP client at a time: "
                       "close the other one")

    def command(self, name: str, **args: object) -> Any:
        """Run QMP command NAME with ARGS; its 'return' value (QmpError if it fails)."""
        if self._qmp is None:
            raise QmpError(name, "not connected", self.name, "connect() first")
        try:
            return self._qmp.cmd(name, **args)
        except ExecuteError as e:
            raise QmpError(name, str(e), self.name, error_class=e.error_class) from e
        except Exception as e:  # noqa: BLE001 - a broken connection, a timeout
            raise QmpError(name, str(e) or type(e).__name__, self.name) from e

    def settimeout(self, timeout: float | None) -> None:
        """Bound each later command by TIMEOUT seconds (a teardown waits less than 60 s
        for a QEMU that no longer answers)."""
        self.timeout = timeout
        if self._qmp is not None:
            self._qmp.settimeout(timeout)

    #: the name of the `Monitor` protocol the checkpoint code drives (same method)
    qmp = command

    def send_fd(self, fd: int, fdname: str) -> None:
        """Hand QEMU the open file descriptor FD under FDNAME (SCM_RIGHTS, then `getfd`),
        for an `fd:FDNAME` migration: a sandboxed QEMU (`-sandbox spawn=deny`) may write
        to it, where `exec:` would spawn a shell."""
        if self._qmp is None:
            raise QmpError("getfd", "not connected", self.name, "connect() first")
        try:
            self._qmp.send_fd_scm(fd)
        except Exception as e:  # noqa: BLE001 - a broken connection
            raise QmpError("getfd", str(e) or type(e).__name__, self.name) from e
        self.command("getfd", fdname=fdname)

    def hmp(self, cmdline: str) -> str:
        """A human monitor command (`savevm x`, `info status`) run through QMP; its output."""
        out = self.command("human-monitor-command", **{"command-line": cmdline})
        return str(out or "")

    def close(self) -> None:
        qmp, self._qmp = self._qmp, None
        if qmp is not None:
            with contextlib.suppress(Exception):
                qmp.close()

    def __enter__(self) -> QmpClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed"
        return f"<QmpClient {self.name or self.socket} {state}>"
