"""labctl's command line (no lab needed): the command groups, ssh's one-line joining
documented, exec's argv quoting, attach targets as --lab-attach takes them."""

import shlex

import pytest

from labfixtures.cli import labs, main


def help_of(*argv: str, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main.main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_every_command_group_is_listed(capsys):
    out = help_of(capsys=capsys)
    for command in ("doctor", "image", "up", "status", "ssh", "exec", "down", "checkpoint",
                    "clean"):
        assert f"    {command}" in out


def test_ssh_help_says_the_command_is_one_shell_line(capsys):
    out = help_of("ssh", capsys=capsys)
    assert "joined with spaces into ONE line" in out and "labctl exec" in out


def test_exec_help_shows_the_redirection_example(capsys):
    out = help_of("exec", capsys=capsys)
    assert "sh -c 'echo x > /etc/motd'" in out and "shlex.quote" in out


def test_only_the_first_double_dash_is_labctls():
    assert labs._command(["--", "grep", "--", "-x", "f"]) == ["grep", "--", "-x", "f"]
    assert labs._command(["ip", "route"]) == ["ip", "route"]


def test_exec_quotes_each_argument_for_the_guest_shell():
    argv = ["sh", "-c", "echo x > /etc/motd"]
    assert shlex.split(shlex.join(argv)) == argv


def test_attach_targets_bracket_ipv6():
    assert labs._target("fe80::1%sw0-vlan2", 22, "root") == "root@[fe80::1%sw0-vlan2]"
    assert labs._target("127.0.0.1", 2202, "etu") == "etu@127.0.0.1:2202"
