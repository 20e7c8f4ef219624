"""The lab a test holds: switches, taps, veth hosts and sysctls on one lab host.

A small node/link API in the spirit of Mininet's:

    with Lab.open() as lab:
        sw0 = lab.switch("sw0")
        sw0.svi(2, "203.0.113.129/26")
        h1 = lab.veth_host("h1", sw0, tag=2, addresses=["203.0.113.130/26"],
                           gateway="203.0.113.129")
        assert h1.ping("203.0.113.129")

Every creation goes on the ledger of the `Lab` that made it. `lab.scope()` gives a child
`Lab` on the same lab host with its own ledger: the pytest plugin hands one to each test,
so a test's switches and hosts go away after it while the namespace and the Open vSwitch
daemons (the costly part) stay for the next test of the same worker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from labfixtures.core import netns, procs, runner
from labfixtures.core.addressing import ssh_forward_port
from labfixtures.errors import LabError
from labfixtures.guestimages import GuestImage
from labfixtures.lab.labhost import LabHost, Ledger
from labfixtures.lab.vm import VM, VmNic
from labfixtures.net import probes, rtnl
from labfixtures.net.netlink import Address, Neighbour, Netlink, Route, check_ifname
from labfixtures.net.ovs import OvsServer, PortMode, PortSpec, parse_port_mode

MAX_TAP = 65535  # the MAC b8:ad:ca:fe:HH:LL holds the tap number on two bytes
HOST_IFINDEX = 2  # eth0 of a veth host: the first index after lo in its fresh namespace


@dataclass
class _Shared:
    """What all scopes of one lab host share."""

    host: LabHost
    datapath: str
    nl: Netlink
    ovs: OvsServer | None = None
    switches: dict[str, Switch] = field(default_factory=dict)
    hosts: dict[str, VethHost] = field(default_factory=dict)
    vms: dict[str, VM] = field(default_factory=dict)
    keep_overlays: Path | None = None


class Lab:
    """A lab host seen through one ledger (the root one, or a test's scope)."""

    def __init__(self, shared: _Shared, ledger: Ledger) -> None:
        self._s = shared
        self.ledger = ledger

    # -- life cycle ---------------------------------------------------------------------

    @classmethod
    def open(cls, labid: str | None = None, *, datapath: str = "auto",
             run_base: Path | None = None, persistent: bool = False, source: str = "",
             start_ovs: bool = True, keep_overlays: Path | None = None) -> Lab:
        """Create the lab host (namespace, run directory) and, by default, its OVS."""
        from labfixtures.net.ovs import resolve_datapath

        dp = resolve_datapath(datapath)  # validate before creating anything
        host = LabHost(labid, run_base=run_base, persistent=persistent, source=source)
        host.open()
        try:
            nl = Netlink(host.ns)
            host.ledger.push("netlink socket", nl.close)
            _no_dad(host.ns, arp_ignore=True)
            lab = cls(_Shared(host, dp, nl, keep_overlays=keep_overlays), host.ledger)
            if start_ovs:
                lab.ovs  # noqa: B018 - start it now, not in the middle of a test
        except BaseException:
            host.close()
            raise
        return lab

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def scope(self, name: str = "test") -> Iterator[Lab]:
        """A child lab whose creations are undone when the block ends."""
        child = Lab(self._s, Ledger(f"{self.labid}/{name}"))
        try:
            yield child
        finally:
            child.close()

    # -- what it is made of ---------------------------------------------------------------

    @property
    def host(self) -> LabHost:
        return self._s.host

    @property
    def labid(self) -> str:
        return self._s.host.labid

    @property
    def ns(self) -> str:
        """The lab host's network namespace (the guide's "système hôte")."""
        return self._s.host.ns

    @property
    def rundir(self) -> Path:
        return self._s.host.rundir

    @property
    def nl(self) -> Netlink:
        return self._s.nl

    @property
    def switches(self) -> dict[str, Switch]:
        """The lab's switches by name (all scopes)."""
        return dict(self._s.switches)

    @property
    def hosts(self) -> dict[str, VethHost]:
        """The lab's veth hosts by name (all scopes)."""
        return dict(self._s.hosts)

    @property
    def keep_overlays(self) -> Path | None:
        """Where VM overlays go at teardown instead of being deleted (None: deleted)."""
        return self._s.keep_overlays

    @property
    def vms(self) -> dict[str, VM]:
        """The lab's virtual machines by name (all scopes)."""
        return dict(self._s.vms)

    @property
    def datapath(self) -> str:
        return self._s.datapath

    @property
    def ovs(self) -> OvsServer:
        """The lab's private Open vSwitch, started on first use, stopped with the lab host."""
        if self._s.ovs is None:
            server = OvsServer(self.ns, self.rundir, self._s.datapath)
            root = self._s.host.ledger
            root.push("Open vSwitch daemons", server.stop)
            server.start()
            self._s.ovs = server
        return self._s.ovs

    # -- building -----------------------------------------------------------------------

    def switch(self, name: str) -> Switch:
        """An Open vSwitch bridge (the guide's `ovs-vsctl add-br sw0`), up."""
        if name in self._s.switches:
            raise LabError(f"switch {name!r} already exists in lab {self.labid}",
                           "give each switch its own name")
        ovs = self.ovs
        ovs.add_bridge(name)
        sw = Switch(self, name, self.ledger)
        self._s.switches[name] = sw
        self.ledger.push(f"switch {name}", sw.delete)
        self.nl.set_up(name)
        return sw

    def tap(self, number_or_name: int | str, *, group: str | int | None = None,
            multi_queue: bool = False, up: bool = True) -> str:
        """`ip tuntap add mode tap dev tapN [group G] [multi_queue]` in the lab namespace.

        A number N names it tapN, the guide's convention from which the VM's MAC, SPICE
        and telnet ports derive. Returns the interface name.
        """
        if isinstance(number_or_name, int) and not isinstance(number_or_name, bool):
            if not 0 <= number_or_name <= MAX_TAP:
                raise LabError(f"tap number {number_or_name} is out of range",
                               f"use a number from 0 to {MAX_TAP} (the MAC holds it on two "
                               "bytes)")
            name = f"tap{number_or_name}"
        else:
            name = str(number_or_name)
        if self.nl.exists(name):
            raise LabError(f"{name} already exists in lab {self.labid}",
                           "pick another tap number: each VM needs its own tap")
        self.nl.create_tap(name, group=group, multi_queue=multi_queue, up=up)
        self.ledger.push(f"tap {name}", lambda: self.nl.delete_link(name))
        return name

    def sysctl(self, key: str, value: str | int) -> None:
        """Set a net.* sysctl in the lab namespace; the old value comes back at teardown."""
        old = self.nl.sysctl(key, value)
        self.ledger.push(f"sysctl {key}={value}", lambda: self.nl.sysctl(key, old))

    def enable_forwarding(self, log_martians: bool = True) -> None:
        """The guide's §10 routing: IPv4 and IPv6 forwarding (and martian logging) on, in
        the lab namespace only."""
        self.sysctl("net.ipv4.ip_forward", 1)
        self.sysctl("net.ipv6.conf.all.forwarding", 1)
        if log_martians:
            self.sysctl("net.ipv4.conf.all.log_martians", 1)

    def veth_host(self, name: str, switch: Switch | None = None, *, tag: int | None = None,
                  trunks: Sequence[int] = (), native: int | None = None,
                  addresses: Sequence[str] = (), gateway: str | None = None,
                  mac: str | None = None) -> VethHost:
        """A simple host: its own namespace, `eth0` linked by a veth pair to the lab host
        (and to SWITCH on a port named NAME, access VLAN TAG or trunk)."""
        spec = HostSpec(name, tag=tag, trunks=tuple(trunks), native=native,
                        addresses=tuple(addresses), gateway=gateway, mac=mac)
        return self.veth_hosts([spec], switch)[0]

    def veth_hosts(self, specs: Iterable[HostSpec], switch: Switch | None = None
                   ) -> list[VethHost]:
        """Many hosts at once: one netlink batch in the lab namespace creates every veth
        pair (peer already in its host's namespace, both ends up), one batch per host sets
        its addresses and route, and one ovs-vsctl transaction adds every switch port (one
        more removes them)."""
        specs = list(specs)
        names = [s.name for s in specs]
        for spec in specs:
            check_ifname(spec.name)
            if spec.name in self._s.hosts or names.count(spec.name) > 1:
                raise LabError(f"host {spec.name!r} already exists in lab {self.labid}",
                               "give each host its own name")
        made: list[VethHost] = []
        try:
            for spec in specs:
                self._wait_gone(spec.name)
                ns = self.host.child_ns(spec.name)
                netns.create(ns)
                _no_dad(ns)
                host = VethHost(self, spec, ns)
                made.append(host)
                self._s.hosts[spec.name] = host
            self._link_hosts(made)
            if switch is not None and specs:
                tx = self.ovs.transaction()
                for spec in specs:
                    tx.add_port(switch.name, spec.port_spec())
                tx.commit()
        except BaseException:
            _remove_hosts(self, made, None)
            raise
        self.ledger.push(f"{len(made)} veth host(s)",
                         lambda: _remove_hosts(self, made, switch))
        return made

    def _link_hosts(self, hosts: list[VethHost]) -> None:
        fds = [os.open(netns.path(h.ns), os.O_RDONLY) for h in hosts]
        try:
            with rtnl.Rtnl(self.ns) as lab_side:
                lab_side.batch(
                    [rtnl.veth(h.name, "eth0", peer_ns_fd=fd, peer_index=HOST_IFINDEX,
                               peer_mac=_mac_bytes(h.spec.mac))
                     for h, fd in zip(hosts, fds, strict=True)]
                    + [rtnl.link_up(name=h.name) for h in hosts],
                    "creating veth pairs")
                for h in hosts:
                    lab_side.tx_checksum(h.name, False)
        finally:
            for fd in fds:
                os.close(fd)
        for h in hosts:
            with rtnl.Rtnl(h.ns) as host_side:
                host_side.tx_checksum("eth0", False)
                msgs = [rtnl.link_up(1), rtnl.link_up(HOST_IFINDEX)]
                msgs += [rtnl.address(HOST_IFINDEX, c) for c in h.spec.addresses]
                if h.spec.gateway:
                    msgs.append(rtnl.default_route(h.spec.gateway))
                host_side.batch(msgs, f"configuring host {h.name}")

    def _wait_gone(self, ifname: str, timeout: float = 2.0) -> None:
        """A host of the same name removed just before may still have its veth end here:
        the kernel frees a deleted namespace asynchronously. Wait for it, briefly."""
        deadline = time.monotonic() + timeout
        while self.nl.exists(ifname):
            if time.monotonic() > deadline:
                raise LabError(f"interface {ifname!r} already exists in lab {self.labid}",
                               "pick another host name")
            time.sleep(0.005)

    def vm(self, name: str, *, tap: int | None = None, addresses: Sequence[str] = (),
           gateway: str | None = None, user: bool = False, ssh_port: int | None = None,
           dhcp: bool = False, nics: Sequence[VmNic] | None = None,
           image: str | GuestImage = "tiny",
           memory: int = 256, vcpus: int = 1, profile: str = "fast",
           hostname: str | None = None, extra_args: Sequence[str] = (),
           start: bool = True) -> VM:
        """A QEMU guest on this lab: `lab.vm("vm0", tap=2, addresses=[...], gateway=...)`
        (tap2 must exist: `lab.tap(2)` and a switch port), or `user=True` for user-mode
        networking with SSH forwarded from SSH_PORT (default 2200+N). Several NICs:
        `nics=[VmNic(...), ...]`. EXTRA_ARGS go to QEMU as they are (e.g.
        `["-device", "virtio-balloon-pci"]`). Boots it unless START is False."""
        from labfixtures.lab.vm import VmOptions, create

        if nics is None:
            if user and ssh_port is None:
                ssh_port = ssh_forward_port(tap or 0)
            nics = [VmNic(tap=tap, user=user, addresses=tuple(addresses), gateway=gateway,
                          dhcp=dhcp, ssh_port=ssh_port)]
        for nic in nics:
            if not nic.user and nic.tap is not None and not self.nl.exists(f"tap{nic.tap}"):
                raise LabError(f"VM {name}: tap{nic.tap} does not exist in lab {self.labid}",
                               f"create it first: lab.tap({nic.tap}) (and plug it into a "
                               "switch)")
        if name in self._s.vms:
            raise LabError(f"VM {name!r} already exists in lab {self.labid}",
                           "give each VM its own name")
        self.ledger.push(f"VM {name} record", lambda: self._s.vms.pop(name, None))
        vm = create(self, name, list(nics),
                    VmOptions(image=image, memory=memory, vcpus=vcpus, profile=profile,
                              hostname=hostname, extra_args=list(extra_args)), start=False)
        self._s.vms[name] = vm
        if start:
            vm.start()
        return vm

    # -- reading --------------------------------------------------------------------------

    def addresses(self, dev: str | None = None, family: int = 0) -> list[Address]:
        return self.nl.addresses(dev, family)

    def routes(self, family: int = socket.AF_INET) -> list[Route]:
        return self.nl.routes(family)

    def neighbours(self, dev: str | None = None, family: int = 0) -> list[Neighbour]:
        return self.nl.neighbours(dev, family)

    def ping(self, address: str, timeout: float = 2.0) -> bool:
        return probes.ping(self.ns, address, timeout=timeout, count=max(1, int(timeout * 5))
                           ) is not None

    def tcp(self, address: str, port: int, timeout: float = 2.0) -> bool:
        """True if a TCP connection to ADDRESS:PORT opens from the lab host."""
        return probes.tcp_connect(self.ns, address, port, timeout=timeout)

    def run(self, argv: list[str], **kw) -> runner.CommandResult:
        """Run a command in the lab host namespace (like `ip netns exec LAB ...`)."""
        return runner.run(argv, netns=self.ns, **kw)

    def status(self) -> str:
        """A readable summary: interfaces, addresses and switches."""
        lines = [f"lab {self.labid} (namespace {self.ns}, datapath {self.datapath})"]
        for link in self.nl.links():
            addrs = ", ".join(a.cidr for a in self.nl.addresses(link.name))
            state = "UP" if link.up else "DOWN"
            lines.append(f"  {link.name:<15} {state:<4} {link.mac} {addrs}")
        for h in self._s.hosts.values():
            lines.append(f"  host {h.name}: namespace {h.ns}")
        for v in self._s.vms.values():
            state = "running" if v.machine and v.machine.running else "stopped"
            lines.append(f"  VM {v.name}: {state}, image {v.image.name}, "
                         f"ssh {v.ssh_target()[0]}")
        if self._s.ovs is not None:
            lines.append(self._s.ovs.show().rstrip())
        return "\n".join(lines)


def _remove_hosts(lab: Lab, hosts: list[VethHost], switch: Switch | None) -> None:
    """Their switch ports in one transaction, then their namespaces: the veth pairs die
    with them (the kernel does that part asynchronously, see `Lab._wait_gone`)."""
    if switch is not None and hosts and not switch.deleted:
        if switch.ledger is lab.ledger:
            # the switch goes in this same teardown: one del-br takes all its ports
            switch.delete()
        else:
            switch._del_ports([h.name for h in hosts])
    for h in hosts:
        lab._s.hosts.pop(h.name, None)
        h.stop_processes()
        netns.delete(h.ns)


def _no_dad(ns: str, arp_ignore: bool = False) -> None:
    """No IPv6 duplicate address detection on the lab's own links: a lab's addresses are
    unique by construction, and DAD keeps a new link-local address unusable for ~1 s
    (`ssh fe80::…%sw0-vlan2` would fail from a tentative address).

    With ARP_IGNORE (the lab host): answer ARP only on the interface that holds the
    address. On the userspace datapath the kernel also receives what a VM sends on its
    tap (and a host on its veth end), and by default would answer "203.0.113.129 is at
    <tap2's MAC>", racing the SVI: ARP flux, a wrong gateway MAC in the VM."""
    with netns.entered(ns):
        for conf in ("default", "all"):
            with open(f"/proc/sys/net/ipv6/conf/{conf}/accept_dad", "w") as f:
                f.write("0")
            if arp_ignore:
                with open(f"/proc/sys/net/ipv4/conf/{conf}/arp_ignore", "w") as f:
                    f.write("1")


def _mac_bytes(mac: str | None) -> bytes | None:
    return bytes.fromhex(mac.replace(":", "")) if mac else None


@dataclass(frozen=True)
class HostSpec:
    name: str
    tag: int | None = None
    trunks: tuple[int, ...] = ()
    native: int | None = None
    addresses: tuple[str, ...] = ()
    gateway: str | None = None
    mac: str | None = None

    def port_spec(self) -> PortSpec:
        return PortSpec(self.name, tag=self.tag, trunks=self.trunks, native=self.native)


class VethHost:
    """A namespace with one interface, `eth0`, standing in for a machine."""

    def __init__(self, lab: Lab, spec: HostSpec, ns: str) -> None:
        self.lab = lab
        self.spec = spec
        self.name = spec.name
        self.ns = ns
        self.port = spec.name  # its veth end in the lab namespace, and its switch port
        self._procs: list[subprocess.Popen] = []

    def __repr__(self) -> str:
        return f"VethHost({self.name!r}, ns={self.ns!r})"

    def netlink(self) -> Netlink:
        return Netlink(self.ns)

    def ping(self, address: str, timeout: float = 2.0) -> bool:
        """True if ADDRESS answers an ICMP echo from this host within TIMEOUT."""
        return probes.ping(self.ns, address, timeout=timeout,
                           count=max(1, int(timeout * 5))) is not None

    def tcp(self, address: str, port: int, timeout: float = 2.0) -> bool:
        return probes.tcp_connect(self.ns, address, port, timeout=timeout)

    def run(self, argv: list[str], **kw) -> runner.CommandResult:
        return runner.run(argv, netns=self.ns, **kw)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        """Start a program on this host; it is stopped when the host goes away."""
        proc = netns.popen(self.ns, argv, **kw)
        self._procs.append(proc)
        return proc

    def tcp_server(self, port: int, address: str = "0.0.0.0", send: int = 0
                   ) -> subprocess.Popen:
        """A one-shot TCP server on this host: accepts one connection, sends SEND bytes,
        closes. Returned once it listens, so a client may connect at once."""
        code = ("import socket,sys;s=socket.socket();"
                "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
                f"s.bind(({address!r},{port}));s.listen();print('up',flush=True);"
                f"c,_=s.accept();c.sendall(b'x'*{send});c.close()")
        proc = self.popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "up":
            proc.wait(timeout=5)
            raise LabError(f"the TCP server on {self.name} did not start (port {port})",
                           "is the port or address already in use on this host?")
        return proc

    def stop_processes(self) -> None:
        running = [p for p in self._procs if p.poll() is None]
        procs.terminate([p.pid for p in running], grace=1.0)
        for p in running:
            p.wait()
        self._procs.clear()

    @property
    def mac(self) -> str:
        with self.netlink() as nl:
            return nl.link("eth0").mac

    def addresses(self, family: int = 0) -> list[Address]:
        with self.netlink() as nl:
            return nl.addresses("eth0", family)

    def routes(self, family: int = socket.AF_INET) -> list[Route]:
        with self.netlink() as nl:
            return nl.routes(family)

    def neighbours(self, family: int = 0) -> list[Neighbour]:
        with self.netlink() as nl:
            return nl.neighbours("eth0", family)

    def link_local(self) -> str | None:
        """The fe80:: address of eth0 once it exists (DAD done), else None."""
        for a in self.addresses(socket.AF_INET6):
            if a.scope == "link":
                return a.address
        return None


class Switch:
    """An Open vSwitch bridge of the lab."""

    def __init__(self, lab: Lab, name: str, ledger: Ledger) -> None:
        self.lab = lab
        self.name = name
        self.ledger = ledger  # the scope that created it, and will delete it
        self.deleted = False

    def delete(self) -> None:
        """`ovs-vsctl del-br`: the bridge and all its ports, in one transaction."""
        if self.deleted:
            return
        self.deleted = True
        self.lab._s.switches.pop(self.name, None)
        if self.lab._s.ovs is not None:
            self.lab._s.ovs.vsctl("--if-exists", "del-br", self.name)

    def __repr__(self) -> str:
        return f"Switch({self.name!r})"

    def add_port(self, name: str, *, tag: int | None = None, trunks: Sequence[int] = (),
                 native: int | None = None, internal: bool = False) -> str:
        """`ovs-vsctl add-port SW NAME [tag=T | trunks=...]` for an existing interface
        (a tap, a veth end) or, with INTERNAL, a new internal port."""
        self.add_ports([PortSpec(name, tag=tag, trunks=tuple(trunks), native=native,
                                 internal=internal)])
        return name

    def add_ports(self, specs: Sequence[PortSpec]) -> None:
        """Several ports in one transaction; removed in one transaction at teardown."""
        for s in specs:
            if not s.internal and not self.lab.nl.exists(s.name):
                raise LabError(f"cannot add port {s.name!r} to {self.name}: no such interface "
                               f"in lab {self.lab.labid}",
                               "create it first (lab.tap(N), a veth host), or add it as "
                               "an internal port")
        tx = self.lab.ovs.transaction()
        for s in specs:
            tx.add_port(self.name, s)
        tx.commit()
        names = [s.name for s in specs]
        self.lab.ledger.push(f"ports {', '.join(names)} on {self.name}",
                             lambda: self._del_ports(names))
        for s in specs:
            if s.internal:
                self.lab.nl.set_up(s.name)

    def _del_ports(self, names: list[str]) -> None:
        if self.deleted:
            return
        tx = self.lab.ovs.transaction()
        for n in names:
            tx.add("--if-exists", "del-port", self.name, n)
        tx.commit()

    def svi(self, vlan: int, *addresses: str, name: str | None = None) -> str:
        """The guide's SVI: internal port `SW-vlanV` with tag V, addresses, up."""
        port = name or f"{self.name}-vlan{vlan}"
        self.add_port(port, tag=vlan, internal=True)
        for cidr in addresses:
            self.lab.nl.add_address(port, cidr)
        return port

    def port_mode(self, port: str) -> PortMode:
        """Access (with its tag) or trunk, read back from the database like ovs-startup.sh."""
        return parse_port_mode(self.lab.ovs.vsctl("list", "port", port))

    def ports(self) -> list[str]:
        return self.lab.ovs.vsctl("list-ports", self.name).split()

    def show(self) -> str:
        return self.lab.ovs.show()
