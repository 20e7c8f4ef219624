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

import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labfixtures.core import netns, runner
from labfixtures.core.addressing import ssh_forward_port
from labfixtures.core.ledger import Ledger
from labfixtures.errors import LabError
from labfixtures.guestimages import GuestImage, default_vcpus
from labfixtures.lab import args
from labfixtures.lab.labhost import LabHost
from labfixtures.lab.switch import Switch, resolve_switch
from labfixtures.lab.veth import HostSpec, VethHost, link_hosts, no_dad, remove_hosts
from labfixtures.lab.vm import VM, VmNic, VmOptions
from labfixtures.lab.vmhost import KNOWN_HOSTS, check_taps, tap_name, tap_scope
from labfixtures.net import probes
from labfixtures.net.netlink import Address, Neighbour, Netlink, Route, check_ifname
from labfixtures.net.ovs import OvsServer, resolve_datapath

# the names callers import from here (their home: switch.py, veth.py, vm.py)
__all__ = ["MAX_TAP", "HostSpec", "Lab", "Switch", "VethHost", "VM", "VmNic"]

MAX_TAP = 65535  # the MAC b8:ad:ca:fe:HH:LL holds the tap number on two bytes


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
        dp = resolve_datapath(datapath)  # validate before creating anything
        host = LabHost(labid, run_base=run_base, persistent=persistent, source=source)
        host.open()
        try:
            nl = Netlink(host.ns)
            host.ledger.push("netlink socket", nl.close)
            no_dad(host.ns, arp_ignore=True)
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
        args.name(name, "name", "switch")
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
        elif isinstance(number_or_name, str) and number_or_name:
            name = number_or_name
        else:
            raise TypeError(f"lab.tap() takes a tap number (lab.tap(2) makes tap2) or an "
                            f"interface name, not {type(number_or_name).__name__} "
                            f"{number_or_name!r}")
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

    def _switch_arg(self, switch: Switch | str | None) -> Switch | None:
        return resolve_switch(self._s.switches, self.labid, switch)

    def veth_host(self, name: str, switch: Switch | str | None = None, *,
                  tag: int | None = None, trunks: Sequence[int] = (),
                  native: int | None = None, addresses: Sequence[str] = (),
                  gateway: str | None = None, mac: str | None = None) -> VethHost:
        """A simple host: its own namespace, `eth0` linked by a veth pair to the lab host
        (and to SWITCH, a Switch or a switch's name, on a port named NAME, access VLAN TAG
        or trunk)."""
        sw = self._switch_arg(switch)
        spec = HostSpec(args.name(name, "name", "host"), tag=tag,
                        trunks=args.vlans(trunks, "trunks"), native=native,
                        addresses=args.interfaces(addresses, "addresses"),
                        gateway=gateway, mac=mac)
        return self.veth_hosts([spec], sw)[0]

    def veth_hosts(self, specs: Iterable[HostSpec], switch: Switch | str | None = None
                   ) -> list[VethHost]:
        """Many hosts at once: one netlink batch in the lab namespace creates every veth
        pair (peer already in its host's namespace, both ends up), one batch per host sets
        its addresses and route, and one ovs-vsctl transaction adds every switch port (one
        more removes them)."""
        sw = self._switch_arg(switch)
        if isinstance(specs, HostSpec | str):
            raise TypeError("veth_hosts() takes a list of HostSpec: "
                            "lab.veth_hosts([HostSpec('h1', ...), ...])")
        specs = list(specs)
        for i, spec in enumerate(specs):
            if not isinstance(spec, HostSpec):
                raise TypeError(f"specs[{i}] must be a HostSpec, not "
                                f"{type(spec).__name__} {spec!r}: "
                                "HostSpec('h1', tag=2, addresses=['198.51.100.20/25'])")
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
                no_dad(ns)
                host = VethHost(self, spec, ns)
                made.append(host)
                self._s.hosts[spec.name] = host
            link_hosts(self.ns, made)
            if sw is not None and specs:
                tx = self.ovs.transaction()
                for spec in specs:
                    tx.add_port(sw.name, spec.port_spec())
                tx.commit()
        except BaseException:
            remove_hosts(self, made, None)
            raise
        self.ledger.push(f"{len(made)} veth host(s)",
                         lambda: remove_hosts(self, made, sw))
        return made

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
           image: str | GuestImage = "tiny", kernel: str | None = None,
           memory: int = 256, vcpus: int | None = None, profile: str = "fast",
           hostname: str | None = None, extra_args: Sequence[str] = (),
           start: bool = True) -> VM:
        """A QEMU guest on this lab: `lab.vm("vm0", tap=2, addresses=[...], gateway=...)`
        (tap2 must exist: `lab.tap(2)` and a switch port), or `user=True` for user-mode
        networking with SSH forwarded from SSH_PORT (default 2200+N). Several NICs:
        `nics=[VmNic(...), ...]`. EXTRA_ARGS go to QEMU as they are (e.g.
        `["-device", "virtio-balloon-pci"]`). KERNEL: with image "tiny", the tiny guest
        built on that Debian kernel package (`labctl image build tiny --kernel PACKAGE`).
        VCPUS: the image's default when not given (`guestimages.default_vcpus`: 2 for
        debian on a host with 2 CPUs or more, 1 for tiny; on `guide`, the script's).
        Boots it unless START is False."""
        args.name(name, "name", "VM")
        if vcpus is None:
            vcpus = default_vcpus(image if isinstance(image, str) else image.name, profile)
        if nics is None:
            if user and ssh_port is None:
                ssh_port = ssh_forward_port(tap or 0)
            nics = [VmNic(tap=tap, user=user, addresses=args.interfaces(addresses),
                          gateway=args.address(gateway, "gateway"), dhcp=dhcp,
                          ssh_port=ssh_port)]
        elif isinstance(nics, VmNic):
            raise TypeError("nics must be a list of VmNic: nics=[VmNic(tap=2, ...)]")
        for i, nic in enumerate(nics):
            if not isinstance(nic, VmNic):
                raise TypeError(f"nics[{i}] must be a VmNic, not {type(nic).__name__} "
                                f"{nic!r}: nics=[VmNic(tap=2, addresses=[...])]")
            args.interfaces(nic.addresses, f"nics[{i}].addresses")
            args.address(nic.gateway, f"nics[{i}].gateway")
        if name in self._s.vms:
            raise LabError(f"VM {name!r} already exists in lab {self.labid}",
                           "give each VM its own name")
        opts = VmOptions(image=image, kernel=kernel, memory=memory, vcpus=vcpus,
                         profile=profile, hostname=hostname,
                         extra_args=list(args.str_list(extra_args, "extra_args", "-snapshot")))
        check_taps(self, name, [n.tap for n in nics if not n.user and n.tap is not None])
        vm = VM(self, name, list(nics), opts)
        self.ledger.push(f"VM {name} record", lambda: self._s.vms.pop(name, None))
        self.ledger.push(f"VM {name} host keys", vm.forget_host_keys)
        self.ledger.push(f"VM {name} overlay", vm.remove_overlay)
        self.ledger.push(f"VM {name}", vm.stop)
        self._s.vms[name] = vm
        if start:
            vm.start()
        return vm

    # -- what a VM needs of its lab (the VmHost protocol) ---------------------------------

    @property
    def known_hosts(self) -> Path:
        return self.rundir / KNOWN_HOSTS

    def has_tap(self, number: int) -> bool:
        return self.nl.exists(tap_name(number))

    def tap_user(self, number: int) -> str | None:
        for vm in self._s.vms.values():
            if any(not n.user and n.tap == number for n in vm.nics):
                return vm.name
        return None

    def ssh_scope(self, tap: int) -> str:
        return tap_scope(self._s.ovs, self.nl.exists, tap)

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

    def run(self, argv: list[str], **kw: Any) -> runner.CommandResult:
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
