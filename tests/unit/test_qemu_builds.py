"""qemu/builds.py without APT: names, versions, the launcher, the build record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labfixtures.errors import LabError
from labfixtures.qemu import builds


def test_folder_names_have_no_colon_and_bad_versions_are_refused() -> None:
    assert builds.folder_name("1:7.2+dfsg-7+deb12u15") == "1_7.2+dfsg-7+deb12u15"
    for bad in ("", "7.2; rm -rf /", "../x"):
        with pytest.raises(LabError, match="not a Debian package version"):
            builds.folder_name(bad)


def test_source_version_drops_a_binnmu_suffix() -> None:
    assert builds.source_version("1:7.2+dfsg-7+deb12u18+b3") == "1:7.2+dfsg-7+deb12u18"
    assert builds.source_version("1:7.2+dfsg-7+deb12u15") == "1:7.2+dfsg-7+deb12u15"


def test_launcher_runs_the_build_on_its_own_data_and_modules(tmp_path: Path) -> None:
    tree = tmp_path / "work"
    (tree / "usr/share/qemu").mkdir(parents=True)
    (tree / "usr/share/seabios").mkdir(parents=True)
    final = tmp_path / "final"
    text = builds._launcher_text(tree, final)
    assert f'-L "{final}/usr/share/qemu" -L "{final}/usr/share/seabios" "$@"' in text
    assert "ipxe" not in text  # only the folders that exist
    assert f'QEMU_MODULE_DIR="{final}/usr/lib/x86_64-linux-gnu/qemu"' in text
    assert f'exec "{final}/usr/bin/qemu-system-x86_64"' in text


def test_build_record_round_trip_and_lookup(tmp_path: Path) -> None:
    folder = tmp_path / "1_7.2+dfsg-7+deb12u15"
    folder.mkdir()
    b = builds.QemuBuild("1:7.2+dfsg-7+deb12u15", folder, {"qemu-system-x86": "x"}, "7.2.18")
    (folder / builds.BUILD_FILE).write_text(json.dumps(b.to_json()))
    (tmp_path / "half-fetched").mkdir()  # no build.json: not a build
    assert builds.list_builds(tmp_path) == [b]
    assert builds.find_build(tmp_path, "1_7.2+dfsg-7+deb12u15") == b
    assert builds.find_build(tmp_path, "1:7.2+dfsg-7+deb12u15") == b
    assert builds.find_build(tmp_path, "9.9") is None
    assert b.launcher == folder / "bin" / "qemu-system-x86_64"
    assert builds.list_builds(tmp_path / "none") == []
