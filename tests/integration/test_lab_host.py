"""The lab host, links and Open vSwitch on real namespaces and a real OVS."""

import os
import socket

import pytest

from labfixtures.core import netns
from labfixtures.errors import HostResourceError, LabError
from labfixtures.lab.lab import HostSpec, Lab

pytestmark = pytest.mark.root


def root_links() -> list[str]:
    return sorted(name for _, name in socket.if_nameindex())


def test_lab_host_lives_in_its_own_namespace(lab):
    assert netns.exists(lab.ns)
    assert lab.ns.startswith("lf-")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    assert lab.ns.endswith("-w" + worker[2:] if worker else "-m")
    names = [link.name for link in lab.nl.links()]
    assert "lo" in names and "eth0" not in names
    assert (lab.rundir / "record.json").exists()


def test_tap_with_group_and_multi_queue(lab):
    before = root_links()
    name = lab.tap(9, group="kvm", multi_queue=True)
    assert name == "tap9"
    details = lab.run(["ip", "-d", "link", "show", "tap9"]).stdout
    assert "tun type tap" in details
    assert "multi_queue" in details
    assert "group kvm" in details
    assert lab.nl.link("tap9").up
    lab.nl.set_up("tap9", False)
    assert not lab.nl.link("tap9").up
    assert root_links() == before  # created inside the lab, never in the root namespace


def test_tap_with_a_group_that_does_not_exist_is_refused_and_leaves_nothing(lab):
    before = sorted(link.name for link in lab.nl.links())
    with pytest.raises(HostResourceError) as e:
        lab.tap(8, group="lf-no-such-group")
    assert (e.value.kind, e.value.resource) == ("group", "lf-no-such-group")
    assert "groupadd --system lf-no-such-group" in e.value.remedy
    assert not lab.nl.exists("tap8")
    assert sorted(link.name for link in lab.nl.links()) == before


def test_tap_number_out_of_range_or_taken(lab):
    with pytest.raises(LabError, match="out of range") as e:
        lab.tap(70000)
    assert "0 to 65535" in e.value.remedy
    lab.tap(3)
    with pytest.raises(LabError, match="tap3 already exists") as e:
        lab.tap(3)
    assert "another tap number" in e.value.remedy


def test_port_that_exists_is_refused_with_remedy(lab, switch):
    lab.tap(2)
    switch.add_port("tap2", tag=2)
    with pytest.raises(LabError) as e:
        switch.add_port("tap2", tag=3)
    assert "already exists" in e.value.problem
    assert e.value.remedy
    assert switch.port_mode("tap2").tag == 2


def test_port_for_a_missing_interface_is_refused(switch):
    with pytest.raises(LabError, match="no such interface") as e:
        switch.add_port("tap42", tag=2)
    assert "lab.tap" in e.value.remedy
    assert "tap42" not in switch.ports()


def test_access_trunk_and_native_modes_read_back(lab, switch):
    for n in (2, 3, 4):
        lab.tap(n)
    switch.add_port("tap2", tag=2)
    switch.add_port("tap3", trunks=[2, 3])
    switch.add_port("tap4", trunks=[2, 3], native=5)
    assert str(switch.port_mode("tap2")) == "access, VLAN 2"
    assert str(switch.port_mode("tap3")) == "trunk (2,3)"
    assert switch.port_mode("tap4").mode == "trunk"
    assert switch.port_mode("tap4").tag == 5
    # the guide's ovs-startup.sh greps vlan_mode: it must read "access" for an access port
    assert "access" in lab.ovs.vsctl("list", "port", "tap2")


def test_many_ports_in_one_transaction(lab, switch):
    from labfixtures.net.ovs import PortSpec

    names = [lab.tap(n) for n in range(10, 20)]
    switch.add_ports([PortSpec(n, tag=2) for n in names])
    assert sorted(switch.ports()) == sorted(names)
    assert "Bridge sw0" in switch.show()


def host_forwarding() -> str:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip()


