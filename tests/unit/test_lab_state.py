"""lab.json and vm.json as dataclasses (lab/state.py), and the one conversion of a lab
file's VMs (lab/build.py)."""

import json

import pytest

from labfixtures.errors import LabError
from labfixtures.lab.build import vm_arguments
from labfixtures.lab.labfile import parse
from labfixtures.lab.persistent import PersistentLab
from labfixtures.lab.state import LabState, VmAccess, VmState
from labfixtures.lab.vmhost import VmHost
from labfixtures.lab.vmspec import VmNic

V1 = {"name": "vm0", "image": "tiny", "recipe_hash": "abc",
      "nics": [{"tap": 2, "user": False, "addresses": ["203.0.113.130/26"],
                "gateway": "203.0.113.129", "dhcp": False, "mac": None, "ssh_port": None,
                "queues": 1}],
      "opts": {"image": "tiny", "memory": 512, "vcpus": 2, "profile": "pc",
               "hostname": None, "extra_args": ["-snapshot"], "extra_config": {}},
      "cmdline": "lf.hostname=vm0"}


def test_vm_state_reads_version_1_and_writes_version_2(tmp_path):
    s = VmState.from_dict(V1)
    assert (s.memory_mb, s.vcpus, s.profile, s.extra_args) == (512, 2, "pc", ["-snapshot"])
    assert s.nics == [VmNic(tap=2, addresses=("203.0.113.130/26",), gateway="203.0.113.129")]
    s.save(tmp_path / "vm.json")
    d = json.loads((tmp_path / "vm.json").read_text())
    assert d["version"] == 2 and d["memory_mb"] == 512 and "opts" not in d
    assert VmState.load(tmp_path / "vm.json") == s
    assert VmState.from_dict(s.to_dict()) == s
    assert s.options().memory == 512


def test_a_newer_or_broken_state_is_refused():
    with pytest.raises(LabError, match="version 3"):
        VmState.from_dict({**V1, "version": 3})
    with pytest.raises(LabError, match="malformed"):
        VmState.from_dict({"version": 2, "image": "tiny"})
    with pytest.raises(LabError, match="version 9"):
        LabState.from_dict({"version": 9, "labid": "lf-x"})


def test_lab_state_round_trip_and_unversioned_files(tmp_path):
    old = {"labid": "lf-x", "vms": {"vm0": {"host": "fe80::1%sw0-vlan2", "port": 22,
                                            "key": "/k", "user": "root", "image": "tiny",
                                            "mac": "b8:ad:ca:fe:00:02", "pid": 12,
                                            "serial_log": None}}}
    s = LabState.from_dict(old)
    assert s.vms["vm0"] == VmAccess("fe80::1%sw0-vlan2", 22, "/k", image="tiny",
                                    mac="b8:ad:ca:fe:00:02", pid=12)
    s.save(tmp_path / "lab.json")
    assert LabState.load(tmp_path / "lab.json") == s
    assert json.loads((tmp_path / "lab.json").read_text())["version"] == 1


def test_a_lab_file_nic_keeps_dhcp_ssh_port_and_mac():
    spec = parse({"name": "x", "switches": {"sw0": {}},
                  "taps": [{"number": 2, "switch": "sw0", "vlan": 2}],
                  "vms": {"vm0": {"memory": 512, "vcpus": 2, "nics": [
                      {"tap": 2, "dhcp": True, "mac": "52:54:00:00:00:02"},
                      {"user": {"ssh_port": 2222}}]}}})
    kw = vm_arguments(spec.vms["vm0"])
    assert (kw["memory"], kw["vcpus"], kw["image"]) == (512, 2, "tiny")
    tap, user = kw["nics"]
    assert tap == VmNic(tap=2, dhcp=True, mac="52:54:00:00:00:02")
    assert user.user and user.ssh_port == 2222 and user.dhcp


def test_a_persistent_lab_is_read_from_its_run_directory(tmp_path):
    with pytest.raises(LabError, match="no lab named 'lf-seed'"):
        PersistentLab.open("seed", run_base=tmp_path)
    (tmp_path / "lf-seed" / "vms" / "vm0").mkdir(parents=True)
    VmState.from_dict(V1).save(tmp_path / "lf-seed" / "vms" / "vm0" / "vm.json")
    lab: VmHost = PersistentLab.open("seed", run_base=tmp_path)
    assert (lab.labid, lab.ns, lab.rundir) == ("lf-seed", "lf-seed", tmp_path / "lf-seed")
    assert lab.known_hosts == tmp_path / "lf-seed" / "known_hosts"
    assert lab.tap_user(2) == "vm0" and lab.tap_user(3) is None
    assert isinstance(lab, PersistentLab) and lab.vm_state("vm0").memory_mb == 512
    with pytest.raises(LabError, match="started with `labctl up`"):
        lab.state()
    LabState("lf-seed", {"vm0": VmAccess("127.0.0.1", 2202, "/k")}).save(
        tmp_path / "lf-seed" / "lab.json")
    assert lab.vm_access("vm0").port == 2202
    with pytest.raises(LabError, match="no VM named 'vm1'"):
        lab.vm_access("vm1")
