"""The lab drawn: switches with the VLAN mode of every port, SVIs with their addresses,
taps, veth hosts and VMs with their NICs, inside the lab's namespace boundary.

A `Picture` is plain data, taken either from a running lab (`snapshot(lab)`: what exists,
read back from Open vSwitch and netlink, so a port put in the wrong VLAN is drawn where it
really is) or from a lab file (`from_labfile(spec)`: what is meant). It is rendered as
Graphviz DOT (and through Graphviz's `dot` as SVG or PNG) or as Mermaid, which pastes into
a GitLab or GitHub issue.
"""

from __future__ import annotations

import html
import re
import shutil
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from labfixtures.core import netns, runner
from labfixtures.core.addressing import mac_from_tap
from labfixtures.errors import HostResourceError, LabError
from labfixtures.lab.lab import Lab
from labfixtures.lab.labfile import LabFile
from labfixtures.lab.persistent import PersistentLab
from labfixtures.lab.vmhost import svi_name
from labfixtures.net.netlink import Netlink
from labfixtures.net.ovs import parse_port_mode

FORMATS = ("svg", "png", "dot", "mermaid")


@dataclass
class Port:
    name: str
    kind: str  # "svi", "tap", "veth" or "port"
    mode: str  # "access VLAN 2", "trunk 2,3", "trunk (all VLANs)"
    addresses: list[str] = field(default_factory=list)


@dataclass
class SwitchPic:
    name: str
    ports: list[Port] = field(default_factory=list)


@dataclass
class HostPic:
    """A veth host: its own namespace, eth0 on switch port `port`."""

    name: str
    port: str
    mac: str = ""
    addresses: list[str] = field(default_factory=list)


@dataclass
class NicPic:
    port: str  # the tap (tapN) or "user" for user-mode networking
    mac: str = ""
    addresses: list[str] = field(default_factory=list)


@dataclass
class VmPic:
    name: str
    nics: list[NicPic] = field(default_factory=list)


@dataclass
class Picture:
    lab: str
    switches: list[SwitchPic] = field(default_factory=list)
    hosts: list[HostPic] = field(default_factory=list)
    vms: list[VmPic] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)  # taps on no switch


def _mode(mode: str, tag: int | None, trunks: tuple[int, ...]) -> str:
    if mode == "access":
        return f"access VLAN {tag}"
    vlans = ",".join(map(str, trunks)) if trunks else "all VLANs"
    return f"trunk {vlans}" + (f", native {tag}" if tag else "")


def snapshot(lab: Lab) -> Picture:
    """What LAB holds now, read back from Open vSwitch and netlink (not from its spec)."""
    hosts = {h.port: h for h in lab.hosts.values()}
    pic = Picture(lab.labid)
    on_switch: set[str] = set()
    for sw in lab.switches.values():
        spic = SwitchPic(sw.name)
        for name in sorted(sw.ports()):
            m = sw.port_mode(name)
            if name in hosts:
                kind = "veth"
            elif re.fullmatch(r"tap\d+", name):
                kind = "tap"
            elif name.startswith(svi_name(sw.name, 0)[:-1]) or \
                    lab.nl.link(name).kind in ("tun", "openvswitch"):
                kind = "svi"
            else:
                kind = "port"
            addrs = [a.cidr for a in lab.addresses(name)
                     if not a.cidr.startswith("fe80")] if kind == "svi" else []
            spic.ports.append(Port(name, kind, _mode(m.mode, m.tag, m.trunks), addrs))
            on_switch.add(name)
        pic.switches.append(spic)
    for h in lab.hosts.values():
        pic.hosts.append(HostPic(h.name, h.port, h.mac,
                                 [a.cidr for a in h.addresses() if not a.cidr.startswith("fe80")]))
    for vm in lab.vms.values():
        nics = []
        for n in vm.nics:
            port = "user" if n.user else f"tap{n.tap}"
            mac = n.mac or (mac_from_tap(n.tap) if n.tap is not None else "")
            nics.append(NicPic(port, mac, list(n.addresses)))
        pic.vms.append(VmPic(vm.name, nics))
    pic.taps = sorted(link.name for link in lab.nl.links()
                      if re.fullmatch(r"tap\d+", link.name) and link.name not in on_switch)
    return pic


def _global(addrs: list[str]) -> list[str]:
    return [a for a in addrs if not a.startswith("fe80")]


