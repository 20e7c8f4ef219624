"""Reusable lab checks. Each failure says what was expected and what was seen, in words a
student can act on (the real routing or neighbour table, the port a frame leaked to)."""

from .eventually import consistently, eventually
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
