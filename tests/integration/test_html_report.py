"""The report people look at: a pytest run (real labs, a real VLAN leak, a real `pc` VM)
with --html --self-contained-html --junitxml --lab-artifacts, then its HTML read as data,
its JUnit attachments checked, and the page opened in headless Chromium."""

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from scapy.utils import rdpcap

from labfixtures.report import png

pytestmark = [pytest.mark.root, pytest.mark.vm]
ROOT = Path(__file__).parents[2]
SWITCH_FILL = (0xDD, 0xE8, 0xF5)  # the fill of a switch in the drawing (report.drawing)

INNER = '''
from assertions import assert_vlan_isolation


def test_leak(lab, switch, veth_host):
    switch.svi(2, "203.0.113.129/26")
    a = veth_host("a", switch, tag=2, addresses=["203.0.113.130/26"])
    b = veth_host("b", switch, tag=2, addresses=["203.0.113.132/26"])
    c = veth_host("c", switch, tag=3, addresses=["203.0.113.131/26"])
    lab.ovs.vsctl("set", "port", "c", "tag=2")  # the student's mistake: a wrong tag
    assert_vlan_isolation(a, same_vlan=[b], other_vlans=[c])


def test_vm_screen(lab, switch):
    switch.svi(2, "203.0.113.129/26")
    lab.tap(2, group="kvm")
    switch.add_port("tap2", tag=2)
    vm = lab.vm("vm0", tap=2, addresses=["203.0.113.130/26"], profile="pc",
                extra_args=["-vga", "std"])
    assert vm.ping("203.0.113.129")
    assert False, "fails on purpose: the report shows vm0's screen"


def test_passes():
    assert 1 + 1 == 2
'''


