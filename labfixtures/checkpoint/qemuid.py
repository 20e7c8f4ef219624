"""Which QEMU binary a checkpoint belongs to.

`identity()` names the binary itself, not what `--version` says: two binaries with the
same version (a wrapper script, a rebuilt package, a fetched build's launcher) are two
QEMUs for the automatic checkpoints. It is the sha256 of the file the name resolves to
(computed once per path, size and mtime, kept in a small cache file) with the version it
reports, so a wrapper whose wrapped binary is upgraded changes too.

A saved state restores only into the same machine type; `-machine pc` and `q35` are
aliases of the newest versioned type a binary knows (`pc-i440fx-7.2`), alike in all builds
of one QEMU release (7.2.x), not across releases.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from labfixtures.checkpoint.manifest import cached_sha256
from labfixtures.errors import HostResourceError
from labfixtures.qemu.accel import qemu_version
from labfixtures.qemu.cmdline import QEMU


def resolve(qemu: str | Path = QEMU) -> Path:
    """The file QEMU names (a name found on PATH, or a path: `qemu.builds.selected()`),
    its links resolved."""
    found = shutil.which(str(qemu))
    if found is None:
        raise HostResourceError("binary", str(qemu), "apt-get install qemu-system-x86",
                                problem=f"{qemu} is not installed")
    return Path(os.path.realpath(found))


def identity(qemu: str | Path = QEMU, cache: Path | None = None) -> str:
    """`<version>:<sha256 of the binary's file>[:16]` of the QEMU that QEMU names."""
    path = resolve(qemu)
    return f"{qemu_version(str(path))}:{cached_sha256(path, cache)[:16]}"
