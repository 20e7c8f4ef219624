"""Per-VM guest configuration, applied at boot without touching the base image.

Why the kernel command line: every VM of a lab boots the *same* cached image (kernel +
initramfs, or a shared qcow2 base), so its identity (hostname, addresses, routes, extra SSH
keys) cannot live in the image. QEMU hands `-append` to the kernel; the kernel keeps
`lf.*` words in /proc/cmdline and ignores them (a word with a dot is a module parameter of a
module that does not exist); the guest's init script reads /proc/cmdline and applies them.
No disk, no 9p/virtiofs (absent on these hosts), no metadata server: nothing to clean up.

The words, all optional and repeatable where it makes sense::

    lf.hostname=vm0
    lf.dhcp=eth0                         udhcpc on eth0 (QEMU user mode: 10.0.2.15)
    lf.ip=eth0,203.0.113.130/26[,2001:db8::2/64...]
    lf.mtu=eth0,1400
    lf.gw=203.0.113.129                  IPv4 default route
    lf.gw6=fe80::1,eth0                  IPv6 default route (link-local needs the device)
    lf.route=198.51.100.0/24,203.0.113.129[,eth0]
    lf.dns=10.0.2.3                      /etc/resolv.conf
    lf.key=ssh-ed25519:AAAAC3...         one more authorized key for root (space -> ':')
    lf.dad=1                             keep IPv6 duplicate address detection (default off:
                                         it delays a usable link-local address by ~1 s)
    lf.trace=1                           print `lf-trace: PHASE UPTIME` lines on the console

Every interface `eth*` is brought up even without configuration, so it always has its
EUI-64 link-local address (the init script forces `addr_gen_mode=0`, i.e. EUI-64).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from labfixtures.errors import LabError

#: x86 COMMAND_LINE_SIZE is 2048 bytes; keep room for the image's own parameters.
MAX_CMDLINE = 1536

_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9\-]{0,62})$")
_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$")


def _ifname(name: str) -> str:
    if not isinstance(name, str) or not _IFNAME_RE.match(name):
        raise LabError(f"interface name {name!r} is not valid",
                       "use up to 15 letters, digits, '-', '_' or '.', e.g. eth0")
    return name


def _interface_address(addr: str) -> str:
    try:
        return str(ipaddress.ip_interface(addr))
    except ValueError:
        raise LabError(f"{addr!r} is not an address with a prefix length",
                       "write it like 203.0.113.130/26 or 2001:db8::2/64") from None


def _address(addr: str) -> str:
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        raise LabError(f"{addr!r} is not an IP address",
                       "write a plain address such as 203.0.113.129") from None


@dataclass(frozen=True)
class InterfaceConfig:
    """One guest interface: DHCP and/or static addresses (IPv4 or IPv6, with prefix)."""

    name: str = "eth0"
    dhcp: bool = False
    addresses: tuple[str, ...] = ()
    mtu: int | None = None

    def __post_init__(self) -> None:
        _ifname(self.name)
        object.__setattr__(self, "addresses",
                           tuple(_interface_address(a) for a in self.addresses))
        if self.mtu is not None and not 68 <= self.mtu <= 65535:
            raise LabError(f"MTU {self.mtu} of {self.name} is out of range", "use 68..65535")


@dataclass(frozen=True)
class Route:
    """A static route; `destination='default'` is a default route."""

    destination: str
    gateway: str | None = None
    dev: str | None = None

    def __post_init__(self) -> None:
        if self.destination != "default":
            try:
                net = ipaddress.ip_network(self.destination, strict=False)
            except ValueError:
                raise LabError(f"route destination {self.destination!r} is not a network",
                               "write it like 198.51.100.0/24 or 'default'") from None
            object.__setattr__(self, "destination", str(net))
        if self.gateway is not None:
            object.__setattr__(self, "gateway", _address(self.gateway))
        if self.dev is not None:
            _ifname(self.dev)
        if self.gateway is None and self.dev is None:
            raise LabError(f"route to {self.destination} has neither gateway nor device",
                           "give a gateway address, a device, or both")


@dataclass
class GuestConfig:
    """What makes one VM different from another booted from the same image."""

    hostname: str | None = None
    interfaces: list[InterfaceConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    gateway: str | None = None
    gateway6: str | None = None
    gateway6_dev: str | None = None
    dns: list[str] = field(default_factory=list)
    ssh_keys: list[str] = field(default_factory=list)
    ipv6_dad: bool = False
    trace: bool = False

    @classmethod
    def dhcp(cls, ifname: str = "eth0", hostname: str | None = None) -> GuestConfig:
        """QEMU user-mode networking (guide §8): DHCP gives 10.0.2.15, DNS 10.0.2.3."""
        return cls(hostname=hostname, interfaces=[InterfaceConfig(ifname, dhcp=True)])

    def validate(self) -> None:
        if self.hostname is not None and not _HOSTNAME_RE.match(self.hostname):
            raise LabError(f"hostname {self.hostname!r} is not valid",
                           "use letters, digits and '-', at most 63 characters")
        names = [i.name for i in self.interfaces]
        if len(names) != len(set(names)):
            raise LabError(f"an interface is configured twice in {names}",
                           "merge its addresses into one InterfaceConfig")
        if self.gateway is not None and ipaddress.ip_address(self.gateway).version != 4:
            raise LabError(f"gateway {self.gateway} is not IPv4", "put it in gateway6")
        if self.gateway6 is not None:
            gw6 = ipaddress.ip_address(self.gateway6)
            if gw6.version != 6:
                raise LabError(f"gateway6 {self.gateway6} is not IPv6", "put it in gateway")
            if gw6.is_link_local and not self.gateway6_dev:
                raise LabError(f"link-local gateway6 {gw6} needs a device",
                               "set gateway6_dev, e.g. 'eth0'")
        for d in self.dns:
            _address(d)
        for k in self.ssh_keys:
            if not _KEY_RE.match(" ".join(k.split()[:2])):
                raise LabError(f"SSH public key {k[:30]!r}... is not in OpenSSH format",
                               "give the content of a .pub file: 'ssh-ed25519 AAAA...'")

    def to_cmdline(self) -> str:
        """Render as kernel command-line words (see the module docstring)."""
        self.validate()
        words: list[str] = []
        if self.hostname:
            words.append(f"lf.hostname={self.hostname}")
        for i in self.interfaces:
            if i.dhcp:
                words.append(f"lf.dhcp={i.name}")
            if i.addresses:
                words.append("lf.ip=" + ",".join((i.name, *i.addresses)))
            if i.mtu:
                words.append(f"lf.mtu={i.name},{i.mtu}")
        if self.gateway:
            words.append(f"lf.gw={_address(self.gateway)}")
        if self.gateway6:
            words.append("lf.gw6=" + ",".join(
                x for x in (_address(self.gateway6), self.gateway6_dev) if x))
        for r in self.routes:
            words.append("lf.route=" + ",".join(
                (r.destination, r.gateway or "", r.dev or "")).rstrip(","))
        for d in self.dns:
            words.append(f"lf.dns={_address(d)}")
        for k in self.ssh_keys:
            words.append("lf.key=" + ":".join(k.split()[:2]))
        if self.ipv6_dad:
            words.append("lf.dad=1")
        if self.trace:
            words.append("lf.trace=1")
        line = " ".join(words)
        if len(line) > MAX_CMDLINE:
            raise LabError(f"guest configuration is {len(line)} bytes on the kernel command line",
                           f"keep it under {MAX_CMDLINE} bytes: fewer extra SSH keys or routes")
        return line

    @classmethod
    def from_cmdline(cls, cmdline: str) -> GuestConfig:
        """Parse the `lf.*` words back (what the guest init does; used by tests and tools)."""
        cfg = cls()
        ifaces: dict[str, dict[str, Any]] = {}

        def iface(name: str) -> dict[str, Any]:
            return ifaces.setdefault(name, {"name": name, "dhcp": False, "addresses": []})

        for word in cmdline.split():
            key, _, value = word.partition("=")
            if not key.startswith("lf."):
                continue
            parts = value.split(",")
            match key[3:]:
                case "hostname":
                    cfg.hostname = value
                case "dhcp":
                    iface(value)["dhcp"] = True
                case "ip":
                    iface(parts[0])["addresses"].extend(parts[1:])
                case "mtu":
                    iface(parts[0])["mtu"] = int(parts[1])
                case "gw":
                    cfg.gateway = value
                case "gw6":
                    cfg.gateway6 = parts[0]
                    cfg.gateway6_dev = parts[1] if len(parts) > 1 else None
                case "route":
                    cfg.routes.append(Route(parts[0], parts[1] or None if len(parts) > 1 else None,
                                            parts[2] if len(parts) > 2 else None))
                case "dns":
                    cfg.dns.append(value)
                case "key":
                    cfg.ssh_keys.append(value.replace(":", " ", 1))
                case "dad":
                    cfg.ipv6_dad = value == "1"
                case "trace":
                    cfg.trace = value == "1"
        cfg.interfaces = [InterfaceConfig(d["name"], d["dhcp"], tuple(d["addresses"]),
                                          d.get("mtu")) for d in ifaces.values()]
        return cfg
