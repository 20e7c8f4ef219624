"""labctl: the command line over the labfixtures library."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import LabError

EPILOG = """examples:
  sudo labctl doctor            can a lab run here? KVM or TCG, OVS datapath, versions
  sudo labctl clean             remove what dead runs left behind (namespaces, daemons)
  sudo labctl status            list the labs that exist now
"""


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import doctor

    checks = doctor.run_checks()
    if args.json:
        print(json.dumps(doctor.as_json(checks), indent=2))
    else:
        print(doctor.render(checks))
    return 0 if doctor.verdict(checks) else 1


def cmd_clean(args: argparse.Namespace) -> int:
    from .labhost import reap

    _need_root()
    removed = reap(include_persistent=args.all)
    for line in removed:
        print(f"removed {line}")
    if not removed:
        print("nothing to clean")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from . import netns
    from .labhost import lab_namespaces, records

    recs = records()
    if not recs:
        print("no lab exists")
        return 0
    for r in recs:
        owner = ("persistent" if r.persistent else
                 f"pid {r.pid} {'alive' if r.owner_alive() else 'DEAD (run labctl clean)'}")
        spaces = lab_namespaces(r.labid)
        procs = sum(len(netns.pids(n)) for n in spaces)
        print(f"{r.labid}: {owner}; {len(spaces)} namespace(s), {procs} process(es)"
              + (f"; from {r.source}" if r.source else ""))
    return 0


def _need_root() -> None:
    import os

    if os.geteuid() != 0:
        raise LabError("this command needs root privileges", "run it with sudo")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labctl",
        description="Build, inspect and clean labfixtures network labs (namespaces, "
                    "Open vSwitch, QEMU).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("doctor", help="say whether and how a lab can run on this host",
                       description="Check privileges, /dev/net/tun, namespaces, Open "
                                   "vSwitch and its datapath, QEMU and KVM (CPU flags and "
                                   "a probe). Exits 1 only if no lab can run here.")
    d.add_argument("--json", action="store_true", help="print the checks as JSON")
    d.set_defaults(func=cmd_doctor)

    c = sub.add_parser("clean", help="remove what dead runs left (prints what it removed)",
                       description="Remove labs whose owner process is dead: their "
                                   "processes, namespaces and run directories.")
    c.add_argument("--all", action="store_true",
                   help="also remove persistent labs started with `labctl up`")
    c.set_defaults(func=cmd_clean)

    s = sub.add_parser("status", help="list existing labs and their owners")
    s.set_defaults(func=cmd_status)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LabError as e:
        print(f"labctl: {e.problem}", file=sys.stderr)
        if e.remedy:
            print(f"  remedy: {e.remedy}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
