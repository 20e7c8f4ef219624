"""What a failed lab test leaves for people to look at: pytest-html extras and files.

With pytest-html active (`--html report.html --self-contained-html`):

- the Environment table gets the run's versions (host kernel, QEMU, Open vSwitch, the
  accelerator and why, the guest images), from `regress.versions`;
- a failed test with a lab gets, in its extras row: the lab drawn as it was at the moment
  of failure (inline SVG: the VLAN of every port read back from Open vSwitch), each VM's
  screen (QMP screendump, for profiles with a display), the frames of a failed scapy
  check (a downloadable `.pcap` and a decoded table with the offending frame marked), and
  the lab's state, OVS warnings, QEMU command lines and serial consoles as text links
  (they are in the test's log too). Passing tests keep pytest-html's one collapsed line.

With `--lab-artifacts DIR` (or `--junitxml`, then DIR defaults to `lab-artifacts` next to
the XML file), the same evidence is written as files in DIR/<test id>/, and each file is
named in the test's JUnit `system-out` as GitLab's `[[ATTACHMENT|/abs/path]]`.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Generator
from html import escape
from pathlib import Path
from typing import Any

import pytest
from _pytest.junitxml import xml_key

from labfixtures.lab.lab import Lab
from labfixtures.pytest_plugin import report
from labfixtures.pytest_plugin.regress import run_versions
from labfixtures.pytest_plugin.stash import LAB_HOST, TEST_LAB
from labfixtures.regress import versions
from labfixtures.report import artifacts, drawing, frames
from labfixtures.report.artifacts import Artifact

ATTACHMENTS = "lab_attachments"  # the report attribute listing the files (xdist-safe)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("labfixtures", "network labs (labfixtures)")
    group.addoption("--lab-artifacts", metavar="DIR", default=None,
                    help="write what a failed lab test leaves (the lab drawn, VM screens, "
                         "frames as .pcap, logs) into DIR/<test id>/ and name each file in "
                         "the JUnit system-out as [[ATTACHMENT|path]] (GitLab); default "
                         "with --junitxml: lab-artifacts next to the XML file")


def html_active(config: pytest.Config) -> bool:
    return bool(config.getoption("htmlpath", None)) and config.pluginmanager.hasplugin("html")


def artifact_dir(config: pytest.Config) -> Path | None:
    given = config.getoption("--lab-artifacts")
    if given:
        return Path(given).absolute()
    xmlpath = config.getoption("xmlpath", None)
    return Path(xmlpath).absolute().parent / "lab-artifacts" if xmlpath else None


# -- the environment ---------------------------------------------------------------------

def environment(v: versions.Versions) -> dict[str, str]:
    """The Environment table's rows: what the run runs on."""
    rows = {"Lab host kernel": v.host_kernel, "QEMU": v.qemu.describe(),
            "Open vSwitch": f"{v.openvswitch} ({v.openvswitch_package or 'no package'})",
            "QEMU accelerator": f"{v.accelerator} ({v.accelerator_reason})",
            "labfixtures": v.labfixtures}
    for name, img in sorted(v.images.items()):
        rows[f"Guest image {name}"] = img.describe().split(": ", 1)[-1]
    return rows


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if not html_active(config) or hasattr(config, "workerinput"):
        return
    # pytest-metadata comes with pytest-html, which is an optional dependency
    from pytest_metadata.plugin import metadata_key

    try:
        v = run_versions(config)
        if not v.images:
            v = versions.Versions(**{**v.__dict__, "images": versions.image_versions()})
        config.stash[metadata_key].update(environment(v))
    except Exception as e:  # noqa: BLE001 - the report must never break a run
        config.stash[metadata_key]["labfixtures"] = f"versions unknown ({e})"


# -- a failed test's evidence --------------------------------------------------------------

def _text_name(title: str) -> str:
    title = re.sub(r"^labfixtures: ", "", title)
    title = re.sub(r" \(.*\)$", "", title)
    return artifacts.file_name(re.sub(r"[:, ]+", "-", title).lower()) + ".txt"


def evidence(lab: Lab | None, exc: BaseException | None, files: bool = False
             ) -> list[Artifact]:
    """Everything a failed test leaves: drawing, screens, frames, texts (none may fail)."""
    found: list[Artifact] = []
    if lab is not None:
        for part in ("drawing", "screens", "texts"):
            try:
                found += _part(lab, part, files, frames.highlighted(exc))
            except Exception as e:  # noqa: BLE001 - a report must never hide the failure
                found.append(Artifact(f"report-error-{part}.txt",
                                      f"labfixtures: could not collect the {part}", "text",
                                      str(e).encode()))
    found += artifacts.frame_artifacts(frames.of(exc))
    return found


