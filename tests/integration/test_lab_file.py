"""The `lab_file` fixture: a lab file's whole lab, VM included, in one line of a test.

scenarios/labs/seed-minimal.yaml is the guide's Table 1: sw0 with SVI sw0-vlan2
(203.0.113.129/26), tap2 on VLAN 2, and vm0 at 203.0.113.130/26 behind that gateway.
"""

import pytest

from assertions import assert_default_route

pytestmark = [pytest.mark.root, pytest.mark.vm]

TABLE1 = "../../scenarios/labs/seed-minimal.yaml"  # relative to this module's folder


def test_a_lab_file_in_one_line(lab_file, lab):
    table1 = lab_file(TABLE1)
    assert set(table1.vms) == {"vm0"} and set(table1.switches) == {"sw0"}
    assert table1.lab is lab
    vm0 = table1.vms["vm0"]
    assert_default_route(vm0, via="203.0.113.129")
    assert vm0.ping("203.0.113.129")
    assert str(table1.switches["sw0"].port_mode("tap2")) == "access, VLAN 2"


def test_what_a_test_built_is_gone_after_it(lab):
    assert "vm0" not in lab.vms and "sw0" not in lab.switches


def test_module_scope_builds_once(lab_file):
    first = lab_file(TABLE1, scope="module")
    first.vms["vm0"].run("touch /root/kept", check=True)


def test_module_scope_is_the_same_lab_for_the_next_test(lab_file):
    again = lab_file(TABLE1, scope="module")
    assert again.vms["vm0"].run("test -e /root/kept").ok


@pytest.fixture(scope="module")
def table1(lab_file_module):
    return lab_file_module(TABLE1)


def test_a_module_fixture_of_a_lab_file(table1):
    assert table1.vms["vm0"].ping("203.0.113.129")
