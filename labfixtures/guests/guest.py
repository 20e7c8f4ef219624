"""What every guest answers, whoever started it (a VM of a lab, an attached machine).

Commands over SSH, and the same reads as a lab host or a veth host (`routes()`,
`addresses()`, `neighbours()`, `links()`, `ping()`, `tcp()`), parsed from the guest's
`ip -j`, so `assertions/` work on all of them.
"""

from __future__ import annotations

import json
import shlex
import socket
from typing import Any

from labfixtures.guests.ssh import Result
from labfixtures.net.netlink import RT_PROTOS, Address, Link, Neighbour, Route


class Guest:
    """What every guest answers, whoever started it: commands over SSH, and the same
    reads as a lab host or a veth host, parsed from the guest's `ip -j`. Subclasses give
    `name` and `run()`."""

    name: str

    def run(self, cmd: str, timeout: float = 60.0, check: bool = False) -> Result:
        raise NotImplementedError

    def _ip_json(self, *args: str) -> list[dict[str, Any]]:
        out = self.run("ip -j " + " ".join(shlex.quote(a) for a in args), check=True).stdout
        data: list[dict[str, Any]] = json.loads(out or "[]")
        return data

    def links(self) -> list[Link]:
        return [Link(index=d["ifindex"], name=d["ifname"], mac=d.get("address", ""),
                     up="UP" in d.get("flags", []), carrier="LOWER_UP" in d.get("flags", []),
                     kind=d.get("link_type", ""), mtu=d.get("mtu", 0))
                for d in self._ip_json("link", "show")]

    def addresses(self, family: int = 0) -> list[Address]:
        out = []
        for d in self._ip_json("addr", "show"):
            for a in d.get("addr_info", []):
                fam = socket.AF_INET6 if a["family"] == "inet6" else socket.AF_INET
                if family and fam != family:
                    continue
                out.append(Address(dev=d["ifname"], address=a["local"],
                                   prefixlen=a["prefixlen"], family=fam, scope=a["scope"]))
        return out

    def routes(self, family: int = socket.AF_INET) -> list[Route]:
        flag = "-6" if family == socket.AF_INET6 else "-4"
        out = []
        for d in self._ip_json(flag, "route", "show"):
            proto = d.get("protocol", "boot")
            out.append(Route(dst=d["dst"], gateway=d.get("gateway"), dev=d.get("dev"),
                             family=family, proto=RT_PROTOS.get(proto, str(proto))
                             if isinstance(proto, int) else proto,
                             scope=d.get("scope", "global")))
        return out

    def neighbours(self, family: int = 0) -> list[Neighbour]:
        out = []
        for d in self._ip_json("neigh", "show"):
            state = d.get("state", ["NONE"])
            fam = socket.AF_INET6 if ":" in d["dst"] else socket.AF_INET
            if family and fam != family:
                continue
            out.append(Neighbour(address=d["dst"], mac=d.get("lladdr"), dev=d.get("dev", ""),
                                 state=state[0] if state else "NONE", family=fam))
        return out

    def ping(self, address: str, timeout: float = 2.0) -> bool:
        """One ICMP echo from the guest (its own ping), True on a reply within TIMEOUT."""
        flag = "-6 " if ":" in address else ""
        res = self.run(f"ping {flag}-c 1 -W {max(1, round(timeout))} "
                       f"{shlex.quote(address)} >/dev/null 2>&1", timeout=timeout + 10)
        return res.exit_status == 0

    def tcp(self, address: str, port: int, timeout: float = 2.0) -> bool:
        res = self.run(f"nc -z -w {max(1, int(timeout))} {shlex.quote(address)} {port}",
                       timeout=timeout + 10)
        return res.exit_status == 0
