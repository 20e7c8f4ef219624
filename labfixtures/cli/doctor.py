"""`labctl doctor`: can a lab run here, and how."""

from __future__ import annotations

import argparse
import json

from labfixtures.lab import doctor


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = doctor.run_checks()
    if args.json:
        print(json.dumps(doctor.as_json(checks), indent=2))
    else:
        print(doctor.render(checks))
    return 0 if doctor.verdict(checks) else 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "doctor", help="say whether and how a lab can run on this host",
        description="Check privileges, /dev/net/tun, network namespaces, Open vSwitch and "
                    "its datapath, QEMU and KVM (CPU flags and a probe VM), the kvm group "
                    "and the versions. Each check says what it found and, when it fails, "
                    "the remedy. Exits 1 only if no lab can run here.")
    d.add_argument("--json", action="store_true",
                   help="print the checks as JSON ({can_run, checks: [...]})")
    d.set_defaults(func=cmd_doctor)
