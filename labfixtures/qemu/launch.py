"""How a machine was launched, as data: `NAME.launch.json` in its run directory.

`Machine.start()` writes it (next to the replayable `NAME.cmdline`); anything that needs to
know how a running VM was started (a checkpoint records its accelerator and argv) reads it
back with `LaunchInfo.read(run_dir, name)`, never by parsing the command-line file.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LAUNCH_SUFFIX = ".launch.json"


def launch_file(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / f"{name}{LAUNCH_SUFFIX}"


@dataclass(frozen=True)
class LaunchInfo:
    """One QEMU launch: its argv, where it runs, the accelerator chosen and why."""

    name: str
    argv: tuple[str, ...]  # QEMU's own argv (without the `ip netns exec` prefix)
    accel: str  # 'kvm' or 'tcg'
    accel_reason: str
    qemu_version: str
    netns: str | None = None
    pid: int | None = None
    started_at: float = 0.0  # time.time() at launch
    extra: dict[str, str] = field(default_factory=dict)
    #: what of the machine's reference command line runs differently on this host, and why
    #: (the `guide` profile: {script option: what runs here (reason)}; qemu/guide.py)
    replaced: dict[str, str] = field(default_factory=dict)
    #: the QEMU binary that ran, by its absolute path (argv[0]: a fetched build's launcher,
    #: a wrapper, or the host's); '' in a record of an older labfixtures
    qemu_binary: str = ""

    @property
    def command(self) -> list[str]:
        """The full command, replayable from the root namespace (`ip netns exec NS ...`)."""
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return prefix + list(self.argv)

    def command_line(self) -> str:
        return shlex.join(self.command)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["argv"] = list(self.argv)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LaunchInfo:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["argv"] = tuple(known.get("argv", ()))
        return cls(**known)

    def write(self, run_dir: Path) -> Path:
        """Write NAME.launch.json in RUN_DIR atomically; its path."""
        path = launch_file(run_dir, self.name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.rename(path)
        return path

    @classmethod
    def read(cls, run_dir: Path, name: str) -> LaunchInfo | None:
        """The launch record of machine NAME in RUN_DIR; None if there is none (or it is
        unreadable: a machine started by an older labfixtures)."""
        try:
            return cls.from_json(json.loads(launch_file(run_dir, name).read_text()))
        except (OSError, ValueError, TypeError):
            return None
