"""Veth hosts: a namespace with one interface, `eth0`, standing in for a machine.

`eth0` is one end of a veth pair whose other end, named after the host, sits in the lab
namespace (and usually on a switch port of the same name).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labfixtures.core import netns, procs, runner
from labfixtures.errors import LabError
from labfixtures.lab import args
from labfixtures.net import probes, rtnl
from labfixtures.net.netlink import Address, Neighbour, Netlink, Route
from labfixtures.net.ovs import PortSpec

if TYPE_CHECKING:
    from labfixtures.lab.lab import Lab
    from labfixtures.lab.switch import Switch

HOST_IFINDEX = 2  # eth0 of a veth host: the first index after lo in its fresh namespace


@dataclass(frozen=True)
class HostSpec:
    """A veth host to create: its name, its switch port (access TAG, or TRUNKS with an
    optional NATIVE VLAN) and eth0's addressing."""

    name: str
    tag: int | None = None
    trunks: tuple[int, ...] = ()
    native: int | None = None
    addresses: tuple[str, ...] = ()
    gateway: str | None = None
    mac: str | None = None

    def __post_init__(self) -> None:
        # checked here, where the user wrote them, not in a netlink message much later
        args.name(self.name, "name", "host")
        set_ = object.__setattr__  # frozen: store the normalised values
        set_(self, "tag", args.vlan(self.tag, "tag"))
        set_(self, "trunks", args.vlans(self.trunks, "trunks"))
        set_(self, "native", args.vlan(self.native, "native"))
        set_(self, "addresses", args.interfaces(self.addresses, "addresses"))
        set_(self, "gateway", args.address(self.gateway, "gateway"))
        set_(self, "mac", args.mac(self.mac, "mac"))
        if self.tag is not None and (self.trunks or self.native is not None):
            raise LabError(f"host {self.name}: an access port (tag) cannot also be a trunk",
                           "give tag=V for an access port, or trunks=[...]/native=V")

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
        self._procs: list[subprocess.Popen[Any]] = []

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

    def run(self, argv: list[str], **kw: Any) -> runner.CommandResult:
        return runner.run(argv, netns=self.ns, **kw)

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a program on this host; it is stopped when the host goes away."""
        proc = netns.popen(self.ns, argv, **kw)
        self._procs.append(proc)
        return proc

    def tcp_server(self, port: int, address: str = "0.0.0.0", send: int = 0
                   ) -> subprocess.Popen[Any]:
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


def link_hosts(lab_ns: str, hosts: list[VethHost]) -> None:
    """One netlink batch in LAB_NS creates every veth pair (peer already in its host's
    namespace, both ends up); one batch per host sets its addresses and route."""
    fds = [os.open(netns.path(h.ns), os.O_RDONLY) for h in hosts]
    try:
        with rtnl.Rtnl(lab_ns) as lab_side:
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


def remove_hosts(lab: Lab, hosts: list[VethHost], switch: Switch | None) -> None:
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


def no_dad(ns: str, arp_ignore: bool = False) -> None:
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
