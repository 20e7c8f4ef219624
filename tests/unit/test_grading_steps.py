"""The step recorder (labfixtures.grading.steps): steps run in order, each recorded with its
title, outcome and evidence; after the first failure the rest are recorded as not reached;
`require` gives a passed step's output or fails naming the step."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from labfixtures.errors import LabError
from labfixtures.grading.steps import NOT_REACHED, StepFailed, StepRecorder


@dataclass
class _Result:
    exit_status: int
    stdout: str
    stderr: str = ""


class FakeVM:
    """Answers commands from a script: {command: (status, stdout, stderr)}."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.ran: list[tuple[str, float]] = []

    def run(self, cmd: str, timeout: float = 60.0) -> _Result:
        self.ran.append((cmd, timeout))
        if cmd not in self.answers:
            raise ConnectionError("SSH session closed")
        return _Result(*self.answers[cmd])


def test_steps_pass_in_order_with_their_evidence():
    vm = FakeVM({"LC_ALL=C; pvcreate /dev/vda3": (0, "Physical volume created\n", "")})
    steps = StepRecorder("§7")
    r = steps.command("pvcreate", vm, "pvcreate /dev/vda3", prefix="LC_ALL=C; ",
                      timeout=30)
    assert r.stdout == "Physical volume created\n"
    assert vm.ran == [("LC_ALL=C; pvcreate /dev/vda3", 30)]
    assert steps.call("resize", "qemu-img resize disk +2G", lambda: 42) == 42
    assert [s.name for s in steps] == ["pvcreate", "resize"]
    assert steps["pvcreate"].title == "pvcreate /dev/vda3"  # the prefix is not shown
    assert steps["resize"].value == 42 and steps["resize"].stdout == "42"
    assert steps.require("pvcreate") == "Physical volume created\n"
    assert steps.broken is None
    assert steps.summary() == ("§7:\n  ok   pvcreate: pvcreate /dev/vda3\n"
                               "  ok   resize: qemu-img resize disk +2G")


def test_a_failed_command_stops_the_steps_after_it():
    vm = FakeVM({"mkpart": (1, "", "Error: unrecognised disk label"), "pvcreate": (0, "", "")})
    steps = StepRecorder()
    steps.command("mkpart", vm, "mkpart")
    assert steps.command("pvcreate", vm, "pvcreate") is None
    assert steps.call("mkfs", "mkfs.ext4", lambda: pytest.fail("must not run")) is None
    assert [c for c, _ in vm.ran] == ["mkpart"]
    assert steps.broken == "mkpart"
    assert steps["pvcreate"].outcome == NOT_REACHED
    with pytest.raises(StepFailed) as e:
        steps.require("mkpart")
    assert str(e.value) == ("step 'mkpart' (`mkpart`) failed:\nexit status 1\n"
                            "stderr: Error: unrecognised disk label")
    with pytest.raises(StepFailed, match=r"step 'pvcreate' \(`pvcreate`\): not reached: "
                                         "step 'mkpart' failed before it"):
        steps.require("pvcreate")
    assert "  ---- mkfs: mkfs.ext4" in steps.summary()
    assert "first failure, 'mkpart':\n    exit status 1" in steps.summary()


def test_exceptions_are_recorded_as_failures():
    steps = StepRecorder()
    steps.command("ssh", FakeVM({}), "uname -a")
    assert steps["ssh"].reason == "ConnectionError: SSH session closed"

    def boom() -> None:
        raise LabError("the guest did not power off", "check /etc/fstab")

    other = StepRecorder()
    other.call("poweroff", "systemctl poweroff", boom)
    assert other["poweroff"].reason == ("LabError: the guest did not power off\n"
                                        "  remedy: check /etc/fstab")
    assert other.broken == "poweroff"


def test_a_precondition_recorded_as_a_failure():
    steps = StepRecorder()
    steps.fail("mkpart", "parted mkpart primary ...", "no Free Space line")
    assert steps.broken == "mkpart"
    with pytest.raises(StepFailed, match="failed:\nno Free Space line"):
        steps.require("mkpart")


def test_unknown_and_duplicate_steps():
    steps = StepRecorder()
    steps.call("a", "first", lambda: None)
    with pytest.raises(StepFailed, match=r"step 'b' never ran .*recorded steps: a\)"):
        steps.require("b")
    with pytest.raises(LabError, match="step 'a' is recorded twice"):
        steps.call("a", "again", lambda: None)
    with pytest.raises(TypeError, match="a step needs a name"):
        steps.call("", "nameless", lambda: None)
    assert "a" in steps and "b" not in steps


def test_the_record_as_plain_data():
    steps = StepRecorder("lab 7")
    steps.command("df", FakeVM({"df -h": (0, "/dev/vda1 8G\n", "")}), "df -h")
    data = json.loads(json.dumps(steps.as_dict()))
    assert data["title"] == "lab 7" and data["broken"] is None
    (df,) = data["steps"]
    assert (df["name"], df["outcome"], df["exit_status"], df["stdout"]) == \
        ("df", "passed", 0, "/dev/vda1 8G\n")
