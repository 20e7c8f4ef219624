"""`labctl clean`: remove what dead runs left behind."""

from __future__ import annotations

import argparse

from labfixtures.cli.common import need_root
from labfixtures.lab.labhost import reap


def cmd_clean(args: argparse.Namespace) -> int:
    need_root()
    removed = reap(include_persistent=args.all)
    for line in removed:
        print(f"removed {line}")
    if not removed:
        print("nothing to clean")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "clean", help="remove what dead runs left (prints what it removed)",
        description="Remove labs whose owner process is dead (a pytest run killed with "
                    "SIGKILL, a power cut): their processes, found by network namespace, "
                    "their namespaces and their run directories. Labs of a running pytest "
                    "and labs started with `labctl up` are left alone.")
    c.add_argument("--all", action="store_true",
                   help="also remove the persistent labs started with `labctl up`")
    c.set_defaults(func=cmd_clean)
