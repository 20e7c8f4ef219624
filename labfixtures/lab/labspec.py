"""A lab file once validated: plain definitions of its switches, taps, hosts and VMs.

`labfile.parse()`/`labfile.load()` make a `LabFile`; `labfile.build()` builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labfixtures.core import naming


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
    kernel: str | None = None  # image tiny on this Debian kernel package


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
        return naming.labid(self.name)
