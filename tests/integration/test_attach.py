"""Attach mode: the same fixtures and checks against a VM labfixtures did not start.

The VM here is started by hand, the way the guide's standalone-startup.sh does it
(user-mode networking, SSH forwarded from 2200+N, MAC b8:ad:ca:fe:00:N), with a plain
`qemu-system-x86_64` command in a namespace of the test's own; then a separate pytest
run grades it with `--lab-attach`.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from labfixtures import guestimages
from labfixtures.core import netns, runner

pytestmark = [pytest.mark.root, pytest.mark.vm]

GRADER = '''
import socket
from assertions import assert_address, assert_default_route, assert_reachable

def test_student_vm(attached):
    vm = attached["vm0"]
    assert_default_route(vm, via="10.0.2.2")
    assert_address(vm, "10.0.2.15/24", dev="eth0")
    assert_reachable(vm, "10.0.2.2")
    assert vm.host.file("/etc/os-release").exists
    assert vm.run("hostname").stdout.strip() == "student"

def test_wrong_gateway_is_reported(attached):
    assert_default_route(attached["vm0"], via="10.0.2.1")
'''


@pytest.fixture
def student_vm(tmp_path):
    """A tiny VM started outside labfixtures, reachable at 127.0.0.1:2210 in its namespace."""
    image = guestimages.get("tiny")
    ns = f"lf-attach-{os.getpid()}"
    netns.create(ns)
    runner.run(["ip", "link", "set", "lo", "up"], netns=ns)
    argv = [shutil.which("qemu-system-x86_64"), "-machine", "pc", "-cpu", "max", "-m", "256",
            "-display", "none", "-serial", f"file:{tmp_path}/serial.log", "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", f"{image.cmdline} lf.hostname=student lf.dhcp=eth0",
            "-device", "virtio-net-pci,netdev=net0,mac=b8:ad:ca:fe:00:0a,romfile=",
            "-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:2210-:22"]
    qemu = netns.popen(ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        serial = tmp_path / "serial.log"
        while not serial.exists() or b"labfixtures: ready" not in serial.read_bytes():
            assert qemu.poll() is None, "the hand-started QEMU died"
            assert time.monotonic() < deadline, "the hand-started VM never booted"
            time.sleep(0.1)
        yield ns, image
    finally:
        qemu.kill()
        qemu.wait()
        netns.delete(ns)


def test_grading_a_vm_started_elsewhere(student_vm, tmp_path):
    ns, image = student_vm
    (tmp_path / "test_grade.py").write_text(GRADER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    cp = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--lab-no-reap",
         str(tmp_path / "test_grade.py"), "--lab-attach", "vm0=root@127.0.0.1:2210",
         "--lab-attach-netns", ns, "--lab-attach-key", str(image.private_key)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = cp.stdout
    assert "1 failed, 1 passed" in out, out + cp.stderr
    # the failing check shows the student what is there
    assert "expected `default via 10.0.2.1`" in out
    assert "default via 10.0.2.2 dev eth0" in out


def test_attach_target_syntax():
    from labfixtures.errors import LabError
    from labfixtures.guests.attach import AttachedVM

    vm = AttachedVM.parse("vm0=etu@[fe80::baad:caff:fefe:2%sw0-vlan2]:2222")
    assert (vm.name, vm.user, vm.address, vm.port) == (
        "vm0", "etu", "fe80::baad:caff:fefe:2%sw0-vlan2", 2222)
    vm = AttachedVM.parse("vm1=192.0.2.10")
    assert (vm.user, vm.address, vm.port) == ("root", "192.0.2.10", 22)
    with pytest.raises(LabError, match="NAME=\\[USER@\\]HOST\\[:PORT\\]"):
        AttachedVM.parse("192.0.2.10")
    with pytest.raises(LabError, match="out of range"):
        AttachedVM.parse("vm0=h:70000")
