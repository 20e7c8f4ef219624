"""The exceptions of labfixtures: one base type, `LabError`, and typed errors under it.

A `LabError` carries the problem and the remedy separately so that the CLI, the pytest
plugin and a traceback all print the same two short sentences. Each subclass also keeps the
data of its situation as attributes (an exit status, a command, a QMP error...), so that a
caller or a test decides on those fields, never on the wording of the message::

    LabError                    problem, remedy
      CommandError              argv, returncode, stdout, stderr, timed_out (a host command)
        GuestCommandError       command, exit_status (a command run in a guest)
      HostResourceError         kind, resource (a missing group, device, binary, module)
      QemuLaunchError           machine, exitcode, argv, stderr (QEMU died while starting)
      QmpError                  command, error, machine (QEMU answered a QMP command with
                                an error, or the connection broke)
      BootError                 machine, marker, exitcode (the guest never said it was ready)
      NicMacError               machine, wanted, have (QEMU gave a NIC another MAC than
                                asked: the lab's EUI-64 address for the VM is wrong)
      ImageError                image (a guest image missing, unbuilt or unusable)
      CheckpointError           checkpoint, reason, vm, tag, path (a checkpoint missing,
                                damaged or mismatched; a bundle refused)
      LabFileError              source, key, fix, mistakes (a mistake in a lab file)
      HostKeyChangedError       host, key_type, old_fingerprint, new_fingerprint,
                                known_hosts (a guest's SSH host key is not the one
                                remembered for its address)
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class LabError(Exception):
    """Bad input or an unusable host: what went wrong, and what to do about it."""

    def __init__(self, problem: str, remedy: str = "") -> None:
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{problem}\n  remedy: {remedy}" if remedy else problem)


class CommandError(LabError):
    """An external command (ovs-vsctl, qemu-img...) failed; its stderr is in the message.

    `returncode` is -9 when the command was killed after `timed_out`.
    """

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, remedy: str = "",
                 *, stdout: str = "", timed_out: bool = False) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.stdout = stdout
        self.timed_out = timed_out
        what = "timed out" if timed_out else f"failed (exit {returncode})"
        super().__init__(
            f"`{' '.join(self.argv)}` {what}: {self.stderr or 'no message'}", remedy)


class GuestCommandError(CommandError):
    """A command run inside a guest (over SSH or a console) exited with a non-zero status.

    `command` is the command as given (a shell line or an argv list); `exit_status` is the
    guest's exit status (testinfra's name; `returncode` holds the same value).
    """

    def __init__(self, command: str | Sequence[str], exit_status: int, stdout: str = "",
                 stderr: str = "", remedy: str = "look at the command's output above",
                 *, guest: str = "") -> None:
        self.command = command if isinstance(command, str) else shlex.join(command)
        self.exit_status = exit_status
        self.guest = guest
        self.argv = [command] if isinstance(command, str) else list(command)
        self.returncode = exit_status
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = False
        where = f" on {guest}" if guest else ""
        detail = (stderr or stdout).strip()[:500]
        LabError.__init__(self, f"`{self.command}`{where} exited with {exit_status}: "
                          f"{detail or 'no message'}", remedy)


class HostResourceError(LabError):
    """The host lacks something a lab needs: a group, a device, a binary, a kernel module.

    KIND is one of "group", "device", "binary", "module"; RESOURCE names it (`kvm`,
    `/dev/net/tun`, `qemu-img`, `openvswitch`).
    """

    def __init__(self, kind: str, resource: str, remedy: str = "",
                 problem: str | None = None) -> None:
        self.kind = kind
        self.resource = resource
        if problem is None:
            problem = {
                "group": f"group {resource!r} does not exist on this host",
                "device": f"{resource} is missing",
                "binary": f"`{resource}` is not installed",
                "module": f"the {resource} kernel module is not loaded",
            }.get(kind, f"{kind} {resource} is missing on this host")
        super().__init__(problem, remedy)


class TapInUseError(LabError):
    """A VM was to start on a tap that another VM (or another QEMU process) uses.

    The guide's `ovs-startup.sh` refuses the same: « tapN is already in use by another
    process ». USER is the other VM's name, or None when only its PID is known.
    """

    def __init__(self, tap: str, vm: str, user: str | None = None,
                 pid: int | None = None) -> None:
        self.tap = tap
        self.vm = vm
        self.user = user
        self.pid = pid
        by = f"VM {user}" if user else f"another process (pid {pid})"
        super().__init__(f"{tap} is already in use by {by}: {vm} cannot start on it",
                         f"stop that VM first, or give {vm} another tap number "
                         "(the guide refuses a tap in use)")


class QemuLaunchError(LabError):
    """QEMU exited (status EXITCODE) before its machine was up; STDERR is what it said."""

    def __init__(self, machine: str, exitcode: int | None, argv: Sequence[str], stderr: str,
                 remedy: str = "", problem: str | None = None) -> None:
        self.machine = machine
        self.exitcode = exitcode
        self.argv = list(argv)
        self.stderr = stderr.strip()
        if problem is None:
            problem = (f"QEMU exited with status {exitcode} while starting machine {machine}: "
                       f"{self.stderr or 'no message'}")
        super().__init__(problem, remedy)


class QmpError(LabError):
    """A QMP command failed: ERROR is QEMU's error description (or the connection's)."""

    def __init__(self, command: str, error: str, machine: str = "",
                 remedy: str = "see the QEMU log in the run directory",
                 error_class: str | None = None) -> None:
        self.command = command
        self.error = error
        self.error_class = error_class
        self.machine = machine
        where = f" on machine {machine}" if machine else ""
        super().__init__(f"QMP {command}{where} failed: {error}", remedy)


class BootError(LabError):
    """A machine did not print its ready MARKER: it stopped (EXITCODE set) or timed out."""

    def __init__(self, machine: str, marker: str, problem: str, remedy: str = "", *,
                 exitcode: int | None = None, stopped: bool = False,
                 timeout: float | None = None) -> None:
        self.machine = machine
        self.marker = marker
        self.exitcode = exitcode
        self.stopped = stopped
        self.timeout = timeout
        super().__init__(problem, remedy)


class NicMacError(LabError):
    """QEMU runs MACHINE, but its NICs have the MACs HAVE (QEMU's own account), not WANTED:
    the machine is not what was asked (a QEMU regression, not a broken lab)."""

    def __init__(self, machine: str, wanted: Sequence[str], have: Sequence[str]) -> None:
        self.machine = machine
        self.wanted = list(wanted)
        self.have = list(have)
        super().__init__(
            f"QEMU gave machine {machine}'s NICs the MACs {', '.join(have) or 'none'}, not "
            f"{', '.join(wanted)} that its command line asks: the lab's address for it, the "
            "EUI-64 of that MAC, would never answer",
            "this QEMU does not honour virtio-net's mac= option: try another QEMU "
            "(`labctl regress bisect --qemu ...` finds the first that breaks)")


class ImageError(LabError):
    """A guest image is missing, not built for the current recipe, or unusable."""

    def __init__(self, image: str, problem: str, remedy: str = "") -> None:
        self.image = image
        super().__init__(problem, remedy)


class CheckpointError(LabError):
    """A checkpoint is missing, damaged, or does not fit the VM it is restored into.

    `checkpoint` is `VM@TAG` when known (`vm`, `tag` apart), `path` the bundle or store,
    and `reason` says what is wrong, for code to test: "missing", "exists", "corrupt",
    "truncated", "invalid" (not a checkpoint, or an unreadable manifest), "unsafe" (a bundle
    member outside its folder, a link, a device), "too-large", "mismatch" (another base
    image or machine), "not-running".
    """

    def __init__(self, problem: str, remedy: str = "", checkpoint: str | None = None, *,
                 reason: str = "", vm: str | None = None, tag: str | None = None,
                 path: str | None = None) -> None:
        self.checkpoint = checkpoint or (f"{vm}@{tag}" if vm and tag else None)
        self.reason = reason
        self.vm = vm
        self.tag = tag
        self.path = path
        super().__init__(problem, remedy)


class LabFileError(LabError):
    """A mistake in a lab file: where it is (file and key) and how to fix it.

    `mistakes` holds every mistake found in the file (this one first), so that a user
    fixes them all in one go instead of one per run.
    """

    def __init__(self, source: str, key: str, problem: str, fix: str) -> None:
        self.source = source
        self.key = key
        self.fix = fix
        self.mistakes: list[LabFileError] = [self]
        super().__init__(f"{source}: {key}: {problem}", fix)

    @classmethod
    def several(cls, mistakes: list[LabFileError]) -> LabFileError:
        """One error reporting MISTAKES (at least one), each with its key and fix."""
        if len(mistakes) == 1:
            return mistakes[0]
        first = mistakes[0]
        lines = [f"{m.key}: {m.problem.split(': ', 2)[-1]} -- {m.fix}" for m in mistakes]
        err = cls(first.source, first.key, first.problem.split(": ", 2)[-1], first.fix)
        err.mistakes = list(mistakes)
        LabError.__init__(err, f"{first.source}: {len(mistakes)} mistakes:\n  "
                          + "\n  ".join(lines),
                          "fix each line above (file, key, then the fix)")
        return err


class HostKeyChangedError(LabError):
    """The SSH host key HOST offers is not the one its known-hosts file remembers.

    `host` is the known-hosts name (`fe80::...%sw0-vlan2`, or `[addr]:port`), `key_type`
    the type of the key offered, `old_fingerprint` and `new_fingerprint` OpenSSH-style
    SHA256 fingerprints (`SHA256:...`) of the remembered and the offered key, and
    `known_hosts` the file (None: a key given by the caller). Nothing is written to the
    file: the remembered key stays until someone removes it.
    """

    def __init__(self, host: str, key_type: str, old_fingerprint: str,
                 new_fingerprint: str, known_hosts: str | None = None) -> None:
        self.host = host
        self.key_type = key_type
        self.old_fingerprint = old_fingerprint
        self.new_fingerprint = new_fingerprint
        self.known_hosts = known_hosts
        where = f" in {known_hosts}" if known_hosts else ""
        remedy = (f"if the guest was rebuilt or its keys regenerated on purpose, remove its "
                  f"line: ssh-keygen -R '{host}' -f {known_hosts} (a VM's keys also leave "
                  "the file with the VM); otherwise another machine answers at this address"
                  if known_hosts else "check the host key given for this guest")
        super().__init__(f"the SSH host key of {host} changed: it offers {key_type} "
                         f"{new_fingerprint}, the key remembered{where} is "
                         f"{old_fingerprint}", remedy)
