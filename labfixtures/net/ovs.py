"""A private Open vSwitch for one lab: its own ovsdb-server and ovs-vswitchd.

Both daemons run inside the lab namespace with their database, sockets, pidfiles and logs
in the lab's run directory (OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR point there, or vswitchd would
reach for /var/run/openvswitch). Bridges, internal ports and the datapath's own port are
then devices of the lab namespace and vanish with it.

The datapath is chosen from the host: the kernel one (`system`) when the openvswitch
module is loaded, the userspace one (`netdev`, vswitchd `--disable-system`) otherwise;
both can be forced.

Ports are described by `PortSpec` and added many at a time in one `ovs-vsctl`
transaction: spawning ovs-vsctl once per port is what makes big labs slow.

The first userspace datapath an ovs-vswitchd creates costs 0.1 s: it estimates the TSC
frequency by sleeping 100 ms in its main thread (dpif-netdev.c, `create_dp_netdev`), once
per process. That used to be 0.1 s of the first switch's 0.12 s; `start()` now pays it,
creating the datapath before any bridge (`NETDEV_DATAPATH`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labfixtures.core import netns, procs
from labfixtures.core.runner import run
from labfixtures.errors import CommandError, HostResourceError, LabError
from labfixtures.net.rtnl import ifindex

SCHEMA_CANDIDATES = (
    "/usr/share/openvswitch/vswitch.ovsschema",
    "/usr/local/share/openvswitch/vswitch.ovsschema",
)
DATAPATHS = ("auto", "system", "netdev")
#: the userspace datapath every `netdev` bridge of an ovs-vswitchd shares (ofproto-dpif
#: names it after its type); its local port is a tap of that name in the lab namespace
NETDEV_DATAPATH = "ovs-netdev"


def _require(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}")
                                  else None)
    if not path:
        raise HostResourceError("binary", tool,
                                "install Open vSwitch: `apt-get install openvswitch-switch` "
                                "(or run ./ci/setup)")
    return path


def kernel_datapath_available() -> bool:
    """True when the openvswitch kernel module is loaded (we never load modules)."""
    return os.path.isdir("/sys/module/openvswitch")


def resolve_datapath(datapath: str = "auto") -> str:
    if datapath not in DATAPATHS:
        raise LabError(f"unknown datapath {datapath!r}", f"use one of {', '.join(DATAPATHS)}")
    if datapath == "auto":
        return "system" if kernel_datapath_available() else "netdev"
    if datapath == "system" and not kernel_datapath_available():
        raise HostResourceError("module", "openvswitch",
                                "use datapath 'netdev' (userspace) or 'auto'",
                                problem="the kernel datapath was asked for but the "
                                "openvswitch module is not loaded")
    return datapath


@dataclass(frozen=True)
class PortSpec:
    """One switch port. `tag` makes an access port; `trunks` (empty: all VLANs) a trunk,
    with `native` as its untagged VLAN; `internal` makes an OVS internal port, the
    lab host's own interface on the switch (an SVI when it has a tag)."""

    name: str
    tag: int | None = None
    trunks: tuple[int, ...] = ()
    native: int | None = None
    internal: bool = False

    def __post_init__(self) -> None:
        for vid in (self.tag, self.native, *self.trunks):
            if vid is not None and not 0 <= vid <= 4095:
                raise LabError(f"port {self.name}: VLAN {vid} is out of range",
                               "use a VLAN id between 0 and 4095")
        if self.tag is not None and (self.trunks or self.native is not None):
            raise LabError(f"port {self.name}: an access port (tag) cannot also be a trunk",
                           "give either `tag` or `trunks`/`native`")

    @property
    def mode(self) -> str:
        return "access" if self.tag is not None else "trunk"

    def vsctl_args(self, bridge: str) -> list[str]:
        args = ["add-port", bridge, self.name]
        if self.tag is not None:
            args += [f"tag={self.tag}", "vlan_mode=access"]
        else:
            if self.trunks:
                args.append("trunks=" + ",".join(str(v) for v in self.trunks))
            if self.native is not None:
                args += [f"tag={self.native}", "vlan_mode=native-untagged"]
        if self.internal:
            args += ["--", "set", "Interface", self.name, "type=internal"]
        return args


