"""Shared fixtures of the scenario modules.

A VM boot costs seconds under TCG, so a scenario module boots its VM once and all its tests
read it: `module_lab` is a scope of the worker's lab host that lives as long as the module
(its switches, taps and VMs are undone when the module ends), and a module builds its VM in
a module-scoped fixture on it. Tests of such a module also get the plugin's per-test `lab`,
for its checks (Open vSwitch errors fail the test) and its report on failure (lab state,
serial console, QEMU command line).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labfixtures import guestimages
from labfixtures.lab import Lab


@pytest.fixture(scope="session")
def tiny_image() -> guestimages.GuestImage:
    """The tiny guest (kernel + busybox/dropbear initramfs), built once if missing."""
    return guestimages.build("tiny", progress=None)


@pytest.fixture(scope="module")
def module_lab(lab_host: Lab, tiny_image: guestimages.GuestImage,
               request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A lab scope for the whole module: what it builds is undone after its last test."""
    with lab_host.scope(request.module.__name__.rpartition(".")[2]) as scoped:
        yield scoped


@pytest.fixture(autouse=True)
def _lab_checks_and_report(request: pytest.FixtureRequest) -> None:
    """Tests using the module's lab also take the per-test `lab` (log checks, report)."""
    if "module_lab" in request.fixturenames:
        request.getfixturevalue("lab")
