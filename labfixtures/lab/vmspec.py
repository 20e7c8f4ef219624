"""What a VM of a lab is made of, before it runs: its NICs, its options, the guest's
configuration (the addressing the guest applies at boot)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labfixtures import guestimages
from labfixtures.errors import LabError
from labfixtures.guestimages.config import GuestConfig, InterfaceConfig
from labfixtures.qemu import NicSpec


@dataclass
class VmNic:
    """One NIC of a VM in a lab: a tap number (the tap must exist in the lab), or user
    mode; and the guest's addressing on it."""

    tap: int | None = None
    user: bool = False
    addresses: Sequence[str] = ()
    gateway: str | None = None
    dhcp: bool = False
    mac: str | None = None
    ssh_port: int | None = None
    queues: int = 1

    def nic_spec(self) -> NicSpec:
        if self.user:
            fwd = {self.ssh_port: 22} if self.ssh_port else {}
            return NicSpec("user", number=self.tap, mac=self.mac, hostfwd=fwd)
        if self.tap is None:
            raise LabError("a tap NIC needs its tap number", "VmNic(tap=2, ...)")
        return NicSpec("tap", number=self.tap, mac=self.mac, queues=self.queues)

    def to_dict(self) -> dict[str, Any]:
        return {"tap": self.tap, "user": self.user, "addresses": list(self.addresses),
                "gateway": self.gateway, "dhcp": self.dhcp, "mac": self.mac,
                "ssh_port": self.ssh_port, "queues": self.queues}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VmNic:
        return cls(tap=d.get("tap"), user=bool(d.get("user", False)),
                   addresses=tuple(d.get("addresses", ())), gateway=d.get("gateway"),
                   dhcp=bool(d.get("dhcp", False)), mac=d.get("mac"),
                   ssh_port=d.get("ssh_port"), queues=int(d.get("queues", 1)))


@dataclass
class VmOptions:
    image: str | guestimages.GuestImage = "tiny"  # a recipe name, or a built image
    kernel: str | None = None  # with image "tiny": this Debian kernel package instead
    memory: int = 256  # MB
    vcpus: int = 1
    profile: str = "fast"
    hostname: str | None = None
    extra_args: list[str] = field(default_factory=list)  # more QEMU arguments, as given
    extra_config: dict[str, Any] = field(default_factory=dict)  # more MachineSpec fields


def guest_config(name: str, nics: Sequence[VmNic], hostname: str | None = None
                 ) -> GuestConfig:
    """The per-VM configuration the guest applies at boot (see guestimages.config)."""
    interfaces = []
    gateway = None
    for i, nic in enumerate(nics):
        if nic.addresses or nic.dhcp or nic.user:
            interfaces.append(InterfaceConfig(f"eth{i}", dhcp=nic.dhcp or (
                nic.user and not nic.addresses), addresses=tuple(nic.addresses)))
        if nic.gateway and gateway is None:
            gateway = nic.gateway
    return GuestConfig(hostname=hostname or name, interfaces=interfaces, gateway=gateway)
