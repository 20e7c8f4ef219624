"""The pytest plugin's pure parts: OVS log excerpts for failure reports, marker checks,
and options refused at configure time (one usage error, before any test runs)."""

import os
import subprocess
import sys

import pytest

from labfixtures.pytest_plugin.hooks import check_checkpoint_marker
from labfixtures.pytest_plugin.report import ovs_log_excerpt, ovs_problems

LOG = """\
2026-11-30T12:59:26.216Z|00001|vlog|INFO|opened log file /run/labfixtures/x/ovs-vswitchd.log
2026-11-30T12:59:26.224Z|00006|dpif_netlink|INFO|Generic Netlink family 'ovs_datapath' does \
not exist. The Open vSwitch kernel module is probably not loaded.
2026-11-30T12:59:26.342Z|00045|ofproto_dpif_xlate|WARN|/proc/sys/net/core/netdev_max_backlog: \
open failed (No such file or directory)
2026-11-30T12:59:26.350Z|00046|netdev_linux|WARN|tap9: could not set flags
 a continuation line of the warning
2026-11-30T12:59:26.351Z|00047|bridge|ERR|bridge sw0: could not add port
2026-11-30T12:59:26.352Z|00048|bridge|INFO|bridge sw0: added interface h1 on port 2
 a continuation line of an INFO line
"""


def test_ovs_excerpt_keeps_warnings_and_errors_and_explains_the_harmless():
    text = ovs_log_excerpt(LOG)
    assert "|INFO|" not in text and "continuation line of an INFO" not in text
    assert "tap9: could not set flags\n a continuation line of the warning" in text
    assert "|ERR|bridge sw0: could not add port" in text
    assert "netdev_max_backlog: open failed" not in text
    assert text.count("note:") == 1 and "namespace does not have: harmless" in text


def test_ovs_excerpt_of_a_quiet_log_says_so():
    assert ovs_log_excerpt(LOG.splitlines()[0]).startswith("no warnings or errors")


def test_harmless_errors_do_not_fail_a_test():
    assert ovs_problems(["ovs-vswitchd.log: ...|ERR|error receiving data from h1: x",
                         "ovs-vswitchd.log: ...|ERR|real trouble"]) == [
        "ovs-vswitchd.log: ...|ERR|real trouble"]


@pytest.mark.parametrize("mark, wrong", [
    (pytest.mark.checkpoint(), "exactly one checkpoint tag"),
    (pytest.mark.checkpoint(3), "non-empty string"),
    (pytest.mark.checkpoint("a", "b"), "one tag, not 2"),
    (pytest.mark.checkpoint("a", vm=3), "vm= must be"),
    (pytest.mark.checkpoint("a", vms=["vm0"]), "unknown argument(s) vms"),
])
def test_malformed_checkpoint_markers(mark, wrong):
    assert wrong in check_checkpoint_marker(mark.mark)


@pytest.mark.parametrize("mark", [pytest.mark.checkpoint("step1"),
                                  pytest.mark.checkpoint(tag="step1", vm=["vm0", "vm1"])])
def test_good_checkpoint_markers(mark):
    assert check_checkpoint_marker(mark.mark) is None


