"""Each misuse of an assertion is refused at its boundary, with the argument and the fix
(no lab needed: the check comes before any probe), and every assertion hides its own
source from a failure's traceback."""

from __future__ import annotations

import inspect
import re
import socket
from dataclasses import dataclass

import pytest

import assertions
from assertions import (
    assert_address,
    assert_default_route,
    assert_file_contains,
    assert_foreign_tag_dropped,
    assert_frames_reach_guest,
    assert_guest_frames_isolated,
    assert_link_up,
    assert_listening,
    assert_modules_loaded,
    assert_neighbour,
    assert_reachable,
    assert_route,
    assert_service_running,
    assert_tcp_open,
    assert_trunk_carries,
    assert_unreachable,
    assert_virtio_devices,
    assert_vlan_isolation,
    consistently,
    eventually,
)
from assertions.system import parse_proc_net
from labfixtures.errors import LabError
from labfixtures.net.netlink import Route


class FakeLab:
    """What the VLAN assertions look at in a Lab before listening."""

    labid = "lf-test"
    ns = "lf-test"
    ovs = None


class FakeHost:
    """A veth host as the assertions see it: reads and probes, never called here."""

    def __init__(self, name: str = "h10") -> None:
        self.name = name
        self.ns = f"lf-test-{name}"
        self.port = name
        self.lab = FakeLab()

    def routes(self, family: int = socket.AF_INET) -> list[Route]:
        return [Route("default", "198.51.100.1", "eth0", family, "static", "global")]

    def addresses(self) -> list[object]:
        return []

    def neighbours(self) -> list[object]:
        return []

    def ping(self, address: str, timeout: float = 2.0) -> bool:
        return True

    def tcp(self, address: str, port: int, timeout: float = 2.0) -> bool:
        return True


@dataclass
class _Result:
    exit_status: int
    stdout: str
    stderr: str = ""


class FakeVM:
    name = "vm0"
    mac = "b8:ad:ca:fe:00:02"

    def __init__(self, **answers: str) -> None:
        self.answers = answers

    def run(self, cmd: str) -> _Result:
        for key, out in self.answers.items():
            if key in cmd:
                return _Result(0, out)
        return _Result(0, "")


# -- a name where an object is expected --------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda: assert_reachable("h10", "198.51.100.1"),
    lambda: assert_unreachable("h10", "198.51.100.1"),
    lambda: assert_tcp_open("h10", "198.51.100.1", 22),
    lambda: assert_default_route("h10", via="198.51.100.1"),
    lambda: assert_route("h10", "198.51.100.0/25"),
    lambda: assert_link_up("h10", "eth0"),
])
def test_a_name_instead_of_the_host_is_a_type_error_with_the_fix(call):
    with pytest.raises(TypeError) as e:
        call()
    msg = str(e.value)
    assert "is the string 'h10'" in msg
    assert "lab.hosts['h10']" in msg  # the fix


def test_a_name_instead_of_a_port():
    with pytest.raises(TypeError, match=r"assert_vlan_isolation\(\): sender is the string "
                                        r"'h10'.*\n  fix: pass lab.hosts\['h10'\]"):
        assert_vlan_isolation("h10", same_vlan=[], other_vlans=[])
    with pytest.raises(TypeError, match=r"(?s)other_vlans\[1\] is the string 'tap11'.*"
                                        r"\(lab, 'tap11'\) for an interface"):
        assert_vlan_isolation(FakeHost(), same_vlan=[], other_vlans=[FakeHost("x"), "tap11"])


def test_a_vm_is_not_a_port_and_the_message_names_the_guest_assertions():
    with pytest.raises(TypeError) as e:
        assert_vlan_isolation(FakeHost(), same_vlan=[FakeVM()], other_vlans=[])
    assert "same_vlan[0] is a VM (vm0)" in str(e.value)
    assert "(lab, 'tapN')" in str(e.value)
    assert "assert_frames_do_not_reach_guest" in str(e.value)


# -- one item where a list is expected ---------------------------------------------------

def test_one_port_where_a_list_is_expected():
    lab = FakeLab()
    with pytest.raises(TypeError) as e:
        assert_vlan_isolation(FakeHost(), same_vlan=(lab, "tap11"), other_vlans=[])
    msg = str(e.value)
    assert "same_vlan must be a list of ports, got one value" in msg
    assert "fix: same_vlan=[(" in msg
    with pytest.raises(TypeError, match="other_vlans must be a list of ports"):
        assert_vlan_isolation(FakeHost(), same_vlan=[], other_vlans=FakeHost("x"))
    with pytest.raises(TypeError, match="receivers must be a list of ports"):
        assert_foreign_tag_dropped(FakeHost(), 2, receivers=(lab, "sw0-vlan2"))
    with pytest.raises(TypeError, match="other_vlans must be a list of ports"):
        assert_guest_frames_isolated(FakeVM(), "arping", same_vlan=[],
                                     other_vlans="tap3")


