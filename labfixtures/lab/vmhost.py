"""What a VM needs from the lab it runs in: the `VmHost` protocol.

A `VM` runs its QEMU in a namespace, keeps its files in a run directory, sits on taps
and is reached over SSH through the lab host interface of its tap's VLAN. Both a live
`Lab` (lab/lab.py) and a persistent lab found on disk (`PersistentLab`, lab/persistent.py)
give that, so a VM knows nothing of switches or of which kind of lab it is in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from labfixtures.errors import LabError, TapInUseError
from labfixtures.net.ovs import OvsServer, parse_port_mode

KNOWN_HOSTS = "known_hosts"


class VmHost(Protocol):
    """Where a VM runs."""

    @property
    def labid(self) -> str: ...

    @property
    def ns(self) -> str:
        """The network namespace QEMU runs in (the lab host's)."""
        ...

    @property
    def rundir(self) -> Path:
        """The lab's run directory; a VM's files go to RUNDIR/vms/NAME."""
        ...

    @property
    def keep_overlays(self) -> Path | None:
        """Where VM overlays go at teardown instead of being deleted (None: deleted)."""
        ...

    @property
    def known_hosts(self) -> Path:
        """The SSH known-hosts file of the lab's guests."""
        ...

    def has_tap(self, number: int) -> bool:
        """True if tapNUMBER exists in the lab namespace."""
        ...

    def tap_user(self, number: int) -> str | None:
        """The name of the VM of this lab that uses tapNUMBER, if one does."""
        ...

    def ssh_scope(self, tap: int) -> str:
        """The lab host interface that reaches a guest on tapTAP: the SVI of the tap's
        VLAN if there is one (`%sw0-vlan2` in the guide), else the tap itself."""
        ...


def svi_name(switch: str, vlan: int) -> str:
    """The guide's SVI: the internal port `SW-vlanV` of switch SW for VLAN V."""
    return f"{switch}-vlan{vlan}"


def tap_name(number: int) -> str:
    return f"tap{number}"


def tap_scope(ovs: OvsServer | None, exists: Callable[[str], bool], tap: int) -> str:
    """`VmHost.ssh_scope()` read from Open vSwitch: the SVI of the VLAN of access port
    tapTAP if that SVI exists, else the tap."""
    name = tap_name(tap)
    if ovs is None:
        return name
    try:
        bridge = ovs.vsctl("port-to-br", name).strip()
        mode = parse_port_mode(ovs.vsctl("list", "port", name))
    except LabError:
        return name  # not a switch port
    if mode.mode == "access" and mode.tag is not None:
        svi = svi_name(bridge, mode.tag)
        if exists(svi):
            return svi
    return name


def check_taps(host: VmHost, vm: str, taps: list[int]) -> None:
    """Refuse to start VM on a tap that does not exist or that another VM uses."""
    for n in taps:
        if not host.has_tap(n):
            raise LabError(f"VM {vm}: {tap_name(n)} does not exist in lab {host.labid}",
                           f"create it first: lab.tap({n}) (and plug it into a switch)")
        user = host.tap_user(n)
        if user is not None and user != vm:
            raise TapInUseError(tap_name(n), vm, user=user)
