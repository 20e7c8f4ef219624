"""Working on a guest's files from the host: a chroot, paths and libraries inside a tree.
Shared by the recipes (`tiny`, `debian`) and the installer (the kernel inside vmlinuz:
bzimage.py)."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from labfixtures.core.runner import run
from labfixtures.errors import LabError

#: the environment of commands run in a chroot (none of the host's)
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root",
              "DEBIAN_FRONTEND": "noninteractive"}


def data_file(name: str) -> Path:
    """A file shipped in labfixtures/guestimages/files/ (init scripts, units, rules)."""
    return Path(str(resources.files("labfixtures.guestimages") / "files" / name))


def chroot(tree: Path, *argv: str, timeout: float = 900) -> str:
    """Run ARGV inside TREE with /proc, /sys and /dev mounted in a private mount namespace;
    its output.

    Why unshare: the mounts vanish with the command, even if it crashes; nothing is left
    mounted on the host.
    """
    script = ('set -e; mount -t proc proc "$1/proc"; mount --rbind /sys "$1/sys"; '
              'mount --rbind /dev "$1/dev"; t=$1; shift; exec chroot "$t" "$@"')
    return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                str(tree), *argv], timeout=timeout, env=CHROOT_ENV).stdout


def tree_path(tree: Path, path: str) -> Path:
    """PATH inside TREE with every symlink followed as if TREE were `/` (a chroot's view)."""
    parts = [p for p in path.split("/") if p]
    cur = tree
    for hops in range(64):
        if not parts:
            return cur
        nxt = cur / parts.pop(0)
        if nxt.is_symlink():
            target = os.readlink(nxt)
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                cur = tree
        elif nxt.name == "..":
            cur = cur.parent if cur != tree else tree
        else:
            cur = nxt
        if hops == 63:
            break
    raise LabError(f"too many symlinks resolving {path} in {tree}", "check the tree")


def parse_ldd(output: str) -> list[str]:
    """The absolute library paths in `ldd` OUTPUT (`libc.so.6 => /lib/.../libc.so.6 (0x..)`
    and the loader's `/lib64/ld-linux-x86-64.so.2 (0x..)`), in order."""
    libs = []
    for line in output.splitlines():
        m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            libs.append(m.group(1))
    return libs


def shared_libraries(binary: Path) -> list[str]:
    """The libraries (as the loader sees them) of host BINARY; none if it is static."""
    r = run(["ldd", str(binary)], check=False, remedy="apt-get install libc-bin")
    return parse_ldd(r.stdout) if r.ok else []


def tree_libraries(tree: Path, binary: str) -> list[str]:
    """The shared libraries BINARY of TREE loads, as `ldd` run inside the tree sees them."""
    return parse_ldd(chroot(tree, "ldd", binary))