def test_a_port_listed_twice_or_the_sender_listening_is_refused():
    h, x = FakeHost(), FakeHost("x")
    with pytest.raises(TypeError, match=r"the sender h10 \(eth0\) is also listed"):
        assert_vlan_isolation(h, same_vlan=[x], other_vlans=[h])
    with pytest.raises(TypeError, match=r"x \(eth0\) listed twice"):
        assert_vlan_isolation(h, same_vlan=[x], other_vlans=[FakeHost("x")])


def test_a_tuple_of_ports_is_still_a_list():
    """`[(lab, 'a'), (lab, 'b')]` and `((lab, 'a'), (lab, 'b'))` are both lists of ports:
    only the checks up to listening run here (they fail on the fake lab's missing OVS)."""
    lab = FakeLab()
    with pytest.raises((LabError, AttributeError, OSError)):
        assert_vlan_isolation(FakeHost(), same_vlan=((lab, "a"), (lab, "b")),
                              other_vlans=[])


# -- a prefix where an address is expected, and other values -----------------------------

def test_a_prefix_where_a_gateway_is_expected():
    with pytest.raises(LabError) as e:
        assert_default_route(FakeHost(), via="198.51.100.1/25")
    assert "via='198.51.100.1/25' is a prefix" in str(e.value)
    assert e.value.remedy == "write via='198.51.100.1' (without the /25)"
    assert_default_route(FakeHost(), via="198.51.100.1")  # the same, written right


@pytest.mark.parametrize(("call", "text"), [
    (lambda: assert_reachable(FakeHost(), "198.51.100.1/25"), "address='198.51.100.1/25'"),
    (lambda: assert_neighbour(FakeHost(), "198.51.100.1/25"), "address='198.51.100.1/25'"),
    (lambda: assert_route(FakeHost(), "198.51.100.0/25", via="198.51.100.1/25"),
     "via='198.51.100.1/25'"),
])
def test_a_prefix_where_an_address_is_expected(call, text):
    with pytest.raises(LabError, match=re.escape(text) + " is a prefix"):
        call()


def test_other_values_are_checked():
    with pytest.raises(LabError, match=r"cidr='203.0.113.130' has no prefix length"):
        assert_address(FakeHost(), "203.0.113.130")
    with pytest.raises(LabError, match=r"prefix='vlan2' is not an IP prefix"):
        assert_route(FakeHost(), "vlan2")
    with pytest.raises(LabError, match=r"via='gw' is not an IP address"):
        assert_default_route(FakeHost(), via="gw")
    with pytest.raises(TypeError, match="port must be a TCP port number"):
        assert_tcp_open(FakeHost(), "198.51.100.1", "22")
    with pytest.raises(LabError, match="timeout=-1 is out of range"):
        assert_reachable(FakeHost(), "198.51.100.1", timeout=-1)
    with pytest.raises(TypeError, match="vid must be a VLAN number"):
        assert_trunk_carries(FakeHost(), FakeHost("t"), vid="2")
    with pytest.raises(TypeError, match="states must be a set of states"):
        assert_neighbour(FakeHost(), "198.51.100.1", states="REACHABLE")
    with pytest.raises(TypeError, match="name at least one device kind"):
        assert_virtio_devices(FakeVM())
    with pytest.raises(TypeError, match="name at least one module"):
        assert_modules_loaded(FakeVM())
    with pytest.raises(TypeError, match="count must be a number of frames"):
        assert_frames_reach_guest(FakeHost(), FakeVM(), count=0)


def test_a_scoped_link_local_address_is_fine_for_a_probe():
    assert_reachable(FakeHost(), "fe80::baad:caff:fefe:2%sw0-vlan2")
    with pytest.raises(LabError, match="has a scope"):
        assert_neighbour(FakeHost(), "fe80::1%sw0-vlan2")


def test_eventually_wants_a_function_not_its_result():
    with pytest.raises(TypeError) as e:
        eventually(None)  # eventually(assert_reachable(...)): called once, too early
    assert "check must be a function" in str(e.value)
    assert "eventually(lambda: assert_reachable(" in str(e.value)
    with pytest.raises(TypeError, match=r"consistently\(\): check must be a function"):
        consistently(True)


def test_guest_side_assertions_check_their_arguments():
    with pytest.raises(TypeError, match=r"target is the string 'vm0'.*lab.vms\['vm0'\]"):
        assert_service_running("vm0", "ssh")
    with pytest.raises(TypeError, match="path must be absolute"):
        assert_file_contains(FakeVM(), "etc/hostname", "vm0")
    with pytest.raises(TypeError, match="text_or_regex must be a non-empty string"):
        assert_file_contains(FakeVM(), "/etc/hostname", 3)
    with pytest.raises(TypeError, match="proto must be 'tcp' or 'udp'"):
        assert_listening(FakeVM(), 22, proto="icmp")
    with pytest.raises(TypeError, match="port must be a port number"):
        assert_listening(FakeVM(), 0)
    with pytest.raises(TypeError, match="name must be a service or process name"):
        assert_service_running(FakeVM(), "ssh; reboot")


