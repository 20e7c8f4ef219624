"""Other builds of QEMU, side by side with the host's, never installed over it.

`labctl qemu fetch VERSION` downloads `qemu-system-x86=VERSION` and what it needs at run time
from the distribution's packages with `apt-get download` (APT's own configuration decides
where from), unpacks them with `dpkg -x` into a folder of the cache, and writes a launcher
that runs that binary on its own firmware and module folders::

    ROOT/                            (the caller's: `<cache>/qemu`, see cli/qemu.py)
      VERSION/                       one build, ':' of the epoch written '_'
        tree/usr/bin/qemu-system-x86_64
        tree/usr/share/qemu/ ...     its data: firmware (seabios, ipxe), keymaps
        tree/usr/lib/x86_64-linux-gnu/qemu/   its modules (TCG itself is one: a module
                                     from another build is refused by QEMU)
        bin/qemu-system-x86_64       the launcher: -L on its own data, QEMU_MODULE_DIR
        build.json                   what was fetched (`QemuBuild`)

A session runs on a build with `pytest --lab-qemu VERSION` (or a path to any binary): the
plugin selects its launcher with `use()`, and every `Machine` started without an explicit
`qemu=` runs `selected()`, named by its absolute path in the machine's command line and
launch record (the launcher puts `-L` on the build's own firmware). `qemu-img` stays the
host's (no build brings one); the plugin also puts the choice first on PATH, for what still
looks QEMU up there (regress.versions, the run's record).
The build uses the host's shared libraries: a build of the same release works; one from a
much newer release may not start (`QemuLaunchError`, a lab error, not a test failure).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labfixtures.core.runner import run
from labfixtures.errors import LabError

BINARY = "qemu-system-x86_64"
PACKAGE = "qemu-system-x86"
#: arch-dependent parts of the same build: exactly VERSION
SAME_BUILD = ("qemu-system-common",)
#: arch-independent data of the same source upload: VERSION without a binNMU `+bN`
SAME_SOURCE = ("qemu-system-data",)
#: firmware QEMU loads from its data folder: APT's candidate
FIRMWARE = ("seabios", "ipxe-qemu")
BUILD_FILE = "build.json"
BUILD_FORMAT = 1
MODULE_DIR = "usr/lib/x86_64-linux-gnu/qemu"
DATA_DIRS = ("usr/share/qemu", "usr/share/seabios", "usr/share/ipxe/qemu")
#: the QEMU binary `use()` selected, in the environment so that the processes a session
#: starts (`labctl up`, pytest-xdist workers) start the same one
SELECTED_VAR = "LABFIXTURES_QEMU"


def selected() -> str:
    """The QEMU binary a machine starts when none is given: the one `use()` selected
    (`--lab-qemu`), else `qemu-system-x86_64` found on PATH (its absolute path), else that
    bare name (the machine's start then says it is not installed)."""
    chosen = os.environ.get(SELECTED_VAR)
    if chosen:
        return chosen
    found = shutil.which(BINARY)
    return os.path.abspath(found) if found else BINARY


@contextlib.contextmanager
def use(binary: Path | str) -> Iterator[str]:
    """Machines started in the block without an explicit `qemu=` run BINARY (made
    absolute); yields it. Nested selections restore the outer one."""
    path = os.path.abspath(os.path.expanduser(str(binary)))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise LabError(f"QEMU binary {binary}: no executable file there",
                       "give the path of a QEMU binary, a wrapper script or a fetched "
                       "build's launcher (`labctl qemu list`)")
    old = os.environ.get(SELECTED_VAR)
    os.environ[SELECTED_VAR] = path
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop(SELECTED_VAR, None)
        else:
            os.environ[SELECTED_VAR] = old


def folder_name(version: str) -> str:
    """VERSION as a folder name usable on PATH (no ':')."""
    if not re.fullmatch(r"[A-Za-z0-9.+~:_-]+", version):
        raise LabError(f"{version!r} is not a Debian package version",
                       "give a version as `apt-cache madison qemu-system-x86` lists it, "
                       "e.g. 1:7.2+dfsg-7+deb12u15")
    return version.replace(":", "_")


def source_version(version: str) -> str:
    """The source upload's version: a binNMU suffix `+bN` removed."""
    return re.sub(r"\+b\d+$", "", version)


@dataclass(frozen=True)
class QemuBuild:
    """A fetched build: its package versions, the launcher, and what `--version` said."""

    version: str
    path: Path  # the build's folder
    packages: dict[str, str] = field(default_factory=dict)
    qemu_version: str = ""
    fetched_at: float = 0.0

    @property
    def launcher(self) -> Path:
        return self.path / "bin" / BINARY

    @property
    def name(self) -> str:
        return self.path.name

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d["format"] = BUILD_FORMAT
        return d

    @classmethod
    def read(cls, path: Path) -> QemuBuild | None:
        """The build in folder PATH, or None if PATH holds no complete build."""
        try:
            d = json.loads((path / BUILD_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(d, dict) or int(d.get("format", 0)) > BUILD_FORMAT:
            return None
        return cls(version=str(d["version"]), path=path,
                   packages={str(k): str(v) for k, v in d.get("packages", {}).items()},
                   qemu_version=str(d.get("qemu_version", "")),
                   fetched_at=float(d.get("fetched_at", 0.0)))


def list_builds(root: Path) -> list[QemuBuild]:
    """Every complete build under ROOT, by folder name."""
    if not root.is_dir():
        return []
    builds = (QemuBuild.read(p) for p in sorted(root.iterdir()) if p.is_dir())
    return [b for b in builds if b is not None]


def find_build(root: Path, name: str) -> QemuBuild | None:
    """The build NAME (a version, or its folder name) under ROOT."""
    for b in list_builds(root):
        if name in (b.version, b.name, source_version(b.version)):
            return b
    return None


def _apt_download(spec: str, dest: Path) -> Path:
    argv = ["apt-get", "download", "-q", spec]
    if os.geteuid() == 0:  # root cannot hand the folder to _apt's sandbox
        argv[1:1] = ["-o", "APT::Sandbox::User=root"]
    before = set(dest.glob("*.deb"))
    run(argv, cwd=dest, timeout=1800,
        remedy=f"check that {spec} exists (`apt-cache madison {spec.split('=')[0]}`) "
               "and that APT can reach its sources (`apt-get update`)",
        missing="labctl qemu fetch needs apt-get: run it on a Debian host")
    new = sorted(set(dest.glob("*.deb")) - before)
    if len(new) != 1:
        raise LabError(f"apt-get download {spec} produced {len(new)} files", "try again")
    return new[0]


def _candidate(package: str) -> str:
    out = run(["apt-cache", "policy", package], timeout=60).stdout
    m = re.search(r"Candidate:\s*(\S+)", out)
    if not m or m.group(1) == "(none)":
        raise LabError(f"APT has no candidate version of {package}", "run `apt-get update`")
    return m.group(1)


def _relink_inside(tree: Path) -> None:
    """Absolute symlinks in the unpacked tree point at the host's files: make them point
    inside the tree when the target is there, so the build uses its own firmware."""
    for link in tree.rglob("*"):
        if link.is_symlink():
            target = os.readlink(link)
            if target.startswith("/") and (tree / target.lstrip("/")).exists():
                link.unlink()
                link.symlink_to(os.path.relpath(tree / target.lstrip("/"), link.parent))


def _launcher_text(tree: Path, final: Path) -> str:
    """The launcher of the build unpacked in TREE, which will live in FINAL."""
    data = " ".join(f'-L "{final / d}"' for d in DATA_DIRS if (tree / d).is_dir())
    return ("#!/bin/sh\n"
            "# written by `labctl qemu fetch`: this build of QEMU on its own data and modules\n"
            f'QEMU_MODULE_DIR="{final / MODULE_DIR}"\nexport QEMU_MODULE_DIR\n'
            f'exec "{final / "usr/bin" / BINARY}" {data} "$@"\n')


def version_of(binary: Path | str) -> str:
    """What `BINARY --version` says: '7.2.15' (or its first line)."""
    out = run([str(binary), "--version"], timeout=30,
              remedy="the build does not run on this host (see its message)").stdout
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else out.strip().split("\n")[0]


def fetch(root: Path, version: str, progress: Callable[[str], None] | None = print,
          force: bool = False) -> QemuBuild:
    """Fetch and unpack `qemu-system-x86=VERSION` under ROOT (nothing to do if there)."""
    folder = root / folder_name(version)
    have = QemuBuild.read(folder)
    if have is not None and not force:
        return have
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        debs, work_debs = {}, work / "debs"
        work_debs.mkdir()
        wanted = [(PACKAGE, version)] + [(p, version) for p in SAME_BUILD] + \
            [(p, source_version(version)) for p in SAME_SOURCE] + \
            [(p, _candidate(p)) for p in FIRMWARE]
        for package, v in wanted:
            if progress:
                progress(f"apt-get download {package}={v}")
            debs[package] = (v, _apt_download(f"{package}={v}", work_debs))
        tree = work / "tree"
        for _v, deb in debs.values():
            run(["dpkg", "-x", str(deb), str(tree)], timeout=600,
                remedy=f"{deb.name} may be damaged: fetch again with --force")
        shutil.rmtree(work_debs)
        final_tree = folder / "tree"
        _relink_inside(tree)
        # the launcher names the final place; written now, valid after the rename
        (work / "bin").mkdir()
        launcher = work / "bin" / BINARY
        launcher.write_text(_launcher_text(tree, final_tree))
        launcher.chmod(0o755)
        if folder.exists():
            shutil.rmtree(folder)
        work.rename(folder)
        os.mkdir(work)  # TemporaryDirectory removes its folder at exit
    build = QemuBuild(version, folder, {p: v for p, (v, _) in debs.items()},
                      fetched_at=time.time())
    try:
        build = QemuBuild(version, folder, build.packages, version_of(build.launcher),
                          build.fetched_at)
    except LabError:
        shutil.rmtree(folder)
        raise
    (folder / BUILD_FILE).write_text(json.dumps(build.to_json(), indent=1) + "\n")
    if progress:
        progress(f"QEMU {build.qemu_version} ({version}) in {folder}")
    return build


def remove(root: Path, name: str) -> Path:
    build = find_build(root, name)
    if build is None:
        raise LabError(f"no QEMU build {name!r} in {root}", "see `labctl qemu list`")
    shutil.rmtree(build.path)
    return build.path


def package_of(binary: Path | str) -> tuple[str, str]:
    """(package, version) that installed BINARY (a fetched build's own record for a
    launcher), or ('', '') for a binary no package owns (a wrapper script, a local build)."""
    real = Path(os.path.realpath(binary))
    build = QemuBuild.read(real.parent.parent)
    if build is not None:
        return f"{PACKAGE} (fetched)", build.version
    cp = run(["dpkg-query", "-S", str(real)], timeout=30, check=False,
             missing="")
    if not cp.ok or ":" not in cp.stdout:
        # usrmerge: /usr/bin is where dpkg recorded it even if /bin was asked
        return "", ""
    package = cp.stdout.split(":", 1)[0].strip()
    ver = run(["dpkg-query", "-W", "-f=${Version}", package], timeout=30, check=False)
    return package, ver.stdout.strip() if ver.ok else ""


def available_versions(package: str = PACKAGE) -> list[str]:
    """The versions of PACKAGE that APT's sources offer (`apt-cache madison`), newest first."""
    cp = run(["apt-cache", "madison", package], timeout=60, check=False, missing="")
    seen: list[str] = []
    for line in cp.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 2 and parts[1] not in seen:
            seen.append(parts[1])
    return seen
