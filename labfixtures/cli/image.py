"""`labctl image build|list`: the guest images."""

from __future__ import annotations

import argparse

from labfixtures import guestimages
from labfixtures.cli.common import need_root
from labfixtures.core.progress import StatusLine
from labfixtures.errors import LabError
from labfixtures.guestimages import kernels


def cmd_image_build(args: argparse.Namespace) -> int:
    need_root()
    for name in args.names:
        if args.kernel and name != "tiny":
            raise LabError("--kernel applies to the tiny image only",
                           f"labctl image build tiny --kernel {args.kernel}")
        # the build's steps on one updating line on a terminal, plain lines in CI
        with StatusLine() as line:
            if args.kernel:
                img = kernels.build_tiny(args.kernel, progress=line, force=args.force)
            else:
                img = guestimages.build(name, progress=line, force=args.force)
        print(f"{name}: {img.path}")
    return 0


def cmd_image_list(args: argparse.Namespace) -> int:
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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = sub.add_parser(
        "image", help="build and list guest images",
        description="Guest images are built from Debian packages and cached by the hash of "
                    "their recipe in LABFIXTURES_CACHE (default ~/.cache/labfixtures), each "
                    "cache with its own SSH key pair.")
    isub = i.add_subparsers(dest="image_command", metavar="ACTION")
    isub.required = True
    ib = isub.add_parser("build", help="build images (nothing to do if cached)",
                         description="Build the named images; an image already built from "
                                     "the same recipe is found in the cache at once.")
    ib.add_argument("names", nargs="+", metavar="NAME",
                    help="tiny (seconds to boot, most tests) or debian (systemd, LVM)")
    ib.add_argument("--force", action="store_true", help="rebuild even if cached")
    ib.add_argument("--kernel", metavar="PACKAGE[=VERSION]",
                    help="build tiny on this Debian kernel package instead (its own cache "
                         "entry; pytest --lab-guest-kernel PACKAGE uses it)")
    ib.set_defaults(func=cmd_image_build)
    il = isub.add_parser("list", help="recipes, their current build and older builds")
    il.set_defaults(func=cmd_image_list)
