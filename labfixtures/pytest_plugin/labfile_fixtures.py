"""Lab files in tests: everything a YAML lab file describes, VMs included, in one line.

    def test_table1(lab_file):
        built = lab_file("labs/seed-minimal.yaml")     # next to the test module
        assert built.vms["vm0"].ping("203.0.113.129")

    def test_twice_cheaper(lab_file):                   # built once for the module
        built = lab_file("labs/seed-minimal.yaml", scope="module")

`lab_file(path)` builds in the test's `lab` (undone after the test); with
`scope="module"`, or through the `lab_file_module` fixture, in a scope of the lab host
shared by the module's tests (undone after the module), built once per file. The path is
relative to the test module's directory, or absolute. Both live on the worker's one lab
host: a test that also builds on its own `lab` must not reuse the file's switch, tap or
host names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labfixtures.errors import LabError
from labfixtures.lab.lab import Lab
from labfixtures.lab.labfile import BuiltLab, build, load
from labfixtures.pytest_plugin.stash import TEST_LAB


def resolve(request: pytest.FixtureRequest, path: str | Path) -> Path:
    """PATH as given if absolute, else relative to the requesting test module's folder."""
    p = Path(path)
    return p if p.is_absolute() else Path(request.path).parent / p


def _build_or_fail(path: Path, lab: Lab) -> BuiltLab:
    try:
        return build(load(path), lab)
    except LabError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def lab_file_module(lab_host: Lab, request: pytest.FixtureRequest
                    ) -> Iterator[Callable[[str | Path], BuiltLab]]:
    """Factory: `lab_file_module("twovlan.yaml")` builds the lab file once for the whole
    module (a scope of the lab host undone after the module's last test) and returns the
    same `BuiltLab` to every test that asks again. Use it in a module-scoped fixture:

        @pytest.fixture(scope="module")
        def table1(lab_file_module):
            return lab_file_module("labs/seed-minimal.yaml")
    """
    built: dict[Path, BuiltLab] = {}
    with lab_host.scope(f"module {request.module.__name__}") as scoped:

        def make(path: str | Path) -> BuiltLab:
            p = resolve(request, path).resolve()
            if p not in built:
                built[p] = _build_or_fail(p, scoped)
            return built[p]

        yield make


@pytest.fixture
def lab_file(lab: Lab, request: pytest.FixtureRequest) -> Callable[..., BuiltLab]:
    """Factory: `lab_file("twovlan.yaml")` builds everything the lab file describes
    (switches, SVIs, taps, veth hosts, VMs booted and answering SSH) in this test's `lab`
    and returns it: `.vms`, `.hosts`, `.switches` by name, `.lab`. The path is relative to
    the test module's folder, or absolute. `lab_file(path, scope="module")` builds it once
    for the module instead (see `lab_file_module`)."""

    def make(path: str | Path, scope: str = "function") -> BuiltLab:
        if scope == "module":
            module_factory = request.getfixturevalue("lab_file_module")
            built: BuiltLab = module_factory(path)
            request.node.stash[TEST_LAB] = built.lab
            return built
        if scope != "function":
            pytest.fail(f"lab_file({str(path)!r}, scope={scope!r}): scope is 'function' "
                        "(the default) or 'module'", pytrace=False)
        return _build_or_fail(resolve(request, path), lab)

    return make
