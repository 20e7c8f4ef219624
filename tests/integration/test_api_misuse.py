"""Misuse of the public API is refused where it is written, naming the argument and the
fix, before anything is created (issue #15)."""

import pytest

from labfixtures import HostSpec, LabError, VmNic
from labfixtures.core import netns
from labfixtures.errors import TapInUseError
from labfixtures.guestimages import GuestImage

pytestmark = pytest.mark.root


def nothing_made(lab, host: str) -> bool:
    return host not in lab.hosts and not netns.exists(lab.host.child_ns(host)) \
        and not lab.nl.exists(host)


def test_addresses_given_as_a_string(lab):
    with pytest.raises(LabError) as e:
        lab.veth_host("mis1", addresses="198.51.100.20/25")
    assert "addresses must be a list" in str(e.value)
    assert "addresses=['198.51.100.20/25']" in e.value.remedy
    assert nothing_made(lab, "mis1")


def test_an_address_without_its_prefix_length(lab):
    with pytest.raises(LabError) as e:
        lab.veth_host("mis1", addresses=["198.51.100.20"])
    assert "addresses[0]" in str(e.value) and "no prefix length" in str(e.value)
    assert "198.51.100.20/24" in e.value.remedy
    with pytest.raises(LabError, match="not an address with a prefix"):
        lab.veth_host("mis1", addresses=["198.51.100.300/25"])
    assert nothing_made(lab, "mis1")


def test_a_gateway_with_a_prefix_length(lab):
    with pytest.raises(LabError) as e:
        lab.veth_host("mis1", addresses=["198.51.100.20/25"], gateway="198.51.100.1/25")
    assert "gateway must be a plain address" in str(e.value)
    assert "gateway='198.51.100.1'" in e.value.remedy
    assert nothing_made(lab, "mis1")


def test_a_switch_given_by_its_name(lab):
    lab.switch("core")
    h = lab.veth_host("byname", "core", tag=2, addresses=["198.51.100.20/25"])
    assert "byname" in lab.switches["core"].ports()
    assert lab.switches["core"].port_mode(h.port).tag == 2


def test_an_unknown_switch_name(lab):
    lab.switch("core")
    with pytest.raises(LabError) as e:
        lab.veth_host("mis1", "cor", tag=2)
    assert "no switch named 'cor'" in str(e.value) and "core" in str(e.value)
    assert "lab.switch('cor')" in e.value.remedy
    assert nothing_made(lab, "mis1")


def test_a_switch_of_the_wrong_type(lab):
    with pytest.raises(TypeError, match="switch must be a Switch"):
        lab.veth_host("mis1", 3)
    assert nothing_made(lab, "mis1")


def test_vlans_of_the_wrong_shape(lab):
    sw = lab.switch("sw0")
    with pytest.raises(LabError) as e:
        lab.veth_host("mis1", sw, trunks=2)
    assert "trunks must be a list" in str(e.value) and "trunks=[2]" in e.value.remedy
    with pytest.raises(LabError, match="tag must be a VLAN number"):
        lab.veth_host("mis1", sw, tag="2")
    with pytest.raises(LabError, match="out of range"):
        lab.veth_host("mis1", sw, tag=4095)
    with pytest.raises(LabError, match="cannot also be a trunk"):
        lab.veth_host("mis1", sw, tag=2, trunks=[3])
    assert nothing_made(lab, "mis1")


def test_host_specs_are_checked_when_written():
    with pytest.raises(LabError, match="addresses must be a list"):
        HostSpec("h1", addresses="198.51.100.20/25")
    with pytest.raises(LabError, match="not a MAC address"):
        HostSpec("h1", mac="b8:ad:ca:fe:00")
    assert HostSpec("h1", addresses=["198.51.100.20/25"]).addresses == ("198.51.100.20/25",)


def test_veth_hosts_wants_a_list_of_host_specs(lab):
    with pytest.raises(TypeError, match="list of HostSpec"):
        lab.veth_hosts(HostSpec("h1"))
    with pytest.raises(TypeError, match=r"specs\[0\] must be a HostSpec"):
        lab.veth_hosts(["h1"])


def test_svi_addresses(lab):
    sw = lab.switch("sw0")
    with pytest.raises(LabError, match="each address as its own argument"):
        sw.svi(2, ["203.0.113.129/26"])
    with pytest.raises(LabError, match="no prefix length"):
        sw.svi(2, "203.0.113.129")
    assert not lab.nl.exists("sw0-vlan2")


def test_tap_arguments(lab):
    with pytest.raises(TypeError, match="tap number"):
        lab.tap(2.0)
    with pytest.raises(LabError, match="out of range"):
        lab.tap(70000)


def test_vm_arguments_are_checked_before_anything_starts(lab):
    with pytest.raises(LabError, match="addresses must be a list"):
        lab.vm("vm0", tap=2, addresses="203.0.113.130/26", start=False)
    with pytest.raises(TypeError, match="list of VmNic"):
        lab.vm("vm0", nics=VmNic(tap=2), start=False)
    with pytest.raises(LabError, match="gateway must be a plain address"):
        lab.vm("vm0", nics=[VmNic(tap=2, gateway="203.0.113.129/26")], start=False)
    with pytest.raises(LabError, match="tap2 does not exist"):
        lab.vm("vm0", tap=2, start=False)
    assert not lab.vms


def test_a_tap_used_by_another_vm_is_refused(lab, tmp_path):
    # an image that is never booted: the check comes before QEMU, and before any build
    image = GuestImage("fake", "0", tmp_path, tmp_path / "vmlinux", None, None, "",
                       "root", tmp_path / "key")
    lab.tap(7)
    lab.vm("a", tap=7, image=image, start=False)
    with pytest.raises(TapInUseError) as e:
        lab.vm("b", tap=7, image=image, start=False)
    assert (e.value.tap, e.value.vm, e.value.user) == ("tap7", "b", "a")
    assert list(lab.vms) == ["a"]
