"""The one way labfixtures runs a host command: `run(argv) -> CommandResult`.

    out = run(["qemu-img", "info", "--output=json", path]).stdout
    r = run(["ip", "link", "show", "tap2"], netns="lf-abc", check=False)
    if not r.ok: ...

A command that fails (non-zero exit, or still running after TIMEOUT seconds) raises
`CommandError` with its argv, exit status, stdout and stderr, and the REMEDY given; a
program that is not installed raises `HostResourceError(kind="binary")`. With
`check=False` the result is returned whatever the exit status (a missing program and a
timeout still raise).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from labfixtures.core import netns as _netns
from labfixtures.errors import CommandError, HostResourceError


@dataclass(frozen=True)
class CommandResult:
    """What a finished command did: its argv, exit status and output (text).

    The same shape as testinfra's `CommandResult` (and as guest command results,
    `labfixtures.guests.ssh.Result`, which has `exit_status`, `stdout`, `stderr`, `ok`)::

        testinfra             here
        ---------             ----
        rc, exit_status       returncode (also .rc, .exit_status)
        succeeded / failed    ok / not ok (also .succeeded, .failed)
        stdout, stderr        stdout, stderr (str)
        command               command (shell-quoted argv)

    `check()` raises the `CommandError` a `run(check=True)` would have raised.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    # testinfra's names
    @property
    def rc(self) -> int:
        return self.returncode

    @property
    def exit_status(self) -> int:
        return self.returncode

    @property
    def succeeded(self) -> bool:
        return self.ok

    @property
    def failed(self) -> bool:
        return not self.ok

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def check(self, remedy: str = "") -> CommandResult:
        """This result, or CommandError if the command failed."""
        if not self.ok:
            raise CommandError(self.argv, self.returncode, self.stderr or self.stdout, remedy,
                               stdout=self.stdout)
        return self


def run(argv: Sequence[str | Path], *, netns: str | None = None, timeout: float | None = 60.0,
        check: bool = True, input: str | None = None, env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None, remedy: str = "",
        missing: str | None = None) -> CommandResult:
    """Run ARGV (inside network namespace NETNS if given) and capture its output as text.

    REMEDY goes into the CommandError of a failure; MISSING is the remedy when ARGV[0] is
    not installed (default: REMEDY). TIMEOUT None waits forever.
    """
    args = [os.fspath(a) for a in argv]
    try:
        proc = _netns.popen(netns, args,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(env) if env is not None else None, cwd=cwd)
    except FileNotFoundError:
        raise HostResourceError("binary", args[0], missing if missing is not None else remedy
                                ) from None
    with proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            detail = f"after {timeout:g}s" + (f"; {err.strip()}" if err.strip() else "")
            raise CommandError(args, -9, detail, remedy, stdout=out, timed_out=True) from None
    result = CommandResult(tuple(args), proc.returncode, out, err)
    return result.check(remedy) if check else result
