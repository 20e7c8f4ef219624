"""Argument checks at the public API (`Lab.veth_host`, `Switch.svi`, `Lab.vm`...).

A wrong argument is refused where the user wrote it, with the argument's name and the
fix (`addresses must be a list: addresses=['198.51.100.20/25']`), not deep inside a
netlink message builder.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from labfixtures.errors import LabError

_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


def str_list(value: Any, arg: str, example: str) -> tuple[str, ...]:
    """VALUE as a tuple of strings; a lone string is refused (it would be read as a list
    of characters)."""
    if value is None:
        return ()
    if isinstance(value, str):
        raise LabError(f"{arg} must be a list, not the string {value!r}",
                       f"{arg} must be a list: {arg}=[{value!r}]")
    if not isinstance(value, Iterable):
        raise LabError(f"{arg} must be a list of strings, got {type(value).__name__} "
                       f"{value!r}", f"e.g. {arg}=[{example!r}]")
    items = tuple(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise LabError(f"{arg}[{i}] must be a string, got {type(item).__name__} "
                           f"{item!r}", f"e.g. {arg}=[{example!r}]")
    return items


def interface(value: Any, arg: str) -> str:
    """An address with its prefix length (`198.51.100.20/25`)."""
    if not isinstance(value, str):
        raise LabError(f"{arg} must be an address with a prefix (a string), got "
                       f"{type(value).__name__} {value!r}", f"e.g. {arg}='198.51.100.20/25'")
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        raise LabError(f"{arg}: {value!r} is not an address with a prefix length",
                       "write it like 198.51.100.20/25 (or 2001:db8::1/64)") from None
    if "/" not in value:
        plen = 64 if ":" in value else 24
        raise LabError(f"{arg}: {value} has no prefix length",
                       f"write it with its prefix, e.g. {value}/{plen}")
    return value


def interfaces(value: Any, arg: str = "addresses") -> tuple[str, ...]:
    """A list of addresses with their prefix lengths."""
    items = str_list(value, arg, "198.51.100.20/25")
    for i, a in enumerate(items):
        interface(a, f"{arg}[{i}]")
    return items


def address(value: Any, arg: str) -> str | None:
    """A plain IP address (a gateway), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise LabError(f"{arg} must be an IP address (a string), got "
                       f"{type(value).__name__} {value!r}", f"e.g. {arg}='198.51.100.1'")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if "/" in value:
            plain = value.split("/", 1)[0]
            raise LabError(f"{arg} must be a plain address, without prefix length: "
                           f"{value!r}", f"{arg}={plain!r}") from None
        raise LabError(f"{arg}: {value!r} is not an IP address",
                       f"e.g. {arg}='198.51.100.1'") from None
    return value


def vlan(value: Any, arg: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabError(f"{arg} must be a VLAN number, got {type(value).__name__} {value!r}",
                       f"e.g. {arg}=2")
    if not 1 <= value <= 4094:
        raise LabError(f"{arg}: VLAN {value} is out of range", "use a VLAN from 1 to 4094")
    return value


def vlans(value: Any, arg: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int | str):
        raise LabError(f"{arg} must be a list of VLANs, got {value!r}",
                       f"{arg} must be a list: {arg}=[{value!r}]")
    out = []
    for i, v in enumerate(value):
        checked = vlan(v, f"{arg}[{i}]")
        assert checked is not None
        out.append(checked)
    return tuple(out)


def mac(value: Any, arg: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise LabError(f"{arg}: {value!r} is not a MAC address",
                       f"write six hex bytes with colons, e.g. {arg}='b8:ad:ca:fe:00:14'")
    return value


def name(value: Any, arg: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise LabError(f"{arg} must be the {what}'s name (a string), got "
                       f"{type(value).__name__} {value!r}", f"e.g. {arg}='h1'")
    return value
