"""Routes, addresses, link state and neighbours of a lab host, a veth host or a VM.

A *target* is anything with `routes(family)`, `addresses()`, `neighbours()` (and, for
`assert_link_up`, `links()`) returning labfixtures' dataclasses (`Lab`, `VethHost`, and
VMs, which read them over SSH): `assertions._types.NetTarget`. Every failure message shows
what was expected and the table that was actually there, in the words of `ip route` /
`ip neigh`. A misused argument (a host's name for the host, a prefix for a gateway) is a
TypeError or LabError that names the argument and the fix.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from labfixtures.net.netlink import Address, Neighbour, Route

from ._format import name_of, titled
from ._types import (
    NetTarget,
    check_address,
    check_interface,
    check_name,
    check_object,
    check_prefix,
)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _dev(func: str, dev: object) -> None:
    __tracebackhide__ = True
    if dev is not None:
        check_name(func, "dev", dev, "eth0")


def assert_default_route(target: NetTarget, via: str, dev: str | None = None) -> Route:
    """The default route goes via gateway VIA (and device DEV if given)."""
    __tracebackhide__ = True
    func = "assert_default_route"
    check_object(func, "target", target, NetTarget)
    check_address(func, "via", via)
    _dev(func, dev)
    routes = target.routes(_family(via))
    defaults = [r for r in routes if r.dst == "default"]
    for r in defaults:
        if r.gateway == via and (dev is None or r.dev == dev):
            return r
    where = f" dev {dev}" if dev else ""
    problem = "the default route goes elsewhere" if defaults else "there is no default route"
    raise AssertionError(
        f"{name_of(target)}: expected `default via {via}{where}`, but {problem}.\n"
        + titled("routing table", routes))


def _same_net(route: Route, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return route.dst != "default" and ipaddress.ip_network(route.dst, strict=False) == net


def assert_route(target: NetTarget, prefix: str, dev: str | None = None,
                 via: str | None = None) -> Route:
    """A route to PREFIX exists (through DEV and/or via gateway VIA)."""
    __tracebackhide__ = True
    func = "assert_route"
    check_object(func, "target", target, NetTarget)
    check_prefix(func, "prefix", prefix)
    _dev(func, dev)
    if via is not None:
        check_address(func, "via", via)
    net = ipaddress.ip_network(prefix, strict=False)
    routes = target.routes(socket.AF_INET6 if net.version == 6 else socket.AF_INET)
    for r in routes:
        if _same_net(r, net) and (dev is None or r.dev == dev) \
                and (via is None or r.gateway == via):
            return r
    want = f"{net}" + (f" via {via}" if via else "") + (f" dev {dev}" if dev else "")
    raise AssertionError(f"{name_of(target)}: expected a route `{want}`.\n"
                         + titled("routing table", routes))


def assert_no_route(target: NetTarget, prefix: str) -> None:
    """No route to PREFIX (the default route does not count)."""
    __tracebackhide__ = True
    func = "assert_no_route"
    check_object(func, "target", target, NetTarget)
    check_prefix(func, "prefix", prefix)
    net = ipaddress.ip_network(prefix, strict=False)
    routes = target.routes(socket.AF_INET6 if net.version == 6 else socket.AF_INET)
    found = [r for r in routes if r.dst == prefix or _same_net(r, net)]
    if found:
        raise AssertionError(f"{name_of(target)}: expected no route to {net}.\n"
                             + titled("found", found))


def assert_address(target: NetTarget, cidr: str, dev: str | None = None) -> Address:
    """Address CIDR (e.g. 203.0.113.130/26) is configured (on DEV if given)."""
    __tracebackhide__ = True
    func = "assert_address"
    check_object(func, "target", target, NetTarget)
    check_interface(func, "cidr", cidr)
    _dev(func, dev)
    want = ipaddress.ip_interface(cidr)
    addrs = [a for a in target.addresses() if dev is None or a.dev == dev]
    for a in addrs:
        if ipaddress.ip_interface(a.cidr.split("%")[0]) == want:
            return a
    where = f" on {dev}" if dev else ""
    raise AssertionError(f"{name_of(target)}: expected address {cidr}{where}.\n"
                         + titled("addresses", addrs))


def assert_link_up(target: NetTarget, dev: str) -> None:
    """Interface DEV exists and is administratively UP."""
    __tracebackhide__ = True
    func = "assert_link_up"
    check_object(func, "target", target, NetTarget)
    check_name(func, "dev", dev, "eth0")
    t: Any = target
    links = t.links() if hasattr(t, "links") else t.nl.links()
    for link in links:
        if link.name == dev:
            if not link.up:
                raise AssertionError(f"{name_of(target)}: {dev} is DOWN (expected UP); "
                                     f"`ip link set dev {dev} up`")
            return
    raise AssertionError(f"{name_of(target)}: no interface {dev}.\n"
                         + titled("interfaces", [link.name for link in links]))


RESOLVED_STATES = frozenset({"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"})


def assert_neighbour(target: NetTarget, address: str, mac: str | None = None,
                     dev: str | None = None,
                     states: Iterable[str] = RESOLVED_STATES) -> Neighbour:
    """ADDRESS is resolved in the neighbour table (to MAC, on DEV, in one of STATES)."""
    __tracebackhide__ = True
    func = "assert_neighbour"
    check_object(func, "target", target, NetTarget)
    check_address(func, "address", address)
    _dev(func, dev)
    if mac is not None:
        check_name(func, "mac", mac, "b8:ad:ca:fe:00:02")
    if isinstance(states, str):
        raise TypeError(f"{func}(): states must be a set of states, e.g. "
                        f"{{'REACHABLE', 'STALE'}}, not the string {states!r}")
    wanted = frozenset(states)
    table = [n for n in target.neighbours() if dev is None or n.dev == dev]
    entries = [n for n in table if n.address == address]
    for n in entries:
        if n.state in wanted and (mac is None or (n.mac or "").lower() == mac.lower()):
            return n
    where = f" on {dev}" if dev else ""
    want = f"{address} -> {mac}" if mac else f"{address} resolved"
    if entries:
        seen = "; ".join(f"{n.mac or 'no MAC'} ({n.state})" for n in entries)
        problem = f"the entry is {seen}"
    else:
        problem = f"{address} is not in the table"
    raise AssertionError(
        f"{name_of(target)}: expected neighbour {want}{where}, but {problem}.\n"
        + titled(f"neighbour table{where}", table))


def assert_no_neighbour(target: NetTarget, address: str, dev: str | None = None) -> None:
    """ADDRESS is not resolved in the neighbour table (on DEV if given)."""
    __tracebackhide__ = True
    func = "assert_no_neighbour"
    check_object(func, "target", target, NetTarget)
    check_address(func, "address", address)
    _dev(func, dev)
    table = [n for n in target.neighbours() if dev is None or n.dev == dev]
    found = [n for n in table if n.address == address and n.state in RESOLVED_STATES]
    if found:
        raise AssertionError(f"{name_of(target)}: expected {address} not to be resolved.\n"
                             + titled("found", found))