def test_addresses_routes_and_sysctls_read_as_data(lab, switch):
    before = host_forwarding()
    svi = switch.svi(2, "203.0.113.129/26")
    lab.enable_forwarding()
    assert lab.nl.sysctl("net.ipv4.ip_forward") == "1"
    assert lab.nl.sysctl("net.ipv4.conf.all.log_martians") == "1"
    assert [a.cidr for a in lab.addresses(svi, socket.AF_INET)] == ["203.0.113.129/26"]
    connected = [r for r in lab.routes() if r.dst == "203.0.113.128/26"]
    assert connected and connected[0].dev == svi and connected[0].proto == "kernel"
    assert host_forwarding() == before  # the lab's sysctl, never the host's


def test_scope_teardown_undoes_everything(lab_host):
    with lab_host.scope("inner") as inner:
        sw = inner.switch("swx")
        inner.tap(5)
        inner.veth_host("hx", sw, tag=7, addresses=["192.0.2.1/24"])
        inner.sysctl("net.ipv4.ip_forward", 1)
        assert netns.exists(lab_host.host.child_ns("hx"))
    assert not netns.exists(lab_host.host.child_ns("hx"))
    assert not lab_host.nl.exists("tap5")
    assert "swx" not in lab_host.ovs.vsctl("list-br").split()
    assert lab_host.nl.sysctl("net.ipv4.ip_forward") == "0"


def test_same_host_name_in_consecutive_scopes(lab_host):
    for _ in range(3):
        with lab_host.scope() as s:
            sw = s.switch("sw9")
            h = s.veth_host("again", sw, addresses=["192.0.2.10/24"])
            assert [a.cidr for a in h.addresses(socket.AF_INET)] == ["192.0.2.10/24"]
            assert s.nl.link("again").up


def test_tcp_between_veth_hosts_through_the_switch(lab, switch):
    """TCP needs TX checksum offload off on the userspace datapath (docs/host-facts.md)."""
    a = lab.veth_host("ha", switch, tag=2, addresses=["192.0.2.1/24"])
    b = lab.veth_host("hb", switch, tag=2, addresses=["192.0.2.2/24"])
    server = b.tcp_server(5001, "192.0.2.2", send=200000)
    out = a.run(["python3", "-c",
                 "import socket;c=socket.create_connection(('192.0.2.2',5001),timeout=5);"
                 "n=0\nwhile (d:=c.recv(65536)): n+=len(d)\nprint(n)"], timeout=20)
    assert out.stdout.strip() == "200000"
    server.wait(timeout=10)


def test_switch_recreated_right_after_its_deletion_starts_clean(lab_host):
    """Switches are deleted without waiting for ovs-vswitchd (`OvsServer.delete`). A `sw0`
    re-created at once, with ports of the same names, while ovs-vswitchd is still busy
    removing another switch's ports, must be a new bridge: no flow of the old one, and
    ping and TCP through it."""
    flow = "priority=100,tcp,tp_dst=5002,actions=drop"

    def dump_flows() -> str:
        return lab_host.run(["ovs-ofctl", "dump-flows", "sw0"], env=lab_host.ovs.env).stdout

    with lab_host.scope("old") as old:
        sw = old.switch("sw0")
        old.veth_hosts([HostSpec(n, tag=2, addresses=[f"192.0.2.{i}/24"])
                        for i, n in ((1, "ha"), (2, "hb"))], sw)
        lab_host.run(["ovs-ofctl", "add-flow", "sw0", flow], env=lab_host.ovs.env)
        assert "tp_dst=5002" in dump_flows()
        with lab_host.scope("busy") as busy:  # its teardown keeps ovs-vswitchd busy ~0.5 s
            busy.veth_hosts([HostSpec(f"b{i}", tag=3) for i in range(32)], busy.switch("swb"))
    with lab_host.scope("new") as new:
        sw = new.switch("sw0")
        a, b = new.veth_hosts([HostSpec(n, tag=2, addresses=[f"192.0.2.{i}/24"])
                               for i, n in ((1, "ha"), (2, "hb"))], sw)
        assert "tp_dst=5002" not in dump_flows()
        assert a.ping("192.0.2.2")
        server = b.tcp_server(5002, "192.0.2.2", send=100000)
        out = a.run(["python3", "-c",
                     "import socket;c=socket.create_connection(('192.0.2.2',5002),timeout=5);"
                     "n=0\nwhile (d:=c.recv(65536)): n+=len(d)\nprint(n)"], timeout=20)
        assert out.stdout.strip() == "100000"
        server.wait(timeout=10)
    assert "sw0" not in lab_host.ovs.vsctl("list-br").split()


