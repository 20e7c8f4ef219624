"""doctor's verdict and labctl's help (pure logic)."""

import pytest

from labfixtures.cli import main as cli
from labfixtures.lab import doctor
from labfixtures.lab.doctor import FAIL, OK, WARN, Check


def test_verdict_fails_only_on_fail():
    assert doctor.verdict([Check("a", OK, ""), Check("b", WARN, "TCG")])
    assert not doctor.verdict([Check("a", OK, ""), Check("ovs", FAIL, "missing", "apt")])


def test_render_names_the_remedy():
    text = doctor.render([Check("Open vSwitch", FAIL, "missing: ovs-vswitchd",
                                "apt-get install openvswitch-switch")])
    assert "remedy: apt-get install openvswitch-switch" in text
    assert "No lab can run here" in text


def test_json_shape():
    data = doctor.as_json([Check("kernel", OK, "Linux")])
    assert data == {"can_run": True, "checks": [
        {"name": "kernel", "status": "ok", "found": "Linux", "remedy": ""}]}


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("doctor", "clean", "status"):
        assert command in out


def test_group_check_reports_present_and_missing_with_the_remedy():
    present = doctor.check_group("root")
    assert present.status == OK and "gid 0" in present.found
    missing = doctor.check_group("lf-no-such-group")
    assert missing.status == WARN
    assert "groupadd --system lf-no-such-group" in missing.remedy


def test_doctor_lists_the_kvm_group():
    assert any(c.name == "group kvm" for c in doctor.run_checks())
