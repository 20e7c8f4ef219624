"""The plugin's command-line options (`pytest --help`, group "network labs")."""

from __future__ import annotations

import pytest

from labfixtures.net.ovs import DATAPATHS

ATTACH_PASSWORD_VAR = "LABFIXTURES_ATTACH_PASSWORD"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("labfixtures", "network labs (labfixtures)")
    group.addoption("--lab-datapath", choices=DATAPATHS, default="auto",
                    help="Open vSwitch datapath: the kernel one (system), userspace "
                         "(netdev), or auto: system when the openvswitch module is loaded")
    group.addoption("--lab-no-reap", action="store_true",
                    help="do not remove labs left by dead runs at start-up")
    group.addoption("--lab-keep-overlays", metavar="DIR", default=None,
                    help="move VM disk overlays to DIR at teardown instead of deleting "
                         "them (to inspect what a test wrote)")
    group.addoption("--lab-no-checkpoints", action="store_true",
                    help="boot every VM that lab_vm() asks for, instead of booting once "
                         "and restoring an automatic checkpoint for each test")
    group.addoption("--lab-checkpoint-store", default=None, metavar="DIR",
                    help="where checkpoints are kept (default: <cache>/checkpoints)")
    group.addoption("--lab-attach-lab", metavar="NAME", default=None,
                    help="grade the VMs of a lab started with `labctl up` (NAME as in "
                         "`labctl status`, e.g. seed-minimal): its VMs' addresses, key and "
                         "namespace are read from its run directory; tests get them from "
                         "the `attached` fixture (attached['vm0'])")
    group.addoption("--lab-attach", action="append", default=[], metavar="NAME=TARGET",
                    help="grade a VM that labfixtures did not start: NAME=[USER@]HOST[:PORT] "
                         "(IPv6 in brackets: vm0=root@[fe80::baad:caff:fefe:2%%sw0-vlan2]); "
                         "tests get it from the `attached` fixture (attached['vm0']). "
                         "Repeatable. Needs --lab-attach-key or the "
                         f"{ATTACH_PASSWORD_VAR} environment variable")
    group.addoption("--lab-attach-key", metavar="PATH",
                    help="private key for --lab-attach targets (a password can be given in "
                         f"the {ATTACH_PASSWORD_VAR} environment variable instead)")
    group.addoption("--lab-attach-netns", metavar="NS",
                    help="network namespace to reach --lab-attach targets from, e.g. the "
                         "lab's lf-NAME for a link-local fe80::...%%sw0-vlan2 (default: "
                         "where pytest runs)")
