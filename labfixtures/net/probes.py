"""Reachability probes run from inside a namespace, without spawning `ping` or `nc`.

The socket is opened with the calling thread inside the namespace (`netns.entered`), then
used from where we are: an ICMP echo costs a few hundred microseconds instead of the
milliseconds of `ip netns exec NS ping`. These return facts; `assertions/` turns them
into verdicts with messages.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from typing import Any

from labfixtures.core import netns


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return int(~s & 0xFFFF)


def _resolve(address: str) -> tuple[int, tuple[Any, ...]]:
    """(family, sockaddr) for ADDRESS; `fe80::1%eth0` keeps its scope (resolved inside
    the namespace, where the interface exists)."""
    info = socket.getaddrinfo(address, None, 0, socket.SOCK_RAW)[0]
    return info[0], info[4]


def ping(ns: str | None, address: str, *, timeout: float = 2.0, count: int = 1,
         interval: float = 0.2) -> float | None:
    """Send up to COUNT echo requests; the round trip of the first reply, or None."""
    with netns.entered(ns):
        family, sockaddr = _resolve(address)
        if family == socket.AF_INET6:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            req_type, rep_type = 128, 129
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            req_type, rep_type = 8, 0
    ident = (os.getpid() ^ id(sock)) & 0xFFFF
    try:
        deadline = time.monotonic() + timeout
        for seq in range(1, count + 1):
            payload = struct.pack("!d", time.monotonic()) + b"labfixtures"
            header = struct.pack("!BBHHH", req_type, 0, 0, ident, seq)
            csum = 0 if family == socket.AF_INET6 else _checksum(header + payload)
            packet = struct.pack("!BBHHH", req_type, 0, csum, ident, seq) + payload
            sent = time.monotonic()
            try:
                sock.sendto(packet, sockaddr)
            except OSError:
                pass  # no route yet: wait and retry like ping does
            until = min(deadline, sent + (interval if seq < count else timeout))
            while (left := until - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data = sock.recv(2048)
                if family == socket.AF_INET:
                    data = data[(data[0] & 0x0F) * 4:]
                if len(data) >= 8:
                    t, _, _, rid, rseq = struct.unpack("!BBHHH", data[:8])
                    if t == rep_type and rid == ident:
                        return time.monotonic() - sent
            if time.monotonic() >= deadline:
                break
        return None
    finally:
        sock.close()


def tcp_connect(ns: str | None, address: str, port: int, *, timeout: float = 2.0) -> bool:
    """True if a TCP handshake with ADDRESS:PORT completes from namespace NS."""
    try:
        sock = open_tcp(ns, address, port, timeout=timeout)
    except OSError:
        return False
    sock.close()
    return True


def open_tcp(ns: str | None, address: str, port: int, *, timeout: float = 5.0
             ) -> socket.socket:
    """A connected TCP socket that lives in namespace NS (for paramiko's `sock=`)."""
    with netns.entered(ns):
        info = socket.getaddrinfo(address, port, 0, socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(info[4])
    except OSError:
        sock.close()
        raise
    return sock

