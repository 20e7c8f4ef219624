"""core.runner.run(), the typed errors it raises, and the launch record of qemu/launch.py."""

from __future__ import annotations

import pytest

from labfixtures.core.runner import CommandResult, run
from labfixtures.errors import (
    CommandError,
    GuestCommandError,
    HostResourceError,
    LabError,
    LabFileError,
)
from labfixtures.guestimages.rootfs import parse_ldd
from labfixtures.qemu.launch import LaunchInfo


def test_a_result_has_the_output_and_testinfra_names():
    r = run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert r == CommandResult(("sh", "-c", "echo out; echo err >&2; exit 3"), 3, "out\n", "err\n")
    assert not r.ok and r.failed and not r.succeeded
    assert r.rc == r.exit_status == 3
    assert r.command == "sh -c 'echo out; echo err >&2; exit 3'"
    assert run(["cat"], input="abc").stdout == "abc"


def test_a_failure_is_a_command_error_with_its_fields():
    with pytest.raises(CommandError) as e:
        run(["sh", "-c", "echo oops >&2; exit 4"], remedy="do this")
    assert (e.value.argv, e.value.returncode, e.value.stderr) == (
        ["sh", "-c", "echo oops >&2; exit 4"], 4, "oops")
    assert e.value.remedy == "do this" and not e.value.timed_out
    with pytest.raises(CommandError) as e:
        run(["sleep", "5"], timeout=0.1)
    assert e.value.timed_out and e.value.returncode == -9


def test_a_missing_program_is_a_host_resource_error():
    with pytest.raises(HostResourceError) as e:
        run(["lf-no-such-program"], missing="apt-get install it")
    assert (e.value.kind, e.value.resource) == ("binary", "lf-no-such-program")
    assert e.value.remedy == "apt-get install it"
    assert isinstance(e.value, LabError)


def test_typed_errors_keep_problem_and_remedy():
    g = GuestCommandError("ls /x", 2, "", "No such file", guest="vm0")
    assert isinstance(g, CommandError)
    assert (g.command, g.exit_status, g.returncode, g.stderr) == ("ls /x", 2, 2, "No such file")
    assert g.problem.startswith("`ls /x` on vm0 exited with 2")
    h = HostResourceError("group", "kvm", "groupadd --system kvm")
    assert str(h) == "group 'kvm' does not exist on this host\n  remedy: groupadd --system kvm"
    one = LabFileError("f.yml", "a", "bad", "fix a")
    two = LabFileError("f.yml", "b", "bad", "fix b")
    both = LabFileError.several([one, two])
    assert both.mistakes == [one, two] and "2 mistakes" in both.problem


def test_ldd_output_is_parsed_once():
    out = ("\tlinux-vdso.so.1 (0x00007ffd)\n"
           "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n"
           "\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n")
    assert parse_ldd(out) == ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]


def test_launch_info_round_trips_through_its_file(tmp_path):
    info = LaunchInfo("vm0", ("qemu-system-x86_64", "-m", "256"), "tcg", "no vmx", "7.2.22",
                      netns="lf-x", pid=42, started_at=1.5)
    info.write(tmp_path)
    assert LaunchInfo.read(tmp_path, "vm0") == info
    assert info.command == ["ip", "netns", "exec", "lf-x", "qemu-system-x86_64", "-m", "256"]
    assert LaunchInfo.read(tmp_path, "vm1") is None