@dataclass(frozen=True)
class PortMode:
    """A port's VLAN mode as `ovs-startup.sh` reads it: access with a tag, or trunk."""

    mode: str
    tag: int | None
    trunks: tuple[int, ...]

    def __str__(self) -> str:
        if self.mode == "access":
            return f"access, VLAN {self.tag}"
        vlans = ",".join(map(str, self.trunks)) or "all VLANs"
        return f"trunk ({vlans})" + (f", native VLAN {self.tag}" if self.tag else "")


class OvsServer:
    """ovsdb-server + ovs-vswitchd inside namespace NS, state in RUNDIR."""

    def __init__(self, ns: str, rundir: Path, datapath: str = "auto") -> None:
        self.ns = ns
        self.rundir = rundir
        self.datapath = resolve_datapath(datapath)
        self.db_sock = rundir / "db.sock"
        self._log_offsets: dict[Path, int] = {}
        self.env = {
            **os.environ,
            "OVS_RUNDIR": str(rundir), "OVS_DBDIR": str(rundir),
            "OVS_LOGDIR": str(rundir), "OVS_SYSCONFDIR": str(rundir),
        }
        self._pids: dict[str, int] = {}
        self._unsynced = False  # a deletion ovs-vswitchd may not have applied yet
        self._pending_bridges: list[str] | None = []  # None: a deletion other than del-br
        self._syncs = 0

    @property
    def logs(self) -> list[Path]:
        return [self.rundir / "ovsdb-server.log", self.rundir / "ovs-vswitchd.log"]

    def start(self) -> None:
        """Create the database and start both daemons; each `--detach` returns when ready."""
        ovsdb_tool = _require("ovsdb-tool")
        ovsdb_server = _require("ovsdb-server")
        vswitchd = _require("ovs-vswitchd")
        _require("ovs-vsctl")
        schema = next((s for s in SCHEMA_CANDIDATES if os.path.exists(s)), None)
        if schema is None:
            raise LabError("the Open vSwitch database schema was not found",
                           "reinstall openvswitch-common")
        r = self.rundir
        self._run([ovsdb_tool, "create", str(r / "conf.db"), schema], in_lab=False)
        self._run([ovsdb_server, str(r / "conf.db"), f"--remote=punix:{self.db_sock}",
                   f"--pidfile={r}/ovsdb-server.pid", f"--unixctl={r}/ovsdb-server.ctl",
                   f"--log-file={r}/ovsdb-server.log", "--detach", "--no-chdir"])
        self._pids["ovsdb-server"] = self._read_pid("ovsdb-server")
        self.vsctl("--no-wait", "init")
        argv = [vswitchd, f"unix:{self.db_sock}", f"--pidfile={r}/ovs-vswitchd.pid",
                f"--unixctl={r}/ovs-vswitchd.ctl", f"--log-file={r}/ovs-vswitchd.log",
                "--detach", "--no-chdir"]
        if self.datapath == "netdev":
            argv.append("--disable-system")
        self._run(argv)
        self._pids["ovs-vswitchd"] = self._read_pid("ovs-vswitchd")
        if self.datapath == "netdev":
            self._create_netdev_datapath()

    def _create_netdev_datapath(self) -> None:
        """Create the userspace datapath now, not with the first bridge: its one-off TSC
        estimate (100 ms asleep in ovs-vswitchd's main thread) then belongs to the lab
        host's start. Under the name the bridges' datapath takes, it is the one the first
        bridge opens (ofproto-dpif deletes a datapath of any other name); it is destroyed
        with the last bridge, as before, and the next one creates it again without the
        estimate. Until then its local port `ovs-netdev` is a (down) link of the lab."""
        self.appctl("dpctl/add-dp", f"netdev@{NETDEV_DATAPATH}")

    def _read_pid(self, daemon: str) -> int:
        return int((self.rundir / f"{daemon}.pid").read_text().strip())

    @property
    def pids(self) -> dict[str, int]:
        return dict(self._pids)

    def stop(self) -> None:
        """Stop both daemons; their pids were read at start (they delete their pidfiles on
        exit). A deletion still being applied is let finish first: ovs-vswitchd reads
        SIGTERM only between two reconfigurations, and one removing 256 ports takes ~4 s."""
        if self._unsynced and "ovs-vswitchd" in self._pids:
            with contextlib.suppress(LabError):  # a dead daemon: terminate() still runs
                self.sync(timeout=60)
        pids = [self._pids.pop(d) for d in ("ovs-vswitchd", "ovsdb-server") if d in self._pids]
        procs.terminate(pids, grace=1.5)

    def _run(self, argv: list[str], in_lab: bool = True) -> str:
        return run(argv, netns=self.ns if in_lab else None, env=self.env, timeout=60).stdout

    def vsctl(self, *args: str, timeout: float = 30) -> str:
        """Run `ovs-vsctl ARGS` against this instance; `--` separates commands.

        Unless ARGS has `--no-wait`, ovs-vsctl returns once ovs-vswitchd has applied the
        change; after a `delete()` it first makes sure the deletion was read (`_settle`)."""
        if self._unsynced and "--no-wait" not in args:
            self._settle(timeout)
        argv = ["ovs-vsctl", f"--db=unix:{self.db_sock}", f"--timeout={int(timeout)}", *args]
        p = run(argv, env=self.env, timeout=None, check=False)
        if p.returncode != 0:
            raise _vsctl_error(argv, p.returncode, p.stderr)
        return p.stdout

    def appctl(self, command: str, *args: str, timeout: float = 30) -> str:
        """`ovs-appctl -t ovs-vswitchd COMMAND ARGS`, spoken on the daemon's control socket
        (`unixctl`) instead of spawning ovs-appctl (~5 ms)."""
        return unixctl(self.rundir / "ovs-vswitchd.ctl", command, list(args), timeout)

    def delete(self, *args: str) -> None:
        """`ovs-vsctl --no-wait ARGS` for deletions: the database changes at once and
        ovs-vswitchd applies it in the background. Removing a port from the userspace
        datapath closes its packet socket, and the kernel waits for an RCU grace period
        there: ~15 ms per port, mostly idle (docs/host-facts.md). Waiting for that made a
        64-port teardown last ~1 s.

        The next waiting `vsctl` (any add) first makes sure ovs-vswitchd has read this
        deletion (`_settle`): had it still been busy when a bridge of the same name was
        re-created, it would see one bridge `sw0` changed, not one deleted and one added,
        and the new `sw0` would keep the old one's OpenFlow flows (measured)."""
        self.vsctl("--no-wait", *args)
        self._unsynced = True
        self._pending_bridges = None

    def delete_bridge(self, name: str) -> None:
        """`delete("--if-exists", "del-br", NAME)`; the next waiting call can then tell it
        was read by ovs-vswitchd without an ovs-vsctl of its own: the bridge's own
        interface NAME leaves the lab namespace when ovs-vswitchd applies the deletion."""
        pending = self._pending_bridges if self._unsynced else []
        self.delete("--if-exists", "del-br", name)
        self._pending_bridges = None if pending is None else [*pending, name]

    def _settle(self, timeout: float) -> None:
        """Before a waiting change: make sure ovs-vswitchd has read the pending deletions,
        so that the change reaches it in a later reconfiguration (see `delete`)."""
        bridges = self._pending_bridges
        if bridges and self._interfaces_gone(bridges, within=2.0):
            self._unsynced = False
            self._pending_bridges = []
            return
        self.sync(timeout)

    def _interfaces_gone(self, names: list[str], within: float) -> bool:
        with netns.entered(self.ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            deadline = time.monotonic() + within
            while any(ifindex(sock, n) is not None for n in names):
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.001)
            return True
        finally:
            sock.close()

    def sync(self, timeout: float = 30) -> None:
        """Return once ovs-vswitchd has applied every change made so far (a change that
        only bumps `next_cfg` and waits for `cur_cfg`, as every waiting ovs-vsctl does)."""
        self._unsynced = False
        self._syncs += 1
        pending, self._pending_bridges = self._pending_bridges, []
        try:
            self.vsctl("set", "Open_vSwitch", ".", f"external_ids:labfixtures-sync={self._syncs}",
                       timeout=timeout)
        except BaseException:
            self._unsynced = True
            self._pending_bridges = pending
            raise

    def transaction(self) -> Transaction:
        return Transaction(self)

    def add_bridge(self, name: str) -> None:
        self.vsctl("add-br", name, "--", "set", "bridge", name,
                   f"datapath_type={self.datapath}")

    def show(self) -> str:
        return self.vsctl("show")

    def log_problems(self) -> list[str]:
        """ERR/EMER lines written to the daemons' logs since the last call."""
        found: list[str] = []
        for log in self.logs:
            try:
                with open(log, errors="replace") as f:
                    f.seek(self._log_offsets.get(log, 0))
                    data = f.read()
                    self._log_offsets[log] = f.tell()
            except FileNotFoundError:
                continue
            found += [f"{log.name}: {line}" for line in data.splitlines()
                      if "|ERR|" in line or "|EMER|" in line]
        return found