# -- student-readable failures ---------------------------------------------------------

def test_every_assertion_hides_its_source_from_the_traceback():
    public = [getattr(assertions, n) for n in assertions.__all__]
    missing = [f.__name__ for f in public
               if "__tracebackhide__ = True" not in inspect.getsource(f)]
    assert not missing, f"assertions without __tracebackhide__: {missing}"


def test_guest_side_assertions_are_importable_from_the_package():
    for name in ("assert_virtio_devices", "assert_frames_reach_guest",
                 "assert_file_contains", "assert_service_running", "assert_listening"):
        assert name in assertions.__all__ and callable(getattr(assertions, name))


# -- the new assertions' logic, on canned guest output ---------------------------------

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   2: 8200710A:0016 0100710A:D2F0 01 00000000:00000000 02:00097A4B 00000000     0
"""
TCP6 = """  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A
"""


def test_proc_net_tcp_is_read_as_ss_shows_it():
    socks = parse_proc_net("tcp", TCP)
    assert [str(s) for s in socks] == ["tcp   0.0.0.0:22", "tcp   127.0.0.1:3306"]
    assert [str(s) for s in parse_proc_net("tcp6", TCP6)] == ["tcp6  [::]:22"]


def test_assert_listening_on_canned_tables():
    vm = FakeVM(**{"/proc/net/": f"== tcp\n{TCP}== tcp6\n{TCP6}"})
    assert [s.proto for s in assert_listening(vm, 22)] == ["tcp", "tcp6"]
    with pytest.raises(AssertionError) as e:
        assert_listening(vm, 80)
    msg = str(e.value)
    assert "vm0: expected a TCP socket listening on port 80, but nothing listens" in msg
    assert "listening TCP sockets (ss -ltn):\n    tcp   0.0.0.0:22" in msg


def test_assert_service_running_without_systemd_reads_processes():
    procs = "PROCS\n1 init /sbin/init\n85 dropbear /usr/sbin/dropbear\n2 kthreadd [kthreadd]\n"
    vm = FakeVM(**{"systemctl": procs})
    assert assert_service_running(vm, "dropbear").pid == 85
    with pytest.raises(AssertionError) as e:
        assert_service_running(vm, "sshd")
    msg = str(e.value)
    assert "expected service sshd to be running, but no process is named sshd" in msg
    assert "85  dropbear" in msg and "kthreadd" not in msg


def test_assert_service_running_with_systemd():
    active = "SYSTEMD\nId=ssh.service\nLoadState=loaded\nActiveState=active\n---\n"
    assert assert_service_running(FakeVM(systemctl=active), "ssh")["Id"] == "ssh.service"
    dead = ("SYSTEMD\nId=ssh.service\nLoadState=loaded\nActiveState=inactive\n"
            "SubState=dead\n---\n○ ssh.service - OpenBSD Secure Shell server\n")
    with pytest.raises(AssertionError) as e:
        assert_service_running(FakeVM(systemctl=dead), "ssh")
    assert "ssh.service is inactive (dead)" in str(e.value)
    assert "systemctl status ssh:\n    ○ ssh.service" in str(e.value)
    assert "`systemctl start ssh`" in str(e.value)
    gone = "SYSTEMD\nId=nginx.service\nLoadState=not-found\nActiveState=inactive\n---\n"
    with pytest.raises(AssertionError, match="there is no unit nginx.service"):
        assert_service_running(FakeVM(systemctl=gone), "nginx")


def test_assert_file_contains_on_canned_files():
    vm = FakeVM(**{"cat --": "FILE\nroot:x:0:0\netu:x:1000:1000\n"})
    assert assert_file_contains(vm, "/etc/passwd", "etu:") == "etu:x:1000:1000"
    assert assert_file_contains(vm, "/etc/passwd", re.compile(r"^root:", re.M)) == "root:x:0:0"
    with pytest.raises(AssertionError) as e:
        assert_file_contains(vm, "/etc/passwd", "alice")
    assert "expected /etc/passwd to contain the text 'alice', but it does not" in str(e.value)
    assert "/etc/passwd (2 lines):\n      1  root:x:0:0" in str(e.value)
    missing = FakeVM(**{"cat --": "MISSING\ntotal 0\n"})
    with pytest.raises(AssertionError, match="there is no file /etc/motd"):
        assert_file_contains(missing, "/etc/motd", "x")
