"""`labctl draw LAB|LABFILE [-o FILE] [--format svg|png|dot|mermaid]`: the lab drawn.

A LABFILE (a path ending .yaml or .yml) is drawn from what it describes; a LAB name is a
running lab of `labctl up`, drawn from what exists (its Open vSwitch and namespaces).
Mermaid (the default on a terminal) and DOT go to standard output; SVG and PNG need -o.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labfixtures.cli.common import labid, need_root
from labfixtures.errors import LabError
from labfixtures.lab import labfile
from labfixtures.lab.persistent import PersistentLab
from labfixtures.report import drawing

SUFFIXES = {"svg": "svg", "png": "png", "dot": "dot", "gv": "dot", "mmd": "mermaid",
            "md": "mermaid", "mermaid": "mermaid"}


def is_labfile(arg: str) -> bool:
    return arg.endswith((".yaml", ".yml"))


def output_format(fmt: str | None, output: str | None) -> str:
    """The format asked for, else the output file's suffix, else Mermaid."""
    if fmt:
        return fmt
    if output:
        suffix = Path(output).suffix.lstrip(".").lower()
        if suffix not in SUFFIXES:
            raise LabError(f"cannot tell the format of {output!r} from its suffix",
                           "give --format svg|png|dot|mermaid")
        return SUFFIXES[suffix]
    return "mermaid"


def picture(arg: str) -> drawing.Picture:
    if is_labfile(arg):
        if not Path(arg).is_file():
            raise LabError(f"no lab file {arg!r}", "give the path of a .yaml lab file")
        return drawing.from_labfile(labfile.load(arg))
    need_root()
    return drawing.snapshot_persistent(PersistentLab.open(labid(arg)))


def cmd_draw(args: argparse.Namespace) -> int:
    fmt = output_format(args.format, args.output)
    if fmt in ("svg", "png") and not args.output:
        raise LabError(f"{fmt.upper()} is binary or long: give a file to write it to",
                       f"labctl draw {args.lab} -o lab.{fmt}")
    data = drawing.render(picture(args.lab), fmt)
    if args.output:
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output} ({fmt}, {len(data)} bytes)", file=sys.stderr)
    else:
        sys.stdout.write(data.decode())
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "draw", help="draw a lab (a running lab or a lab file) as SVG, PNG, DOT or Mermaid",
        description="Draw a lab: switches with each port's VLAN mode, SVIs with their "
                    "addresses, taps, veth hosts, VMs with their NICs. A LAB name (as in "
                    "`labctl status`) is drawn from what exists; a LABFILE (.yaml) from "
                    "what it describes.",
        epilog="examples:\n"
               "  labctl draw scenarios/labs/seed-minimal.yaml      Mermaid, for an issue\n"
               "  sudo labctl draw seed-minimal -o lab.svg           the running lab\n"
               "  sudo labctl draw seed-minimal --format dot | dot -Tpng > lab.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lab", metavar="LAB|LABFILE")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE (format from its suffix unless --format is given)")
    p.add_argument("--format", choices=drawing.FORMATS, default=None,
                   help="svg, png (need -o), dot or mermaid (default: mermaid, or FILE's "
                        "suffix)")
    p.set_defaults(func=cmd_draw)
