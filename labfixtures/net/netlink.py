"""Links, addresses, routes and sysctls of one network namespace, through netlink.

`Netlink(ns)` holds a pyroute2 socket opened *inside* namespace NS (see `netns.entered`),
so every call below acts on that namespace and never on the host's. What rtnetlink cannot
do is done with the same ioctls as the tools: TAP creation (`ip tuntap`, TUNSETIFF on
/dev/net/tun, with the thread inside the namespace) and turning TX checksum offload off
(`ethtool -K DEV tx off`, SIOCETHTOOL), which the OVS userspace datapath needs for TCP
(docs/host-facts.md, the checksum pitfall).

Reads come back as small dataclasses so that assertions can print them to a student.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labfixtures.core import netns
from labfixtures.errors import HostResourceError, LabError
from labfixtures.net import rtnl

if TYPE_CHECKING:
    from pyroute2 import IPRoute

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETGROUP = 0x400454CE
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100

IFNAMSIZ = 16
NUD_STATES = {
    0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
    0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT", 0x00: "NONE",
}
RT_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
RT_PROTOS = {2: "kernel", 3: "boot", 4: "static", 16: "dhcp", 186: "bgp", 9: "ra"}


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str
    up: bool
    carrier: bool
    kind: str
    mtu: int
    master: int | None = None


@dataclass(frozen=True)
class Address:
    dev: str
    address: str
    prefixlen: int
    family: int
    scope: str

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"

    def __str__(self) -> str:
        return f"{self.cidr} dev {self.dev} scope {self.scope}"


@dataclass(frozen=True)
class Route:
    dst: str  # "default" or "PREFIX/LEN"
    gateway: str | None
    dev: str | None
    family: int
    proto: str
    scope: str
    table: int = 254

    def __str__(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        dev = f" dev {self.dev}" if self.dev else ""
        return f"{self.dst}{via}{dev} proto {self.proto} scope {self.scope}"


@dataclass(frozen=True)
class Neighbour:
    address: str
    mac: str | None
    dev: str
    state: str
    family: int

    def __str__(self) -> str:
        return f"{self.address} dev {self.dev} lladdr {self.mac or '-'} {self.state}"


def check_ifname(name: str) -> None:
    if not name or len(name) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise LabError(
            f"interface name {name!r} is not valid",
            f"use 1 to {IFNAMSIZ - 1} characters without '/' or spaces",
        )


def _gid(group: str | int | None) -> int | None:
    if group is None or isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise HostResourceError(
            "group", group,
            f"create it (`groupadd --system {group}`; ./ci/setup does it for the guide's "
            f"kvm group) or give no group",
        ) from None


def _netlink_error() -> Any:  # type[NetlinkError]; pyroute2 is untyped
    """pyroute2's NetlinkError; pyroute2 is loaded once a Netlink exists."""
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