def test_64_hosts_on_one_switch(lab, switch):
    hosts = lab.veth_hosts(
        [HostSpec(f"h{i}", addresses=[f"10.9.0.{i + 1}/24"]) for i in range(64)], switch)
    assert len(switch.ports()) == 64
    assert hosts[0].ping("10.9.0.64")
    assert hosts[63].ping("10.9.0.1")


def test_a_fresh_lab_host_has_its_datapath_before_its_first_switch():
    """The userspace datapath is made when the lab host starts (`OvsServer.start`), so its
    one-off TSC estimate (ovs-vswitchd sleeps 100 ms) is not the first switch's. The first
    bridge opens that datapath rather than another, the database holds only the lab's
    switches, and nothing of it is logged as an error."""
    from labfixtures.net.ovs import NETDEV_DATAPATH

    with Lab.open(datapath="netdev") as lab:
        log = lab.rundir / "ovs-vswitchd.log"
        assert lab.nl.exists(NETDEV_DATAPATH)
        assert lab.ovs.appctl("dpctl/dump-dps").split() == [f"netdev@{NETDEV_DATAPATH}"]
        assert lab.ovs.vsctl("list-br").split() == []
        assert log.read_text().count("Estimated TSC frequency") == 1
        sw = lab.switch("sw0")
        h1, _ = lab.veth_hosts([HostSpec(f"h{i}", tag=2, addresses=[f"192.0.2.{i}/24"])
                                for i in (1, 2)], sw)
        assert h1.ping("192.0.2.2")
        assert log.read_text().count("Estimated TSC frequency") == 1  # not again
        assert lab.ovs.appctl("dpctl/dump-dps").split() == [f"netdev@{NETDEV_DATAPATH}"]
        assert lab.ovs.vsctl("list-br").split() == ["sw0"]
        assert sw.port_mode("h1").tag == 2
        assert lab.ovs.log_problems() == []


def test_wrong_datapath_is_refused_before_anything_is_made():
    from labfixtures.net.ovs import kernel_datapath_available

    before = set(netns.list_names())
    if kernel_datapath_available():
        pytest.skip("this host has the kernel datapath: nothing to refuse")
    with pytest.raises(HostResourceError) as e:
        Lab.open("lf-refused", datapath="system")
    assert (e.value.kind, e.value.resource) == ("module", "openvswitch")
    assert set(netns.list_names()) - before == set()


def test_missing_ovs_tool_is_reported(monkeypatch, tmp_path):
    from labfixtures.net import ovs

    monkeypatch.setattr(ovs.shutil, "which", lambda tool: None)
    monkeypatch.setattr(ovs.os.path, "exists", lambda p: False)
    with pytest.raises(HostResourceError) as e:
        ovs.OvsServer("lf-none", tmp_path, "netdev").start()
    assert (e.value.kind, e.value.resource) == ("binary", "ovsdb-tool")
    assert "apt-get install openvswitch-switch" in e.value.remedy


def test_netlink_batch_larger_than_the_socket_buffer(lab):
    """One ACK per message: 600 in one write overflowed the socket's receive buffer (ENOBUFS,
    seen at 256 veth hosts); `Rtnl.batch` sends them in chunks."""
    from labfixtures.net import rtnl

    cidrs = [f"10.77.{i // 250}.{i % 250 + 1}/32" for i in range(600)]
    try:
        with rtnl.Rtnl(lab.ns) as nl:
            nl.batch([rtnl.address(1, c) for c in cidrs], "addresses on lo")
        on_lo = {a.cidr for a in lab.addresses("lo", socket.AF_INET)}
        assert on_lo >= set(cidrs)
    finally:
        lab.run(["ip", "-4", "addr", "flush", "dev", "lo", "to", "10.77.0.0/16"])
    assert not [a for a in lab.addresses("lo", socket.AF_INET) if a.cidr.startswith("10.77.")]
