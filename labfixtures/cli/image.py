"""`labctl image build|list|prune`: the guest images."""

from __future__ import annotations

import argparse

from labfixtures import checkpoint, guestimages
from labfixtures.cli.common import need_root
from labfixtures.core.progress import StatusLine
from labfixtures.errors import LabError
from labfixtures.guestimages import ImageCache, inventory, kernels


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


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB" if size < 2**30 else f"{size / 2**30:.1f} GB"


def _selector(cache: ImageCache, e: inventory.Entry) -> str:
    """How a test selects a kernel variant: PACKAGE if APT's version, else PACKAGE=VERSION."""
    package, _, version = e.kernel.partition(" ")
    try:
        candidate = cache.apt_candidate(package)[0]
    except LabError:
        candidate = ""
    return package if candidate == version else f"{package}={version}"


def cmd_image_list(args: argparse.Namespace) -> int:
    cache = ImageCache()
    found = inventory.entries(cache)
    print(f"cache: {cache.images_dir}")
    for name, recipe in sorted(inventory.DEFAULTS.items()):
        print(f"{name:<8} {recipe.description}")
        mine = [e for e in found if e.name == name]
        if not any(e.kind == "current" for e in mine):
            print(f"{'':<8} not built for the current recipe (labctl image build {name})")
        for e in mine:
            what = {"current": "current", "kernel": "variant", "stale": "stale",
                    "partial": "partial"}[e.kind]
            note = []
            if e.kernel:
                note.append("kernel " + e.kernel)
            if e.kind == "current" and e.default_kernel:
                note.append("the default kernel")
            if e.kind == "kernel":
                note.append(f"kernel=\"{_selector(cache, e)}\"")
            if e.kind == "stale":
                note.append("recipe changed: nothing selects it")
            if e.kind == "partial":
                note.append("an interrupted build")
            if e.in_use:
                note.append("in use")
            print(f"{'':<8} {what:<8} {e.path.name:<24} {_mb(e.size):>8}  {', '.join(note)}")
    stale = [e for e in found if e.kind in ("stale", "partial")]
    if stale:
        print(f"{len(stale)} stale or partial build(s), {_mb(sum(e.size for e in stale))}: "
              "`labctl image prune` removes them")
    return 0


def _checkpoint_images() -> set[str]:
    """The images (`tiny-HASH`) named checkpoints were saved on: prune keeps them."""
    return {cp.image.label for cp in checkpoint.CheckpointStore().list()}


def cmd_image_prune(args: argparse.Namespace) -> int:
    if not args.dry_run:
        need_root()
    result = inventory.prune(all_kernels=args.all_kernels, dry_run=args.dry_run,
                             keep=_checkpoint_images())
    verb = "would remove" if args.dry_run else "removed"
    for e in result.removed:
        print(f"{verb} {e.path} ({e.kind}{', kernel ' + e.kernel if e.kernel else ''}, "
              f"{_mb(e.size)})")
    for e, why in result.kept:
        print(f"kept {e.path} ({e.kind}): {why}")
    print(f"{verb} {len(result.removed)} build(s); "
          f"{'would free' if args.dry_run else 'freed'} {_mb(result.freed)}")
    # the pytest plugin's automatic checkpoints of images now gone: nothing restores them
    auto = checkpoint.CheckpointStore().auto
    orphans = auto.orphans(gone=[e.path.name for e in result.removed])
    freed = 0
    for cp in orphans:
        size = sum(f.stat().st_size for f in cp.path.rglob("*") if f.is_file())
        freed += size
        if not args.dry_run:
            auto.delete(cp.vm, cp.tag)
    if orphans:
        print(f"{verb} {len(orphans)} automatic checkpoint(s) of images no longer built; "
              f"{'would free' if args.dry_run else 'freed'} up to {_mb(freed)}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = sub.add_parser(
        "image", help="build, list and prune guest images",
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
    il = isub.add_parser("list", help="every build of the cache: current, kernel variants, "
                                      "stale")
    il.set_defaults(func=cmd_image_list)
    ip = isub.add_parser(
        "prune", help="remove the builds no current recipe gives",
        description="Remove the stale builds (their recipe hash matches no current recipe: "
                    "the recipe, a package it uses or the cache's key changed since; nothing "
                    "selects them any more) and the leftovers of interrupted builds. Kept: "
                    "the current builds, the tiny builds on other kernels that are current "
                    "for their package (`kernel=`, --lab-guest-kernel; removed too with "
                    "--all-kernels), any build a running QEMU uses, and any build a named "
                    "checkpoint was saved on.")
    ip.add_argument("--dry-run", "-n", action="store_true",
                    help="print what would be removed, remove nothing")
    ip.add_argument("--all-kernels", action="store_true",
                    help="also remove the tiny builds on other kernels "
                         "(`labctl image build tiny --kernel PACKAGE` makes one again in "
                         "~10 s)")
    ip.set_defaults(func=cmd_image_prune)
