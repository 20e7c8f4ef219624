"""Persistent labs for `labctl up/status/ssh/down`: a lab file built and left running.

Such a lab outlives the `labctl up` process: its record is marked persistent (the reaper
leaves it alone), Open vSwitch runs detached, QEMU runs in its own session. What later
commands need to reach it is written to `lab.json` in the lab's run directory: each VM's
SSH target, key and known-hosts file.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from labfixtures.core import netns
from labfixtures.errors import LabError
from labfixtures.guests.ssh import GuestSSH
from labfixtures.lab.lab import Lab
from labfixtures.lab.labfile import build_network, load
from labfixtures.lab.labhost import RUN_BASE, Record, destroy_lab
from labfixtures.lab.vm import VmNic

STATE = "lab.json"


def up(file: str | Path, name: str | None = None,
       progress: Callable[[str], object] | None = print) -> str:
    """Build FILE's lab, boot its VMs (all at once), check SSH to each; return its id."""
    say = progress or (lambda _m: None)
    spec = load(file)
    if name:
        from labfixtures.lab.labfile import _V

        spec = replace(spec, name=_V(str(file)).name(name, "--name", maxlen=40))
    t0 = time.monotonic()
    lab = Lab.open(spec.labid, datapath=spec.datapath, persistent=True,
                   source=str(Path(file).resolve()))
    try:
        say(f"[{spec.labid}] network: {len(spec.switches)} switch(es), {len(spec.taps)} "
            f"tap(s), {len(spec.hosts)} host(s)")
        build_network(spec, lab)
        vms = []
        for v in spec.vms.values():
            nics = [VmNic(tap=n.tap, user=n.kind == "user", addresses=n.addresses,
                          gateway=n.gateway, dhcp=n.dhcp, ssh_port=n.ssh_port, mac=n.mac)
                    for n in v.nics]
            vms.append(lab.vm(v.name, nics=nics, image=v.image, memory=v.memory,
                              vcpus=v.vcpus, profile=v.profile, start=False))
        for vm in vms:
            say(f"[{spec.labid}] booting {vm.name} ({vm.image.name}, {vm.opts.profile})")
            vm.start(wait=False)
        for vm in vms:
            assert vm.machine is not None
            vm.boot_seconds = vm.machine.wait_for_marker(
                vm.image.facts.get("marker", "labfixtures: ready"), timeout=300)
            vm.run("true", check=True)
            say(f"[{spec.labid}] {vm.name} answers SSH at {vm.ssh_target()[0]} "
                f"({vm.boot_seconds:.1f} s)")
            vm.stop_ssh()
        _write_state(lab, vms)
    except BaseException:
        lab.close()
        raise
    say(f"[{spec.labid}] up in {time.monotonic() - t0:.1f} s")
    return spec.labid


def _write_state(lab: Lab, vms: list) -> None:
    state = {
        "labid": lab.labid,
        "vms": {vm.name: {
            "host": vm.ssh_target()[0], "port": vm.ssh_target()[1],
            "key": str(vm.image.private_key), "user": "root",
            "image": vm.image.name, "mac": vm.nics[0].nic_spec().mac,
            "pid": vm.machine.pid if vm.machine else None,
            "serial_log": str(vm.serial_log) if vm.serial_log else None,
        } for vm in vms},
    }
    (lab.rundir / STATE).write_text(json.dumps(state, indent=1))


def _state(labid: str) -> dict:
    path = RUN_BASE / labid / STATE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"no lab named {labid!r} was started with `labctl up`",
                       "list labs with `labctl status`") from None


def down(labid: str) -> list[str]:
    if not (RUN_BASE / labid).exists() and not netns.exists(labid):
        raise LabError(f"no lab named {labid!r}", "list labs with `labctl status`")
    return destroy_lab(labid)


def describe(labid: str) -> str:
    rundir = RUN_BASE / labid
    if not rundir.exists():
        raise LabError(f"no lab named {labid!r}", "list labs with `labctl status`")
    lines = []
    try:
        rec = Record.load(rundir / "record.json")
        lines.append(f"lab {labid}: from {rec.source or '?'}"
                     + (" (persistent)" if rec.persistent else f" (owner pid {rec.pid})"))
    except (OSError, ValueError, TypeError):
        lines.append(f"lab {labid}")
    state = json.loads((rundir / STATE).read_text()) if (rundir / STATE).exists() else {}
    for name, v in state.get("vms", {}).items():
        alive = v.get("pid") and os.path.exists(f"/proc/{v['pid']}")
        lines.append(f"  VM {name}: {'running' if alive else 'NOT RUNNING'}, image "
                     f"{v['image']}, MAC {v['mac']}, ssh root@{v['host']}"
                     + (f" port {v['port']}" if v["port"] != 22 else "")
                     + f" (labctl ssh {labid.removeprefix('lf-')} {name})")
    if (rundir / "db.sock").exists():
        import subprocess

        out = subprocess.run(["ovs-vsctl", f"--db=unix:{rundir}/db.sock", "show"],
                             capture_output=True, text=True, timeout=10).stdout
        lines.append(out.rstrip())
    return "\n".join(lines)


def ssh(labid: str, vm: str, command: list[str]) -> int:
    """Run COMMAND in VM (exit with its status), or open an interactive shell."""
    state = _state(labid)
    try:
        v = state["vms"][vm]
    except KeyError:
        raise LabError(f"lab {labid} has no VM named {vm!r}",
                       f"its VMs: {', '.join(state['vms']) or 'none'}") from None
    known_hosts = RUN_BASE / labid / "known_hosts"
    if command:
        with GuestSSH(v["host"], v["port"], user=v["user"], key=v["key"], netns=labid,
                      known_hosts=known_hosts) as c:
            res = c.run(" ".join(command), timeout=3600)
        print(res.stdout, end="")
        if res.stderr:
            import sys

            print(res.stderr, end="", file=sys.stderr)
        return res.exit_status
    client = shutil.which("ssh")
    if client is None:
        raise LabError("an interactive shell needs the OpenSSH client",
                       "apt-get install openssh-client, or give a command: "
                       f"labctl ssh {labid} {vm} -- CMD")
    argv = ["ip", "netns", "exec", labid, client, "-i", v["key"], "-p", str(v["port"]),
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=accept-new",
            f"{v['user']}@{v['host']}"]
    os.execvp(argv[0], argv)
    return 0  # not reached
