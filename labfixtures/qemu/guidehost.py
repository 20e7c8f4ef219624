"""What the host can do for the `guide` profile, measured (qemu/guide.py stays pure).

One measurement is about the lab namespace rather than the host: SPICE resolves its
listening address with AI_ADDRCONFIG, and glibc then keeps an address family only if the
namespace has an address of it other than loopback (127.0.0.1, ::1), unless it has none at
all. In a lab namespace with IPv6 link-local addresses (any tap with its carrier up) and no
IPv4 address, 127.0.0.1 is refused ("getaddrinfo(127.0.0.1,5943): Address family for
hostname not supported", and `localhost` does not resolve since /etc/hosts has no `::1
localhost` line here): SPICE then listens on ::1, the namespace's other localhost.
"""

from __future__ import annotations

import json

from labfixtures.core.cpus import cpu_share
from labfixtures.core.runner import run
from labfixtures.qemu import accel as _accel
from labfixtures.qemu.guide import GuideHost


def spice_loopback(netns: str | None) -> str:
    """127.0.0.1, or ::1 when glibc's AI_ADDRCONFIG would refuse IPv4 in NETNS."""
    out = run(["ip", "-j", "address", "show"], netns=netns, check=False).stdout
    try:
        links = json.loads(out or "[]")
    except ValueError:
        return "127.0.0.1"
    seen4 = seen6 = False
    for link in links:
        for a in link.get("addr_info", []):
            if a.get("family") == "inet" and a.get("local") != "127.0.0.1":
                seen4 = True
            elif a.get("family") == "inet6" and a.get("local") != "::1":
                seen6 = True
    return "::1" if seen6 and not seen4 else "127.0.0.1"


def probe(accel: str, netns: str | None) -> GuideHost:
    """GuideHost for a machine about to start in NETNS under ACCEL (already resolved); its
    cores are this process's share of the host's (core/cpus.py)."""
    return GuideHost(accel, _accel.vhost_net_available(), cpu_share(),
                     spice_addr=spice_loopback(netns))
