"""What a run ran on: host kernel, guest images (kernel, recipe hash), QEMU (path,
`--version`, package), Open vSwitch, accelerator, Python, labfixtures.

`collect()` asks the host once (a few short commands, their answers cached by the files
they depend on; nothing fails: an unknown part is written "unknown" with the reason). The
same data goes into the report header, the JUnit test-suite properties (`properties()`)
and the results file (`to_json()`); `differences()` says what changed between two runs,
which `compare` prints first.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labfixtures import guestimages
from labfixtures.core.runner import run
from labfixtures.errors import LabError
from labfixtures.qemu import accel, builds
from labfixtures.qemu.cmdline import QEMU

UNKNOWN = "unknown"


@dataclass(frozen=True)
class QemuVersion:
    binary: str = ""  # the path that runs (a fetched build's launcher, a wrapper...)
    version: str = ""  # what `--version` says: 7.2.19
    package: str = ""  # the Debian package that installed it, '' if none
    package_version: str = ""
    selected: str = ""  # what --lab-qemu asked for, '' for the host's

    def describe(self) -> str:
        pkg = f", {self.package} {self.package_version}" if self.package else \
            ", not from a package"
        return f"QEMU {self.version or UNKNOWN} ({self.binary or QEMU}{pkg})"


@dataclass(frozen=True)
class ImageVersion:
    name: str
    recipe_hash: str = ""  # '' when the image is not built for the current recipe
    kernel_release: str = ""  # uname -r in the guest: 6.1.0-57-amd64
    kernel_package: str = ""  # linux-image-6.1.0-57-amd64
    kernel_version: str = ""  # 6.1.192-3

    def describe(self) -> str:
        if not self.recipe_hash:
            return f"{self.name}: not built"
        return (f"{self.name}: kernel {self.kernel_release} ({self.kernel_package} "
                f"{self.kernel_version}), recipe {self.recipe_hash}")


@dataclass(frozen=True)
class Versions:
    host_kernel: str = ""
    qemu: QemuVersion = field(default_factory=QemuVersion)
    openvswitch: str = ""
    openvswitch_package: str = ""
    accelerator: str = ""
    accelerator_reason: str = ""
    python: str = ""
    labfixtures: str = ""
    images: dict[str, ImageVersion] = field(default_factory=dict)
    guest_kernel: str = ""  # what --lab-guest-kernel asked for, '' for the default

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Versions:
        d = dict(d)
        q = {k: str(v) for k, v in d.pop("qemu", {}).items()
             if k in QemuVersion.__dataclass_fields__}
        images = {str(n): ImageVersion(**{k: str(v) for k, v in i.items()
                                         if k in ImageVersion.__dataclass_fields__})
                  for n, i in d.pop("images", {}).items()}
        rest = {k: str(v) for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(qemu=QemuVersion(**q), images=images, **rest)

    def properties(self) -> list[tuple[str, str]]:
        """Flat (name, value) pairs: JUnit test-suite properties, one line each."""
        props = [("lab_host_kernel", self.host_kernel),
                 ("lab_qemu_binary", self.qemu.binary),
                 ("lab_qemu_version", self.qemu.version),
                 ("lab_qemu_package", f"{self.qemu.package} {self.qemu.package_version}"
                  .strip()),
                 ("lab_openvswitch", self.openvswitch),
                 ("lab_openvswitch_package", self.openvswitch_package),
                 ("lab_accelerator", f"{self.accelerator} ({self.accelerator_reason})"),
                 ("lab_python", self.python),
                 ("lab_labfixtures", self.labfixtures)]
        if self.qemu.selected:
            props.append(("lab_qemu_selected", self.qemu.selected))
        if self.guest_kernel:
            props.append(("lab_guest_kernel_selected", self.guest_kernel))
        for name, img in sorted(self.images.items()):
            props.append((f"lab_image_{name}", img.describe().split(": ", 1)[1]))
        return props

    def header_lines(self) -> list[str]:
        lines = [f"labfixtures: host kernel {self.host_kernel}; {self.qemu.describe()}; "
                 f"Open vSwitch {self.openvswitch} ({self.openvswitch_package or 'no package'})"
                 f"; Python {self.python}; labfixtures {self.labfixtures}"]
        if self.images:
            lines.append("labfixtures: images " + "; ".join(
                i.describe() for _, i in sorted(self.images.items())))
        return lines


def differences(base: Versions, new: Versions) -> list[tuple[str, str, str]]:
    """(what, base value, new value) for each property that differs."""
    a, b = dict(base.properties()), dict(new.properties())
    return [(k, a.get(k, ""), b.get(k, "")) for k in sorted(set(a) | set(b))
            if a.get(k, "") != b.get(k, "")
            and k not in ("lab_qemu_selected", "lab_guest_kernel_selected")]


def _first_line(argv: list[str]) -> str:
    try:
        cp = run(argv, timeout=30, check=False, missing="")
    except LabError:
        return UNKNOWN
    return cp.stdout.strip().split("\n")[0] if cp.ok else UNKNOWN


#: what the probes said, by the files they depend on: `<cache>/version-probes.json`
PROBE_CACHE = "version-probes.json"
DPKG_STATUS = Path("/var/lib/dpkg/status")  # changes with every package installed


def _stamp(path: Path | str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


def cached_probe(what: str, files: list[Path | str], probe: Callable[[], list[str]],
                 cache: Path | None = None) -> list[str]:
    """PROBE's answer, asked again only when one of FILES (a binary, dpkg's database)
    changed: kept in CACHE (default `<cache>/version-probes.json`) under WHAT and the
    files' path, size and mtime. An answer holding UNKNOWN is not kept."""
    cache = cache if cache is not None else guestimages.default_cache_dir() / PROBE_CACHE
    key = "|".join([what, *map(_stamp, files)])
    known: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(cache.read_text())
        known = loaded if isinstance(loaded, dict) else {}
    got = known.get(what)
    if isinstance(got, dict) and got.get("key") == key and isinstance(got.get("value"), list):
        return [str(v) for v in got["value"]]
    value = probe()
    if UNKNOWN not in value:
        known[what] = {"key": key, "value": value}
        with contextlib.suppress(OSError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
            tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
            tmp.rename(cache)
    return value


def _qemu_probe(path: str) -> list[str]:
    try:
        version = builds.version_of(path)
    except LabError:
        version = UNKNOWN
    return [version, *builds.package_of(path)]


def qemu_version(selected: str = "", cache: Path | None = None) -> QemuVersion:
    found = builds.selected()  # --lab-qemu's choice, else the one on PATH
    if not os.path.isfile(found):
        return QemuVersion(selected=selected)
    path = os.path.realpath(found)
    # a fetched build's launcher: its build.json says the package; the binary it runs
    # is what changes when the build is fetched again
    version, package, package_version = cached_probe(
        f"qemu {path}", [path, Path(path).parent.parent / builds.BUILD_FILE, DPKG_STATUS],
        lambda: _qemu_probe(path), cache)
    return QemuVersion(path, version, package, package_version, selected)


def _ovs_probe() -> list[str]:
    ovs = _first_line(["ovs-vswitchd", "--version"])
    pkg = run(["dpkg-query", "-W", "-f=${Version}", "openvswitch-switch"], timeout=30,
              check=False, missing="")
    return [ovs.rsplit(" ", 1)[-1] if ovs != UNKNOWN else ovs,
            pkg.stdout.strip() if pkg.ok else ""]


def image_versions() -> dict[str, ImageVersion]:
    out = {}
    try:
        infos = guestimages.list_images()
    except LabError:
        return {}
    for info in infos:
        img = info.current
        if img is None:
            out[info.name] = ImageVersion(info.name)
            continue
        kpkg = next((p for p in sorted(img.packages) if p.startswith("linux-image-")), "")
        out[info.name] = ImageVersion(info.name, img.recipe_hash,
                                      img.facts.get("kernel_release", ""), kpkg,
                                      img.packages.get(kpkg, ""))
    return out


def labfixtures_version() -> str:
    try:
        return importlib.metadata.version("labfixtures")
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


def collect(selected_qemu: str = "", images: bool = True,
            guest_kernel: str = "") -> Versions:
    """Ask the host what this run runs on (QEMU: the one machines start, --lab-qemu's).
    The answers of the binaries and of dpkg are cached by their files (`cached_probe`)."""
    ovs_bin = shutil.which("ovs-vswitchd") or "ovs-vswitchd"
    ovs, ovs_pkg = cached_probe("openvswitch", [ovs_bin, DPKG_STATUS], _ovs_probe)
    try:
        acc = accel.detect()
        acc_name, acc_reason = acc.name, acc.reason
    except LabError as e:
        acc_name, acc_reason = UNKNOWN, e.problem
    return Versions(
        host_kernel=platform.release(),
        qemu=qemu_version(selected_qemu),
        openvswitch=ovs, openvswitch_package=ovs_pkg,
        accelerator=acc_name, accelerator_reason=acc_reason,
        python=platform.python_version(), labfixtures=labfixtures_version(),
        images=image_versions() if images else {},
        guest_kernel=guest_kernel,
    )


__all__ = ["ImageVersion", "QemuVersion", "Versions", "collect", "differences"]
