"""qemu.nicmacs: a NIC whose MAC QEMU does not have is said at once, with both MACs."""

import pytest

from labfixtures.errors import NicMacError
from labfixtures.qemu.nicmacs import check_macs, nic_macs
from labfixtures.qemu.spec import NicSpec

GUIDE = "b8:ad:ca:fe:00:02"


def test_the_macs_qemu_reports_are_read_in_lower_case():
    answer = [{"name": "net0", "main-mac": "B8:AD:CA:FE:00:02"}, "junk", {"name": "x"}]
    assert nic_macs(answer) == [GUIDE, ""]
    assert nic_macs({"error": "no"}) == []


def test_a_nic_with_its_mac_passes_and_qemu_is_not_asked_when_no_nic_names_one():
    check_macs("vm0", [NicSpec(tap="tap2", mac=GUIDE)],
               lambda: [{"name": "net0", "main-mac": GUIDE.upper()}])

    def never() -> object:
        raise AssertionError("query-rx-filter asked for NICs without a MAC")

    check_macs("vm0", [NicSpec(tap="tap2")], never)


def test_a_dropped_mac_is_a_nic_mac_error_with_both_macs():
    with pytest.raises(NicMacError) as e:
        check_macs("vm0", [NicSpec(tap="tap2", mac=GUIDE)],
                   lambda: [{"name": "net0", "main-mac": "52:54:00:12:34:56"}])
    assert (e.value.machine, e.value.wanted, e.value.have) == \
        ("vm0", [GUIDE], ["52:54:00:12:34:56"])
    assert "not b8:ad:ca:fe:00:02 that its command line asks" in e.value.problem
    assert "labctl regress bisect" in e.value.remedy