def snapshot_persistent(plab: PersistentLab) -> Picture:
    """What a lab of `labctl up` holds now: its switches and port modes read with the lab's
    ovs-vsctl, addresses and links with netlink in its namespaces, VMs from their vm.json."""
    if not netns.exists(plab.ns):
        raise LabError(f"lab {plab.labid} has no network namespace (is it up?)",
                       "start it with `labctl up FILE`, or draw the file itself")
    pic = Picture(plab.labid)
    ovs = plab.ovs()
    on_switch: set[str] = set()
    with Netlink(plab.ns) as nl:
        links = {link.name: link for link in nl.links()}
        for br in ovs.vsctl("list-br").split() if ovs is not None else []:
            assert ovs is not None
            spic = SwitchPic(br)
            for name in sorted(ovs.vsctl("list-ports", br).split()):
                m = parse_port_mode(ovs.vsctl("list", "port", name))
                itype = ovs.vsctl("get", "interface", name, "type").strip().strip('"')
                link = links.get(name)
                if re.fullmatch(r"tap\d+", name):
                    kind = "tap"
                elif itype == "internal":
                    kind = "svi"
                elif link is not None and link.kind == "veth":
                    kind = "veth"
                else:
                    kind = "port"
                addrs = _global([a.cidr for a in nl.addresses(name)]) \
                    if kind == "svi" and link is not None else []
                spic.ports.append(Port(name, kind, _mode(m.mode, m.tag, m.trunks), addrs))
                on_switch.add(name)
                if kind == "veth":
                    pic.hosts.append(_persistent_host(f"{plab.labid}-{name}", name))
            pic.switches.append(spic)
        pic.taps = sorted(n for n in links if re.fullmatch(r"tap\d+", n) and n not in on_switch)
    for name in plab.vm_names():
        state = plab.vm_state(name)
        nics = [NicPic("user" if n.user else f"tap{n.tap}",
                       n.mac or (mac_from_tap(n.tap) if n.tap is not None else ""),
                       list(n.addresses)) for n in state.nics]
        pic.vms.append(VmPic(name, nics))
    return pic


def _persistent_host(ns: str, port: str) -> HostPic:
    """The veth host behind PORT: eth0 of its namespace NS (if it is there)."""
    if not netns.exists(ns):
        return HostPic(port, port)
    with Netlink(ns) as nl:
        mac = next((link.mac for link in nl.links() if link.name == "eth0"), "")
        return HostPic(port, port, mac, _global([a.cidr for a in nl.addresses("eth0")]))


def from_labfile(spec: LabFile) -> Picture:
    """What the lab file SPEC describes (nothing is built)."""
    pic = Picture(spec.labid)
    switches = {name: SwitchPic(name) for name in spec.switches}
    for sw in spec.switches.values():
        for svi in sw.svis:
            switches[sw.name].ports.append(Port(svi.name or svi_name(sw.name, svi.vlan), "svi",
                                                f"access VLAN {svi.vlan}", list(svi.addresses)))
    for tap in spec.taps:
        p = tap.port
        mode = _mode("access" if p.vlan is not None else "trunk", p.vlan or p.native, p.trunks)
        if tap.switch:
            switches[tap.switch].ports.append(Port(tap.name, "tap", mode))
        else:
            pic.taps.append(tap.name)
    for h in spec.hosts.values():
        p = h.port
        if h.switch:
            mode = _mode("access" if p.vlan is not None else "trunk", p.vlan or p.native,
                         p.trunks)
            switches[h.switch].ports.append(Port(h.name, "veth", mode))
        pic.hosts.append(HostPic(h.name, h.name, h.mac or "", list(h.addresses)))
    for vm in spec.vms.values():
        nics = []
        for n in vm.nics:
            if n.kind == "user":
                nics.append(NicPic("user", n.mac or "", list(n.addresses)))
            else:
                assert n.tap is not None
                nics.append(NicPic(f"tap{n.tap}", n.mac or mac_from_tap(n.tap),
                                   list(n.addresses)))
        pic.vms.append(VmPic(vm.name, nics))
    pic.switches = list(switches.values())
    return pic


# -- DOT -------------------------------------------------------------------------------------

def _id(*parts: str) -> str:
    return '"' + ":".join(parts).replace('"', "'") + '"'


def _label(*lines: str) -> str:
    return "<" + "<br/>".join(html.escape(line) for line in lines if line) + ">"


def to_dot(pic: Picture, highlight: Collection[str] = ()) -> str:
    """Graphviz DOT text; ports or nodes named in HIGHLIGHT are drawn in red."""

    def color(name: str) -> str:
        return ', color="red", fontcolor="red", penwidth=2' if name in highlight else ""

    out = ["graph lab {", '  graph [rankdir=LR, fontname="sans", fontsize=11];',
           '  node [fontname="sans", fontsize=10];', '  edge [fontname="sans", fontsize=9];',
           f"  subgraph {_id('cluster', pic.lab)} {{",
           f"    label={_label('lab namespace ' + pic.lab)}; style=dashed;"]
    for sw in pic.switches:
        out.append(f"    {_id('sw', sw.name)} [shape=box, style=filled, fillcolor=\"#dde8f5\", "
                   f"label={_label(sw.name, 'Open vSwitch')}{color(sw.name)}];")
        for p in sw.ports:
            pid = _id("port", p.name)
            if p.kind == "svi":
                out.append(f"    {pid} [shape=ellipse, label={_label(p.name, p.mode, *p.addresses)}"
                           f"{color(p.name)}];")
                out.append(f"    {_id('sw', sw.name)} -- {pid} [label={_label(p.mode)}"
                           f"{color(p.name)}];")
            else:
                out.append(f"    {pid} [shape=cds, label={_label(p.name)}{color(p.name)}];")
                out.append(f"    {_id('sw', sw.name)} -- {pid} [label={_label(p.mode)}"
                           f"{color(p.name)}];")
    for t in pic.taps:
        out.append(f"    {_id('port', t)} [shape=cds, label={_label(t, 'no switch')}{color(t)}];")
    out.append("  }")
    for h in pic.hosts:
        boundary = _label("namespace " + h.name)
        out.append(f"  subgraph {_id('cluster', 'host', h.name)} {{ label={boundary};"
                   " style=dotted;")
        out.append(f"    {_id('host', h.name)} [shape=box, style=rounded, "
                   f"label={_label(h.name + ' (veth host)', 'eth0 ' + h.mac, *h.addresses)}"
                   f"{color(h.name)}];")
        out.append("  }")
        out.append(f"  {_id('host', h.name)} -- {_id('port', h.port)};")
    for vm in pic.vms:
        lines = [vm.name + " (VM)"]
        for i, n in enumerate(vm.nics):
            lines.append(f"eth{i} {n.mac} " + " ".join(n.addresses))
        out.append(f"  {_id('vm', vm.name)} [shape=box3d, label={_label(*lines)}"
                   f"{color(vm.name)}];")
        for i, n in enumerate(vm.nics):
            if n.port != "user":
                out.append(f"  {_id('vm', vm.name)} -- {_id('port', n.port)} "
                           f"[label={_label(f'eth{i}')}];")
    out.append("}")
    return "\n".join(out) + "\n"


