"""The frames of a failed VLAN check travel with its AssertionError: a pcap that scapy
reads back with the leaking frame in it, and a table that marks it."""

import io

import pytest
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import rdpcap

from assertions import assert_foreign_tag_dropped, assert_trunk_carries, assert_vlan_isolation
from labfixtures.report import artifacts, frames

pytestmark = pytest.mark.root


@pytest.fixture
def vlans(lab, switch, veth_host):
    a = veth_host("a", switch, tag=2, addresses=["203.0.113.130/26"])
    b = veth_host("b", switch, tag=2, addresses=["203.0.113.132/26"])
    c = veth_host("c", switch, tag=3, addresses=["203.0.113.131/26"])
    return lab, a, b, c


def test_a_leak_attaches_the_leaking_frame(vlans):
    lab, a, b, c = vlans
    assert_vlan_isolation(a, same_vlan=[b], other_vlans=[c])  # the right lab passes
    lab.ovs.vsctl("set", "port", "c", "tag=2")  # the student's mistake: a wrong tag
    with pytest.raises(AssertionError) as e:
        assert_vlan_isolation(a, same_vlan=[b], other_vlans=[c])
    got = frames.of(e.value)
    assert [f.where for f in got if f.offending] == ["heard on c (eth0)"]
    assert frames.highlighted(e.value) == {"c"}  # the port to draw in red
    assert got[0].where == "sent from a (eth0)" and not got[0].offending
    back = rdpcap(io.BytesIO(frames.pcap(got)))
    assert len(back) == len(got) >= 3  # sent, heard on b, heard on c
    leaking = back[[f.offending for f in got].index(True)]
    assert leaking[Ether].src == got[0].frame[Ether].src  # the frame a sent
    assert b"labfixtures-vlan-probe-" in bytes(leaking)
    table = frames.table_text(got)
    line = next(x for x in table.splitlines() if "<== offending" in x)
    assert "heard on c (eth0)" in line and "untagged" in line and "0x88b5" in line
    files = {x.name: x for x in artifacts.frame_artifacts(got)}
    assert 'class="lf-offending"' in files["frames.html"].data.decode()


def test_a_hop_attaches_the_tagged_frame(vlans):
    lab, a, b, c = vlans
    lab.ovs.vsctl("set", "port", "a", "vlan_mode=trunk", "--", "clear", "port", "a", "tag")
    with pytest.raises(AssertionError, match="VLAN hopping") as e:
        assert_foreign_tag_dropped(a, 3, receivers=[b, c])
    got = frames.of(e.value)
    sent = rdpcap(io.BytesIO(frames.pcap(got)))[0]
    assert sent[Dot1Q].vlan == 3
    assert [f.where for f in got if f.offending] == ["heard on c (eth0)"]
    assert frames.highlighted(e.value) == {"a", "c"}


def test_a_trunk_without_the_vlan_attaches_the_frame_sent(lab, switch, veth_host):
    a = veth_host("a", switch, tag=2)
    t = veth_host("t", switch, trunks=[3])
    with pytest.raises(AssertionError, match="never reached the trunk") as e:
        assert_trunk_carries(a, t, 2)
    got = frames.of(e.value)
    assert len(got) == 1 and got[0].where == "sent from a (eth0)"
    assert frames.highlighted(e.value) == {"t"}
