"""Clear errors for an unusable host: no root privilege, a missing qemu-img. One message,
the remedy, nothing left behind."""

import os
import subprocess
import sys

import pytest

from labfixtures.core import netns
from labfixtures.errors import HostResourceError

pytestmark = pytest.mark.root


# The venv's interpreter may live under /root (pyenv), out of reach of a real unprivileged
# user, so "not root" is simulated by making os.geteuid() answer 1000: the code paths and
# messages are the ones a user without privileges meets.
NOT_ROOT = "import os\nos.geteuid = lambda: 1000\n"


def run_py(code: str, cwd: str = "/") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return subprocess.run([sys.executable, "-c", NOT_ROOT + code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_labctl_without_root_says_so():
    cp = run_py("import sys\nfrom labfixtures.cli.main import main\nsys.exit(main(['clean']))")
    assert cp.returncode == 2
    assert cp.stderr == ("labctl: this command needs root privileges\n"
                         "  remedy: run it with sudo\n")
    doctor = run_py("import sys\nfrom labfixtures.cli.main import main\nsys.exit(main(['doctor']))")
    assert doctor.returncode == 1
    assert "[FAIL] privileges" in doctor.stdout and "remedy: run as root" in doctor.stdout
    assert "No lab can run here" in doctor.stdout


def test_lab_tests_without_root_skip_with_the_reason(tmp_path):
    (tmp_path / "conftest.py").write_text(NOT_ROOT)
    (tmp_path / "test_x.py").write_text("def test_x(lab):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env["LABFIXTURES_RUN_ID"] = "f00f00"
    cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                         str(tmp_path / "test_x.py")], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=120)
    assert "1 skipped" in cp.stdout, cp.stdout + cp.stderr
    assert "labfixtures needs root to build a lab (run under sudo)" in cp.stdout
    assert [n for n in netns.list_names() if "f00f00" in n] == []


def test_library_without_root_raises_one_clear_error():
    code = ("from labfixtures.lab.lab import Lab\n"
            "from labfixtures.errors import LabError\n"
            "try:\n    Lab.open('lf-noroot')\n"
            "except LabError as e:\n    print(e.problem); print(e.remedy)\n")
    cp = run_py(code)
    assert cp.stdout.splitlines() == [
        "labfixtures needs root privileges to build a lab",
        "run as root: `sudo .venv/bin/pytest ...` or `sudo labctl ...`"], cp.stderr
    assert not netns.exists("lf-noroot")


def test_missing_qemu_img_is_reported(monkeypatch, tmp_path):
    from labfixtures.qemu import images

    (tmp_path / "base.qcow2").write_bytes(b"")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HostResourceError) as e:
        images.create_overlay(tmp_path / "base.qcow2", tmp_path / "overlay.qcow2")
    assert (e.value.kind, e.value.resource) == ("binary", "qemu-img")
    assert "apt-get install qemu-utils" in e.value.remedy
    assert not (tmp_path / "overlay.qcow2").exists()


def test_missing_qemu_is_reported(monkeypatch, tmp_path):
    from labfixtures.qemu import accel

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HostResourceError) as e:
        accel.qemu_binary()
    assert (e.value.kind, e.value.resource) == ("binary", "qemu-system-x86_64")
    assert "apt-get install qemu-system-x86" in e.value.remedy
