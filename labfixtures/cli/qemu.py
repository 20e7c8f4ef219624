"""`labctl qemu fetch|list|remove`: other builds of QEMU beside the host's (qemu/builds.py),
for `pytest --lab-qemu VERSION`."""

from __future__ import annotations

import argparse
import shutil

from labfixtures.qemu import builds
from labfixtures.qemu.cmdline import QEMU
from labfixtures.regress.qemusel import builds_root


def cmd_fetch(args: argparse.Namespace) -> int:
    build = builds.fetch(builds_root(), args.version, progress=print, force=args.force)
    print(f"{build.version}: QEMU {build.qemu_version}, {build.launcher}")
    print(f"run a session on it: pytest --lab-qemu {build.version} ...")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    host = shutil.which(QEMU)
    host_version = ""
    if host:
        package, host_version = builds.package_of(host)
        print(f"host     {builds.version_of(host):<10} {host} ({package} {host_version})")
    else:
        print("host     none (apt-get install qemu-system-x86)")
    fetched = builds.list_builds(builds_root())
    for b in fetched:
        print(f"fetched  {b.qemu_version:<10} {b.version}  {b.path}")
    have = {b.version for b in fetched} | {host_version}
    offered = [v for v in builds.available_versions() if v not in have]
    if offered:
        print("available from APT's sources (labctl qemu fetch VERSION): " + ", ".join(offered))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    print(f"removed {builds.remove(builds_root(), args.version)}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = sub.add_parser(
        "qemu", help="fetch and list other QEMU builds (for pytest --lab-qemu)",
        description="Other builds of QEMU from the distribution's packages (apt-get "
                    "download, unpacked into the cache with their own firmware and modules: "
                    "the host's QEMU is not touched). `pytest --lab-qemu VERSION` runs a "
                    "session on one.")
    qs = q.add_subparsers(dest="qemu_command", metavar="ACTION")
    qs.required = True
    f = qs.add_parser("fetch", help="download and unpack qemu-system-x86=VERSION",
                      description="Fetch qemu-system-x86=VERSION with the qemu-system-common "
                                  "of the same build, its qemu-system-data, seabios and "
                                  "ipxe-qemu; check that it runs (`--version`).")
    f.add_argument("version", help="as `apt-cache madison qemu-system-x86` lists it, e.g. "
                                   "1:7.2+dfsg-7+deb12u15")
    f.add_argument("--force", action="store_true", help="fetch again even if present")
    f.set_defaults(func=cmd_fetch)
    ls = qs.add_parser("list", help="the host's QEMU, the fetched builds, what APT offers")
    ls.set_defaults(func=cmd_list)
    rm = qs.add_parser("remove", help="delete a fetched build")
    rm.add_argument("version")
    rm.set_defaults(func=cmd_remove)
