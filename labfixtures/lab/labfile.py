"""Lab files: a YAML description of a lab, validated with errors that name the file, the
key and the fix, then built on a lab host.

    name: seed-minimal                 # the lab is lf-seed-minimal
    forwarding: true                   # IPv4/IPv6 forwarding in the lab host (§10)
    switches:
      sw0:
        svis:                          # internal ports sw0-vlanV, the VMs' gateways
          - {vlan: 2, addresses: [203.0.113.129/26]}
    taps:                              # `ip tuntap add mode tap dev tapN ...` (§9)
      - {number: 2, switch: sw0, vlan: 2, group: kvm, multi_queue: false}
    hosts:                             # veth hosts: a namespace with eth0 on a port
      h3: {switch: sw0, vlan: 3, addresses: [203.0.113.131/26]}
    vms:
      vm0:
        image: tiny                    # or debian
        memory: 256                    # MB, at least 128 (the guide's check)
        profile: fast                  # fast (microvm), pc or q35
        nics:
          - tap: 2                     # MAC b8:ad:ca:fe:00:02 from the tap number
            addresses: [203.0.113.130/26]
            gateway: 203.0.113.129
          - user: {}                   # user-mode networking, SSH forwarded from 2200+N

A port is an access port with `vlan: V`, a trunk with `trunks: [V, ...]` (and optionally
`native: V`), or a trunk of every VLAN with neither.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labfixtures.errors import LabError, LabFileError  # LabFileError: re-exported
from labfixtures.qemu.spec import PROFILES

if TYPE_CHECKING:
    from labfixtures.lab.lab import Lab


@dataclass(frozen=True)
class PortDef:
    vlan: int | None = None
    trunks: tuple[int, ...] = ()
    native: int | None = None


@dataclass(frozen=True)
class SviDef:
    vlan: int
    addresses: tuple[str, ...] = ()
    name: str | None = None


@dataclass(frozen=True)
class SwitchDef:
    name: str
    svis: tuple[SviDef, ...] = ()


@dataclass(frozen=True)
class TapDef:
    number: int
    switch: str | None = None
    port: PortDef = PortDef()
    group: str | None = None
    multi_queue: bool = False

    @property
    def name(self) -> str:
        return f"tap{self.number}"


@dataclass(frozen=True)
class HostDef:
    name: str
    switch: str | None = None
    port: PortDef = PortDef()
    addresses: tuple[str, ...] = ()
    gateway: str | None = None
    mac: str | None = None


@dataclass(frozen=True)
class NicDef:
    kind: str  # "tap" or "user"
    tap: int | None = None
    addresses: tuple[str, ...] = ()
    gateway: str | None = None
    dhcp: bool = False
    ssh_port: int | None = None
    mac: str | None = None


@dataclass(frozen=True)
class VmDef:
    name: str
    image: str = "tiny"
    memory: int = 256
    vcpus: int = 1
    profile: str = "fast"
    nics: tuple[NicDef, ...] = ()


@dataclass
class LabFile:
    name: str
    source: str = "<lab file>"
    datapath: str = "auto"
    forwarding: bool = False
    switches: dict[str, SwitchDef] = field(default_factory=dict)
    taps: list[TapDef] = field(default_factory=list)
    hosts: dict[str, HostDef] = field(default_factory=dict)
    vms: dict[str, VmDef] = field(default_factory=dict)

    @property
    def labid(self) -> str:
        return f"lf-{self.name}"


# -- validation helpers ----------------------------------------------------------------------

class _V:
    """Walks the YAML tree, keeping the dotted key path for error messages."""

    #: a file with more mistakes than this is reported with the first ones only
    MAX_MISTAKES = 20

    def __init__(self, source: str) -> None:
        self.source = source
        self.mistakes: list[LabFileError] = []

    def fail(self, key: str, problem: str, fix: str) -> LabFileError:
        return LabFileError(self.source, key, problem, fix)

    @contextmanager
    def each(self) -> Iterator[None]:
        """Validate one item; a mistake in it is kept and the walk goes on with the next."""
        try:
            yield
        except LabFileError as e:
            self.mistakes.extend(e.mistakes)
            if len(self.mistakes) >= self.MAX_MISTAKES:
                raise LabFileError.several(self.mistakes) from None

    def done(self, since: int = 0) -> None:
        """Raise the mistakes found since mark SINCE (a length of `mistakes`), if any."""
        if len(self.mistakes) > since:
            found = self.mistakes[since:]
            del self.mistakes[since:]
            raise LabFileError.several(found)

    def mapping(self, value: Any, key: str, allowed: set[str],
                required: tuple[str, ...] = ()) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__} {value!r}",
                            f"write `{key.rsplit('.', 1)[-1]}:` followed by indented keys")
        prefix = "" if key == "(top)" else f"{key}."
        found = []
        for k in value:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), sorted(allowed), n=1)
                hint = f"did you mean `{close[0]}`?" if close else \
                    f"allowed keys: {', '.join(sorted(allowed))}"
                found.append(self.fail(f"{prefix}{k}", "unknown key", hint))
        for k in required:
            if k not in value:
                where = "at the top of the file" if key == "(top)" else f"under `{key}`"
                found.append(self.fail(f"{prefix}{k}", "missing", f"add `{k}:` {where}"))
        if found:
            raise LabFileError.several(found)
        return value

    def list_(self, value: Any, key: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {value!r}",
                            f"write each item on its own line starting with `- ` under {key}")
        return value

    def int_(self, value: Any, key: str, lo: int, hi: int, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"{value!r} is not a whole number", f"give {what}")
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} is out of range", f"give {what} ({lo} to {hi})")
        return value

    def bool_(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"{value!r} is not true or false", "write true or false")
        return value

    def vlan(self, value: Any, key: str) -> int:
        return self.int_(value, key, 1, 4094, "a VLAN id")

    def cidr(self, value: Any, key: str) -> str:
        try:
            iface = ipaddress.ip_interface(str(value))
        except ValueError:
            raise self.fail(key, f"{value!r} is not an address with a prefix",
                            "write it like 203.0.113.130/26") from None
        if "/" not in str(value):
            raise self.fail(key, f"{value} has no prefix length",
                            f"write it with its prefix, e.g. {value}/26")
        return str(iface)

    def ip(self, value: Any, key: str) -> str:
        try:
            return str(ipaddress.ip_address(str(value)))
        except ValueError:
            raise self.fail(key, f"{value!r} is not an IP address",
                            "write a plain address such as 203.0.113.129") from None

    def name(self, value: Any, key: str, maxlen: int = 15) -> str:
        if not isinstance(value, str) or not re.fullmatch(
                rf"[A-Za-z][A-Za-z0-9_.-]{{0,{maxlen - 1}}}", value):
            raise self.fail(key, f"{value!r} is not a usable name",
                            f"start with a letter; letters, digits, '-', '_', '.'; "
                            f"{maxlen} characters at most")
        return value

    def port(self, d: dict, key: str) -> PortDef:
        vlan = self.vlan(d["vlan"], f"{key}.vlan") if "vlan" in d else None
        trunks = tuple(self.vlan(v, f"{key}.trunks[{i}]")
                       for i, v in enumerate(self.list_(d.get("trunks"), f"{key}.trunks")))
        native = self.vlan(d["native"], f"{key}.native") if "native" in d else None
        if vlan is not None and (trunks or native is not None):
            raise self.fail(f"{key}.vlan", "an access port (vlan) cannot also be a trunk",
                            "keep `vlan:` for an access port, or `trunks:`/`native:` for a "
                            "trunk")
        return PortDef(vlan, trunks, native)


PORT_KEYS = {"switch", "vlan", "trunks", "native"}


def check_gateway(v: _V, key: str, gateway: str | None, addresses: tuple[str, ...],
                  dhcp: bool = False) -> None:
    """A gateway must be on a subnet of one of the NIC's addresses (or link-local)."""
    if gateway is None:
        return
    gw = ipaddress.ip_address(gateway)
    if gw.version == 6 and gw.is_link_local:
        return
    nets = [ipaddress.ip_interface(a).network for a in addresses]
    if any(gw in n for n in nets if n.version == gw.version):
        return
    if not nets:
        if dhcp:
            return
        raise v.fail(key, f"gateway {gateway} is given but the NIC has no address",
                     "add an address on the gateway's subnet under `addresses:`, "
                     f"e.g. {gw + 1}/{'26' if gw.version == 4 else '64'}")
    raise v.fail(key, f"gateway {gateway} is on none of the NIC's subnets "
                 f"({', '.join(str(n) for n in nets)}): the default route could not be set",
                 "give a gateway inside one of those subnets (in the guide's Table 1, "
                 "203.0.113.129 for 203.0.113.130/26), or fix the address")


