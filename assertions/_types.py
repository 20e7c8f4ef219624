"""What the assertions accept, as Protocols, and the checks made at their boundary.

A misuse (a host's name where the host is expected, a prefix where an address is, one
port where a list of ports is) is reported at once as a TypeError or LabError that names
the argument and the fix, instead of an AttributeError from deep inside the check.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from labfixtures.errors import LabError
from labfixtures.net.netlink import Address, Neighbour, Route


@runtime_checkable
class NetTarget(Protocol):
    """Something whose network state can be read: the lab (`Lab`), a veth host, a VM."""

    def routes(self, family: int = ...) -> list[Route]: ...

    def addresses(self) -> list[Address]: ...

    def neighbours(self) -> list[Neighbour]: ...


@runtime_checkable
class Pinger(Protocol):
    """Something that pings from where it stands: the lab, a veth host, a VM."""

    def ping(self, address: str, timeout: float = ...) -> bool: ...


@runtime_checkable
class TcpProber(Protocol):
    def tcp(self, address: str, port: int, timeout: float = ...) -> bool: ...


class CommandResult(Protocol):
    exit_status: int
    stdout: str
    stderr: str


@runtime_checkable
class Guest(Protocol):
    """A machine that runs shell commands: a VM of the lab, an attached VM."""

    def run(self, cmd: str) -> CommandResult: ...


@runtime_checkable
class Target(NetTarget, Pinger, Protocol):
    """The full read-and-probe interface: routes(), addresses(), neighbours(), ping()."""


_KINDS: dict[object, str] = {
    NetTarget: "a lab, a veth host or a VM (something with routes(), addresses(), "
               "neighbours())",
    Pinger: "a lab, a veth host or a VM (something with ping())",
    TcpProber: "a lab, a veth host or a VM (something with tcp())",
    Guest: "a VM (something with run(cmd))",
}


def check_object(func: str, arg: str, value: object, proto: type) -> None:
    """VALUE must provide PROTO; a string (a name) or anything else is a TypeError."""
    __tracebackhide__ = True
    if isinstance(value, proto):
        return
    want = _KINDS.get(proto, proto.__name__)
    if isinstance(value, str):
        raise TypeError(
            f"{func}(): {arg} is the string {value!r}, but it must be {want}.\n"
            f"  fix: pass the object itself, e.g. lab.hosts[{value!r}], lab.vms[{value!r}] "
            "or the `lab` fixture, not its name")
    raise TypeError(f"{func}(): {arg} must be {want}, not {type(value).__name__} "
                    f"({value!r:.80})")


def check_address(func: str, arg: str, value: object, scoped: bool = False) -> str:
    """VALUE must be one IP address (`fe80::1%dev` too if SCOPED), not a prefix."""
    __tracebackhide__ = True
    if not isinstance(value, str):
        raise TypeError(f"{func}(): {arg} must be an IP address as a string, e.g. "
                        f"'203.0.113.129', not {type(value).__name__} ({value!r:.80})")
    text, _, scope = value.partition("%")
    if "/" in text:
        bare = text.split("/")[0]
        raise LabError(f"{func}(): {arg}={value!r} is a prefix (address/length), but "
                       f"{arg} is one address",
                       f"write {arg}={bare!r} (without the /{text.split('/')[1]})")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise LabError(f"{func}(): {arg}={value!r} is not an IP address",
                       f"write {arg} as an IPv4 or IPv6 address, e.g. '203.0.113.129'"
                       ) from None
    if scope and not scoped:
        raise LabError(f"{func}(): {arg}={value!r} has a scope (%{scope}), which only "
                       "makes sense where a probe is sent", f"write {arg}={text!r}")
    return value


def check_prefix(func: str, arg: str, value: object) -> str:
    __tracebackhide__ = True
    if not isinstance(value, str):
        raise TypeError(f"{func}(): {arg} must be a prefix as a string, e.g. "
                        f"'203.0.113.128/26', not {type(value).__name__} ({value!r:.80})")
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise LabError(f"{func}(): {arg}={value!r} is not an IP prefix",
                       f"write {arg} as address/length, e.g. '203.0.113.128/26'") from None
    return value


def check_interface(func: str, arg: str, value: object) -> str:
    """An address with its prefix length (`203.0.113.130/26`), as `ip addr` shows it."""
    __tracebackhide__ = True
    if not isinstance(value, str):
        raise TypeError(f"{func}(): {arg} must be a string like '203.0.113.130/26', not "
                        f"{type(value).__name__} ({value!r:.80})")
    if "/" not in value:
        raise LabError(f"{func}(): {arg}={value!r} has no prefix length: an interface "
                       "address is compared with its prefix", f"write {arg}='{value}/LEN', "
                       "e.g. '203.0.113.130/26'")
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        raise LabError(f"{func}(): {arg}={value!r} is not an address/length",
                       f"write {arg} like '203.0.113.130/26'") from None
    return value


def check_name(func: str, arg: str, value: object, example: str) -> str:
    """A non-empty string (an interface, a service, a path...)."""
    __tracebackhide__ = True
    if not isinstance(value, str) or not value:
        raise TypeError(f"{func}(): {arg} must be a non-empty string such as {example!r}, "
                        f"not {value!r:.80}")
    return value


def check_number(func: str, arg: str, value: object, low: float = 0,
                 high: float | None = None) -> None:
    __tracebackhide__ = True
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{func}(): {arg} must be a number, not {value!r:.80}")
    if value < low or (high is not None and value > high):
        span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise LabError(f"{func}(): {arg}={value!r} is out of range", f"{arg} must be {span}")


def check_list(func: str, arg: str, value: object, looks_like_one: bool) -> Sequence[object]:
    """VALUE must be a list (or tuple) of items; LOOKS_LIKE_ONE says it is one item."""
    __tracebackhide__ = True
    if looks_like_one or isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"{func}(): {arg} must be a list, got one item {value!r:.80}.\n"
                        f"  fix: put it in a list: {arg}=[{value!r:.60}]")
    return value
