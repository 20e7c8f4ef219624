"""Which QEMU a session runs on: the host's, a build fetched by `labctl qemu fetch`, or any
binary given by path (`pytest --lab-qemu NAME|PATH`).

A selection is `qemu.builds.use(binary)`: every machine started without an explicit binary
runs the selected one (its absolute path is the command line's first word), child
processes inherit it through the environment, and the host's installation is never
touched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from labfixtures.errors import LabError
from labfixtures.guestimages.cache import default_cache_dir
from labfixtures.qemu import builds
from labfixtures.qemu.cmdline import QEMU

HOST = "host"  # the host's own QEMU (matrix.HOST_QEMU says the same)


def builds_root() -> Path:
    """Where `labctl qemu fetch` keeps its builds: `<cache>/qemu`."""
    return default_cache_dir() / "qemu"


def resolve(asked: str, root: Path | None = None) -> Path:
    """The binary that ASKED names: a path to an executable, a fetched build's name, or
    'host' (the QEMU found on PATH now)."""
    root = builds_root() if root is None else root
    if asked == HOST:
        found = shutil.which(QEMU)
        if found is None:
            raise LabError(f"{QEMU} is not installed: there is no host QEMU",
                           "apt-get install qemu-system-x86, or give a build or a path")
        return Path(os.path.realpath(found))
    if "/" in asked:
        path = Path(asked).expanduser().absolute()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LabError(f"--lab-qemu {asked}: no executable file there",
                           "give the path of a QEMU binary (or of a wrapper script), or a "
                           "build listed by `labctl qemu list`")
        return path
    build = builds.find_build(root, asked)
    if build is None:
        have = ", ".join(b.version for b in builds.list_builds(root)) or "none yet"
        raise LabError(f"--lab-qemu {asked}: no such QEMU build in {root} (fetched: {have})",
                       f"fetch it: `labctl qemu fetch {asked}`, or give a path")
    return build.launcher
