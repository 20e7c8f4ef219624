"""labctl draw: a lab file drawn from the file, a running lab of `labctl up` drawn from
what exists (a port moved to another VLAN after `up` is drawn where it is)."""

import os
import re
import secrets
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

import pytest

from labfixtures.core import netns
from labfixtures.lab.persistent import PersistentLab

SEED = Path(__file__).parents[2] / "scenarios" / "labs" / "seed-minimal.yaml"


def labctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labfixtures.cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=os.environ)


def test_lab_file_is_drawn_as_mermaid_and_dot():
    cp = labctl("draw", str(SEED))
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("flowchart LR\n")
    assert 'sw_sw0 ---|"access VLAN 2"| port_tap2' in cp.stdout
    dot = labctl("draw", str(SEED), "--format", "dot").stdout
    assert "sw0-vlan2<br/>access VLAN 2<br/>203.0.113.129/26" in dot


def test_svg_without_a_file_is_refused_with_the_command_to_type():
    cp = labctl("draw", str(SEED), "--format", "svg")
    assert cp.returncode == 2
    assert "-o lab.svg" in cp.stderr


def test_missing_lab_is_refused():
    cp = labctl("draw", "no-such-lab-x1")
    assert cp.returncode == 2
    assert "no lab named 'lf-no-such-lab-x1'" in cp.stderr


@pytest.mark.root
@pytest.mark.vm
def test_running_lab_is_drawn_from_what_exists(tmp_path):
    name = f"d{secrets.token_hex(3)}"
    up = labctl("up", str(SEED), "--name", name)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        dot = labctl("draw", name, "--format", "dot")
        assert dot.returncode == 0, dot.stderr
        assert '"sw:sw0" -- "port:tap2" [label=<access VLAN 2>]' in dot.stdout
        assert "sw0-vlan2<br/>access VLAN 2<br/>203.0.113.129/26" in dot.stdout
        assert "vm0 (VM)<br/>eth0 b8:ad:ca:fe:00:02 203.0.113.130/26" in dot.stdout
        assert f"lab namespace lf-{name}" in dot.stdout
        # a student's mistake after `up`: the drawing shows it, the lab file does not
        ovs = PersistentLab.open(name).ovs()
        assert ovs is not None
        ovs.vsctl("set", "port", "tap2", "tag=3")
        moved = labctl("draw", name, "--format", "dot").stdout
        assert '"sw:sw0" -- "port:tap2" [label=<access VLAN 3>]' in moved
        svg = tmp_path / "lab.svg"
        cp = labctl("draw", name, "-o", str(svg))
        assert cp.returncode == 0, cp.stderr
        text = svg.read_text()
        xml.dom.minidom.parseString(text)
        assert "access VLAN 3" in text and "b8:ad:ca:fe:00:02" in text
        png = tmp_path / "lab.png"
        assert labctl("draw", name, "-o", str(png)).returncode == 0
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        mermaid = labctl("draw", f"lf-{name}").stdout
        assert 'sw_sw0 ---|"access VLAN 3"| port_tap2' in mermaid
    finally:
        down = labctl("down", name)
    assert down.returncode == 0, down.stderr
    assert not netns.exists(f"lf-{name}")


HOSTS = """\
name: {name}
switches:
  sw0:
    svis:
      - {{vlan: 3, addresses: [198.51.100.1/24]}}
hosts:
  h3: {{switch: sw0, vlan: 3, addresses: [198.51.100.3/24]}}
  up: {{switch: sw0, trunks: [2, 3], native: 5}}
"""


@pytest.mark.root
def test_running_lab_draws_veth_hosts_from_their_namespaces(tmp_path):
    name = f"d{secrets.token_hex(3)}"
    spec = tmp_path / "hosts.yaml"
    spec.write_text(HOSTS.format(name=name))
    up = labctl("up", str(spec))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        dot = labctl("draw", name, "--format", "dot").stdout
        assert '"sw:sw0" -- "port:up" [label=<trunk 2,3, native 5>]' in dot
        assert '"sw:sw0" -- "port:h3" [label=<access VLAN 3>]' in dot
        assert "sw0-vlan3<br/>access VLAN 3<br/>198.51.100.1/24" in dot
        h3 = next(line for line in dot.splitlines() if line.strip().startswith('"host:h3" ['))
        # read in h3's own namespace: eth0's MAC and address
        assert "198.51.100.3/24" in h3 and re.search(r"eth0 ([0-9a-f]{2}:){5}[0-9a-f]{2}", h3)
        assert '"host:h3" -- "port:h3";' in dot
    finally:
        down = labctl("down", name)
    assert down.returncode == 0, down.stderr