def run_pytest(tmp_path, test: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_it.py").write_text(test)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    env.pop("LABFIXTURES_ATTACH_PASSWORD", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:xdist", "--lab-no-reap", str(tmp_path / "test_it.py"),
                           *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_malformed_marker_is_a_usage_error(tmp_path):
    cp = run_pytest(tmp_path, "import pytest\n@pytest.mark.checkpoint()\n"
                              "def test_a():\n    pass\n")
    assert cp.returncode == 4, cp.stdout + cp.stderr
    assert "@pytest.mark.checkpoint(): it needs exactly one checkpoint tag" in cp.stderr
    assert 'remedy: write @pytest.mark.checkpoint("TAG")' in cp.stderr


def test_a_malformed_attach_target_is_one_usage_error(tmp_path):
    cp = run_pytest(tmp_path, "def test_a(attached):\n    pass\n"
                              "def test_b(attached):\n    pass\n",
                    "--lab-attach", "192.0.2.10")
    assert cp.returncode == 4, cp.stdout + cp.stderr
    assert cp.stderr.count("cannot read the attach target '192.0.2.10'") == 1, cp.stderr
    assert "NAME=[USER@]HOST[:PORT]" in cp.stderr
    assert "test_a" not in cp.stdout + cp.stderr


def test_attach_without_credentials_names_the_key_option_and_the_variable(tmp_path):
    cp = run_pytest(tmp_path, "def test_a(attached):\n    pass\n",
                    "--lab-attach", "vm0=root@192.0.2.10")
    assert cp.returncode == 4, cp.stdout + cp.stderr
    assert "no credentials for root@192.0.2.10" in cp.stderr
    assert "--lab-attach-key PATH" in cp.stderr
    assert "LABFIXTURES_ATTACH_PASSWORD" in cp.stderr


def test_attach_to_a_link_local_address_elsewhere_names_the_netns_option(tmp_path):
    cp = run_pytest(tmp_path, "def test_a(attached):\n    pass\n",
                    "--lab-attach", "vm0=root@[fe80::baad:caff:fefe:2%sw0-vlan2]",
                    "--lab-attach-key", "/etc/hostname")
    assert cp.returncode == 4, cp.stdout + cp.stderr
    assert "interface 'sw0-vlan2'" in cp.stderr
    assert "--lab-attach-netns NS" in cp.stderr and "--lab-attach-lab NAME" in cp.stderr


def test_attach_to_an_unknown_lab_names_labctl(tmp_path):
    cp = run_pytest(tmp_path, "def test_a(attached):\n    pass\n",
                    "--lab-attach-lab", "no-such-lab-here")
    assert cp.returncode == 4, cp.stdout + cp.stderr
    assert "--lab-attach-lab no-such-lab-here: no lab named 'lf-no-such-lab-here'" in cp.stderr
    assert "labctl up LABFILE" in cp.stderr and "labctl status" in cp.stderr


NOT_ROOT = "import os\nos.geteuid = lambda: 1000\n"


def test_the_root_marker_skips_with_the_reason_when_not_root(tmp_path):
    (tmp_path / "conftest.py").write_text(NOT_ROOT)
    cp = run_pytest(tmp_path, "import pytest\n@pytest.mark.root\ndef test_a():\n    pass\n",
                    "-rs")
    assert "1 skipped" in cp.stdout, cp.stdout + cp.stderr
    assert "needs root privileges (marked `root`): run pytest under sudo" in cp.stdout


def test_the_per_test_lab_in_a_module_fixture_gets_advice(tmp_path):
    cp = run_pytest(tmp_path, "import pytest\n@pytest.fixture(scope='module')\n"
                              "def table1(lab):\n    return lab\n"
                              "def test_a(table1):\n    pass\n")
    assert "ScopeMismatch" in cp.stdout, cp.stdout + cp.stderr
    assert "lab_file_module" in cp.stdout and 'lab_host.scope("table1")' in cp.stdout


def test_slow_modules_are_collected_first_longest_first(tmp_path):
    (tmp_path / "test_a.py").write_text("def test_a1():\n    pass\ndef test_a2():\n    pass\n")
    (tmp_path / "test_b.py").write_text("import pytest\npytestmark = pytest.mark.slow(30)\n"
                                        "def test_b1():\n    pass\n")
    (tmp_path / "test_c.py").write_text("import pytest\n@pytest.mark.slow(90)\n"
                                        "def test_c1():\n    pass\ndef test_c2():\n    pass\n")
    cp = run_pytest(tmp_path, "def test_it():\n    pass\n", "--collect-only",
                    str(tmp_path))
    ids = [line for line in cp.stdout.splitlines() if "::" in line]
    assert ids == ["test_c.py::test_c1", "test_c.py::test_c2", "test_b.py::test_b1",
                   "test_a.py::test_a1", "test_a.py::test_a2", "test_it.py::test_it"], cp.stdout


def test_a_slow_marker_without_seconds_is_a_usage_error(tmp_path):
    cp = run_pytest(tmp_path, "import pytest\n@pytest.mark.slow\ndef test_a():\n    pass\n")
    assert cp.returncode == 4, cp.stdout + cp.stderr
    assert "remedy: write @pytest.mark.slow(90)" in cp.stderr


def test_each_xdist_worker_gets_its_share_of_the_cpus(tmp_path):
    """Two workers on this host: each may count on cpu_count // 2 CPUs for its VMs (a debian
    VM's default vCPUs); one set by the user is kept."""
    (tmp_path / "test_it.py").write_text(
        "import os\nfrom pathlib import Path\nfrom labfixtures.guestimages import cpu_share\n"
        "def test_a():\n    Path(os.environ['PYTEST_XDIST_WORKER']).write_text("
        "f\"{os.environ.get('LABFIXTURES_CPUS')} {cpu_share()}\")\n"
        "test_b = test_a\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT", "LABFIXTURES_CPUS"))}
    share = str(max(1, (os.cpu_count() or 1) // 2))
    for extra, want in (({}, share), ({"LABFIXTURES_CPUS": "1"}, "1")):
        for f in tmp_path.glob("gw*"):
            f.unlink()
        cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-n", "2", "--dist", "load", "--lab-no-reap", "test_it.py"],
                            cwd=tmp_path, env={**env, **extra}, capture_output=True,
                            text=True, timeout=120)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        got = {f.name: f.read_text() for f in tmp_path.glob("gw*")}
        assert got and set(got.values()) == {f"{want} {want}"}, got
