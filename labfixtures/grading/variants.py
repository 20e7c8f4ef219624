"""Per-student variants: parameters (VLAN ids, subnets, tap numbers...) drawn from the
roster's seed, so that neighbours cannot copy each other's answers.

A grading module declares the choices, and a sheet (Markdown, `string.Template`: `$vlan`
or `${vlan}`, so YAML's braces need no escaping) that `labctl grade sheet` fills in for each
student:

    VARIANTS = {"vlan": range(2, 40), "tap": range(2, 20)}
    SHEET = '''# Lab 3 for $name
    Put your VM on tap$tap, an access port of VLAN $vlan.'''

    def test_port(student_lab, student, probe):
        probe.port_vlan(student_lab.switches["sw0"], f"tap{student['tap']}", student["vlan"])

The same seed always gives the same values (sha256 of seed and parameter name); the
student's id is the seed when the roster has no `seed` column. A `REFERENCE` lab file may
use the same `$names`: it is filled in with the student's values before it is read (a
bundle is restored into that network).
"""

from __future__ import annotations

import hashlib
import importlib.util
import string
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from labfixtures.errors import LabError


def choose(seed: str, space: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """One value per parameter of SPACE, drawn by SEED (the same seed, the same values)."""
    out: dict[str, Any] = {}
    for name, choices in space.items():
        options = list(choices)
        if not options:
            raise LabError(f"VARIANTS[{name!r}] has no choices",
                           f'give it some: VARIANTS = {{"{name}": [2, 3, 4]}}')
        digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
        out[name] = options[int.from_bytes(digest[:8], "big") % len(options)]
    return out


def fill(template: str, params: Mapping[str, Any], source: str = "template") -> str:
    """TEMPLATE with `$name` / `${name}` replaced by PARAMS; an unknown name is an error."""
    try:
        return string.Template(template).substitute({k: str(v) for k, v in params.items()})
    except KeyError as e:
        raise LabError(f"{source} uses ${e.args[0]}, which is not a parameter (parameters: "
                       f"{', '.join(params) or 'none'})",
                       "add it to VARIANTS, or write $$ for a literal $") from None
    except ValueError as e:
        raise LabError(f"{source}: {e}", "write $$ for a literal $") from None


def load_module(path: Path) -> ModuleType:
    """The grading module at PATH, imported (for its VARIANTS and SHEET)."""
    spec = importlib.util.spec_from_file_location(f"lf_grading_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise LabError(f"cannot import {path}", "give the path of a Python grading module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def sheet(module: ModuleType, seed: str, student: str, name: str) -> str:
    """The student's instructions: the module's SHEET filled in with their values."""
    text = getattr(module, "SHEET", None)
    if not isinstance(text, str):
        raise LabError(f"{module.__file__} has no SHEET", "add SHEET = '''# Lab ... $vlan'''")
    params = choose(seed, getattr(module, "VARIANTS", {}))
    return fill(text, {**params, "student": student, "name": name or student},
                f"{module.__file__}: SHEET")