# -- Mermaid ---------------------------------------------------------------------------------

def _mid(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts))


def _mtext(*lines: str) -> str:
    return '"' + "<br/>".join(line.replace('"', "'") for line in lines if line) + '"'


def to_mermaid(pic: Picture) -> str:
    """A Mermaid flowchart (paste it in a ```mermaid block of an issue)."""
    out = ["flowchart LR", f"  subgraph {_mid('lab', pic.lab)}[{_mtext('lab ' + pic.lab)}]"]
    for sw in pic.switches:
        out.append(f"    {_mid('sw', sw.name)}[{_mtext(sw.name, 'Open vSwitch')}]")
        for p in sw.ports:
            if p.kind == "svi":
                out.append(f"    {_mid('port', p.name)}([{_mtext(p.name, *p.addresses)}])")
            else:
                out.append(f"    {_mid('port', p.name)}>{_mtext(p.name)}]")
            out.append(f"    {_mid('sw', sw.name)} ---|{_mtext(p.mode)}| {_mid('port', p.name)}")
    out.append("  end")
    for h in pic.hosts:
        text = _mtext(h.name + " (veth host)", h.mac, *h.addresses)
        out.append(f"  {_mid('host', h.name)}[{text}] --- {_mid('port', h.port)}")
    for vm in pic.vms:
        lines = [vm.name + " (VM)"] + [f"eth{i} {n.mac} " + " ".join(n.addresses)
                                      for i, n in enumerate(vm.nics)]
        out.append(f"  {_mid('vm', vm.name)}[[{_mtext(*lines)}]]")
        for n in vm.nics:
            if n.port != "user":
                out.append(f"  {_mid('vm', vm.name)} --- {_mid('port', n.port)}")
    return "\n".join(out) + "\n"


# -- rendering -------------------------------------------------------------------------------

def render(pic: Picture, fmt: str = "svg", highlight: Collection[str] = ()) -> bytes:
    """PIC as FMT (svg, png, dot or mermaid); svg and png need Graphviz's `dot`."""
    if fmt not in FORMATS:
        raise LabError(f"{fmt!r} is not a drawing format", f"use one of: {', '.join(FORMATS)}")
    if fmt == "mermaid":
        return to_mermaid(pic).encode()
    dot = to_dot(pic, highlight)
    if fmt == "dot":
        return dot.encode()
    if not shutil.which("dot"):
        raise HostResourceError("binary", "dot",
                                "apt-get install graphviz (./ci/setup does it), or use "
                                "--format dot or mermaid")
    with tempfile.TemporaryDirectory(prefix="lf-draw-") as tmp:
        out = Path(tmp) / f"lab.{fmt}"
        runner.run(["dot", f"-T{fmt}", "-o", str(out)], input=dot)
        return out.read_bytes()


def svg_element(svg: bytes) -> str:
    """Graphviz's SVG output as an `<svg>` element for an HTML page (no XML prolog)."""
    text = svg.decode(errors="replace")
    return text[text.find("<svg"):] if "<svg" in text else text


def inline_svg(pic: Picture, highlight: Collection[str] = ()) -> str:
    """PIC as an `<svg>` element to put in an HTML page, the ports or nodes named in
    HIGHLIGHT in red: e.g. a student's lab with the port of a failed check
    (`inline_svg(snapshot(student_lab.lab), highlight={"tap2"})`)."""
    return svg_element(render(pic, "svg", highlight))


def write(pic: Picture, path: Path, fmt: str | None = None) -> Path:
    """Render PIC to PATH, the format taken from its suffix unless FMT is given."""
    fmt = fmt or path.suffix.lstrip(".") or "svg"
    fmt = "mermaid" if fmt in ("mmd", "md") else fmt
    path.write_bytes(render(pic, fmt))
    return path
