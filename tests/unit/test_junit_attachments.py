"""GitLab's JUnit attachments for the frames of a failed check (no lab needed): one
`[[ATTACHMENT|path]]` line per file in the test's system-out, whatever junit_logging says,
paths relative to $CI_PROJECT_DIR in a GitLab job."""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
INNER = '''
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from labfixtures.report.frames import CapturedFrame, attach


def test_leak():
    frame = Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff", type=0x88B5) / Raw(b"x")
    raise attach(AssertionError("VLAN leak"), [CapturedFrame("sent from a", frame),
                                               CapturedFrame("heard on c", frame, True)])


def test_ok():
    print("fine")
'''


def run(folder: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    (folder / "test_inner.py").write_text(INNER)
    cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         "test_inner.py", "--junitxml", "junit.xml", *args],
                        cwd=folder, capture_output=True, text=True, timeout=120,
                        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert "1 failed, 1 passed" in cp.stdout, cp.stdout + cp.stderr
    root = ET.parse(folder / "junit.xml").getroot()
    return {c.get("name", ""): "\n".join(s.text or "" for s in c.iter("system-out"))
            for c in root.iter("testcase")}


def attached(text: str) -> list[str]:
    return re.findall(r"^\[\[ATTACHMENT\|([^\]]+)\]\]$", text, re.M)


def test_frames_are_attached_next_to_the_junit_file(tmp_path):
    out = run(tmp_path)
    paths = attached(out["test_leak"])
    assert [Path(p).name for p in paths] == ["frames.pcap", "frames.html", "frames.txt"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert Path(paths[0]).parent.parent == tmp_path / "lab-artifacts"
    assert Path(paths[0]).read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"  # pcap magic
    assert "<== offending" in Path(paths[2]).read_text()
    assert attached(out["test_ok"]) == []


@pytest.mark.parametrize("logging", ["system-out", "all"])
def test_attachments_join_the_captured_output_when_junit_logs_it(tmp_path, logging):
    out = run(tmp_path, "-o", f"junit_logging={logging}", "--lab-artifacts", "files")
    assert len(attached(out["test_leak"])) == 3
    assert "fine" in out["test_ok"] and attached(out["test_ok"]) == []


def test_paths_are_relative_to_the_gitlab_project(tmp_path):
    out = run(tmp_path, "--lab-artifacts", "files", env={"CI_PROJECT_DIR": str(tmp_path)})
    paths = attached(out["test_leak"])
    assert paths and all(p.startswith("files/test_inner.py_test_leak/") for p in paths)