def parse(data: Any, source: str = "<lab file>") -> LabFile:
    """Validate the YAML tree DATA; every mistake names SOURCE, the key and the fix.

    Every mistake is reported at once (up to `_V.MAX_MISTAKES`), not only the first.
    """
    # imported here, not at the top: the recipe list pulls in the image builders, which
    # `labctl`'s lab-file commands need anyway but a unit test of the parser does not
    from labfixtures.guestimages import RECIPES

    v = _V(source)
    top = v.mapping(data, "(top)", {"name", "datapath", "forwarding", "switches", "taps",
                                    "hosts", "vms"}, required=("name",))
    lab = LabFile(name=v.name(top["name"], "name", maxlen=40), source=source)
    with v.each():
        lab.datapath = top.get("datapath", "auto")
        if lab.datapath not in ("auto", "system", "netdev"):
            raise v.fail("datapath", f"{lab.datapath!r} is not a datapath",
                         "use auto, system (kernel module) or netdev (userspace)")
    with v.each():
        lab.forwarding = v.bool_(top.get("forwarding", False), "forwarding")

    switches: dict[str, Any] = {}
    with v.each():
        switches = v.mapping(top.get("switches"), "switches",
                             allowed=set(top.get("switches") or {}))
    for sname, sw in switches.items():
        key = f"switches.{sname}"
        svis: list[SviDef] = []
        with v.each():
            v.name(sname, key)
            sw = v.mapping(sw, key, {"svis"})
            for i, svi in enumerate(v.list_(sw.get("svis"), f"{key}.svis")):
                k = f"{key}.svis[{i}]"
                with v.each():
                    svi = v.mapping(svi, k, {"vlan", "addresses", "name"}, required=("vlan",))
                    svis.append(SviDef(
                        vlan=v.vlan(svi["vlan"], f"{k}.vlan"),
                        addresses=tuple(v.cidr(a, f"{k}.addresses[{j}]") for j, a in
                                        enumerate(v.list_(svi.get("addresses"),
                                                          f"{k}.addresses"))),
                        name=v.name(svi["name"], f"{k}.name") if "name" in svi else None))
        lab.switches[sname] = SwitchDef(sname, tuple(svis))

    def switch_ref(d: dict, key: str) -> str | None:
        s = d.get("switch")
        if s is not None and s not in lab.switches:
            known = ", ".join(lab.switches) or "none declared"
            raise v.fail(f"{key}.switch", f"no switch named {s!r}",
                         f"declare it under `switches:` (switches: {known})")
        if s is None and any(k in d for k in ("vlan", "trunks", "native")):
            raise v.fail(key, "a VLAN is given but no switch",
                         "add `switch: sw0` (the switch the port belongs to)")
        return s

    seen_taps: dict[int, str] = {}
    taps: list[Any] = []
    with v.each():
        taps = v.list_(top.get("taps"), "taps")
    before = len(v.mistakes)
    for i, tap in enumerate(taps):
        key = f"taps[{i}]"
        with v.each():
            tap = v.mapping(tap, key, {"number", "group", "multi_queue"} | PORT_KEYS,
                            required=("number",))
            n = v.int_(tap["number"], f"{key}.number", 0, 65535, "the tap number")
            if n in seen_taps:
                raise v.fail(f"{key}.number", f"tap{n} is already declared at {seen_taps[n]}",
                             "give each tap its own number")
            seen_taps[n] = key
            group = tap.get("group")
            if group is not None and not isinstance(group, str):
                raise v.fail(f"{key}.group", f"{group!r} is not a group name",
                             "e.g. group: kvm")
            lab.taps.append(TapDef(n, switch_ref(tap, key), v.port(tap, key), group,
                                   v.bool_(tap.get("multi_queue", False),
                                           f"{key}.multi_queue")))

    # a tap entry with a mistake is unknown: say nothing of the VM NICs that name it
    taps_ok = len(v.mistakes) == before
    hosts: dict[str, Any] = {}
    with v.each():
        hosts = v.mapping(top.get("hosts"), "hosts", allowed=set(top.get("hosts") or {}))
    for hname, host in hosts.items():
        key = f"hosts.{hname}"
        with v.each():
            v.name(hname, key)
            host = v.mapping(host, key, {"addresses", "gateway", "mac"} | PORT_KEYS)
            addresses = tuple(v.cidr(a, f"{key}.addresses[{j}]") for j, a in
                              enumerate(v.list_(host.get("addresses"), f"{key}.addresses")))
            gateway = v.ip(host["gateway"], f"{key}.gateway") if "gateway" in host else None
            check_gateway(v, f"{key}.gateway", gateway, addresses)
            lab.hosts[hname] = HostDef(hname, switch_ref(host, key), v.port(host, key),
                                       addresses, gateway, host.get("mac"))

    used_taps: dict[int, str] = {}
    vms: dict[str, Any] = {}
    with v.each():
        vms = v.mapping(top.get("vms"), "vms", allowed=set(top.get("vms") or {}))
    for vname, vm in vms.items():
        key = f"vms.{vname}"
        with v.each():
            lab.vms[vname] = _vm(v, key, vname, vm, seen_taps if taps_ok else None,
                                 used_taps, RECIPES)

    for name in sorted(set(lab.hosts) & {t.name for t in lab.taps}):
        with v.each():
            raise v.fail(f"hosts.{name}", f"{name} is both a host and a tap",
                         "rename the host: its switch port is named after it")
    v.done()
    return lab


