"""A started machine's NICs against its spec, as QEMU itself accounts for them.

A lab reaches a VM at the EUI-64 link-local address of the MAC it gave the VM's NIC. A QEMU
that dropped that MAC (a regression of its option parsing, a wrapper gone wrong) leaves
SSH waiting for an address nobody has; QMP `query-rx-filter` says which MAC each NIC has,
as soon as QEMU answers, so the mismatch is said at once, with both MACs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from labfixtures.errors import NicMacError
from labfixtures.qemu.spec import NicSpec

__all__ = ["check_macs", "nic_macs"]


def nic_macs(rx_filters: object) -> list[str]:
    """The `main-mac` of each NIC in a `query-rx-filter` answer, lower case."""
    if not isinstance(rx_filters, list):
        return []
    return [str(f.get("main-mac", "")).lower() for f in rx_filters if isinstance(f, dict)]


def check_macs(machine: str, nics: Sequence[NicSpec],
               rx_filters: Callable[[], object]) -> None:
    """Raise NicMacError if a NIC of NICS that asks for a MAC has it on no NIC of QEMU's
    (RX_FILTERS: runs `query-rx-filter`, asked only when some NIC names its MAC)."""
    wanted = [n.mac.lower() for n in nics if n.mac]
    if not wanted:
        return
    have = nic_macs(rx_filters())
    missing = [m for m in wanted if m not in have]
    if missing:
        raise NicMacError(machine, missing, have)