class Run:
    def __init__(self, folder: Path, proc: subprocess.CompletedProcess) -> None:
        self.folder = folder
        self.proc = proc
        self.html = folder / "report.html"
        text = self.html.read_text()
        blob = re.search(r'data-jsonblob="([^"]*)"', text)
        assert blob, "pytest-html's data blob is missing"
        self.data = json.loads(html.unescape(blob.group(1)))
        self.tests = {tid.split("::")[-1]: runs[0] for tid, runs in self.data["tests"].items()}
        self.junit = ET.parse(folder / "junit.xml").getroot()

    def extras(self, test: str, fmt: str) -> list[dict]:
        return [e for e in self.tests[test]["extras"] if e["format_type"] == fmt]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    folder = tmp_path_factory.mktemp("report")
    (folder / "test_inner.py").write_text(INNER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_inner.py",
         "--html", "report.html", "--self-contained-html", "--junitxml", "junit.xml",
         "--lab-artifacts", "artifacts"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert "2 failed, 1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Run(folder, proc)


def test_environment_names_what_the_run_runs_on(run):
    env = run.data["environment"]
    assert env["QEMU accelerator"].split()[0] in ("tcg", "kvm")
    assert env["QEMU"].startswith("QEMU ") and env["Lab host kernel"]
    assert "Open vSwitch" in env and "kernel" in env["Guest image tiny"]


def test_failed_vlan_check_shows_the_lab_as_it_was_and_its_frames(run):
    parts = [e["content"] for e in run.extras("test_leak", "html")]
    drawing = next(p for p in parts if 'class="lf-drawing"' in p)
    svg = drawing[drawing.index("<svg"):drawing.rindex("</svg>") + 6]
    ET.fromstring(svg)  # well-formed inline SVG
    # c was put in VLAN 2 by mistake: it is drawn where it is, not where it was meant
    edge = re.search(r"<title>sw:sw0&#45;&#45;port:c</title>.*?<text[^>]*>([^<]*)</text>",
                     svg, re.S)
    assert edge and edge.group(1) == "access VLAN 2"
    # where the frame leaked is drawn in red, and said so above the drawing
    node = svg[svg.index("<title>port:c</title>"):]
    assert 'stroke="red"' in node[:node.index("</g>")]
    assert "in red: c" in drawing
    assert "203.0.113.129/26" in svg
    link = next(p for p in parts if "lf-pcap" in p)
    data = base64.b64decode(re.search(r"base64,([^\"]+)", link).group(1))
    frames = rdpcap(io.BytesIO(data))
    assert len(frames) >= 3 and all(b"labfixtures-vlan-probe-" in bytes(f) for f in frames)
    table = next(p for p in parts if "lf-frames" in p)
    offending = re.findall(r'<tr class="lf-offending".*?</tr>', table)
    assert len(offending) == 1 and "heard on c (eth0)" in offending[0]


def test_vm_screen_is_a_png_that_shows_something(run):
    [screen] = run.extras("test_vm_screen", "image")
    assert screen["content"].startswith("data:image/png;base64,")
    image = png.decode(base64.b64decode(screen["content"].split(",", 1)[1]))
    assert (image.width, image.height) >= (640, 400)
    colours = image.colours()
    assert len(colours) >= 2  # not one flat colour: SeaBIOS's text on the VGA screen
    assert sum(n for c, n in colours.items() if c != (0, 0, 0)) > 200
    texts = [e["name"] for e in run.tests["test_vm_screen"]["extras"]
             if e["format_type"] == "text"]
    assert any("QEMU command line" in t for t in texts)
    assert any("serial console" in t for t in texts)


def test_passing_test_keeps_a_compact_line(run):
    passed = run.tests["test_passes"]
    assert passed["result"] == "Passed" and passed["extras"] == []
    assert "passed" in [r.lower() for r in run.data["renderCollapsed"]]  # one line


def test_junit_names_the_same_files_as_gitlab_attachments(run):
    cases = {c.get("name"): c for c in run.junit.iter("testcase")}
    out = "\n".join(s.text or "" for s in cases["test_leak"].iter("system-out"))
    paths = re.findall(r"^\[\[ATTACHMENT\|(/[^\]]+)\]\]$", out, re.M)
    names = {Path(p).name for p in paths}
    assert {"lab.svg", "frames.pcap", "lab-state.txt"} <= names
    assert all(Path(p).is_file() and Path(p).is_relative_to(run.folder / "artifacts")
               for p in paths)
    screen = "\n".join(s.text or "" for s in cases["test_vm_screen"].iter("system-out"))
    assert "vm0-screen.png]]" in screen and "vm-vm0-qemu-command-line.txt]]" in screen
    assert not list(cases["test_passes"].iter("system-out"))


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("headless Chromium is missing: apt-get install chromium (ci/setup does)")
    argv = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
            *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, 9)  # its helpers (zygote, crashpad) too
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_report_renders_in_a_real_browser_with_its_lab_drawing(run, tmp_path):
    url = run.html.absolute().as_uri()
    shot = tmp_path / "report.png"
    cp = chromium(f"--screenshot={shot}", "--window-size=1280,2000", url,
                  profile=tmp_path / "profile")
    assert shot.is_file(), cp.stderr[-2000:]
    image = png.decode(shot.read_bytes())
    colours = image.colours(step=2)
    assert colours.most_common(1)[0][1] < 0.95 * sum(colours.values())  # not blank
    # the drawing was rendered: its switch boxes' fill, with dark text around them
    fill = [(x, y) for y in range(0, image.height, 2) for x in range(0, image.width, 2)
            if image.pixel(x, y) == SWITCH_FILL]
    assert len(fill) > 300, "no lab drawing visible in the screenshot"
    x0, y0 = min(x for x, _ in fill), min(y for _, y in fill)
    x1, y1 = max(x for x, _ in fill), max(y for _, y in fill)
    box = image.colours((x0, y0, x1 + 1, y1 + 1))
    assert sum(n for c, n in box.items() if max(c) < 100) > 20  # the switch's name on it
    dom = chromium("--dump-dom", url, profile=tmp_path / "profile2").stdout
    drawings = re.findall(r'<div class="lf-drawing">.*?</svg>', dom, re.S)
    assert len(drawings) == 2 and all("sw0-vlan2" in d for d in drawings)
    assert re.search(r'<img [^>]*src="data:image/png;base64,', dom)  # vm0's screen
    # no broken image: every picture is in the page (empty ones are pytest-html's hidden
    # media viewers of tests without pictures)
    assert not re.search(r'<img [^>]*src="(?!data:|")', dom)
