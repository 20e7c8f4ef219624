"""Fixtures shared by the integration tests that drive the qemu layer directly, below
the `Lab` API (which has its own fixtures in the plugin)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from labfixtures.core import netns, procs, runner

_ids = itertools.count()


def _bare_ns() -> Iterator[str]:
    name = f"{os.environ.get('LF_TEST_NS_PREFIX', 'lf-t')}-{os.getpid()}-{next(_ids)}"
    netns.create(name)
    try:
        runner.run(["ip", "link", "set", "lo", "up"], netns=name)
        yield name
    finally:
        procs.terminate(netns.pids(name), grace=0.5)
        netns.delete(name)


@pytest.fixture
def private_ns() -> Iterator[str]:
    """A bare network namespace with `lo` up; whatever runs in it is killed at the end."""
    yield from _bare_ns()


@pytest.fixture(scope="module")
def module_ns() -> Iterator[str]:
    """The same, shared by a module's tests (a VM booted once for several checks)."""
    yield from _bare_ns()


@pytest.fixture
def make_tap(private_ns: str):
    """`make_tap("tap2")`: a tap in the private namespace, up, without IPv6 DAD."""
    from labfixtures.net.netlink import Netlink

    def make(name: str) -> str:
        with Netlink(private_ns) as nl:
            nl.sysctl("net.ipv6.conf.default.accept_dad", 0)
            nl.create_tap(name, up=True)
        return name

    return make