def _vm(v: _V, key: str, vname: str, vm: Any, seen_taps: dict[int, str] | None,
        used_taps: dict[int, str], recipes: Any) -> VmDef:
    v.name(vname, key)
    vm = v.mapping(vm, key, {"image", "memory", "vcpus", "profile", "nics"})
    mark = len(v.mistakes)
    fields: dict[str, Any] = {}
    with v.each():
        memory = vm.get("memory", 256)
        if isinstance(memory, int) and not isinstance(memory, bool) and memory < 128:
            raise v.fail(f"{key}.memory", f"{memory} MB is not enough RAM",
                         "RAM size must be above 128MB (the guide's check): memory: 256")
        fields["memory"] = v.int_(memory, f"{key}.memory", 128, 65536, "the RAM size in MB")
    with v.each():
        fields["vcpus"] = v.int_(vm.get("vcpus", 1), f"{key}.vcpus", 1, 64,
                                 "a number of vCPUs")
    with v.each():
        profile = vm.get("profile", "fast")
        if profile not in PROFILES:
            raise v.fail(f"{key}.profile", f"{profile!r} is not a machine profile",
                         "use " + ", ".join(f"{p} ({d})" for p, d in PROFILES.items()))
        fields["profile"] = profile
    with v.each():
        image = vm.get("image", "tiny")
        if not isinstance(image, str) or image not in recipes:
            close = difflib.get_close_matches(str(image), sorted(recipes), n=1)
            raise v.fail(f"{key}.image", f"{image!r} is not a guest image",
                         (f"did you mean `{close[0]}`? " if close else "")
                         + f"use one of: {', '.join(sorted(recipes))} "
                         "(see `labctl image list`)")
        fields["image"] = image
    nics = []
    for i, nic in enumerate(v.list_(vm.get("nics"), f"{key}.nics")):
        k = f"{key}.nics[{i}]"
        with v.each():
            nics.append(_nic(v, k, nic, seen_taps, used_taps, key))
    v.done(mark)
    return VmDef(vname, fields["image"], fields["memory"], fields["vcpus"], fields["profile"],
                 tuple(nics))


