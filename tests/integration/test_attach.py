"""Attach mode: the same fixtures and checks against a VM labfixtures did not start.

The VM here is started by hand, the way the guide's standalone-startup.sh does it
(user-mode networking, SSH forwarded from 2200+N, MAC b8:ad:ca:fe:00:N), with a plain
`qemu-system-x86_64` command in a namespace of the test's own; then a separate pytest
run grades it with `--lab-attach`.
"""

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.fixture(scope="module")
def student_vm(tmp_path_factory):
    """A tiny VM started outside labfixtures, reachable at 127.0.0.1:2210 in its namespace
    (one for the module's tests: none of them changes it)."""
    tmp_path = tmp_path_factory.mktemp("student")
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


def grade(tmp_path, grader: str, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess:
    """A separate pytest run of GRADER with ARGS, as a teacher runs it."""
    (tmp_path / "test_grade.py").write_text(grader)
    env = {k: v for k, v in (env or os.environ).items()
           if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "--lab-no-reap", str(tmp_path / "test_grade.py"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_grading_a_vm_started_elsewhere(student_vm, tmp_path):
    ns, image = student_vm
    cp = grade(tmp_path, GRADER + UNKNOWN_NAME, "--lab-attach", "vm0=root@127.0.0.1:2210",
               "--lab-attach-netns", ns, "--lab-attach-key", str(image.private_key))
    out = cp.stdout
    assert "2 failed, 1 passed" in out, out + cp.stderr
    # the failing check shows the student what is there
    assert "expected `default via 10.0.2.1`" in out
    assert "default via 10.0.2.2 dev eth0" in out
    # a name that was not given: the options that give it
    assert "attached['web']: no machine named 'web' was given (given: vm0)" in out
    assert "--lab-attach web=USER@HOST" in out and "--lab-attach-lab LAB" in out


UNKNOWN_NAME = """
def test_unknown_name(attached):
    attached["web"]
"""

TWO_TESTS = """
def test_one(attached):
    attached["vm0"].run("true")

def test_two(attached):
    attached["vm0"].run("true")
"""


def test_a_refused_login_fails_at_once_and_once(student_vm, tmp_path):
    """A key the guest does not accept: no SSH retries, and the second test is not made
    to wait again."""
    import paramiko

    ns, _ = student_vm
    paramiko.RSAKey.generate(2048).write_private_key_file(str(tmp_path / "wrong_key"))
    t0 = time.monotonic()
    cp = grade(tmp_path, TWO_TESTS, "--lab-attach", "vm0=root@127.0.0.1:2210",
               "--lab-attach-netns", ns, "--lab-attach-key", str(tmp_path / "wrong_key"))
    assert "2 failed" in cp.stdout, cp.stdout + cp.stderr
    assert time.monotonic() - t0 < 20, "a refused login was retried"
    assert "SSH authentication as root@[127.0.0.1]:2210 failed" in cp.stdout
    assert "--lab-attach-key PATH" in cp.stdout and "LABFIXTURES_ATTACH_PASSWORD" in cp.stdout
    assert "as in an earlier test: not tried again" in cp.stdout


def test_mistakes_in_the_options_are_one_usage_error_before_any_test(student_vm, tmp_path):
    ns, image = student_vm
    key = str(image.private_key)
    env = {k: v for k, v in os.environ.items() if k != "LABFIXTURES_ATTACH_PASSWORD"}
    cases = [
        # malformed target
        (["--lab-attach", "root@127.0.0.1:2210", "--lab-attach-key", key],
         ["cannot read the attach target 'root@127.0.0.1:2210'", "NAME=[USER@]HOST[:PORT]"]),
        # no credentials
        (["--lab-attach", "vm0=root@127.0.0.1:2210", "--lab-attach-netns", ns],
         ["no credentials for root@127.0.0.1", "--lab-attach-key PATH",
          "LABFIXTURES_ATTACH_PASSWORD"]),
        # a link-local target whose interface is in the lab's namespace, not here
        (["--lab-attach", "vm0=root@[fe80::baad:caff:fefe:a%sw0-vlan2]",
          "--lab-attach-key", key],
         ["interface 'sw0-vlan2'", "--lab-attach-netns NS", "--lab-attach-lab NAME"]),
        # a namespace that does not exist
        (["--lab-attach", "vm0=root@127.0.0.1:2210", "--lab-attach-key", key,
          "--lab-attach-netns", "lf-no-such-ns"],
         ["network namespace 'lf-no-such-ns' does not exist", "--lab-attach-netns NS"]),
    ]
    for args, expected in cases:
        cp = grade(tmp_path, TWO_TESTS, *args, env=env)
        assert cp.returncode == 4, (args, cp.stdout + cp.stderr)
        assert "test_one" not in cp.stdout + cp.stderr, args
        for text in expected:
            assert cp.stderr.count(text) == 1, (text, cp.stderr)


def labctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labfixtures.cli", *args],
                          capture_output=True, text=True, timeout=300)


LAB_GRADER = """
from assertions import assert_default_route

def test_vm0(attached):
    assert_default_route(attached["vm0"], via="203.0.113.129")
    assert attached["vm0"].run("hostname").stdout.strip() == "vm0"
"""


def test_grading_a_lab_started_with_labctl_up(tmp_path):
    """`--lab-attach-lab NAME` finds the VMs, the key, the namespace and the scope; the
    explicit command line that `labctl status` prints does the same."""
    import secrets

    seed = Path(__file__).parents[2] / "scenarios" / "labs" / "seed-minimal.yaml"
    name = f"a{secrets.token_hex(3)}"
    up = labctl("up", str(seed), "--name", name)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        cp = grade(tmp_path, LAB_GRADER, "--lab-attach-lab", name, "-v")  # -q -v: header
        assert "1 passed" in cp.stdout, cp.stdout + cp.stderr
        assert f"attached vm0=root@[fe80::baad:caff:fefe:2%sw0-vlan2]:22 in lf-{name}" \
            in cp.stdout
        status = labctl("status", name).stdout
        assert f"pytest TESTS --lab-attach-lab {name}" in status
        explicit = next(line for line in status.splitlines() if "--lab-attach vm0=" in line)
        args = shlex.split(explicit.split("pytest TESTS", 1)[1])
        assert args[:2] == ["--lab-attach", "vm0=root@[fe80::baad:caff:fefe:2%sw0-vlan2]"]
        assert args[-2:] == ["--lab-attach-netns", f"lf-{name}"]
        cp = grade(tmp_path, LAB_GRADER, *args)
        assert "1 passed" in cp.stdout, cp.stdout + cp.stderr
    finally:
        labctl("down", name)
    cp = grade(tmp_path, LAB_GRADER, "--lab-attach-lab", name)
    assert cp.returncode == 4
    assert f"--lab-attach-lab {name}: no lab named 'lf-{name}'" in cp.stderr


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
