"""What a lab leaves on disk for later commands: `lab.json` and each VM's `vm.json`.

Each file has one dataclass here, with its only reader (`from_dict`, `load`) and its only
writer (`to_dict`, `save`). Each carries a `version`; the reader accepts every older
version and refuses a newer one (written by a newer labfixtures) with a clear error.

- `VmState` (`RUNDIR/vms/NAME/vm.json`; also the `vm` of a checkpoint manifest): what
  rebuilds the VM elsewhere: image, NICs, memory, vCPUs, profile...
- `LabState` (`RUNDIR/lab.json`, persistent labs of `labctl up`): how to reach each VM
  (SSH target, key), its QEMU pid and serial log.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from labfixtures.errors import LabError
from labfixtures.lab.vmspec import VmNic, VmOptions

LAB_STATE = "lab.json"
VM_STATE = "vm.json"


def _check_version(what: str, version: int, current: int, path: object) -> None:
    if not isinstance(version, int) or version < 1 or version > current:
        raise LabError(f"{path}: {what} version {version!r} is not one this labfixtures "
                       f"reads (1 to {current})",
                       "use the labfixtures version that wrote it, or rebuild the lab")


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise LabError(f"{path} is not a JSON object", "remove it and rebuild the lab")
    return data


@dataclass
class VmState:
    """A VM's settings, enough to create the same VM again (vm.json).

    Version 1 (before VmState) nested memory, vcpus... under `opts` with `memory` in MB;
    version 2 has them at the top, `memory_mb` named with its unit.
    """

    VERSION: ClassVar[int] = 2

    name: str
    image: str
    recipe_hash: str = ""
    nics: list[VmNic] = field(default_factory=list)
    memory_mb: int = 256
    vcpus: int = 1
    profile: str = "fast"
    hostname: str | None = None
    extra_args: list[str] = field(default_factory=list)
    extra_config: dict[str, Any] = field(default_factory=dict)
    cmdline: str = ""  # the guest configuration on the kernel command line
    version: int = VERSION

    def options(self) -> VmOptions:
        """The options of `Lab.vm()` / `VM` that give this VM (image by name)."""
        return VmOptions(image=self.image, memory=self.memory_mb, vcpus=self.vcpus,
                         profile=self.profile, hostname=self.hostname,
                         extra_args=list(self.extra_args),
                         extra_config=dict(self.extra_config))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nics"] = [n.to_dict() for n in self.nics]
        d["version"] = self.VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: object = "vm state") -> VmState:
        version = d.get("version", 1)
        _check_version("VM state", version, cls.VERSION, source)
        try:
            if version == 1:
                o = d.get("opts", {})
                flat = {"memory_mb": o.get("memory", 256), "vcpus": o.get("vcpus", 1),
                        "profile": o.get("profile", "fast"), "hostname": o.get("hostname"),
                        "extra_args": o.get("extra_args", []),
                        "extra_config": o.get("extra_config", {})}
            else:
                flat = {k: d[k] for k in ("memory_mb", "vcpus", "profile", "hostname",
                                          "extra_args", "extra_config") if k in d}
            return cls(name=d["name"], image=d["image"], recipe_hash=d.get("recipe_hash", ""),
                       nics=[VmNic.from_dict(n) for n in d.get("nics", [])],
                       cmdline=d.get("cmdline", ""), **flat)
        except (KeyError, TypeError, AttributeError) as e:
            raise LabError(f"{source}: VM state is incomplete or malformed ({e!r})",
                           "rebuild the VM (or its lab)") from None

    @classmethod
    def load(cls, path: Path) -> VmState:
        return cls.from_dict(_read(path), path)

    def save(self, path: Path) -> None:
        _write(path, self.to_dict())


@dataclass
class VmAccess:
    """How `labctl` reaches one VM of a persistent lab."""

    host: str  # the SSH address (fe80::...%sw0-vlan2, or 127.0.0.1 in user mode)
    port: int
    key: str
    user: str = "root"
    image: str = ""
    mac: str | None = None
    pid: int | None = None
    serial_log: str | None = None


@dataclass
class LabState:
    """A persistent lab's lab.json: its id and how to reach each of its VMs."""

    VERSION: ClassVar[int] = 1

    labid: str
    vms: dict[str, VmAccess] = field(default_factory=dict)
    version: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.VERSION, "labid": self.labid,
                "vms": {name: asdict(v) for name, v in self.vms.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: object = "lab state") -> LabState:
        _check_version("lab state", d.get("version", 1), cls.VERSION, source)
        try:
            return cls(labid=d["labid"],
                       vms={name: VmAccess(**v) for name, v in d.get("vms", {}).items()})
        except (KeyError, TypeError, AttributeError) as e:
            raise LabError(f"{source}: lab state is incomplete or malformed ({e!r})",
                           "take the lab down and up again") from None

    @classmethod
    def load(cls, path: Path) -> LabState:
        return cls.from_dict(_read(path), path)

    def save(self, path: Path) -> None:
        _write(path, self.to_dict())
