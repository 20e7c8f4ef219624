"""Which QEMU binary a checkpoint belongs to, and what its machine aliases resolve to.

`identity()` names the binary itself, not what `--version` says: two binaries with the
same version (a wrapper script, a rebuilt package, a fetched build's launcher) are two
QEMUs for the automatic checkpoints. It is the sha256 of the file the name resolves to
(computed once per path, size and mtime, kept in a small cache file) with the version it
reports, so a wrapper whose wrapped binary is upgraded changes too.

`machine_types()` says what `-machine pc` and `-machine q35` mean for a binary: the
newest versioned type it knows (`pc-i440fx-7.2`). A saved state restores only into the
same machine type; all builds of one QEMU release (7.2.x) resolve the aliases alike.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from pathlib import Path

from labfixtures.checkpoint.manifest import cached_sha256
from labfixtures.core.runner import run
from labfixtures.errors import HostResourceError, LabError
from labfixtures.qemu.accel import qemu_version
from labfixtures.qemu.cmdline import QEMU


def resolve(qemu: str | Path = QEMU) -> Path:
    """The file QEMU names (a name found on PATH, as the lab starts it, or a path), with
    its links resolved: through `--lab-qemu`'s link, the chosen binary itself."""
    found = shutil.which(str(qemu))
    if found is None:
        raise HostResourceError("binary", str(qemu), "apt-get install qemu-system-x86",
                                problem=f"{qemu} is not installed")
    return Path(os.path.realpath(found))


def identity(qemu: str | Path = QEMU, cache: Path | None = None) -> str:
    """`<version>:<sha256 of the binary's file>[:16]` of the QEMU that QEMU names."""
    path = resolve(qemu)
    return f"{qemu_version(str(path))}:{cached_sha256(path, cache)[:16]}"


@functools.lru_cache(maxsize=8)
def _machine_help(binary: str) -> str:
    return run([binary, "-machine", "help"], timeout=30, check=False).stdout


def machine_types(qemu: str | Path = QEMU) -> dict[str, str]:
    """{'pc': 'pc-i440fx-7.2', 'q35': 'pc-q35-7.2'}: the aliases of the binary QEMU names
    (an alias it does not list is left out)."""
    try:
        text = _machine_help(str(resolve(qemu)))
    except LabError:
        return {}
    return {m.group(1): m.group(2) for m in
            re.finditer(r"^(\S+)\s.*\(alias of (\S+)\)", text, re.M)}
