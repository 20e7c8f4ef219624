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
        kernel: linux-image-6.1.0-50-amd64  # tiny on another kernel (labctl image build
                                       # tiny --kernel PACKAGE first); default: APT's
        memory: 256                    # MB, at least 128 (the guide's check)
        profile: fast                  # fast (microvm), pc or q35
        nics:
          - tap: 2                     # MAC b8:ad:ca:fe:00:02 from the tap number
            addresses: [203.0.113.130/26]
            gateway: 203.0.113.129
          - user: {}                   # user-mode networking, SSH forwarded from 2200+N

`load()`/`parse()` validate (labcheck.py holds the checks) into a `LabFile` (labspec.py);
`build()` builds it on a lab (build.py); `open_lab()` does both on a new lab.

A port is an access port with `vlan: V`, a trunk with `trunks: [V, ...]` (and optionally
`native: V`), or a trunk of every VLAN with neither.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from labfixtures.errors import LabError, LabFileError  # LabFileError: re-exported
from labfixtures.guestimages import RECIPES, default_vcpus
from labfixtures.lab.build import BuiltLab, build, build_network, vm_arguments, vm_nic
from labfixtures.lab.lab import Lab
from labfixtures.lab.labcheck import PORT_KEYS, Checker, check_gateway, check_kernel
from labfixtures.lab.labspec import (
    HostDef,
    LabFile,
    NicDef,
    PortDef,
    SviDef,
    SwitchDef,
    TapDef,
    VmDef,
)
from labfixtures.net.ovs import DATAPATHS
from labfixtures.qemu.spec import PROFILES

__all__ = ["DATAPATHS", "BuiltLab", "HostDef", "LabFile", "LabFileError", "NicDef", "PortDef",
           "SviDef", "SwitchDef", "TapDef", "VmDef", "build", "build_network", "check_name",
           "load", "open_lab", "parse", "vm_arguments", "vm_nic"]
_V = Checker  # the name it had


def parse(data: Any, source: str = "<lab file>") -> LabFile:
    """Validate the YAML tree DATA; every mistake names SOURCE, the key and the fix.

    Every mistake is reported at once (up to `_V.MAX_MISTAKES`), not only the first.
    """
    v = Checker(source)
    top = v.mapping(data, "(top)", {"name", "datapath", "forwarding", "switches", "taps",
                                    "hosts", "vms"}, required=("name",))
    lab = LabFile(name=v.name(top["name"], "name", maxlen=40), source=source)
    with v.each():
        lab.datapath = top.get("datapath", "auto")
        if lab.datapath not in DATAPATHS:
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

    def switch_ref(d: dict[str, Any], key: str) -> str | None:
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


def _vm(v: Checker, key: str, vname: str, vm: Any, seen_taps: dict[int, str] | None,
        used_taps: dict[int, str], recipes: Any) -> VmDef:
    v.name(vname, key)
    vm = v.mapping(vm, key, {"image", "kernel", "memory", "vcpus", "profile", "nics"})
    mark = len(v.mistakes)
    fields: dict[str, Any] = {}
    with v.each():
        memory = vm.get("memory", 256)
        if isinstance(memory, int) and not isinstance(memory, bool) and memory < 128:
            raise v.fail(f"{key}.memory", f"{memory} MB is not enough RAM",
                         "RAM size must be above 128MB (the guide's check): memory: 256")
        fields["memory"] = v.int_(memory, f"{key}.memory", 128, 65536, "the RAM size in MB")
    with v.each():
        image, profile = vm.get("image", "tiny"), vm.get("profile", "fast")
        default = default_vcpus(image if isinstance(image, str) else "tiny", str(profile))
        fields["vcpus"] = v.int_(vm.get("vcpus", default), f"{key}.vcpus", 1, 64,
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
    with v.each():
        fields["kernel"] = check_kernel(v, f"{key}.kernel", vm.get("kernel"),
                                        vm.get("image", "tiny"))
    nics = []
    for i, nic in enumerate(v.list_(vm.get("nics"), f"{key}.nics")):
        k = f"{key}.nics[{i}]"
        with v.each():
            nics.append(_nic(v, k, nic, seen_taps, used_taps, key))
    v.done(mark)
    return VmDef(vname, fields["image"], fields["memory"], fields["vcpus"], fields["profile"],
                 tuple(nics), fields.get("kernel"))


def _nic(v: Checker, k: str, nic: Any, seen_taps: dict[int, str] | None, used_taps: dict[int, str],
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


def check_name(name: str, source: str = "--name") -> str:
    """NAME as a lab name (the `name:` of a lab file, or `labctl up --name`)."""
    return Checker(source).name(name, source, maxlen=40)


def open_lab(file: str | Path | LabFile, *, name: str | None = None,
             progress: Callable[[str], object] | None = None, **open_kw: Any) -> BuiltLab:
    """A new lab named after FILE (a lab file's path, or one already loaded), or NAME,
    with FILE built on it (VMs booted and answering SSH). `built.lab.close()` takes it
    down; it is closed at once if the build fails. OPEN_KW go to `Lab.open()`."""
    spec = file if isinstance(file, LabFile) else load(file)
    if name:
        spec = replace(spec, name=check_name(name))
    if not isinstance(file, LabFile):
        open_kw.setdefault("source", str(Path(file).resolve()))
    lab = Lab.open(spec.labid, datapath=spec.datapath, **open_kw)
    try:
        return build(spec, lab, progress=progress)
    except BaseException:
        lab.close()
        raise
