"""Reachability, and its absence, over ICMP and TCP, from a lab host, a veth host or a VM.

A *source* has `ping(address, timeout)` and, for TCP, `tcp(address, port, timeout)`
(`assertions._types.Pinger`, `TcpProber`): the `lab`, a veth host, a VM — the object, not
its name.
"""

from __future__ import annotations

from ._format import name_of
from ._types import Pinger, TcpProber, check_address, check_number, check_object


def _args(func: str, src: object, proto: type, address: object, timeout: object,
          port: object = None) -> None:
    __tracebackhide__ = True
    check_object(func, "src", src, proto)
    check_address(func, "address", address, scoped=True)
    check_number(func, "timeout", timeout, 0.01, 600)
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 < port < 65536):
        raise TypeError(f"{func}(): port must be a TCP port number (1-65535), not "
                        f"{port!r:.40}")


def assert_reachable(src: Pinger, address: str, timeout: float = 3.0) -> None:
    """SRC gets an ICMP echo reply from ADDRESS within TIMEOUT seconds."""
    __tracebackhide__ = True
    _args("assert_reachable", src, Pinger, address, timeout)
    if not src.ping(address, timeout=timeout):
        raise AssertionError(
            f"{name_of(src)} cannot reach {address} (no ICMP echo reply within "
            f"{timeout:g}s).\n  check: the address and prefix, the default route, the "
            "switch port's VLAN, that the interfaces are up")


def assert_unreachable(src: Pinger, address: str, timeout: float = 1.0) -> None:
    """No ICMP echo reply from ADDRESS to SRC within TIMEOUT seconds."""
    __tracebackhide__ = True
    _args("assert_unreachable", src, Pinger, address, timeout)
    if src.ping(address, timeout=timeout):
        raise AssertionError(
            f"{name_of(src)} reached {address}, which it must not (an ICMP echo came "
            "back).\n  check: VLAN tags of the ports, filtering rules")


def assert_tcp_open(src: TcpProber, address: str, port: int, timeout: float = 3.0) -> None:
    """SRC opens a TCP connection to ADDRESS port PORT within TIMEOUT seconds."""
    __tracebackhide__ = True
    _args("assert_tcp_open", src, TcpProber, address, timeout, port)
    if not src.tcp(address, port, timeout=timeout):
        raise AssertionError(
            f"{name_of(src)} cannot open TCP {address} port {port} within {timeout:g}s.\n"
            "  if ping works but TCP does not on an OVS userspace datapath, suspect "
            "checksum offload (labfixtures turns it off on its own links)")


def assert_tcp_closed(src: TcpProber, address: str, port: int, timeout: float = 1.0
                      ) -> None:
    """SRC cannot open a TCP connection to ADDRESS port PORT."""
    __tracebackhide__ = True
    _args("assert_tcp_closed", src, TcpProber, address, timeout, port)
    if src.tcp(address, port, timeout=timeout):
        raise AssertionError(f"{name_of(src)} opened TCP {address} port {port}, which must "
                             "stay closed")
