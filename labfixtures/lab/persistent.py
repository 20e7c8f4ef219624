"""Persistent labs for `labctl up/status/ssh/down`: a lab file built and left running.

Such a lab outlives the `labctl up` process: its record is marked persistent (the reaper
leaves it alone), Open vSwitch runs detached, QEMU runs in its own session. What later
commands need to reach it is written to `lab.json` in the lab's run directory (a
`LabState`: each VM's SSH target, key, pid), and each VM's settings to its `vm.json` (a
`VmState`).

`PersistentLab.open(name)` finds such a lab again from its run directory. It is a
`VmHost`: a `VM` can be started in it by another process (`labctl checkpoint restore`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from labfixtures.core import naming, netns
from labfixtures.errors import LabError
from labfixtures.guests.ssh import GuestSSH
from labfixtures.lab.labfile import check_name, load, open_lab
from labfixtures.lab.labhost import Record, destroy_lab
from labfixtures.lab.state import LAB_STATE, VM_STATE, LabState, VmAccess, VmState
from labfixtures.lab.vm import VM
from labfixtures.lab.vmhost import KNOWN_HOSTS, tap_name, tap_scope
from labfixtures.net.netlink import Netlink
from labfixtures.net.ovs import OvsServer

STATE = LAB_STATE  # the name it had


class PersistentLab:
    """A lab run by another process (`labctl up`), read from its run directory."""

    def __init__(self, labid: str, rundir: Path) -> None:
        self._labid = labid
        self._rundir = rundir

    @classmethod
    def open(cls, name: str, run_base: Path | None = None) -> PersistentLab:
        """The lab NAME (`seed` or `lf-seed`); a LabError if it has no run directory."""
        lab_id = naming.labid(name)
        rundir = naming.rundir(lab_id, run_base)
        if not rundir.is_dir():
            raise LabError(f"no lab named {lab_id!r}", "list labs with `labctl status`")
        return cls(lab_id, rundir)

    def __repr__(self) -> str:
        return f"PersistentLab({self._labid!r})"

    # -- the VmHost protocol ------------------------------------------------------------

    @property
    def labid(self) -> str:
        return self._labid

    @property
    def ns(self) -> str:
        return self._labid

    @property
    def rundir(self) -> Path:
        return self._rundir

    @property
    def keep_overlays(self) -> Path | None:
        return None

    @property
    def known_hosts(self) -> Path:
        return self._rundir / KNOWN_HOSTS

    def has_tap(self, number: int) -> bool:
        if not netns.exists(self.ns):
            return False
        with Netlink(self.ns) as nl:
            return nl.exists(tap_name(number))

    def tap_user(self, number: int) -> str | None:
        for name in self.vm_names():
            with contextlib.suppress(LabError, OSError, ValueError):
                if any(not n.user and n.tap == number for n in self.vm_state(name).nics):
                    return name
        return None

    def ssh_scope(self, tap: int) -> str:
        if not netns.exists(self.ns):
            return tap_name(tap)
        with Netlink(self.ns) as nl:
            return tap_scope(self.ovs(), nl.exists, tap)

    # -- what it holds ------------------------------------------------------------------

    def ovs(self) -> OvsServer | None:
        """A client of the lab's Open vSwitch database (None if it has none)."""
        if not (self._rundir / "db.sock").exists():
            return None
        return OvsServer(self.ns, self._rundir, "netdev")

    def record(self) -> Record | None:
        try:
            return Record.load(self._rundir / "record.json")
        except (OSError, ValueError, TypeError):
            return None

    def state(self) -> LabState:
        """lab.json; a LabError if the lab was not started with `labctl up`."""
        try:
            return LabState.load(self._rundir / LAB_STATE)
        except FileNotFoundError:
            raise LabError(f"no lab named {self._labid!r} was started with `labctl up`",
                           "list labs with `labctl status`") from None

    def save_state(self, state: LabState) -> None:
        state.save(self._rundir / LAB_STATE)

    def vm_names(self) -> list[str]:
        vms = self._rundir / "vms"
        return sorted(d.name for d in vms.iterdir() if (d / VM_STATE).exists()) \
            if vms.is_dir() else []

    def vm_state(self, name: str) -> VmState:
        """The VM's vm.json; a LabError if the lab has no such VM."""
        try:
            return VmState.load(self._rundir / "vms" / name / VM_STATE)
        except FileNotFoundError:
            raise LabError(f"lab {self._labid} has no VM {name!r} started by labfixtures",
                           "check the name with `labctl status`") from None

    def vm_access(self, name: str) -> VmAccess:
        state = self.state()
        try:
            return state.vms[name]
        except KeyError:
            raise LabError(f"lab {self._labid} has no VM named {name!r}",
                           f"its VMs: {', '.join(state.vms) or 'none'}") from None

    def record_vm(self, vm: VM) -> None:
        """Write VM's access (SSH target, pid...) into lab.json, adding or replacing it."""
        path = self._rundir / LAB_STATE
        state = LabState.load(path) if path.exists() else LabState(self._labid)
        state.vms[vm.name] = access(vm)
        state.save(path)

    def ssh_client(self, name: str) -> GuestSSH:
        """An SSH client (not connected yet) to VM NAME, from lab.json."""
        v = self.vm_access(name)
        return GuestSSH(v.host, v.port, user=v.user, key=v.key, netns=self.ns,
                        known_hosts=self.known_hosts)


