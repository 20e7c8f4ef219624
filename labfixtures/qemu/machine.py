"""One running QEMU: started in a lab namespace, watched through QMP and its serial log.

Files in the run directory, all named after the machine (kept for failed-test reports):

    NAME.cmdline      the exact command, shell-quoted, replayable (`ip netns exec NS ...`),
                      after a `# accel:` comment for the reader
    NAME.launch.json  the same as data (argv, the QEMU binary, accelerator and why, QEMU
                      version, pid):
                      `LaunchInfo.read(run_dir, name)` is how a program reads it
    NAME.pid          QEMU's pid (what a reaper needs after a crash)
    NAME.serial.log   the serial console
    NAME.qemu.log     QEMU's own stdout/stderr
    NAME.qmp          the QMP socket
    NAME_TPM/         the `guide` profile's swtpm: state, log, pid file, socket (qemu/swtpm.py)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from labfixtures.core import netns as _netns
from labfixtures.errors import (
    BootError,
    ImageError,
    LabError,
    QemuLaunchError,
    QmpError,
    TapInUseError,
)
from labfixtures.qemu import accel as _accel
from labfixtures.qemu import builds, guidehost
from labfixtures.qemu.cmdline import build_argv
from labfixtures.qemu.guide import build_guide_argv, replacements
from labfixtures.qemu.launch import LaunchInfo
from labfixtures.qemu.nicmacs import check_macs
from labfixtures.qemu.qmp import QmpClient
from labfixtures.qemu.spec import OVMF_VARS, READY_MARKER, MachineSpec
from labfixtures.qemu.swtpm import Swtpm

SUN_PATH_MAX = 107
#: lines of QEMU's stderr that say a device or a loaded state is broken ("virtio-net ctrl
#: missing headers", "error while loading state ..."); its warnings ("warning: This family
#: of AMD CPU ...") and their continuation lines are not
QEMU_ERROR = re.compile(r"error|fail|mismatch|missing|invalid|broken|virtio|assert|abort",
                        re.I)
#: QMP run states of a machine that will not come back by itself
BROKEN_STATES = ("internal-error", "io-error", "guest-panicked", "shutdown")


def _net_inode(pid: int | str) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return st.st_ino, st.st_dev


def tap_user(tap: str, netns: str | None) -> int | None:
    """Pid of a process in the same namespace whose command line holds `ifname=TAP`.

    The guide's `ps aux | grep =[t]ap${tapnum},`, restricted to one namespace so that two
    labs may both have a tap2.
    """
    if netns is not None:
        candidates = _netns.pids(netns)
    else:
        here = _net_inode("self")
        candidates = [int(p) for p in os.listdir("/proc")
                      if p.isdigit() and _net_inode(p) == here]
    for pid in candidates:
        if pid == os.getpid():
            continue
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(f"ifname={tap}" in a.decode(errors="replace").split(",") for a in args):
            return pid
    return None


class Machine:
    """A QEMU process and its QMP connection; a context manager that always cleans up."""

    def __init__(self, spec: MachineSpec, run_dir: Path, netns: str | None = None,
                 accel: str | None = None, qemu: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.netns = netns
        #: the binary, first word of the command line: the session's (builds.selected())
        #: unless given; its absolute path once started
        self.qemu = qemu or builds.selected()
        self._accel_request = accel or spec.accel
        self.accel: _accel.AccelInfo | None = None
        self.name = spec.name
        self.pidfile = self.run_dir / f"{spec.name}.pid"
        self.cmdline_file = self.run_dir / f"{spec.name}.cmdline"
        self.stderr_log = self.run_dir / f"{spec.name}.qemu.log"
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.launch: LaunchInfo | None = None
        self.argv: list[str] = []
        self._qmp: QmpClient | None = None
        self._short_sock_dir: str | None = None
        self.swtpm: Swtpm | None = None  # the `guide` profile's TPM 2.0

    # -- paths ---------------------------------------------------------------------------

    @property
    def serial_log(self) -> Path:
        assert self.spec.serial_log is not None
        return self.spec.serial_log

    @property
    def qmp_socket(self) -> Path:
        assert self.spec.qmp_socket is not None
        return self.spec.qmp_socket

    def _prepare_spec(self) -> MachineSpec:
        spec = self.spec
        changes: dict[str, Any] = {}
        if spec.serial_log is None:
            changes["serial_log"] = self.run_dir / f"{spec.name}.serial.log"
        if spec.qmp_socket is None:
            sock = (self.run_dir / f"{spec.name}.qmp").absolute()
            if len(str(sock)) > SUN_PATH_MAX:  # AF_UNIX paths are limited to 108 bytes
                self._short_sock_dir = tempfile.mkdtemp(prefix="lf-qmp-")
                digest = hashlib.sha1(str(sock).encode()).hexdigest()[:8]
                sock = Path(self._short_sock_dir) / f"{digest}.qmp"
            changes["qmp_socket"] = sock
        if spec.tuned and spec.tsc_khz is None:
            changes["tsc_khz"] = _accel.host_tsc_khz()
        if spec.firmware == "uefi" and spec.uefi_vars is None:
            vars_copy = self.run_dir / f"{spec.name}_OVMF_VARS.fd"
            if not vars_copy.exists():
                if not OVMF_VARS.exists():
                    raise LabError(f"{OVMF_VARS} is missing", "apt-get install ovmf")
                shutil.copyfile(OVMF_VARS, vars_copy)
            changes["uefi_vars"] = vars_copy
        return dataclasses.replace(spec, **changes) if changes else spec

    # -- lifecycle -----------------------------------------------------------------------

    def _preflight(self) -> None:
        self.qemu = os.path.abspath(_accel.qemu_binary(self.qemu))
        for f, what in ((self.spec.kernel, "kernel"), (self.spec.initrd, "initrd"),
                        (self.spec.disk, "disk"), (self.spec.cdrom, "cdrom")):
            if f is not None and not Path(f).exists():  # the guide: "image file does not exist"
                raise ImageError(str(f), f"the {what} of machine {self.name} ({f}) does not "
                                 "exist", "build the guest image first: `labctl image build NAME`")
        if self.netns is not None and not _netns.exists(self.netns):
            raise LabError(f"network namespace {self.netns!r} does not exist",
                           "create the lab before its machines")
        for nic in self.spec.nics:
            if nic.kind == "tap" and nic.tap and (pid := tap_user(nic.tap, self.netns)):
                raise TapInUseError(nic.tap, self.name, pid=pid)
        with contextlib.suppress(OSError, ValueError):
            old = int(self.pidfile.read_text())
            if Path(f"/proc/{old}").exists() and b"qemu" in Path(
                    f"/proc/{old}/cmdline").read_bytes():
                raise LabError(f"machine {self.name} is already running (pid {old})",
                               "stop it first, or use another run directory")

    def start(self, qmp_timeout: float = 15.0) -> Machine:
        """Start QEMU (inside the namespace if one was given) and connect to QMP."""
        if self.proc is not None:
            raise LabError(f"machine {self.name} was started already", "stop() it first")
        self._preflight()
        self.accel = _accel.resolve(self._accel_request)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.spec = self._prepare_spec()
        replaced: dict[str, str] = {}
        if self.spec.profile == "guide":  # the script's machine, with its swtpm first
            host = guidehost.probe(self.accel.name, self.netns)
            replaced = replacements(self.spec, host)
            self.swtpm = Swtpm(self.run_dir, self.name, self.netns).start()
            self.argv = build_guide_argv(self.spec, host, tpm_socket=self.swtpm.socket,
                                         qemu=self.qemu)
        else:
            self.argv = build_argv(self.spec, self.accel.name, self.qemu)
        argv = self.argv
        try:
            return self._launch(argv, replaced, qmp_timeout)
        except BaseException:
            self.stop()
            raise

    def _launch(self, argv: list[str], replaced: dict[str, str],
                qmp_timeout: float) -> Machine:
        assert self.accel is not None
        version = _accel.qemu_version(self.qemu)
        self.serial_log.write_bytes(b"")
        with contextlib.suppress(FileNotFoundError):
            self.qmp_socket.unlink()
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.cmdline_file.write_text(
            f"# accel: {self.accel.name} ({self.accel.reason})\n"
            + "".join(f"# replaced: {k} -> {v}\n" for k, v in replaced.items())
            + shlex.join(prefix + argv) + "\n")
        with open(self.stderr_log, "wb") as log:
            self.started_at = time.monotonic()
            self.proc = _netns.popen(self.netns, argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pidfile.write_text(f"{self.proc.pid}\n")
        self.launch = LaunchInfo(self.name, tuple(argv), self.accel.name, self.accel.reason,
                                 version, netns=self.netns, pid=self.proc.pid,
                                 started_at=time.time(), replaced=replaced,
                                 qemu_binary=self.qemu)
        self.launch.write(self.run_dir)
        self._connect_qmp(qmp_timeout)
        self._check_macs()
        return self

    def _check_macs(self) -> None:
        """The NICs have the MACs of the spec (nicmacs.py); not checked in a QEMU that
        resumes a saved state (paused, `-loadvm`, `-incoming`): the guest may have set
        its own MAC before the save."""
        if not {"-S", "-loadvm", "-incoming"} & set(self.argv):
            check_macs(self.name, self.spec.nics, lambda: self.qmp("query-rx-filter"))

    def _died(self) -> QemuLaunchError:
        assert self.proc is not None
        err = self.stderr_log.read_text(errors="replace").strip()
        rc = self.proc.returncode
        if "Device or resource busy" in err and "tun" in err:
            return QemuLaunchError(self.name, rc, self.argv, err,
                                   "stop the VM using it, or use another tap number",
                                   f"a tap of machine {self.name} is already in use: {err}")
        if "Permission denied" in err or "Operation not permitted" in err:
            return QemuLaunchError(
                self.name, rc, self.argv, err,
                "run as root, or give this user access to the taps and /dev/kvm",
                f"QEMU could not start machine {self.name}: {err}")
        return QemuLaunchError(self.name, rc, self.argv, err,
                               f"check the command line in {self.cmdline_file}")

    def _connect_qmp(self, timeout: float) -> None:
        proc = self.proc
        assert proc is not None

        def still_starting() -> None:
            if proc.poll() is not None:
                raise self._died()

        try:
            self._qmp = QmpClient(self.qmp_socket, name=self.name, timeout=30).connect(
                timeout, check=still_starting)
        except QmpError as e:
            raise QmpError("connect", f"no QMP connection after {timeout:g}s ({e.error})",
                           self.name, f"see {self.stderr_log}") from None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def uptime(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0

    # -- watching ------------------------------------------------------------------------

    def serial_text(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_marker(self, text: str = READY_MARKER, timeout: float = 60.0,
                        poll: float = 0.01) -> float:
        """Tail the serial log until TEXT appears; returns seconds since QEMU started."""
        needle = text.encode()
        deadline = time.monotonic() + timeout
        offset, tail = 0, b""
        while True:
            with contextlib.suppress(FileNotFoundError), open(self.serial_log, "rb") as f:
                f.seek(offset)
                chunk = f.read()
                offset += len(chunk)
                buf = tail + chunk
                if needle in buf:
                    return self.uptime()
                tail = buf[-len(needle):]
            if not self.running:
                rc = self.proc.returncode if self.proc else None
                raise BootError(
                    self.name, text,
                    f"machine {self.name} stopped (exit {rc}) before printing {text!r}; "
                    f"serial console ends with:\n{self.serial_text()[-1500:]}",
                    f"see {self.serial_log} and {self.stderr_log}", exitcode=rc, stopped=True)
            if time.monotonic() > deadline:
                raise BootError(
                    self.name, text,
                    f"machine {self.name} did not print {text!r} within {timeout:g}s; "
                    f"serial console ends with:\n{self.serial_text()[-1500:]}",
                    f"see {self.serial_log}; is the image's init failing?", timeout=timeout)
            time.sleep(poll)

    def boot(self, marker: str = READY_MARKER, timeout: float = 300.0,
             attempts: int = 2) -> float:
        """Start and wait for MARKER; if it does not come within TIMEOUT, restart QEMU (up
        to ATTEMPTS starts in all). Under TCG on an overloaded host a full distribution
        booted by its own firmware and GRUB was seen to stall after "Loading initial
        ramdisk" (once in a CI run); a second start went through. Each stalled attempt's
        serial console is kept as NAME.serial.log.N and named in a warning, so a real
        regression still shows (and fails once every attempt has stalled)."""
        for attempt in range(1, attempts + 1):
            self.start()
            try:
                return self.wait_for_marker(marker, timeout=timeout)
            except BootError as e:
                self.stop()
                if attempt == attempts or e.stopped:
                    raise
                kept = self.serial_log.with_name(f"{self.serial_log.name}.{attempt}")
                shutil.copyfile(self.serial_log, kept)
                warnings.warn(f"machine {self.name}: no {marker!r} after {timeout:g}s "
                              f"(attempt {attempt}/{attempts}, serial log kept in {kept}); "
                              "starting it again", stacklevel=2)
                self.proc = None
        raise AssertionError("unreachable")

    def qemu_errors(self) -> list[str]:
        """The lines of QEMU's stderr (this start's) that report an error, not a warning."""
        try:
            text = self.stderr_log.read_text(errors="replace")
        except OSError:
            return []
        return [ln.strip() for ln in text.splitlines()
                if QEMU_ERROR.search(ln) and "warning:" not in ln.lower()]

    def trouble(self) -> str | None:
        """QEMU's own words that this machine is broken, or None: it has exited, it wrote an
        error on its stderr (a device it marked broken, a state it failed to load), or QMP
        says it will not run again. Cheap (a file read, one QMP command): made to be polled
        while waiting for a guest, e.g. after a restore."""
        if self.proc is None:
            return None
        said = " | ".join(ln[:200] for ln in self.qemu_errors()[-3:])
        if self.proc.poll() is not None:
            return f"QEMU exited with status {self.proc.returncode}" + (f": {said}" * bool(said))
        if said:
            return said
        try:
            status = self.qmp("query-status")
        except QmpError as e:
            return f"QMP query-status failed: {e.error}"
        state = status.get("status") if isinstance(status, dict) else None
        return f"QEMU's run state is {state}" if state in BROKEN_STATES else None

    # -- QMP / HMP -----------------------------------------------------------------------

    def qmp(self, command: str, **args: object) -> Any:
        """Run a QMP command and return its 'return' value (QmpError if it fails)."""
        if self._qmp is None:
            raise QmpError(command, "no QMP connection", self.name, "start() it first")
        return self._qmp.command(command, **args)

    def send_fd(self, fd: int, fdname: str) -> None:
        """Give QEMU the open file FD as FDNAME (`QmpClient.send_fd`)."""
        if self._qmp is None:
            raise QmpError("getfd", "not connected", self.name, "start the machine first")
        self._qmp.send_fd(fd, fdname)

    def hmp(self, command: str) -> str:
        """A human monitor command (savevm, loadvm, info ...) through QMP."""
        out = self.qmp("human-monitor-command", **{"command-line": command})
        return str(out or "")

    # -- stopping ------------------------------------------------------------------------

    def stop(self, powerdown_timeout: float | None = None, quit_timeout: float = 3.0,
             term_timeout: float = 3.0) -> int | None:
        """ACPI powerdown if asked, QMP quit, then SIGTERM (not if quit hung) and SIGKILL."""
        proc = self.proc
        if proc is None:
            self._stop_swtpm()
            return None
        pd = self.spec.powerdown_timeout if powerdown_timeout is None else powerdown_timeout
        if self._qmp is not None:  # a hung or stopped QEMU answers no command: wait less
            self._qmp.settimeout(quit_timeout)
        signals = [(signal.SIGTERM, term_timeout), (signal.SIGKILL, 10.0)]
        try:
            if proc.poll() is None and self._qmp is not None and pd > 0:
                with contextlib.suppress(QmpError):
                    self._qmp.command("system_powerdown")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(pd)
            if proc.poll() is None and self._qmp is not None:
                try:
                    self._qmp.command("quit")
                except QmpError as e:  # unanswered: the main loop that would act on
                    if isinstance(e.__cause__, TimeoutError):  # SIGTERM is stuck too
                        signals = signals[1:]
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(quit_timeout if len(signals) == 2 else 0.1)
            for sig, wait in signals:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(sig)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(wait)
        finally:
            if self._qmp is not None:
                self._qmp.close()
                self._qmp = None
            self.pidfile.unlink(missing_ok=True)
            if self.spec.qmp_socket is not None:
                self.spec.qmp_socket.unlink(missing_ok=True)
            if self._short_sock_dir:
                shutil.rmtree(self._short_sock_dir, ignore_errors=True)
                self._short_sock_dir = None
            self._stop_swtpm()
        return proc.returncode

    def _stop_swtpm(self) -> None:
        """After QEMU (swtpm's --terminate usually ended it already): end it, remove its
        socket and pid file."""
        if self.swtpm is not None:
            self.swtpm.stop()
            self.swtpm = None

    def __enter__(self) -> Machine:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Machine {self.name} {self.spec.profile} {state} pid={self.pid}>"