def unixctl(path: Path, command: str, args: list[str], timeout: float = 30) -> str:
    """Run COMMAND ARGS on the OVS daemon whose control socket is PATH, as ovs-appctl does
    (one JSON-RPC request, lib/unixctl.c), and return its output; a LabError if it fails."""
    request = json.dumps({"id": 0, "method": command, "params": args}).encode()
    decoder = json.JSONDecoder()
    data = b""
    unread = object()
    reply: Any = unread
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(request)
            while reply is unread:
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("the daemon closed the connection without answering")
                data += chunk
                with contextlib.suppress(ValueError):  # not all of it yet
                    reply = decoder.raw_decode(data.decode())[0]
    except OSError as e:
        raise LabError(f"`ovs-appctl -t {path} {command}` failed: {e}",
                       "is this lab's Open vSwitch running? See its logs in the lab's run "
                       "directory") from e
    if not isinstance(reply, dict) or reply.get("id") != 0:
        raise LabError(f"`ovs-appctl -t {path} {command}`: unexpected answer {reply!r}",
                       "report it: labfixtures does not understand this Open vSwitch")
    if reply.get("error") is not None:
        raise LabError(f"`ovs-appctl -t {path} {command} {' '.join(args)}` failed: "
                       f"{str(reply['error']).strip()}",
                       "see ovs-vswitchd.log in the lab's run directory")
    return str(reply.get("result") or "")