def _part(lab: Lab, part: str, files: bool, highlight: set[str]) -> list[Artifact]:
    if part == "drawing":
        return artifacts.lab_drawing(lab, png=files, highlight=highlight)
    if part == "screens":
        return artifacts.screens(lab)
    return [Artifact(_text_name(t), t, "text", s.encode())
            for t, s in report.failure_sections(lab)]


def html_extras(arts: list[Artifact]) -> list[dict[str, Any]]:
    """pytest-html extras for ARTS: SVG inline, PNG images, pcap as a download link."""
    from pytest_html import extras  # optional dependency: only when pytest-html is active

    out = []
    for a in arts:
        if a.kind == "svg":
            out.append(extras.html(f'<div class="lf-drawing"><p><b>{escape(a.title)}</b></p>'
                                   f"{drawing.svg_element(a.data)}</div>"))
        elif a.kind == "png":
            out.append(extras.png(base64.b64encode(a.data).decode(), name=a.title))
        elif a.kind == "pcap":
            b64 = base64.b64encode(a.data).decode()
            out.append(extras.html(
                f'<p><a class="lf-pcap" download="{a.name}" '
                f'href="data:application/vnd.tcpdump.pcap;base64,{b64}">'
                f"download {a.name}</a>: {escape(a.title)}</p>"))
        elif a.kind == "html":
            out.append(extras.html(f"<p><b>{escape(a.title)}</b></p>{a.data.decode()}"))
        elif a.kind == "text" and not a.name.startswith("frames"):
            out.append(extras.text(a.data.decode(errors="replace"), name=a.title))
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    if not rep.failed or rep.when == "teardown":
        return
    config = item.config
    use_html, folder = html_active(config), artifact_dir(config)
    if not use_html and folder is None:
        return
    lab = item.stash.get(TEST_LAB, None)
    if lab is None and "lab_host" in getattr(item, "fixturenames", ()):
        lab = config.stash.get(LAB_HOST, None)
    exc = call.excinfo.value if call.excinfo is not None else None
    if lab is None and not frames.of(exc):
        return
    arts = evidence(lab, exc, files=folder is not None)
    if use_html:
        rep.extras = getattr(rep, "extras", []) + html_extras(arts)  # type: ignore[attr-defined]
    if folder is not None:
        where = folder / artifacts.file_name(item.nodeid)
        if where.is_dir():  # this test's files of an earlier run
            shutil.rmtree(where)
        paths = [gitlab_path(p) for p in artifacts.save(arts, where)]
        setattr(rep, ATTACHMENTS, paths)
        if _junit_logs_stdout(config):  # written from the teardown report's sections
            item.add_report_section(rep.when, "stdout", attachment_lines(paths) + "\n")


def gitlab_path(path: Path) -> str:
    """PATH as an attachment names it: absolute (Jenkins' convention), or relative to
    $CI_PROJECT_DIR when it is under it (GitLab links a job artifact by that path)."""
    project = os.environ.get("CI_PROJECT_DIR")
    if project and path.is_relative_to(Path(project).absolute()):
        return str(path.relative_to(Path(project).absolute()))
    return str(path)


def attachment_lines(paths: list[str]) -> str:
    """GitLab's JUnit attachments: one `[[ATTACHMENT|path]]` line per file."""
    return "\n".join(f"[[ATTACHMENT|{p}]]" for p in paths)


class JunitAttachments:
    """Names a failed test's files in its JUnit `system-out` (registered on the process
    that writes the XML: the controller under xdist, which gets the paths in the report)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        paths = getattr(report, ATTACHMENTS, None)
        xml = self.config.stash.get(xml_key, None)
        if not paths or xml is None or _junit_logs_stdout(self.config):
            return
        node = ET.Element("system-out")
        node.text = attachment_lines(paths)
        xml.node_reporter(report).append(node)


def _junit_logs_stdout(config: pytest.Config) -> bool:
    """Whether junit_logging already writes the captured stdout to system-out (then the
    attachment lines go there, as a section of the report)."""
    return str(config.getini("junit_logging")) in ("system-out", "out-err", "all")


PLUGIN_NAME = "labfixtures-junit-attachments"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(JunitAttachments(config), PLUGIN_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if plugin is not None:
        config.pluginmanager.unregister(plugin)
