"""Routes, addresses, link state and neighbours of a lab host, a veth host or a VM.

A *target* is anything with `routes(family)`, `addresses()`, `neighbours()` and
`links()`-like reads returning labfixtures' dataclasses (`Lab`, `VethHost`, and VMs, which
read them over SSH). Every failure message shows what was expected and the table that was
actually there, in the words of `ip route` / `ip neigh`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from labfixtures.net.netlink import Address, Neighbour, Route


def _name(target: object) -> str:
    return getattr(target, "name", None) or getattr(target, "labid", None) or repr(target)


def _table(rows: Iterable[object], empty: str = "(empty)") -> str:
    lines = [f"    {r}" for r in rows]
    return "\n".join(lines) if lines else f"    {empty}"


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def assert_default_route(target, via: str, dev: str | None = None) -> Route:
    """The default route goes via gateway VIA (and device DEV if given)."""
    routes = target.routes(_family(via))
    defaults = [r for r in routes if r.dst == "default"]
    for r in defaults:
        if r.gateway == via and (dev is None or r.dev == dev):
            return r
    where = f" dev {dev}" if dev else ""
    problem = "the default route goes elsewhere" if defaults else "there is no default route"
    raise AssertionError(
        f"{_name(target)}: expected `default via {via}{where}`, but {problem}.\n"
        f"  routing table:\n{_table(routes)}")


def assert_route(target, prefix: str, dev: str | None = None, via: str | None = None
                 ) -> Route:
    """A route to PREFIX exists (through DEV and/or via gateway VIA)."""
    net = ipaddress.ip_network(prefix, strict=False)
    routes = target.routes(socket.AF_INET6 if net.version == 6 else socket.AF_INET)
    for r in routes:
        if r.dst != "default" and ipaddress.ip_network(r.dst, strict=False) == net \
                and (dev is None or r.dev == dev) and (via is None or r.gateway == via):
            return r
    want = f"{net}" + (f" via {via}" if via else "") + (f" dev {dev}" if dev else "")
    raise AssertionError(f"{_name(target)}: expected a route `{want}`; routing table:\n"
                         f"{_table(routes)}")


def assert_no_route(target, prefix: str) -> None:
    net = ipaddress.ip_network(prefix, strict=False)
    routes = target.routes(socket.AF_INET6 if net.version == 6 else socket.AF_INET)
    found = [r for r in routes if r.dst == prefix or (
        r.dst != "default" and ipaddress.ip_network(r.dst, strict=False) == net)]
    if found:
        raise AssertionError(f"{_name(target)}: expected no route to {net}, found:\n"
                             f"{_table(found)}")


def assert_address(target, cidr: str, dev: str | None = None) -> Address:
    """Address CIDR (e.g. 203.0.113.130/26) is configured (on DEV if given)."""
    want = ipaddress.ip_interface(cidr)
    addrs = [a for a in target.addresses() if dev is None or a.dev == dev]
    for a in addrs:
        if ipaddress.ip_interface(a.cidr.split("%")[0]) == want:
            return a
    where = f" on {dev}" if dev else ""
    raise AssertionError(f"{_name(target)}: expected address {cidr}{where}; addresses:\n"
                         f"{_table(addrs)}")


def assert_link_up(target, dev: str) -> None:
    links = target.links() if hasattr(target, "links") else target.nl.links()
    for link in links:
        if link.name == dev:
            if not link.up:
                raise AssertionError(f"{_name(target)}: {dev} is DOWN (expected UP); "
                                     f"`ip link set dev {dev} up`")
            return
    raise AssertionError(f"{_name(target)}: no interface {dev}; interfaces: "
                         f"{', '.join(link.name for link in links)}")


RESOLVED_STATES = frozenset({"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"})


def assert_neighbour(target, address: str, mac: str | None = None,
                     dev: str | None = None,
                     states: Iterable[str] = RESOLVED_STATES) -> Neighbour:
    """ADDRESS is resolved in the neighbour table (to MAC, on DEV, in one of STATES)."""
    states = frozenset(states)
    table = [n for n in target.neighbours() if dev is None or n.dev == dev]
    entries = [n for n in table if n.address == address]
    for n in entries:
        if n.state in states and (mac is None or (n.mac or "").lower() == mac.lower()):
            return n
    where = f" on {dev}" if dev else ""
    want = f"{address} -> {mac}" if mac else f"{address} resolved"
    if entries:
        seen = "; ".join(f"{n.mac or 'no MAC'} ({n.state})" for n in entries)
        problem = f"the entry is {seen}"
    else:
        problem = f"{address} is not in the table"
    raise AssertionError(
        f"{_name(target)}: expected neighbour {want}{where}, but {problem}.\n"
        f"  neighbour table{where}:\n{_table(table)}")


def assert_no_neighbour(target, address: str, dev: str | None = None) -> None:
    table = [n for n in target.neighbours() if dev is None or n.dev == dev]
    found = [n for n in table if n.address == address and n.state in RESOLVED_STATES]
    if found:
        raise AssertionError(f"{_name(target)}: expected {address} not to be resolved, "
                             f"found:\n{_table(found)}")