def access(vm: VM) -> VmAccess:
    """How `labctl` reaches VM later (lab.json)."""
    host, port, _ = vm.ssh_target()
    return VmAccess(host=host, port=port, key=str(vm.image.private_key), user="root",
                    image=vm.image.name, mac=vm.nics[0].nic_spec().mac if vm.nics else None,
                    pid=vm.machine.pid if vm.machine else None,
                    serial_log=str(vm.serial_log) if vm.serial_log else None)


def up(file: str | Path, name: str | None = None,
       progress: Callable[[str], object] | None = print) -> str:
    """Build FILE's lab, boot its VMs (all at once), check SSH to each; return its id."""
    say = progress or (lambda _m: None)
    spec = load(file)
    if name:
        spec = replace(spec, name=check_name(name, str(file)))
    t0 = time.monotonic()
    built = open_lab(spec, persistent=True, source=str(Path(file).resolve()),
                     progress=lambda m: say(f"[{spec.labid}] {m}"))
    try:
        state = LabState(spec.labid)
        for vm in built.vms.values():
            vm.stop_ssh()
            state.vms[vm.name] = access(vm)
        state.save(built.lab.rundir / LAB_STATE)
    except BaseException:
        built.lab.close()
        raise
    say(f"[{spec.labid}] up in {time.monotonic() - t0:.1f} s")
    return spec.labid


def down(labid: str) -> list[str]:
    if not naming.rundir(labid).exists() and not netns.exists(labid):
        raise LabError(f"no lab named {labid!r}", "list labs with `labctl status`")
    return destroy_lab(labid)


def describe(labid: str) -> str:
    lab = PersistentLab.open(labid)
    rec = lab.record()
    lines = [f"lab {lab.labid}: from {rec.source or '?'}"
             + (" (persistent)" if rec.persistent else f" (owner pid {rec.pid})")
             if rec is not None else f"lab {lab.labid}"]
    state = LabState(lab.labid)
    with contextlib.suppress(LabError, OSError, ValueError):
        state = lab.state()
    for name, v in state.vms.items():
        alive = v.pid is not None and os.path.exists(f"/proc/{v.pid}")
        lines.append(f"  VM {name}: {'running' if alive else 'NOT RUNNING'}, image "
                     f"{v.image}, MAC {v.mac}, ssh root@{v.host}"
                     + (f" port {v.port}" if v.port != 22 else "")
                     + f" (labctl ssh {naming.short_name(lab.labid)} {name})")
    ovs = lab.ovs()
    if ovs is not None:
        with contextlib.suppress(LabError):
            lines.append(ovs.vsctl("show", timeout=10).rstrip())
    return "\n".join(lines)


def ssh(labid: str, vm: str, command: list[str]) -> int:
    """Run COMMAND in VM (exit with its status), or open an interactive shell."""
    lab = PersistentLab.open(labid)
    if command:
        with lab.ssh_client(vm) as c:
            res = c.run(" ".join(command), timeout=3600)
        print(res.stdout, end="")
        if res.stderr:
            print(res.stderr, end="", file=sys.stderr)
        return res.exit_status
    v = lab.vm_access(vm)
    client = shutil.which("ssh")
    if client is None:
        raise LabError("an interactive shell needs the OpenSSH client",
                       "apt-get install openssh-client, or give a command: "
                       f"labctl ssh {labid} {vm} -- CMD")
    argv = ["ip", "netns", "exec", lab.ns, client, "-i", v.key, "-p", str(v.port),
            "-o", f"UserKnownHostsFile={lab.known_hosts}",
            "-o", "StrictHostKeyChecking=accept-new", f"{v.user}@{v.host}"]
    os.execvp(argv[0], argv)
    return 0  # not reached
