"""The lab drawn from a lab file: DOT and Mermaid text (pure logic)."""

from pathlib import Path

import pytest

from labfixtures.errors import LabError
from labfixtures.lab import labfile
from labfixtures.report import drawing

SEED = Path(__file__).parents[2] / "scenarios" / "labs" / "seed-minimal.yaml"


@pytest.fixture
def table1() -> drawing.Picture:
    return drawing.from_labfile(labfile.load(SEED))


def test_table1_dot_shows_switch_ports_vlans_svi_and_vm(table1):
    dot = drawing.to_dot(table1)
    assert '"sw:sw0"' in dot
    assert '"sw:sw0" -- "port:tap2" [label=<access VLAN 2>]' in dot
    assert "sw0-vlan2<br/>access VLAN 2<br/>203.0.113.129/26" in dot
    assert "vm0 (VM)<br/>eth0 b8:ad:ca:fe:00:02 203.0.113.130/26" in dot
    assert '"vm:vm0" -- "port:tap2"' in dot
    assert "lab namespace lf-seed-minimal" in dot


def test_mermaid_pastes_into_an_issue(table1):
    text = drawing.to_mermaid(table1)
    assert text.startswith("flowchart LR\n")
    assert 'sw_sw0 ---|"access VLAN 2"| port_tap2' in text
    assert "b8:ad:ca:fe:00:02" in text


def test_highlighted_port_is_red(table1):
    dot = drawing.to_dot(table1, highlight={"tap2"})
    line = next(x for x in dot.splitlines() if x.strip().startswith('"port:tap2" ['))
    assert 'color="red"' in line


def test_trunks_and_veth_hosts_from_a_file():
    spec = labfile.parse({"name": "t", "switches": {"sw0": {}},
                          "hosts": {"h3": {"switch": "sw0", "vlan": 3,
                                           "addresses": ["198.51.100.3/24"]},
                                    "up": {"switch": "sw0", "trunks": [2, 3], "native": 5}}})
    dot = drawing.to_dot(drawing.from_labfile(spec))
    assert '"sw:sw0" -- "port:h3" [label=<access VLAN 3>]' in dot
    assert '"sw:sw0" -- "port:up" [label=<trunk 2,3, native 5>]' in dot
    assert "198.51.100.3/24" in dot


def test_unknown_format_is_refused_with_the_list(table1):
    with pytest.raises(LabError) as e:
        drawing.render(table1, "jpeg")
    assert "svg" in e.value.remedy and "mermaid" in e.value.remedy


def test_inline_svg_for_a_feedback_page_marks_the_highlighted_port_red(table1):
    svg = drawing.inline_svg(table1, highlight={"tap2"})
    assert svg.startswith("<svg") and "<?xml" not in svg
    node = svg[svg.index("<title>port:tap2</title>"):]
    node = node[:node.index("</g>")]
    assert 'stroke="red"' in node
