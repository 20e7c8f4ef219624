"""Shared fixtures of the scenario modules.

Each test starts from a known state: a scenario module builds the network its VM needs
(switch, SVI, taps, veth hosts: milliseconds) in the test's own `lab`, then asks for the
VM through the checkpoint plugin's `lab_vm(name, **lab.vm kwargs)`. The first request for
given VM settings boots it (seconds under TCG) and saves an automatic checkpoint in the
cache; every later one, in this run or the next, restores that checkpoint (under a
second), so a test that changes the VM or the lab (forwarding off, a link down...) leaves
nothing behind for the next one. `--lab-no-checkpoints` boots every time instead.

`module_lab` remains for modules whose VM cannot be restored from a checkpoint (see their
docstrings): a scope of the worker's lab host that lives as long as the module (its
switches, taps and VMs are undone when the module ends). Tests of such a module also get
the plugin's per-test `lab`, for its checks (Open vSwitch errors fail the test) and its
report on failure (lab state, serial console, QEMU command line).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labfixtures import guestimages
from labfixtures.lab.lab import Lab


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


@pytest.fixture(scope="session")
def blank_disk() -> Callable[[int], Path]:
    """Factory: `blank_disk(MIB)`, the path of an all-zero raw image of MIB MiB that never
    changes, kept in the cache (`<cache>/scenario-disks/blank-<MIB>M.raw`).

    For a VM that `lab_vm` checkpoints: the path is part of the automatic checkpoint's
    key, so it must be the same in every test and every run, and QEMU's `-loadvm` only
    accepts a raw disk attached read-only (a writable one is refused: "Device 'drive0' is
    writable but does not support snapshots"), which also keeps the file all zeros."""
    root = guestimages.default_cache_dir() / "scenario-disks"

    def make(mib: int) -> Path:
        disk = root / f"blank-{mib}M.raw"
        if disk.is_file() and disk.stat().st_size == mib * 2**20:
            return disk
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{disk.name}.{os.getpid()}"
        try:
            subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(tmp), f"{mib}M"],
                           check=True)
            tmp.rename(disk)  # atomic: another worker may be making the same one
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return disk
    return make
