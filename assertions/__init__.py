"""Reusable lab checks. Each failure says what was expected and what was seen, in words a
student can act on (the real routing or neighbour table, the port a frame leaked to), and
hides its own source from the traceback (`__tracebackhide__`). A misused argument is a
TypeError or LabError naming the argument and the fix. Everything is importable from here:

    from assertions import assert_default_route, assert_service_running, eventually
"""

from .eventually import consistently, eventually
from .guest import (
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
from .system import assert_file_contains, assert_listening, assert_service_running
from .vlan import assert_foreign_tag_dropped, assert_trunk_carries, assert_vlan_isolation

__all__ = [
    # addressing and routing (network.py)
    "assert_address", "assert_default_route", "assert_link_up", "assert_neighbour",
    "assert_no_neighbour", "assert_no_route", "assert_route",
    # reachability (reachability.py)
    "assert_reachable", "assert_tcp_closed", "assert_tcp_open", "assert_unreachable",
    # VLANs on real frames (vlan.py)
    "assert_foreign_tag_dropped", "assert_trunk_carries", "assert_vlan_isolation",
    # a guest's devices and frames (guest.py)
    "assert_accelerator", "assert_frames_do_not_reach_guest", "assert_frames_reach_guest",
    "assert_guest_frames_isolated", "assert_guest_frames_tagged", "assert_modules_loaded",
    "assert_virtio_devices", "assert_virtio_disk", "assert_virtio_pci_devices",
    # what a machine holds and runs (system.py)
    "assert_file_contains", "assert_listening", "assert_service_running",
    # retries
    "consistently", "eventually",
]
