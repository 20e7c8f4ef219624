"""A switch of a lab: an Open vSwitch bridge, its ports and its SVIs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from labfixtures.core.ledger import Ledger
from labfixtures.errors import LabError
from labfixtures.lab import args
from labfixtures.lab.vmhost import svi_name
from labfixtures.net.ovs import PortMode, PortSpec, parse_port_mode

if TYPE_CHECKING:
    from labfixtures.lab.lab import Lab


class Switch:
    """An Open vSwitch bridge of the lab."""

    def __init__(self, lab: Lab, name: str, ledger: Ledger) -> None:
        self.lab = lab
        self.name = name
        self.ledger = ledger  # the scope that created it, and will delete it
        self.deleted = False

    def delete(self) -> None:
        """`ovs-vsctl --no-wait del-br`: the bridge and all its ports, in one transaction,
        applied by ovs-vswitchd in the background (`OvsServer.delete`)."""
        if self.deleted:
            return
        self.deleted = True
        self.lab._s.switches.pop(self.name, None)
        if self.lab._s.ovs is not None:
            self.lab._s.ovs.delete_bridge(self.name)

    def __repr__(self) -> str:
        return f"Switch({self.name!r})"

    def add_port(self, name: str, *, tag: int | None = None, trunks: Sequence[int] = (),
                 native: int | None = None, internal: bool = False) -> str:
        """`ovs-vsctl add-port SW NAME [tag=T | trunks=...]` for an existing interface
        (a tap, a veth end) or, with INTERNAL, a new internal port."""
        self.add_ports([PortSpec(args.name(name, "name", "port"), tag=args.vlan(tag, "tag"),
                                 trunks=args.vlans(trunks, "trunks"),
                                 native=args.vlan(native, "native"), internal=internal)])
        return name

    def add_ports(self, specs: Sequence[PortSpec]) -> None:
        """Several ports in one transaction; removed in one transaction at teardown."""
        for s in specs:
            if not s.internal and not self.lab.nl.exists(s.name):
                raise LabError(f"cannot add port {s.name!r} to {self.name}: no such interface "
                               f"in lab {self.lab.labid}",
                               "create it first (lab.tap(N), a veth host), or add it as "
                               "an internal port")
        tx = self.lab.ovs.transaction()
        for s in specs:
            tx.add_port(self.name, s)
        tx.commit()
        names = [s.name for s in specs]
        self.lab.ledger.push(f"ports {', '.join(names)} on {self.name}",
                             lambda: self._del_ports(names))
        for s in specs:
            if s.internal:
                self.lab.nl.set_up(s.name)

    def _del_ports(self, names: list[str]) -> None:
        if self.deleted:
            return
        tx = self.lab.ovs.transaction()
        for n in names:
            tx.add("--if-exists", "del-port", self.name, n)
        self.lab.ovs.delete(*tx.argv())

    def svi(self, vlan: int, *addresses: str, name: str | None = None) -> str:
        """The guide's SVI: internal port `SW-vlanV` with tag V, addresses, up."""
        args.vlan(vlan, "vlan")
        for i, cidr in enumerate(addresses):
            if not isinstance(cidr, str):  # svi(2, ["a/26"]): the addresses are unpacked
                raise LabError(f"svi() takes each address as its own argument, got "
                               f"{type(cidr).__name__} {cidr!r}",
                               "write sw.svi(2, '203.0.113.129/26', ...) or "
                               "sw.svi(2, *addresses)")
            args.interface(cidr, f"addresses[{i}]")
        port = name or svi_name(self.name, vlan)
        self.add_port(port, tag=vlan, internal=True)
        for cidr in addresses:
            self.lab.nl.add_address(port, cidr)
        return port

    def port_mode(self, port: str) -> PortMode:
        """Access (with its tag) or trunk, read back from the database like ovs-startup.sh."""
        return parse_port_mode(self.lab.ovs.vsctl("list", "port", port))

    def ports(self) -> list[str]:
        return self.lab.ovs.vsctl("list-ports", self.name).split()

    def show(self) -> str:
        return self.lab.ovs.show()


def resolve_switch(switches: dict[str, Switch], labid: str, switch: Switch | str | None,
                   arg: str = "switch") -> Switch | None:
    """SWITCH as given to the API: a Switch, the name of one of SWITCHES, or None."""
    if switch is None or isinstance(switch, Switch):
        return switch
    if isinstance(switch, str):
        found = switches.get(switch)
        if found is None:
            known = ", ".join(sorted(switches)) or "none yet"
            raise LabError(f"{arg}: lab {labid} has no switch named {switch!r} "
                           f"(its switches: {known})",
                           f"create it first: sw = lab.switch({switch!r}), then pass sw "
                           "(or its name)")
        return found
    raise TypeError(f"{arg} must be a Switch (from lab.switch(...)) or a switch name, "
                    f"not {type(switch).__name__} {switch!r}")
