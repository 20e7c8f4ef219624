"""Guide §3, "Choix d'une solution de virtualisation": KVM or QEMU alone?

The guide's rule:

    $ egrep '(vmx|svm)' /proc/cpuinfo

    « Si la commande ne donne aucun résultat, le processeur ne possède pas d'extension de
    virtualisation et seule la solution QEMU est utilisable. Si le résultat donne une ou
    plusieurs lignes [...] débutant par `flags`, la solution KVM est utilisable avec les
    outils QEMU. »

A teacher checks that the lab applied that rule and said so: the accelerator labfixtures
chose follows the CPU flags (with KVM, only if it also really works: docs/host-facts.md), the test
report says which one was used and why, and a running VM agrees (QEMU's own `query-kvm`).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from assertions import assert_accelerator
from labfixtures.errors import LabError
from labfixtures.qemu import accel

pytestmark = [pytest.mark.root, pytest.mark.vm]


def guide_rule() -> list[str]:
    """The guide's command, run as written: the matching lines of /proc/cpuinfo."""
    cp = subprocess.run(["grep", "-E", "(vmx|svm)", "/proc/cpuinfo"],
                        capture_output=True, text=True)
    assert cp.returncode in (0, 1), f"grep failed: {cp.stderr}"
    return cp.stdout.splitlines()


@pytest.fixture(scope="module")
def vm0(module_lab):
    """A VM booted the usual way (the fast profile, nothing on the network)."""
    return module_lab.vm("vm0", nics=[])


def test_the_accelerator_follows_the_guide_rule():
    lines = guide_rule()
    info = accel.detect()
    if not lines:
        assert info.name == "tcg", (
            "`egrep '(vmx|svm)' /proc/cpuinfo` prints nothing, so only QEMU (TCG) is usable, "
            f"but labfixtures chose {info.name.upper()} ({info.reason})")
        assert "vmx/svm" in info.reason, (
            f"the reason given for TCG should name the missing CPU flag: {info.reason!r}")
    else:
        assert all(line.startswith("flags") for line in lines), (
            f"the guide expects lines starting with `flags`, got: {lines[:2]}")
        # KVM is usable *if* it also works here: a TCG choice must say why (docs/host-facts.md)
        assert info.name == "kvm" or "probe" in info.reason or "/dev/kvm" in info.reason, (
            f"the CPU has vmx/svm but labfixtures chose TCG without a reason: {info.reason!r}")


def test_asking_for_kvm_follows_the_same_rule():
    """A VM that insists on KVM gets it, or a clear refusal naming the reason."""
    info = accel.detect()
    if info.name == "kvm":
        assert accel.resolve("kvm").name == "kvm"
    else:
        with pytest.raises(LabError) as exc:
            accel.resolve("kvm")
        assert "KVM was asked for but is not usable" in str(exc.value)
        assert info.reason in str(exc.value), "the refusal must say why KVM is unusable"
    assert accel.resolve("tcg").name == "tcg", "TCG (QEMU alone) must always be possible"


def test_the_test_report_says_which_accelerator(tmp_path):
    """The report header of any pytest run states the accelerator and the reason."""
    info = accel.detect()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    cp = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "--lab-no-reap",
                         "-p", "no:cacheprovider", str(tmp_path)],
                        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    header = [line for line in cp.stdout.splitlines()
              if line.startswith("labfixtures: QEMU accelerator")]
    assert header, ("no `labfixtures: QEMU accelerator ...` line in the report header:\n"
                    + cp.stdout[:2000] + cp.stderr[-2000:])
    assert header[0] == f"labfixtures: QEMU accelerator {info.name.upper()} ({info.reason})"


def test_a_running_vm_uses_that_accelerator(vm0):
    kvm = assert_accelerator(vm0)  # QMP query-kvm agrees with accel.detect()
    assert kvm["enabled"] == (accel.detect().name == "kvm")
    # ...and so do the command line QEMU was started with and its record in the run dir
    argv = vm0.machine.cmdline_file.read_text()
    name = accel.detect().name
    assert f"-accel {name}" in argv, f"QEMU was not started with -accel {name}:\n{argv}"
    assert argv.startswith(f"# accel: {name} ("), argv.splitlines()[0]
    assert vm0.machine.hmp("info status").strip() == "VM status: running"
