"""The software TPM 2.0 of the guide's machine: `swtpm`, managed like any other resource.

`ovs-startup.sh` does it this way, and so does `Swtpm`: a state directory `${vm}_TPM` next
to the image (here in the VM's run directory), any swtpm still serving that socket stopped,
then ::

    swtpm socket --tpmstate dir=NAME_TPM --ctrl type=unixio,path=NAME_TPM/swtpm-sock \\
                 --log file=NAME_TPM/swtpm.log --tpm2 --terminate

and its socket awaited with a bound (the script: 10 one-second tries). `--terminate`: swtpm
exits by itself once QEMU closes the connection; `stop()` (QEMU's `Machine.stop()`, hence
the lab's ledger) still ends it and removes its socket and pid file, whatever QEMU did.
It is started inside the VM's network namespace, so a lab reaper that ends the namespace's
processes after a crash ends it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from labfixtures.core import netns as _netns
from labfixtures.errors import HostResourceError

SWTPM = "swtpm"
SOCKET_NAME = "swtpm-sock"
SUN_PATH_MAX = 107


class Swtpm:
    """One swtpm process for machine NAME, its state in RUN_DIR/NAME_TPM."""

    def __init__(self, run_dir: Path, name: str, netns: str | None = None,
                 binary: str = SWTPM) -> None:
        self.name = name
        self.netns = netns
        self.binary = binary
        self.state_dir = Path(run_dir).absolute() / f"{name}_TPM"
        self.pidfile = self.state_dir / "swtpm.pid"
        self.log = self.state_dir / "swtpm.log"
        self.socket = self.state_dir / SOCKET_NAME
        self._short_dir: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def _place_socket(self) -> None:
        """The socket in the state directory, or in a short temporary one when that path
        is too long for AF_UNIX (108 bytes at most)."""
        wanted = self.state_dir / SOCKET_NAME
        if len(str(wanted)) <= SUN_PATH_MAX:
            self.socket = wanted
            return
        if self._short_dir is None:
            self._short_dir = tempfile.mkdtemp(prefix="lf-tpm-")
        digest = hashlib.sha1(str(wanted).encode()).hexdigest()[:8]
        self.socket = Path(self._short_dir) / f"{digest}-{SOCKET_NAME}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return [self.binary, "socket", "--tpmstate", f"dir={self.state_dir}",
                "--ctrl", f"type=unixio,path={self.socket}", "--log", f"file={self.log}",
                "--tpm2", "--terminate", "--pid", f"file={self.pidfile}"]

    def _stop_stale(self) -> None:
        """The script's `pgrep ... swtpm-sock` then `kill`: a swtpm left on this state."""
        with contextlib.suppress(OSError, ValueError):
            old = int(self.pidfile.read_text())
            if self.binary.encode() in Path(f"/proc/{old}/cmdline").read_bytes():
                os.kill(old, signal.SIGTERM)
                for _ in range(50):
                    if not Path(f"/proc/{old}").exists():
                        break
                    time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)

    def start(self, timeout: float = 10.0) -> Swtpm:
        """Start swtpm and wait (TIMEOUT at most) for its socket."""
        if shutil.which(self.binary) is None:
            raise HostResourceError(
                "binary", self.binary, "apt-get install swtpm swtpm-tools (ci/setup does)",
                problem=f"machine {self.name} has the guide's TPM 2.0, and the TPM emulator "
                        f"{self.binary} is not installed")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._place_socket()
        self._stop_stale()
        self.proc = _netns.popen(self.netns, self.command(), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.socket.is_socket():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self._failure_text()
                self.stop()
                raise HostResourceError(
                    "binary", self.binary, f"see {self.log}",
                    problem=f"the TPM of machine {self.name} did not come up: swtpm "
                            + (f"exited ({err})" if err else f"made no socket in {timeout:g}s"))
            time.sleep(0.02)
        return self

    def _failure_text(self) -> str:
        proc = self.proc
        out = ""
        if proc is not None and proc.poll() is not None and proc.stderr is not None:
            out = proc.stderr.read().decode(errors="replace").strip()
        with contextlib.suppress(OSError):
            out = (out + " " + self.log.read_text(errors="replace").strip()).strip()
        return out[-500:]

    def stop(self, timeout: float = 3.0) -> int | None:
        """End swtpm (it may have ended with QEMU already), remove its socket and pid file."""
        proc = self.proc
        try:
            if proc is not None:
                for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
                    if proc.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            proc.send_signal(sig)
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(wait)
                if proc.stderr is not None:
                    proc.stderr.close()
        finally:
            self.socket.unlink(missing_ok=True)
            self.pidfile.unlink(missing_ok=True)
            if self._short_dir:
                shutil.rmtree(self._short_dir, ignore_errors=True)
                self._short_dir = None
        return proc.returncode if proc is not None else None

    def __enter__(self) -> Swtpm:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
