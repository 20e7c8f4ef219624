"""The plugin's fixtures: a lab host per worker, a lab scope per test, shortcuts, guest
images and attached machines. (Lab files: `labfile_fixtures`; checkpoints:
`checkpoint_fixtures`.)

    def test_vlan2(lab, veth_host):
        sw0 = lab.switch("sw0")
        sw0.svi(2, "203.0.113.129/26")
        h = veth_host("h1", sw0, tag=2, addresses=["203.0.113.130/26"])
        assert h.ping("203.0.113.129")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labfixtures import guestimages
from labfixtures.errors import LabError
from labfixtures.guestimages import GuestImage
from labfixtures.lab.lab import Lab, Switch, VethHost
from labfixtures.pytest_plugin import report
from labfixtures.pytest_plugin.attach import AttachedVMs
from labfixtures.pytest_plugin.stash import ATTACH, LAB_HOST, TEST_LAB

NOT_ROOT = "labfixtures needs root to build a lab (run under sudo)"


@pytest.fixture(scope="session")
def lab_host(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """This worker's lab host: a private namespace `lf-<run>-<worker>` with its own
    ovsdb-server and ovs-vswitchd, opened the first time a test asks for a lab and closed
    at the end of the session. Tests use `lab` (a scope on it); a module-scoped fixture
    can open its own: `with lab_host.scope("mine") as lab: ...`."""
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT)
    try:
        keep = request.config.getoption("--lab-keep-overlays")
        lab = Lab.open(datapath=request.config.getoption("--lab-datapath"),
                       keep_overlays=Path(keep).absolute() if keep else None)
    except LabError as e:
        pytest.fail(str(e), pytrace=False)
    request.config.stash[LAB_HOST] = lab
    yield lab
    del request.config.stash[LAB_HOST]
    lab.close()


@pytest.fixture
def lab(lab_host: Lab, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A `Lab` for one test: the switches, taps, hosts, VMs and sysctls it creates are
    undone after the test (the namespace and Open vSwitch stay for the next one). Errors
    that Open vSwitch logs meanwhile fail the test. For a lab shared by a module's tests
    use `lab_file_module`, or `lab_host.scope(...)` in a module-scoped fixture."""
    with lab_host.scope(request.node.name) as scoped:
        request.node.stash[TEST_LAB] = scoped
        yield scoped
    problems = report.ovs_problems(lab_host.ovs.log_problems())
    if problems:
        pytest.fail("Open vSwitch logged errors during this test:\n  " +
                    "\n  ".join(problems), pytrace=False)


@pytest.fixture
def switch(lab: Lab) -> Switch:
    """An Open vSwitch bridge `sw0` (the guide's switch) in the test's lab."""
    return lab.switch("sw0")


@pytest.fixture
def veth_host(lab: Lab) -> Callable[..., VethHost]:
    """Factory: `veth_host(name, switch=None, tag=..., trunks=..., native=...,
    addresses=[...], gateway=..., mac=...)`: a namespace with `eth0` on a switch port."""
    return lab.veth_host


@pytest.fixture
def tap(lab: Lab) -> Callable[..., str]:
    """Factory: `tap(N, group="kvm", multi_queue=True)` creates tapN in the lab."""
    return lab.tap


@pytest.fixture(scope="session")
def attached(request: pytest.FixtureRequest) -> Iterator[AttachedVMs]:
    """The machines to grade, by name: `attached["vm0"]` (connected on first use), from
    `--lab-attach NAME=USER@HOST` or `--lab-attach-lab LAB` (a lab of `labctl up`). Empty
    without those options; a name that was not given fails the test with the option to
    give. Nothing is started or torn down."""
    plan = request.config.stash[ATTACH]
    vms = AttachedVMs(plan)
    yield vms
    plan.close()


def _image(name: str) -> GuestImage:
    try:
        return guestimages.get(name)
    except LabError as e:
        # a suite that skips the image it claims to test proves nothing: fail, with the fix
        kernel = getattr(guestimages.RECIPES.get(name), "kernel", "")
        how = (f"--lab-guest-kernel {kernel} selects it for this session; ./ci/setup builds "
               "the default kernel only" if kernel else "./ci/setup does it")
        pytest.fail(f"{e.problem}\n  remedy: {e.remedy} ({how})", pytrace=False)


@pytest.fixture(scope="session")
def tiny_image() -> GuestImage:
    """The cached `tiny` guest image (kernel + busybox/dropbear initramfs), on the
    session's `--lab-guest-kernel` if given; fails with the remedy (`labctl image build
    tiny`, with `--kernel PACKAGE` for another kernel) when it is not built."""
    return _image("tiny")


@pytest.fixture(scope="session")
def debian_image() -> GuestImage:
    """The cached `debian` guest image (bookworm on msdos + LVM vm0, installed by ISO);
    fails with the remedy when it is not built."""
    return _image("debian")