def _nic(v: _V, k: str, nic: Any, seen_taps: dict[int, str] | None, used_taps: dict[int, str],
         vm_key: str) -> NicDef:
    nic = v.mapping(nic, k, {"tap", "user", "addresses", "gateway", "dhcp", "mac"})
    if ("tap" in nic) == ("user" in nic):
        raise v.fail(k, "a NIC needs exactly one of `tap: N` or `user:`",
                     "write `- tap: 2` (a tap on a switch) or `- user: {}` "
                     "(user-mode networking)")
    addresses = tuple(v.cidr(a, f"{k}.addresses[{j}]") for j, a in
                      enumerate(v.list_(nic.get("addresses"), f"{k}.addresses")))
    gateway = v.ip(nic["gateway"], f"{k}.gateway") if "gateway" in nic else None
    if "tap" in nic:
        dhcp = v.bool_(nic.get("dhcp", False), f"{k}.dhcp")
        check_gateway(v, f"{k}.gateway", gateway, addresses, dhcp)
        n = v.int_(nic["tap"], f"{k}.tap", 0, 65535, "the tap number")
        if seen_taps is not None and n not in seen_taps:
            raise v.fail(f"{k}.tap", f"tap{n} is not declared",
                         f"add `- {{number: {n}, switch: sw0, vlan: 2}}` under taps:")
        if n in used_taps:
            raise v.fail(f"{k}.tap", f"tap{n} is already used by {used_taps[n]}",
                         "give each VM NIC its own tap (the guide refuses a tap in use)")
        used_taps[n] = vm_key
        return NicDef("tap", tap=n, addresses=addresses, gateway=gateway, dhcp=dhcp,
                      mac=nic.get("mac"))
    user = v.mapping(nic["user"], f"{k}.user", {"ssh_port"})
    port = (v.int_(user["ssh_port"], f"{k}.user.ssh_port", 1, 65535, "a TCP port")
            if "ssh_port" in user else None)
    dhcp = v.bool_(nic.get("dhcp", not addresses), f"{k}.dhcp")
    check_gateway(v, f"{k}.gateway", gateway, addresses, dhcp)
    return NicDef("user", addresses=addresses, gateway=gateway, dhcp=dhcp, ssh_port=port,
                  mac=nic.get("mac"))


