"""labctl: the command line over the labfixtures library."""

from __future__ import annotations

import argparse
import json
import sys

from labfixtures.errors import LabError

EPILOG = """examples:
  sudo labctl doctor                          can a lab run here? KVM or TCG, OVS, versions
  sudo labctl image build tiny                build (or find cached) the tiny guest image
  sudo labctl up scenarios/labs/seed-minimal.yaml     build the guide's Table 1 lab
  sudo labctl status seed-minimal             its switches, ports, VMs and how to reach them
  sudo labctl ssh seed-minimal vm0 -- ip route        run a command in a VM
  sudo labctl checkpoint save seed-minimal vm0 step1   a "photo" of the VM, for students
  sudo labctl checkpoint restore seed-minimal vm0 step1
  sudo labctl down seed-minimal               tear it down
  sudo labctl clean                           remove what dead runs left behind
"""


def cmd_doctor(args: argparse.Namespace) -> int:
    from labfixtures.lab import doctor

    checks = doctor.run_checks()
    if args.json:
        print(json.dumps(doctor.as_json(checks), indent=2))
    else:
        print(doctor.render(checks))
    return 0 if doctor.verdict(checks) else 1


def cmd_clean(args: argparse.Namespace) -> int:
    from labfixtures.lab.labhost import reap

    _need_root()
    removed = reap(include_persistent=args.all)
    for line in removed:
        print(f"removed {line}")
    if not removed:
        print("nothing to clean")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from labfixtures.core import netns
    from labfixtures.lab.labhost import lab_namespaces, records

    if args.lab:
        from labfixtures.lab.persistent import describe

        print(describe(_labid(args.lab)))
        return 0
    recs = records()
    if not recs:
        print("no lab exists")
        return 0
    for r in recs:
        owner = ("persistent (labctl up)" if r.persistent else
                 f"pid {r.pid} {'alive' if r.owner_alive() else 'DEAD (run labctl clean)'}")
        spaces = lab_namespaces(r.labid)
        procs = sum(len(netns.pids(n)) for n in spaces)
        print(f"{r.labid}: {owner}; {len(spaces)} namespace(s), {procs} process(es)"
              + (f"; from {r.source}" if r.source else ""))
    return 0


def _labid(name: str) -> str:
    return name if name.startswith("lf-") else f"lf-{name}"


def cmd_image_build(args: argparse.Namespace) -> int:
    from labfixtures import guestimages

    _need_root()
    for name in args.names:
        img = guestimages.build(name, progress=print, force=args.force)
        print(f"{name}: {img.path}")
    return 0


def cmd_image_list(args: argparse.Namespace) -> int:
    from labfixtures import guestimages

    for info in guestimages.list_images():
        if info.current is not None:
            state = f"built, {info.current.path}"
        else:
            state = "not built (labctl image build " + info.name + ")"
        print(f"{info.name:<8} {state}")
        print(f"{'':<8} {info.description}")
        for old in info.others:
            print(f"{'':<8} older build (recipe changed): {old.path}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from labfixtures.lab.persistent import up

    _need_root()
    labid = up(args.file, name=args.name, progress=print)
    print(f"lab {labid} is up: `labctl status {labid}`, `labctl down {labid}`")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from labfixtures.lab.persistent import down

    _need_root()
    for line in down(_labid(args.lab)):
        print(f"removed {line}")
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    from labfixtures.lab.persistent import ssh

    _need_root()
    command = [a for a in args.command if a != "--"]
    return ssh(_labid(args.lab), args.vm, command)


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

    s = sub.add_parser("status", help="list existing labs, or describe one",
                       description="Without LAB: every lab and its owner. With LAB: its "
                                   "switches, ports, hosts and VMs, and how to reach them.")
    s.add_argument("lab", nargs="?", help="a lab name (seed-minimal or lf-seed-minimal)")
    s.set_defaults(func=cmd_status)

    i = sub.add_parser("image", help="build and list guest images",
                       description="Guest images are built from Debian packages and cached "
                                   "by the hash of their recipe (LABFIXTURES_CACHE, default "
                                   "~/.cache/labfixtures).")
    isub = i.add_subparsers(dest="image_command", metavar="ACTION")
    isub.required = True
    ib = isub.add_parser("build", help="build images (nothing to do if cached)")
    ib.add_argument("names", nargs="+", metavar="NAME", help="tiny, debian")
    ib.add_argument("--force", action="store_true", help="rebuild even if cached")
    ib.set_defaults(func=cmd_image_build)
    il = isub.add_parser("list", help="recipes and their builds")
    il.set_defaults(func=cmd_image_list)

    u = sub.add_parser("up", help="build a lab from a lab file and leave it running",
                       description="Build the lab described by FILE (YAML, see "
                                   "scenarios/labs/seed-minimal.yaml): switches, taps, veth "
                                   "hosts and VMs, booted and reachable over SSH. It stays "
                                   "up until `labctl down`.")
    u.add_argument("file", help="the lab file")
    u.add_argument("--name", help="override the lab's name from the file")
    u.set_defaults(func=cmd_up)

    dn = sub.add_parser("down", help="tear a lab down (VMs, switches, namespaces, files)")
    dn.add_argument("lab", help="its name")
    dn.set_defaults(func=cmd_down)

    sh = sub.add_parser("ssh", help="SSH into a VM of a lab, or run a command there",
                        description="Without a command: an interactive shell (needs "
                                    "openssh-client). With `-- CMD`: run it, print its "
                                    "output, exit with its status.")
    sh.add_argument("lab")
    sh.add_argument("vm")
    sh.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ...")
    sh.set_defaults(func=cmd_ssh)

    from labfixtures.checkpoint import operations as checkpoint

    checkpoint.add_parser(sub)
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
