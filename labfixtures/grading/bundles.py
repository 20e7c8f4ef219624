"""A student's checkpoint bundle as a grading target: checked, imported into a private
store, restored into a fresh lab built from the grading file's reference lab file, with
QEMU confined.

A bundle is untrusted input:

- `checkpoint.import_bundle` reads all of it before writing anything and refuses a member
  outside its folder, a link, a device file, a bundle over `max_size`, a corrupt qcow2 or
  a base image that is not ours;
- the VM is made from the *reference* lab file's definition of that VM (its NICs, image,
  memory), never from the bundle's QEMU arguments: a bundle asking for any is refused, and
  so is one whose VM, NICs or memory differ from the reference;
- the QEMU that loads the submitted memory runs with its seccomp sandbox
  (`-sandbox on,obsolete=deny,spawn=deny,resourcecontrol=deny`) and drops root for
  `nobody` (`-runas`) once it has opened its tap, disks, console and QMP socket: a
  crafted migration stream meets a process that can neither spawn nor open root's files.
  (`elevateprivileges=deny` is left out: QEMU's own -runas calls setuid after the filter
  is in place, and the filter kills it; as nobody, without spawn, there is nothing to
  elevate to.)
"""

from __future__ import annotations

import pwd
from pathlib import Path

from labfixtures import checkpoint
from labfixtures.errors import CheckpointError, LabError
from labfixtures.lab.build import BuiltLab, build_network, vm_arguments
from labfixtures.lab.lab import Lab
from labfixtures.lab.labspec import LabFile
from labfixtures.lab.vm import VM

SANDBOX = ["-sandbox", "on,obsolete=deny,spawn=deny,resourcecontrol=deny"]
RUNAS_USER = "nobody"
#: a student's bundle is refused past this size (a tiny guest's is a few MB)
MAX_SIZE = 512 << 20


def is_bundle(target: str | Path) -> bool:
    name = str(target)
    return name.endswith((".tar", ".tar.gz", ".tgz"))


def sandbox_args(runas: str | None = RUNAS_USER) -> list[str]:
    """The QEMU arguments that confine a QEMU loading untrusted state."""
    args = list(SANDBOX)
    if runas:
        pwd.getpwnam(runas)  # KeyError if there is no such user: refuse rather than run
        args += ["-runas", runas]
    return args


def confine(vm: VM, runas: str | None = RUNAS_USER) -> None:
    """Every start of VM from now on gets `sandbox_args()` (not part of the VM's recorded
    settings: a checkpoint saved without them still matches)."""
    extra = sandbox_args(runas)
    base = vm.spec

    def spec(extra_args: list[str] | tuple[str, ...] = ()) -> object:
        return base([*extra_args, *extra])

    vm.spec = spec  # type: ignore[method-assign,assignment]


def restore(bundle: Path, reference: LabFile, lab: Lab, store_dir: Path, *,
            max_size: int = MAX_SIZE, runas: str | None = RUNAS_USER,
            timeout: float = 60.0) -> BuiltLab:
    """REFERENCE's network on LAB, then the VM of BUNDLE restored into it (see the module's
    doc for what is checked). Raises CheckpointError or LabError if the bundle is refused."""
    store = checkpoint.CheckpointStore(store_dir)
    cp = checkpoint.import_bundle(bundle, store=store, max_size=max_size)
    saved = cp.manifest.vm
    if saved.extra_args or saved.extra_config:
        asked = list(saved.extra_args) or dict(saved.extra_config)
        raise CheckpointError(f"bundle {bundle.name} asks for QEMU settings {asked}: "
                              "refused",
                              "save the checkpoint from the lab as given, without extra "
                              "QEMU arguments", reason="unsafe", vm=saved.name, tag=cp.tag,
                              path=str(bundle))
    vdef = reference.vms.get(saved.name)
    if vdef is None:
        raise CheckpointError(f"bundle {bundle.name} holds VM {saved.name}, which the lab "
                              f"has not (its VMs: {', '.join(reference.vms) or 'none'})",
                              "submit the checkpoint of the lab's own VM", reason="mismatch",
                              vm=saved.name, tag=cp.tag, path=str(bundle))
    built = build_network(reference, lab)
    args = vm_arguments(vdef)
    vm = lab.vm(saved.name, nics=saved.nics, image=args["image"], memory=args["memory"],
                vcpus=args["vcpus"], profile=args["profile"], hostname=saved.hostname,
                start=False)
    diff = checkpoint.differences(saved, vm.state())
    if diff:
        raise CheckpointError(f"bundle {bundle.name}: its VM differs from the lab's "
                              f"{saved.name}: " + "; ".join(diff),
                              "save the checkpoint from the lab as given",
                              reason="mismatch", vm=saved.name, tag=cp.tag, path=str(bundle))
    if any(n.tap is not None and not lab.has_tap(n.tap) for n in saved.nics):
        raise LabError(f"bundle {bundle.name}: VM {saved.name} is on a tap the lab has not",
                       "submit the checkpoint of the lab's own VM")
    confine(vm, runas)
    checkpoint.restore(vm, cp.tag, store=store, timeout=timeout)
    built.vms[saved.name] = vm
    return built
