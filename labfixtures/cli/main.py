"""labctl: the command line over the labfixtures library.

One module per command group, each with an `add_parser(subparsers)`: `doctor`, `image`,
`labs` (up, status, ssh, exec, down), `clean`, `checkpoint`. `labctl`, `python -m
labfixtures.cli` and `python -m labfixtures.cli.main` are the same program.
"""

from __future__ import annotations

import argparse
import sys

from labfixtures.cli import checkpoint, clean, doctor, draw, grade, image, labs, qemu, regress
from labfixtures.core import procs
from labfixtures.errors import LabError

EPILOG = """examples:
  sudo labctl doctor                          can a lab run here? KVM or TCG, OVS, versions
  sudo labctl image build tiny                build (or find cached) the tiny guest image
  sudo labctl up scenarios/labs/seed-minimal.yaml     build the guide's Table 1 lab
  sudo labctl status seed-minimal             its VMs, switch, SSH key, pytest attach lines
  sudo labctl ssh seed-minimal vm0            an interactive shell in vm0
  sudo labctl ssh seed-minimal vm0 -- ip route        one command line, run by vm0's shell
  sudo labctl exec seed-minimal vm0 -- sh -c 'echo x > /etc/motd'   argv word for word
  sudo labctl checkpoint save seed-minimal vm0 step1   a "photo" of the VM, for students
  sudo labctl checkpoint restore seed-minimal vm0 step1
  sudo labctl draw seed-minimal -o lab.svg   the running lab drawn (VLAN of every port)
  sudo labctl down seed-minimal               tear it down
  sudo labctl clean                           remove what dead runs left behind

Grade a running lab with pytest: pytest TESTS --lab-attach-lab seed-minimal
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labctl",
        description="Build, inspect and clean labfixtures network labs (network "
                    "namespaces, Open vSwitch, QEMU VMs). Most commands need root.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    doctor.add_parser(sub)
    image.add_parser(sub)
    labs.add_parser(sub)
    checkpoint.add_parser(sub)
    clean.add_parser(sub)
    grade.add_parser(sub)
    qemu.add_parser(sub)
    regress.add_parser(sub)
    draw.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # what the command was making (an image's work folder, a lab half up) is undone
    procs.interrupt_on_sigterm()
    try:
        return int(args.func(args))
    except LabError as e:
        print(f"labctl: {e.problem}", file=sys.stderr)
        if e.remedy:
            print(f"  remedy: {e.remedy}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
