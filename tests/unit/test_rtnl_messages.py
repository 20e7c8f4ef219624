"""The hand-packed rtnetlink messages match the layout iproute2 sends (pure logic)."""

import socket
import struct

from labfixtures.net import rtnl


def attrs(buf: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off + 4 <= len(buf):
        length, kind = struct.unpack_from("HH", buf, off)
        out.append((kind, buf[off + 4: off + length]))
        off += (length + 3) & ~3
    return out


def test_veth_message_layout():
    kind, flags, body = rtnl.veth("h1", "eth0", peer_ns_fd=7, peer_index=2)
    assert kind == rtnl.RTM_NEWLINK
    assert flags & rtnl.NLM_F_CREATE and flags & rtnl.NLM_F_EXCL
    family, _, index, ifflags, change = struct.unpack_from("BxHiII", body)
    assert (family, index, ifflags) == (socket.AF_UNSPEC, 0, 0)  # created down: ENOTCONN
    top = dict(attrs(body[16:]))
    assert top[rtnl.IFLA_IFNAME] == b"h1\0"
    info = dict(attrs(top[rtnl.IFLA_LINKINFO]))
    assert info[rtnl.IFLA_INFO_KIND] == b"veth\0"
    peer = dict(attrs(info[rtnl.IFLA_INFO_DATA]))[rtnl.VETH_INFO_PEER]
    assert struct.unpack_from("BxHiII", peer)[2] == 2  # the chosen ifindex
    peer_attrs = dict(attrs(peer[16:]))
    assert peer_attrs[rtnl.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("I", peer_attrs[rtnl.IFLA_NET_NS_FD]) == (7,)


def test_address_message():
    kind, _, body = rtnl.address(2, "203.0.113.130/26")
    assert kind == rtnl.RTM_NEWADDR
    family, plen, _, _, index = struct.unpack_from("BBBBI", body)
    assert (family, plen, index) == (socket.AF_INET, 26, 2)
    a = dict(attrs(body[8:]))
    assert a[rtnl.IFA_LOCAL] == socket.inet_aton("203.0.113.130")


def test_ipv6_address_message():
    _, _, body = rtnl.address(2, "2001:db8::2/64")
    assert struct.unpack_from("BB", body) == (socket.AF_INET6, 64)


def test_default_route_message():
    kind, _, body = rtnl.default_route("203.0.113.129")
    assert kind == rtnl.RTM_NEWROUTE
    family, dst_len = struct.unpack_from("BB", body)
    assert (family, dst_len) == (socket.AF_INET, 0)
    assert dict(attrs(body[12:]))[rtnl.RTA_GATEWAY] == socket.inet_aton("203.0.113.129")


def test_link_up_by_name():
    _, _, body = rtnl.link_up(name="h1")
    _, _, index, flags, change = struct.unpack_from("BxHiII", body)
    assert (index, flags & 1, change & 1) == (0, 1, 1)
    assert dict(attrs(body[16:]))[rtnl.IFLA_IFNAME] == b"h1\0"