class Netlink:
    """rtnetlink, ioctls and sysctls bound to one network namespace (None: where we are)."""

    def __init__(self, ns: str | None) -> None:
        self.ns = ns
        # imported here: pyroute2 loads all its families (0.2 s), which a process that
        # opens no namespace (`labctl --help`, a grading run's parent) does without
        from pyroute2 import IPRoute

        with netns.entered(ns):
            self.ipr: IPRoute = IPRoute()
            self._ioctl_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def close(self) -> None:
        self.ipr.close()
        self._ioctl_sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- links ------------------------------------------------------------------------

    def index(self, name: str) -> int:
        found = rtnl.ifindex(self._ioctl_sock, name)
        if found is None:
            raise LabError(f"no interface {name!r} in namespace {self.ns or '(current)'}",
                           "check the name; list interfaces with `labctl status`")
        return found

    def exists(self, name: str) -> bool:
        return rtnl.ifindex(self._ioctl_sock, name) is not None

    def links(self) -> list[Link]:
        return [self._link(msg) for msg in self.ipr.get_links()]

    def link(self, name: str) -> Link:
        return self._link(self.ipr.get_links(self.index(name))[0])

    @staticmethod
    def _link(msg: Any) -> Link:
        info = msg.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info else ""
        flags = msg["flags"]
        return Link(
            index=msg["index"],
            name=msg.get("IFLA_IFNAME"),
            mac=msg.get("IFLA_ADDRESS") or "",
            up=bool(flags & 1),
            carrier=bool(msg.get("IFLA_CARRIER")),
            kind=kind or "",
            mtu=msg.get("IFLA_MTU") or 0,
            master=msg.get("IFLA_MASTER"),
        )

    def set_up(self, name: str, up: bool = True) -> None:
        self.ipr.link("set", index=self.index(name), state="up" if up else "down")

    def delete_link(self, name: str) -> bool:
        index = rtnl.ifindex(self._ioctl_sock, name)
        if index is None:
            return False
        try:
            self.ipr.link("del", index=index)
        except _netlink_error() as e:
            if e.code != errno.ENODEV:
                raise
            return False
        return True

    def create_tap(self, name: str, *, group: str | int | None = None,
                   multi_queue: bool = False, up: bool = False) -> None:
        """`ip tuntap add mode tap dev NAME [group G] [multi_queue]`, in this namespace."""
        check_ifname(name)
        gid = _gid(group)
        if self.exists(name):
            raise LabError(f"interface {name!r} already exists in {self.ns or 'this namespace'}",
                           "pick another tap number, or tear the old lab down")
        flags = IFF_TAP | IFF_NO_PI | (IFF_MULTI_QUEUE if multi_queue else 0)
        ifr = struct.pack("16sH22x", name.encode(), flags)
        try:
            with netns.entered(self.ns):
                fd = os.open("/dev/net/tun", os.O_RDWR)
        except FileNotFoundError:
            raise HostResourceError("device", "/dev/net/tun",
                                    "load the tun module: `modprobe tun`") from None
        try:
            fcntl.ioctl(fd, TUNSETIFF, ifr)
            if gid is not None:
                fcntl.ioctl(fd, TUNSETGROUP, gid)
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        except OSError as e:
            raise LabError(f"cannot create tap {name!r}: {e.strerror}",
                           "is the name used by another device or program?") from None
        finally:
            os.close(fd)
        if up:
            self.set_up(name)

    def create_veth(self, name: str, peer: str, *, peer_ns: str | None = None) -> None:
        """A veth pair NAME<->PEER; PEER is created directly in namespace PEER_NS if given."""
        check_ifname(name)
        check_ifname(peer)
        if self.exists(name):
            raise LabError(f"interface {name!r} already exists in {self.ns or 'this namespace'}",
                           "pick another name")
        peer_spec: dict[str, Any] = {"ifname": peer}
        fd = None
        if peer_ns is not None:
            fd = os.open(netns.path(peer_ns), os.O_RDONLY)
            peer_spec["net_ns_fd"] = fd
        try:
            self.ipr.link("add", ifname=name, kind="veth", peer=peer_spec)
        finally:
            if fd is not None:
                os.close(fd)

    def tx_checksum(self, name: str, on: bool) -> None:
        """`ethtool -K NAME tx on|off`."""
        rtnl.set_tx_checksum(self._ioctl_sock, name, on)

    # -- addresses and routes -------------------------------------------------------------

    def add_address(self, name: str, cidr: str) -> None:
        addr, _, plen = cidr.partition("/")
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        if not plen:
            plen = "128" if family == socket.AF_INET6 else "32"
        try:
            self.ipr.addr("add", index=self.index(name), address=addr, prefixlen=int(plen),
                          family=family)
        except _netlink_error() as e:
            if e.code == errno.EEXIST:
                raise LabError(f"address {cidr} is already on {name}", "remove the duplicate"
                               ) from None
            raise

    def addresses(self, name: str | None = None, family: int = 0) -> list[Address]:
        names = {link.index: link.name for link in self.links()}
        kw: dict[str, Any] = {"family": family} if family else {}
        if name is not None:
            kw["index"] = self.index(name)
        return [
            Address(
                dev=names.get(m["index"], str(m["index"])),
                address=m.get("IFA_ADDRESS"),
                prefixlen=m["prefixlen"],
                family=m["family"],
                scope=RT_SCOPES.get(m["scope"], str(m["scope"])),
            )
            for m in self.ipr.get_addr(**kw)
        ]

    def add_route(self, dst: str, *, gateway: str | None = None, dev: str | None = None) -> None:
        family = socket.AF_INET6 if ":" in (gateway or dst) else socket.AF_INET
        kw: dict[str, Any] = {"dst": dst, "family": family}
        if gateway:
            kw["gateway"] = gateway
        if dev:
            kw["oif"] = self.index(dev)
        self.ipr.route("add", **kw)

    def routes(self, family: int = socket.AF_INET, table: int = 254) -> list[Route]:
        names = {link.index: link.name for link in self.links()}
        out = []
        for m in self.ipr.get_routes(family=family, table=table):
            dst = m.get("RTA_DST")
            out.append(Route(
                dst=f"{dst}/{m['dst_len']}" if dst else "default",
                gateway=m.get("RTA_GATEWAY"),
                dev=names.get(m.get("RTA_OIF")),
                family=m["family"],
                proto=RT_PROTOS.get(m["proto"], str(m["proto"])),
                scope=RT_SCOPES.get(m["scope"], str(m["scope"])),
                table=m.get("RTA_TABLE") or m["table"],
            ))
        return out

    def neighbours(self, dev: str | None = None, family: int = 0) -> list[Neighbour]:
        names = {link.index: link.name for link in self.links()}
        kw: dict[str, Any] = {"family": family} if family else {}
        if dev is not None:
            kw["ifindex"] = self.index(dev)
        return [
            Neighbour(
                address=m.get("NDA_DST"),
                mac=m.get("NDA_LLADDR"),
                dev=names.get(m["ifindex"], str(m["ifindex"])),
                state=NUD_STATES.get(m["state"], hex(m["state"])),
                family=m["family"],
            )
            for m in self.ipr.get_neighbours(**kw)
            if m.get("NDA_DST")
        ]

    # -- sysctls ------------------------------------------------------------------------

    def sysctl(self, key: str, value: str | int | None = None) -> str:
        """Read (and set, if VALUE is given) net.* KEY inside this namespace; returns the
        value it had before. /proc/sys/net is resolved against the opening thread's
        namespace, so the host's sysctls are never read or written here."""
        if not key.startswith("net."):
            raise LabError(f"sysctl {key!r} is not per network namespace",
                           "labfixtures only changes net.* sysctls, inside the lab")
        p = "/proc/sys/" + key.replace(".", "/")
        with netns.entered(self.ns):
            try:
                with open(p) as f:
                    old = f.read().strip()
                if value is not None:
                    with open(p, "w") as f:
                        f.write(str(value))
            except FileNotFoundError:
                raise LabError(f"no sysctl {key!r} here", "check the key (and the interface "
                               "name in it)") from None
        return old