def _vsctl_error(argv: list[str], code: int, stderr: str) -> LabError:
    msg = stderr.strip().removeprefix("ovs-vsctl: ")
    if "already exists" in msg:
        return LabError(msg, "use another name, or delete the existing one first")
    if "no bridge named" in msg or "no port named" in msg:
        return LabError(msg, "check the name against `labctl status` / `ovs-vsctl show`")
    if "database connection failed" in msg:
        return LabError(f"cannot reach this lab's ovsdb-server: {msg}",
                        "the lab's Open vSwitch is not running: was the lab torn down?")
    return CommandError(argv, code, stderr)


class Transaction:
    """Many ovs-vsctl commands, one process, one database transaction."""

    def __init__(self, server: OvsServer) -> None:
        self.server = server
        self.commands: list[list[str]] = []

    def add(self, *args: str) -> Transaction:
        self.commands.append(list(args))
        return self

    def add_port(self, bridge: str, spec: PortSpec) -> Transaction:
        return self.add(*spec.vsctl_args(bridge))

    def argv(self) -> list[str]:
        out: list[str] = []
        for cmd in self.commands:
            if out:
                out.append("--")
            out += cmd
        return out

    def commit(self) -> str:
        if not self.commands:
            return ""
        try:
            return self.server.vsctl(*self.argv())
        finally:
            self.commands.clear()


def parse_port_mode(listing: str) -> PortMode:
    """Read `ovs-vsctl list port P` output the way ovs-startup.sh does: an explicit
    vlan_mode wins; otherwise a tag means access and no tag means trunk."""
    fields: dict[str, str] = {}
    for line in listing.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    tag = fields.get("tag", "[]")
    tag_v = None if tag in ("[]", "") else int(tag)
    trunks_s = fields.get("trunks", "[]").strip("[]")
    trunks = tuple(int(v) for v in trunks_s.split(",") if v.strip())
    mode = fields.get("vlan_mode", "[]").strip('"')
    if mode in ("[]", ""):
        mode = "access" if tag_v is not None else "trunk"
    elif mode != "access":
        mode = "trunk"
    return PortMode(mode, tag_v, trunks)
