"""The guide's numbering conventions, in one place.

The guide's scripts (`ovs-startup.sh`, `standalone-startup.sh`) derive everything about a VM
from one small integer, the tap number N: the MAC address `b8:ad:ca:fe:HH:LL` (HH:LL = N),
hence its IPv6 link-local EUI-64 address, the SPICE port 5900+N, the serial telnet port
2300+N and the SSH forward port 2200+N. Scenario tests compute the same values, so the
rules live here rather than in each caller.
"""

from __future__ import annotations

import ipaddress
import re

from labfixtures.errors import LabError

MAC_PREFIX = "b8:ad:ca:fe"
MIN_MEMORY_MB = 128

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def check_tap_number(n: int) -> int:
    """Refuse tap numbers that do not fit the two low bytes of the MAC address."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 0xFFFF:
        raise LabError(
            f"tap number {n!r} is out of range",
            "use an integer between 0 and 65535: it becomes the last two bytes of the MAC",
        )
    return n


def mac_from_tap(n: int) -> str:
    """`b8:ad:ca:fe:HH:LL` where HH:LL is the tap number, as in the guide's scripts."""
    check_tap_number(n)
    return f"{MAC_PREFIX}:{n >> 8:02x}:{n & 0xFF:02x}"


def check_mac(mac: str) -> str:
    if not isinstance(mac, str) or not _MAC_RE.match(mac):
        raise LabError(f"{mac!r} is not a MAC address",
                       "write it as six hexadecimal bytes separated by colons")
    return mac.lower()


def eui64_link_local(mac: str) -> str:
    """The IPv6 link-local address a kernel derives from MAC with EUI-64 (U/L bit flipped).

    b8:ad:ca:fe:00:02 -> fe80::baad:caff:fefe:2
    """
    b = bytes.fromhex(check_mac(mac).replace(":", ""))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:6]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def tap_name(n: int) -> str:
    return f"tap{check_tap_number(n)}"


def spice_port(n: int) -> int:
    return 5900 + check_tap_number(n)


def telnet_port(n: int) -> int:
    return 2300 + check_tap_number(n)


def ssh_forward_port(n: int) -> int:
    """Host port forwarded to the guest's port 22 in user-mode networking (guide §8)."""
    port = 2200 + check_tap_number(n)
    if port > 65535:
        raise LabError(f"SSH forward port {port} for number {n} is above 65535",
                       "use a smaller VM number or give the port explicitly")
    return port


def check_memory(mb: int) -> int:
    """The guide's scripts refuse less than 128 MB of RAM; so do we, with their message."""
    if isinstance(mb, bool) or not isinstance(mb, int):
        raise LabError(f"RAM size {mb!r} is not a number of megabytes",
                       "give the RAM size as an integer number of MB, e.g. 256")
    if mb < MIN_MEMORY_MB:
        raise LabError(f"unsufficient RAM size: {mb}MB",
                       f"RAM size must be above {MIN_MEMORY_MB}MB.")
    return mb
