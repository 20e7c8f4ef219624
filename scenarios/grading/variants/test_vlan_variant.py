"""Table 1 with per-student numbers

A grading file with variants: each student puts vm0 on their own tap, in their own VLAN
(drawn from the roster's seed), so a neighbour's lab file does not pass.

    labctl grade sheet scenarios/grading/variants/test_vlan_variant.py \\
        --roster roster.csv --out sheets/        # sheets/<student>/sheet.md
    labctl grade scenarios/grading/variants/test_vlan_variant.py --roster roster.csv ...
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.root, pytest.mark.vm]

LAB_TITLE = "Table 1, your numbers"
REFERENCE = "lab.yaml"  # filled in with the student's values
VARIANTS = {"vlan": range(10, 40), "tap": range(3, 12)}
SHEET = """# Table 1, your numbers ($name)

Build the guide's Table 1 lab (§10) with these values:

- the VM's tap: **tap$tap**;
- the VLAN of that tap and of the switch's SVI: **VLAN $vlan** (SVI `sw0-vlan$vlan`);
- addresses as in Table 1: 203.0.113.130/26 for the VM, 203.0.113.129/26 for the SVI.
"""
GATEWAY = "203.0.113.129"


@pytest.mark.points(2)
def test_port(student_lab, student, probe):
    """vm0's tap is an access port of your VLAN
    fr: le tap de vm0 est un port d'accès de votre VLAN"""
    probe.port_vlan(student_lab.switches["sw0"], f"tap{student['tap']}", student["vlan"])


@pytest.mark.points(2)
@pytest.mark.after("test_port")
def test_gateway(student_lab, probe):
    """vm0 reaches its gateway 203.0.113.129
    fr: vm0 joint sa passerelle 203.0.113.129"""
    student_lab.lab.sysctl("net.ipv4.conf.all.arp_ignore", 1)
    probe.reachable(student_lab.vms["vm0"], GATEWAY, within=10)
