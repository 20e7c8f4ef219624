"""PortSpec → ovs-vsctl arguments, and reading a port's mode back (pure logic)."""

import pytest

from labfixtures.errors import LabError
from labfixtures.net.ovs import PortSpec, Transaction, parse_port_mode


def test_access_port_args():
    assert PortSpec("tap2", tag=2).vsctl_args("sw0") == [
        "add-port", "sw0", "tap2", "tag=2", "vlan_mode=access"]


def test_internal_svi_args():
    assert PortSpec("sw0-vlan2", tag=2, internal=True).vsctl_args("sw0") == [
        "add-port", "sw0", "sw0-vlan2", "tag=2", "vlan_mode=access",
        "--", "set", "Interface", "sw0-vlan2", "type=internal"]


def test_trunk_with_native_vlan_args():
    args = PortSpec("up0", trunks=(2, 3), native=10).vsctl_args("sw0")
    assert args == ["add-port", "sw0", "up0", "trunks=2,3", "tag=10",
                    "vlan_mode=native-untagged"]


def test_trunk_all_vlans_has_no_tag():
    assert PortSpec("up0").vsctl_args("sw0") == ["add-port", "sw0", "up0"]
    assert PortSpec("up0").mode == "trunk"


@pytest.mark.parametrize("kw", [{"tag": 4096}, {"trunks": (2, -1)}, {"native": 5000}])
def test_vlan_out_of_range_is_refused(kw):
    with pytest.raises(LabError, match="out of range"):
        PortSpec("p", **kw)


def test_access_and_trunk_together_is_refused():
    with pytest.raises(LabError, match="cannot also be a trunk"):
        PortSpec("p", tag=2, trunks=(3,))


def test_transaction_joins_commands_with_double_dash():
    tx = Transaction(server=None)  # type: ignore[arg-type]
    tx.add_port("sw0", PortSpec("a", tag=2)).add("del-port", "sw0", "b")
    assert tx.argv() == ["add-port", "sw0", "a", "tag=2", "vlan_mode=access", "--",
                         "del-port", "sw0", "b"]


LISTING_ACCESS = """_uuid               : 1f0e
name                : tap2
tag                 : 2
trunks              : []
vlan_mode           : access
"""
LISTING_IMPLICIT = """name                : tap2
tag                 : 2
trunks              : []
vlan_mode           : []
"""
LISTING_TRUNK = """name                : up0
tag                 : []
trunks              : [2, 3]
vlan_mode           : []
"""


def test_mode_read_like_ovs_startup_sh():
    m = parse_port_mode(LISTING_ACCESS)
    assert (m.mode, m.tag) == ("access", 2)
    assert str(m) == "access, VLAN 2"


def test_mode_without_vlan_mode_follows_the_tag():
    assert parse_port_mode(LISTING_IMPLICIT).mode == "access"
    trunk = parse_port_mode(LISTING_TRUNK)
    assert (trunk.mode, trunk.trunks) == ("trunk", (2, 3))
    assert str(trunk) == "trunk (2,3)"
