"""Building a lab file on a lab: the one conversion of a `LabFile` into switches, SVIs,
taps, veth hosts and VMs (`labfile.build`, re-exported there)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labfixtures.lab.labspec import LabFile, NicDef, VmDef
from labfixtures.lab.switch import Switch
from labfixtures.lab.veth import HostSpec, VethHost
from labfixtures.lab.vm import VM
from labfixtures.lab.vmspec import VmNic

if TYPE_CHECKING:
    from labfixtures.lab.lab import Lab


@dataclass
class BuiltLab:
    """What a lab file built: its VMs, veth hosts and switches by name, the file's
    definition and the lab it was built on."""

    lab: Lab
    spec: LabFile
    vms: dict[str, VM] = field(default_factory=dict)
    hosts: dict[str, VethHost] = field(default_factory=dict)
    switches: dict[str, Switch] = field(default_factory=dict)


def vm_nic(nic: NicDef) -> VmNic:
    """A lab file's NIC as a `VmNic` (addressing, DHCP, SSH port and MAC kept)."""
    return VmNic(tap=nic.tap, user=nic.kind == "user", addresses=tuple(nic.addresses),
                 gateway=nic.gateway, dhcp=nic.dhcp, ssh_port=nic.ssh_port, mac=nic.mac)


def vm_arguments(vm: VmDef) -> dict[str, Any]:
    """The keyword arguments of `Lab.vm()` (after the name) that make VM."""
    kw: dict[str, Any] = {"nics": [vm_nic(n) for n in vm.nics], "image": vm.image,
                          "memory": vm.memory, "vcpus": vm.vcpus, "profile": vm.profile}
    if vm.kernel:  # only then: a make_vm without kernel= still takes the others
        kw["kernel"] = vm.kernel
    return kw


def build_network(spec: LabFile, lab: Lab) -> BuiltLab:
    """Switches, SVIs, forwarding, taps and veth hosts of SPEC, on LAB (no VM)."""
    built = BuiltLab(lab, spec)
    for sw in spec.switches.values():
        switch = lab.switch(sw.name)
        built.switches[sw.name] = switch
        for svi in sw.svis:
            switch.svi(svi.vlan, *svi.addresses, name=svi.name)
    if spec.forwarding:
        lab.enable_forwarding()
    for tap in spec.taps:
        lab.tap(tap.number, group=tap.group, multi_queue=tap.multi_queue)
        if tap.switch:
            built.switches[tap.switch].add_port(tap.name, tag=tap.port.vlan,
                                                trunks=tap.port.trunks,
                                                native=tap.port.native)
    by_switch: dict[str | None, list[HostSpec]] = {}
    for h in spec.hosts.values():
        by_switch.setdefault(h.switch, []).append(HostSpec(
            h.name, tag=h.port.vlan, trunks=h.port.trunks, native=h.port.native,
            addresses=h.addresses, gateway=h.gateway, mac=h.mac))
    for sw_name, hosts in by_switch.items():
        for host in lab.veth_hosts(hosts, built.switches[sw_name] if sw_name else None):
            built.hosts[host.name] = host
    return built


def build(spec: LabFile, lab: Lab, *, make_vm: Callable[..., VM] | None = None,
          start: bool = True, boot_timeout: float = 300.0,
          progress: Callable[[str], object] | None = None) -> BuiltLab:
    """Everything SPEC describes, on LAB: its network, then its VMs.

    The VMs are made by MAKE_VM (a callable with `Lab.vm()`'s arguments, such as the
    pytest plugin's `lab_vm`, which then boots them as it likes) or by `lab.vm()`; in that
    case, with START, they boot all at once and each is checked over SSH before this
    returns. PROGRESS, if given, receives one line per step.
    """
    say = progress or (lambda _m: None)
    say(f"network: {len(spec.switches)} switch(es), {len(spec.taps)} tap(s), "
        f"{len(spec.hosts)} host(s)")
    built = build_network(spec, lab)
    for v in spec.vms.values():
        if make_vm is not None:
            built.vms[v.name] = make_vm(v.name, **vm_arguments(v))
        else:
            built.vms[v.name] = lab.vm(v.name, **vm_arguments(v), start=False)
    if make_vm is None and start:
        for vm in built.vms.values():
            on = f" on {vm.opts.kernel}" if vm.opts.kernel else ""
            say(f"booting {vm.name} ({vm.image.name}{on}, {vm.opts.profile})")
            vm.start(wait=False)
        for vm in built.vms.values():
            vm.wait_ready(timeout=boot_timeout)
            vm.run("true", check=True)
            say(f"{vm.name} answers SSH at {vm.ssh_target()[0]} ({vm.boot_seconds:.1f} s)")
    return built