def load(path: str | Path) -> LabFile:
    """Read and validate a lab file."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise LabError(f"lab file {p} does not exist",
                       "give the path of a .yaml lab file, e.g. "
                       "scenarios/labs/seed-minimal.yaml") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise LabFileError(str(p), where, f"not valid YAML ({getattr(e, 'problem', e)})",
                           "check the indentation (spaces, not tabs) and the colons"
                           ) from None
    return parse(data, str(p))


# -- building ----------------------------------------------------------------------------

def build_network(spec: LabFile, lab: Lab) -> None:
    """Switches, SVIs, forwarding, taps and veth hosts of SPEC, on LAB (VMs come after)."""
    from labfixtures.lab.lab import HostSpec

    for sw in spec.switches.values():
        switch = lab.switch(sw.name)
        for svi in sw.svis:
            switch.svi(svi.vlan, *svi.addresses, name=svi.name)
    if spec.forwarding:
        lab.enable_forwarding()
    for tap in spec.taps:
        lab.tap(tap.number, group=tap.group, multi_queue=tap.multi_queue)
        if tap.switch:
            lab.switches[tap.switch].add_port(tap.name, tag=tap.port.vlan,
                                              trunks=tap.port.trunks, native=tap.port.native)
    by_switch: dict[str | None, list[HostSpec]] = {}
    for h in spec.hosts.values():
        by_switch.setdefault(h.switch, []).append(HostSpec(
            h.name, tag=h.port.vlan, trunks=h.port.trunks, native=h.port.native,
            addresses=h.addresses, gateway=h.gateway, mac=h.mac))
    for sw_name, hosts in by_switch.items():
        lab.veth_hosts(hosts, lab.switches[sw_name] if sw_name else None)
