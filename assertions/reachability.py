"""Reachability, and its absence, over ICMP and TCP, from a lab host, a veth host or a VM.

A *source* has `ping(address, timeout)` and, for TCP, `tcp(address, port, timeout)`.
"""

from __future__ import annotations


def _name(src: object) -> str:
    return getattr(src, "name", None) or getattr(src, "labid", None) or repr(src)


def assert_reachable(src, address: str, timeout: float = 3.0) -> None:
    if not src.ping(address, timeout=timeout):
        raise AssertionError(
            f"{_name(src)} cannot reach {address} (no ICMP echo reply within {timeout:g}s).\n"
            "  check: the address and prefix, the default route, the switch port's VLAN, "
            "that the interfaces are up")


def assert_unreachable(src, address: str, timeout: float = 1.0) -> None:
    if src.ping(address, timeout=timeout):
        raise AssertionError(
            f"{_name(src)} reached {address}, which it must not (an ICMP echo came back).\n"
            "  check: VLAN tags of the ports, filtering rules")


def assert_tcp_open(src, address: str, port: int, timeout: float = 3.0) -> None:
    if not src.tcp(address, port, timeout=timeout):
        raise AssertionError(
            f"{_name(src)} cannot open TCP {address} port {port} within {timeout:g}s.\n"
            "  if ping works but TCP does not on an OVS userspace datapath, suspect "
            "checksum offload (labfixtures turns it off on its own links)")


def assert_tcp_closed(src, address: str, port: int, timeout: float = 1.0) -> None:
    if src.tcp(address, port, timeout=timeout):
        raise AssertionError(f"{_name(src)} opened TCP {address} port {port}, which must "
                             "stay closed")
