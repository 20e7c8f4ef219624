"""A minimal rtnetlink writer for the hot path of building many hosts.

pyroute2 (see `netlink.py`) is the general tool; but each of its requests goes through an
asyncio loop and a full decode of the answer, ~1 ms a request, and a 64-host lab needs
~10 requests a host. Here the few messages that build a host are packed with `struct` and
sent in *one* `send()` per namespace, with one ACK read back per message: the kernel's
own cost is what remains.

Two kernel features keep it to one round trip per namespace:
* a veth pair is created with its peer directly in the host's namespace
  (VETH_INFO_PEER with IFLA_NET_NS_FD);
* the peer gets a chosen ifindex (2, right after `lo`), so that its address and routes
  can be sent in the same batch without asking for its index first.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import socket
import struct

from labfixtures.core import netns
from labfixtures.errors import LabError

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
SIOCETHTOOL, ETHTOOL_STXCSUM, SIOCGIFINDEX = 0x8946, 0x17, 0x8933


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("HH", length, kind) + payload + b"\0" * (-length % 4)


def _ifname(name: str) -> bytes:
    return _attr(IFLA_IFNAME, name.encode() + b"\0")


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def veth(name: str, peer: str, *, peer_ns_fd: int | None = None, peer_index: int = 0,
         peer_mac: bytes | None = None) -> tuple[int, int, bytes]:
    """RTM_NEWLINK for a veth pair NAME<->PEER (PEER in the namespace of PEER_NS_FD).

    Both ends are created down: a veth cannot be opened before its peer is linked
    (veth_open() answers ENOTCONN), so `link_up` follows in the same batch.
    """
    peer_body = _ifinfo(peer_index) + _ifname(peer)
    if peer_ns_fd is not None:
        peer_body += _attr(IFLA_NET_NS_FD, struct.pack("I", peer_ns_fd))
    if peer_mac:
        peer_body += _attr(IFLA_ADDRESS, peer_mac)
    info = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(
        IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_body))
    body = _ifinfo() + _ifname(name) + _attr(IFLA_LINKINFO, info)
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body


def link_up(index: int = 0, name: str | None = None) -> tuple[int, int, bytes]:
    """Set a link up, by index or (index 0) by name."""
    body = _ifinfo(index, IFF_UP, IFF_UP) + (_ifname(name) if name else b"")
    return RTM_NEWLINK, 0, body


def address(index: int, cidr: str) -> tuple[int, int, bytes]:
    iface = ipaddress.ip_interface(cidr)
    family = socket.AF_INET6 if iface.version == 6 else socket.AF_INET
    packed = iface.ip.packed
    body = struct.pack("BBBBI", family, iface.network.prefixlen, 0, 0, index)
    body += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
    return RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body


def default_route(gateway: str, index: int | None = None) -> tuple[int, int, bytes]:
    gw = ipaddress.ip_address(gateway)
    family = socket.AF_INET6 if gw.version == 6 else socket.AF_INET
    body = struct.pack("BBBBBBBBI", family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                       RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    body += _attr(RTA_GATEWAY, gw.packed)
    if index is not None:
        body += _attr(RTA_OIF, struct.pack("I", index))
    return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body


# Messages per write in `Rtnl.batch`: the kernel queues one ACK per message on the socket,
# and each costs ~0.7 KiB of the receive buffer (212 KiB by default). 256 veth hosts made
# 512 messages in one write: ACKs were dropped and recv() failed with ENOBUFS.
BATCH_CHUNK = 128


class Rtnl:
    """A bare NETLINK_ROUTE socket opened inside namespace NS."""

    def __init__(self, ns: str | None) -> None:
        with netns.entered(ns):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.ns = ns
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batch(self, messages: list[tuple[int, int, bytes]], what: str = "") -> None:
        """Send the messages BATCH_CHUNK at a time, one write each, and check every ACK;
        raise on the first error once all were sent."""
        if not messages:
            return
        first = self._seq + 1
        errors: list[tuple[int, int]] = []
        for start in range(0, len(messages), BATCH_CHUNK):
            self._send_chunk(messages[start:start + BATCH_CHUNK], first, errors)
        if errors:
            idx, err = errors[0]
            raise LabError(
                f"netlink request {idx + 1}/{len(messages)} {what} failed in namespace "
                f"{self.ns or '(current)'}: {os.strerror(err)}",
                "a name or address may already be in use in this lab",
            )

    def _send_chunk(self, messages: list[tuple[int, int, bytes]], first: int,
                    errors: list[tuple[int, int]]) -> None:
        buf = bytearray()
        chunk_first = self._seq + 1
        for kind, flags, body in messages:
            self._seq += 1
            buf += struct.pack("IHHII", 16 + len(body), kind,
                               flags | NLM_F_REQUEST | NLM_F_ACK, self._seq, 0) + body
        self.sock.sendall(bytes(buf))
        pending = set(range(chunk_first, self._seq + 1))
        while pending:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("IHHII", data, off)
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("i", data, off + 16)
                    pending.discard(seq)
                    if code:
                        errors.append((seq - first, -code))
                off += (length + 3) & ~3
                if length == 0:
                    break

    def tx_checksum(self, ifname: str, on: bool) -> None:
        set_tx_checksum(self.sock, ifname, on)


def set_tx_checksum(sock: socket.socket, ifname: str, on: bool) -> None:
    """`ethtool -K IFNAME tx on|off` through any socket of IFNAME's namespace (SIOCETHTOOL);
    the kernel drops the offloads (TSO, GSO) that depend on it."""
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, int(on)))
    ifr = struct.pack("16sP8x", ifname.encode(), ctypes.addressof(value))
    fcntl.ioctl(sock, SIOCETHTOOL, ifr)


def ifindex(sock: socket.socket, ifname: str) -> int | None:
    """The index of IFNAME in SOCK's namespace (SIOCGIFINDEX), or None."""
    try:
        res = fcntl.ioctl(sock, SIOCGIFINDEX, struct.pack("16s16x", ifname.encode()))
    except OSError:
        return None
    index: int = struct.unpack_from("i", res, 16)[0]
    return index
