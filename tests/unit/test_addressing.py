"""The guide's numbering conventions (ovs-startup.sh, standalone-startup.sh)."""

import pytest

from labfixtures.core.addressing import (
    check_memory,
    eui64_link_local,
    mac_from_tap,
    spice_port,
    ssh_forward_port,
    tap_name,
    telnet_port,
)
from labfixtures.errors import LabError


@pytest.mark.parametrize(("n", "mac"), [
    (0, "b8:ad:ca:fe:00:00"),
    (2, "b8:ad:ca:fe:00:02"),
    (10, "b8:ad:ca:fe:00:0a"),
    (256, "b8:ad:ca:fe:01:00"),
    (65535, "b8:ad:ca:fe:ff:ff"),
])
def test_mac_from_tap(n, mac):
    assert mac_from_tap(n) == mac


@pytest.mark.parametrize("n", [-1, 65536, 2.0, "2", True])
def test_mac_from_tap_out_of_range(n):
    with pytest.raises(LabError, match="out of range"):
        mac_from_tap(n)


def test_eui64_as_measured_in_a_guest():
    # docs/host-facts.md: b8:ad:ca:fe:00:02 gives fe80::baad:caff:fefe:2
    assert eui64_link_local("b8:ad:ca:fe:00:02") == "fe80::baad:caff:fefe:2"
    assert eui64_link_local("B8:AD:CA:FE:01:0A") == "fe80::baad:caff:fefe:10a"
    # the U/L bit is flipped both ways
    assert eui64_link_local("02:00:00:00:00:01") == "fe80::ff:fe00:1"


def test_eui64_refuses_garbage():
    with pytest.raises(LabError, match="not a MAC"):
        eui64_link_local("b8:ad:ca:fe:00")


def test_ports_and_names():
    assert spice_port(10) == 5910
    assert telnet_port(10) == 2310
    assert ssh_forward_port(10) == 2210
    assert tap_name(3) == "tap3"


def test_memory_check_uses_the_guides_message():
    assert check_memory(128) == 128
    with pytest.raises(LabError) as e:
        check_memory(64)
    assert "RAM size must be above 128MB" in str(e.value)
    assert "64MB" in e.value.problem
