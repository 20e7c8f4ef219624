"""The guide's §10 lab (Table 1), graded live (not a `test_` module: it runs only against a
target that is given, never in `pytest scenarios/`)

The student's lab keeps running: nothing is built or torn down, the checks read its VM
over SSH (attach mode). The target is a lab started with `labctl up` (`lab:NAME` in the
roster, `--lab-attach-lab NAME` for pytest alone) or a machine (`ssh://user@host:port`).

    sudo labctl up students/bob.yaml --name bob
    .venv/bin/pytest scenarios/grading/grade_table1_live.py --lab-attach-lab bob \\
        --lab-grade-out out/bob
    labctl grade scenarios/grading/grade_table1_live.py --roster live.csv --out out/
        # live.csv: student,name,target / bob,Bob Bernard,lab:bob

Only what the VM shows is graded here (the lab host's switch and forwarding are graded
by test_table1.py, which builds the lab). An unreachable VM makes the student
not-gradable: the VM is taken in a fixture, whose failure is not the student's 0.
"""

from __future__ import annotations

import pytest

from labfixtures.core.addressing import mac_from_tap

LAB_TITLE = "Table 1 (§10), live"
VM_ADDR, GATEWAY = "203.0.113.130", "203.0.113.129"

MESSAGES = {
    "en": {"hint.live.gateway": "the lab expects {expected}, the address of sw0-vlan2; "
                                "`ip route replace default via 203.0.113.129`"},
    "fr": {"hint.live.gateway": "le lab attend {expected}, l'adresse de sw0-vlan2 ; "
                                "`ip route replace default via 203.0.113.129`"},
}


@pytest.fixture(scope="module")
def vm(attached):
    if not attached:
        pytest.skip("a live lab to grade: --lab-attach-lab NAME (a lab of `labctl up`)")
    return attached["vm0"]


@pytest.mark.points(1)
def test_mac(vm, probe):
    """vm0's MAC address comes from tap2 (b8:ad:ca:fe:00:02)
    fr: l'adresse MAC de vm0 vient de tap2 (b8:ad:ca:fe:00:02)"""
    probe.mac(vm, mac_from_tap(2))


@pytest.mark.points(2)
def test_address(vm, probe):
    """vm0's eth0 has the address 203.0.113.130/26
    fr: l'interface eth0 de vm0 a l'adresse 203.0.113.130/26"""
    probe.addresses(vm, [f"{VM_ADDR}/26"], "eth0")


@pytest.mark.points(2)
@pytest.mark.after("test_address")
def test_gateway(vm, probe):
    """vm0's default route goes via 203.0.113.129
    fr: la route par défaut de vm0 passe par 203.0.113.129"""
    probe.default_route(vm, via=GATEWAY, dev="eth0", hint="hint.live.gateway")


@pytest.mark.points(2)
@pytest.mark.after("test_address")
def test_reaches_gateway(vm, probe):
    """vm0 reaches its gateway
    fr: vm0 joint sa passerelle"""
    probe.reachable(vm, GATEWAY, within=5)
