"""Reusable lab checks. Each failure says what was expected and what was seen, in words a
student can act on (the real routing or neighbour table, the port a frame leaked to)."""

from .eventually import consistently, eventually
from .guest import (  # noqa: F401 - guest facts (§3-4), see assertions.guest
    assert_accelerator,
    assert_frames_do_not_reach_guest,
    assert_frames_reach_guest,
    assert_guest_frames_isolated,
    assert_guest_frames_tagged,
    assert_modules_loaded,
    assert_virtio_devices,
    assert_virtio_disk,
    assert_virtio_pci_devices,
)
from .network import (
    assert_address,
    assert_default_route,
    assert_link_up,
    assert_neighbour,
    assert_no_neighbour,
    assert_no_route,
    assert_route,
)
from .reachability import (
    assert_reachable,
    assert_tcp_closed,
    assert_tcp_open,
    assert_unreachable,
)
from .vlan import assert_foreign_tag_dropped, assert_trunk_carries, assert_vlan_isolation

__all__ = [
    "assert_address", "assert_default_route", "assert_foreign_tag_dropped",
    "assert_link_up", "assert_neighbour", "assert_no_neighbour", "assert_no_route",
    "assert_reachable", "assert_route", "assert_tcp_closed", "assert_tcp_open",
    "assert_trunk_carries", "assert_unreachable", "assert_vlan_isolation", "consistently",
    "eventually",
]
