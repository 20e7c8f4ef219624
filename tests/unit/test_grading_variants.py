"""Per-student variants: values drawn from the seed, sheets, the `student` fixture."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from labfixtures.errors import LabError
from labfixtures.grading import variants

SPACE = {"vlan": range(2, 40), "tap": range(2, 20), "subnet": ["10.0.1.0/24", "10.0.2.0/24"]}

MODULE = '''
"""A lab with variants"""
VARIANTS = {"vlan": range(2, 40), "tap": range(2, 20)}
SHEET = """# Lab for $name
Put vm0 on tap$tap, an access port of VLAN ${vlan} (cost: $$0)."""


def test_values(student):
    """the values"""
    assert student == {"vlan": EXPECTED_VLAN, "tap": EXPECTED_TAP}
'''


def test_the_same_seed_gives_the_same_values_and_neighbours_differ():
    a = variants.choose("alice", SPACE)
    assert a == variants.choose("alice", SPACE)
    assert a["vlan"] in range(2, 40) and a["subnet"] in SPACE["subnet"]
    others = {tuple(variants.choose(f"s{i}", SPACE).values()) for i in range(30)}
    assert len(others) > 20, "30 students draw (almost) all different variants"
    with pytest.raises(LabError, match="no choices"):
        variants.choose("x", {"vlan": []})


def test_fill_replaces_parameters_and_refuses_unknown_ones():
    assert variants.fill("vlan: ${vlan}, tap$tap, $$5", {"vlan": 7, "tap": 3}) == \
        "vlan: 7, tap3, $5"
    assert variants.fill("{vlan: $vlan}", {"vlan": 7}) == "{vlan: 7}"  # YAML braces kept
    with pytest.raises(LabError, match=r"\$subnet, which is not a parameter"):
        variants.fill("addresses: [$subnet]", {"vlan": 7}, "lab.yaml")


def test_sheets_and_the_student_fixture_agree(tmp_path):
    want = variants.choose("seed-a", {"vlan": range(2, 40), "tap": range(2, 20)})
    module = tmp_path / "test_lab3.py"
    module.write_text(textwrap.dedent(MODULE).replace("EXPECTED_VLAN", str(want["vlan"]))
                      .replace("EXPECTED_TAP", str(want["tap"])))
    (tmp_path / "roster.csv").write_text("student,name,target,seed\n"
                                         "ann,Ann A,x.yaml,seed-a\nbo,Bo B,y.yaml,\n")
    cp = subprocess.run([sys.executable, "-m", "labfixtures.cli", "grade", "sheet",
                         str(module), "--roster", str(tmp_path / "roster.csv"), "--out",
                         str(tmp_path / "sheets")], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    ann = (tmp_path / "sheets" / "ann" / "sheet.md").read_text()
    assert ann == (f"# Lab for Ann A\nPut vm0 on tap{want['tap']}, an access port of VLAN "
                   f"{want['vlan']} (cost: $0).")
    bo = variants.choose("bo", {"vlan": range(2, 40), "tap": range(2, 20)})
    assert f"tap{bo['tap']}," in (tmp_path / "sheets" / "bo" / "sheet.md").read_text()
    # the grading run sees the same values through the `student` fixture
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "pytest", str(module), "-q", "-p",
                    "no:cacheprovider", "-o", "addopts=", "--lab-no-reap",
                    "--lab-grade-seed", "seed-a", "--lab-grade-out", str(out)],
                   capture_output=True, text=True, cwd=tmp_path, timeout=120)
    grade = json.loads((out / "grade.json").read_text())
    assert [c["outcome"] for c in grade["checks"]] == ["passed"], grade
