"""The tiny guest on two Debian kernels in one lab: `lab.vm(..., kernel=PACKAGE)`, a lab
file's `kernel:`, and `lab_vm(..., kernel=...)` with its automatic checkpoints.

The second kernel's build is made here if the cache lacks it (`kernels.build_tiny`, about
10 s with `apt-get download`; ./ci/setup builds the default kernel only): a test of two
kernels that skipped when one is missing would prove nothing.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest

from labfixtures.guestimages import GuestImage, ImageCache, kernels
from labfixtures.guestimages.tiny import RECIPE as TINY
from labfixtures.lab import labfile
from labfixtures.lab.lab import Lab

pytestmark = [
    pytest.mark.vm,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, taps)"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86 is not installed"),
]

#: another kernel than the default one (linux-image-amd64's dependency, 6.1.0-57 here)
SECOND = os.environ.get("LF_TEST_SECOND_KERNEL", "linux-image-6.1.0-50-amd64")


@pytest.fixture(scope="module")
def default_kernel() -> str:
    """The package the default tiny build is on (`kernel=` it selects the default build)."""
    package, _ = TINY.kernel_package(ImageCache())
    assert package != SECOND, "pick another LF_TEST_SECOND_KERNEL: it is the default one"
    return package


@pytest.fixture(scope="module")
def second() -> GuestImage:
    return kernels.build_tiny(SECOND, progress=None)


#: taps no other test uses. Each tiny build has its own SSH host key: a VM's key is
#: forgotten at its teardown (`VM.forget_host_keys`), so the two kernels can take turns on
#: one tap from one test to the next (the parametrized test below does, in one worker).
TAPS = (61, 62)


def release_of(package: str) -> str:
    return package.removeprefix("linux-image-")


def two_taps(lab: Lab) -> None:
    sw0 = lab.switch("sw0")
    for n in TAPS:
        lab.tap(n)
        sw0.add_port(f"tap{n}", tag=2)


def test_two_vms_of_one_lab_on_two_kernels(lab, default_kernel, second):
    two_taps(lab)
    vm0 = lab.vm("vm0", tap=TAPS[0], addresses=["192.0.2.2/24"], kernel=default_kernel,
                 start=False)
    vm1 = lab.vm("vm1", tap=TAPS[1], addresses=["192.0.2.3/24"], kernel=SECOND, start=False)
    assert vm1.image.path == second.path and vm0.image.path != second.path
    for vm in (vm0, vm1):
        vm.start(wait=False)
    for vm in (vm0, vm1):
        vm.wait_ready(timeout=180)
    r0 = vm0.run("uname -r", check=True).stdout.strip()
    r1 = vm1.run("uname -r", check=True).stdout.strip()
    assert (r0, r1) == (release_of(default_kernel), release_of(SECOND))
    assert r1 == second.facts["kernel_release"]
    assert vm0.run("ping -c1 -W5 192.0.2.3").ok  # one lab: they reach each other


def test_a_lab_file_gives_a_vm_its_kernel(lab, second):
    spec = labfile.parse({
        "name": "kernels",
        "switches": {"sw0": {}},
        "taps": [{"number": TAPS[1], "switch": "sw0", "vlan": 2}],
        "vms": {"vm0": {"image": "tiny", "kernel": SECOND,
                        "nics": [{"tap": TAPS[1], "addresses": ["192.0.2.2/24"]}]}},
    }, "kernels.yaml")
    built = labfile.build(spec, lab, boot_timeout=180)
    vm = built.vms["vm0"]
    assert vm.run("uname -r", check=True).stdout.strip() == release_of(SECOND)


@pytest.mark.parametrize("which", ["default", "second"])
def test_automatic_checkpoints_keep_kernels_apart(lab, lab_vm, default_kernel, second, which):
    """The same VM settings on two kernels: each comes back on its own kernel, booted the
    first time and restored later (the automatic key holds the image's recipe hash)."""
    kernel = default_kernel if which == "default" else SECOND
    two_taps(lab)
    vm = lab_vm("vm0", tap=TAPS[0], addresses=["192.0.2.2/24"], kernel=kernel)
    print(vm.name, "restored" if vm.loadvm else "booted", "on", kernel)
    assert vm.run("uname -r", check=True).stdout.strip() == release_of(kernel)


def test_the_next_vm_on_a_tap_may_have_another_host_key(lab_host, default_kernel, second):
    """Two labs one after the other, a VM on the same tap in each, on two kernels (two host
    keys): the first VM's key leaves the known-hosts file with it, and the second VM is
    reached. While a VM lives, a changed key is still refused (tests/unit/
    test_ssh_host_keys.py, scenario s06)."""
    names = []
    for kernel in (default_kernel, SECOND):
        with lab_host.scope("host-keys") as lab:
            two_taps(lab)
            vm = lab.vm("vm0", tap=TAPS[0], addresses=["192.0.2.2/24"], kernel=kernel)
            assert vm.run("uname -r", check=True).stdout.strip() == release_of(kernel)
            name = vm.ssh().host_key_name
            assert name in lab.known_hosts.read_text()
            names.append(name)
        assert name not in lab_host.known_hosts.read_text(), "the key left with its VM"
    assert names[0] == names[1]  # the same address: only the machine behind it changed


def cloud_package() -> str:
    """The kernel package Debian's `linux-image-cloud-amd64` depends on now: its kernel for
    virtual machines, lz4-compressed and without MP-table code."""
    _, depends = ImageCache().apt_candidate("linux-image-cloud-amd64")
    m = re.search(r"linux-image-[0-9][^ ,()]*", depends)
    assert m, f"no kernel in the dependencies of linux-image-cloud-amd64: {depends!r}"
    return m.group(0)


def test_the_cloud_flavour_boots_with_all_its_vcpus_on_pc(lab):
    """The cloud kernel builds (an lz4 bzImage) and, on `pc` with 2 vCPUs, sees both: the
    image says it cannot read the MP table, so the profile keeps ACPI's PCI routing."""
    package = cloud_package()
    cloud = kernels.build_tiny(package, progress=None)
    assert cloud.facts["mp_table"] == "no", cloud.facts
    lab.tap(TAPS[0])
    vm = lab.vm("vm0", tap=TAPS[0], kernel=package, profile="pc", vcpus=2)
    assert vm.run("uname -r", check=True).stdout.strip() == cloud.facts["kernel_release"]
    assert vm.run("nproc", check=True).stdout.strip() == "2"
    assert "pci=noacpi" not in vm.run("cat /proc/cmdline", check=True).stdout
