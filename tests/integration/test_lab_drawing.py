"""The lab drawn from what exists: a port put in the wrong VLAN is drawn in that VLAN."""

import xml.dom.minidom

from labfixtures.report import drawing


def test_live_lab_is_drawn_as_it_is_not_as_it_was_meant(lab, switch, veth_host):
    switch.svi(2, "203.0.113.129/26")
    lab.tap(2)
    switch.add_port("tap2", tag=3)  # meant for VLAN 2: a student's mistake
    veth_host("h5", switch, trunks=[2, 3], native=5, addresses=["198.51.100.5/24"])
    pic = drawing.snapshot(lab)
    dot = drawing.to_dot(pic)
    assert '"sw:sw0" -- "port:tap2" [label=<access VLAN 3>]' in dot
    assert "sw0-vlan2<br/>access VLAN 2<br/>203.0.113.129/26" in dot
    assert '"sw:sw0" -- "port:h5" [label=<trunk 2,3, native 5>]' in dot
    host = pic.hosts[0]
    assert host.name == "h5" and host.addresses == ["198.51.100.5/24"]
    assert host.mac in dot
    svg = drawing.render(pic, "svg").decode()
    xml.dom.minidom.parseString(svg)  # well-formed
    assert "tap2" in svg and "access VLAN 3" in svg
    png = drawing.render(pic, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000
