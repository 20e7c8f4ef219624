"""`labctl checkpoint save|restore|list|delete|export|import`: VM checkpoints."""

from __future__ import annotations

import argparse
import json

from labfixtures import checkpoint
from labfixtures.checkpoint.snapshot import major_minor


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]
               ) -> argparse.ArgumentParser:
    """Add `checkpoint` and its actions to labctl's subcommands SUB."""
    p = sub.add_parser(
        "checkpoint", help="save, restore, list, delete, export and import VM checkpoints",
        description="Checkpoints hold a VM's disk and memory, taken live; they are kept in "
                    f"the cache ({checkpoint.default_store_dir()}) by VM name and tag, so "
                    "they can be restored into a lab built later, or carried to another "
                    "machine with the same base image as a bundle.")
    store_help = "checkpoint directory (default: <cache>/checkpoints)"
    p.add_argument("--store", help=store_help)
    common = argparse.ArgumentParser(add_help=False)  # --store after the action too
    common.add_argument("--store", default=argparse.SUPPRESS, help=store_help)
    actions = p.add_subparsers(dest="checkpoint_command", metavar="ACTION")
    actions.required = True

    s = actions.add_parser("save", parents=[common],
                           help="save VM's disk and memory now, as TAG (live)")
    s.add_argument("lab")
    s.add_argument("vm")
    s.add_argument("tag")
    s.add_argument("--replace", action="store_true", help="replace an existing VM@TAG")
    s.set_defaults(func=cmd_save)

    r = actions.add_parser("restore", parents=[common],
                           help="bring VM back to TAG (restarts its QEMU)")
    r.add_argument("lab")
    r.add_argument("vm")
    r.add_argument("tag")
    r.add_argument("--from", dest="source", metavar="VM",
                   help="restore the checkpoint of another VM name (same settings)")
    r.set_defaults(func=cmd_restore)

    ls = actions.add_parser("list", parents=[common], help="list stored checkpoints")
    ls.add_argument("vm", nargs="?")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    d = actions.add_parser("delete", parents=[common], help="delete a stored checkpoint")
    d.add_argument("vm")
    d.add_argument("tag")
    d.set_defaults(func=cmd_delete)

    e = actions.add_parser("export", parents=[common],
                           help="write a checkpoint as one bundle file (.tar, .tar.gz)")
    e.add_argument("lab", help="the lab it was saved in (informative: checkpoints are "
                               "stored by VM and tag, not by lab)")
    e.add_argument("vm")
    e.add_argument("tag")
    e.add_argument("file")
    e.set_defaults(func=cmd_export)

    i = actions.add_parser("import", parents=[common],
                           help="check a bundle and add it to the store")
    i.add_argument("file")
    i.add_argument("--replace", action="store_true", help="replace an existing VM@TAG")
    i.set_defaults(func=cmd_import)
    return p


def _store(args: argparse.Namespace) -> checkpoint.CheckpointStore:
    return checkpoint.CheckpointStore(getattr(args, "store", None))


def cmd_save(args: argparse.Namespace) -> int:
    cp = checkpoint.save_lab_vm(args.lab, args.vm, args.tag, store=_store(args),
                                replace=args.replace)
    t = cp.manifest.timings
    print(f"saved {cp} in {t.get('save', 0):.2f} s (guest paused {t.get('paused', 0):.2f} s)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    seconds = checkpoint.restore_lab_vm(args.lab, args.vm, args.tag, store=_store(args),
                                        source=args.source)
    print(f"restored {args.vm} of {args.lab} to {args.source or args.vm}@{args.tag}: "
          f"ready {seconds:.2f} s after QEMU started")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    cps = _store(args).list(args.vm)
    if args.json:
        print(json.dumps([{"vm": c.vm, "tag": c.tag, "path": str(c.path), "size": c.size,
                           "created": c.manifest.created,
                           "image": c.manifest.to_dict()["image"],
                           "lab": c.manifest.lab} for c in cps], indent=1))
        return 0
    for c in cps:
        print(c)
    if not cps:
        print("no checkpoint")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    checkpoint.delete(args.vm, args.tag, store=_store(args))
    print(f"deleted {args.vm}@{args.tag}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = _store(args)
    cp = store.get(args.vm, args.tag)
    labid = args.lab if args.lab.startswith("lf-") else f"lf-{args.lab}"
    if cp.manifest.lab not in (None, labid, args.lab):
        print(f"note: {cp.name} was saved in lab {cp.manifest.lab}")
    out = checkpoint.export(args.vm, args.tag, args.file, store=store)
    print(f"exported {cp.name} to {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    cp = checkpoint.import_bundle(args.file, store=_store(args), replace=args.replace)
    saved, here = cp.manifest.qemu_version, checkpoint.qemu_version()
    if major_minor(saved) != major_minor(here):
        print(f"warning: saved with QEMU {saved}, this host has {here}: restoring may fail")
    print(f"imported {cp}")
    return 0
