"""Debian packages, from the host's APT and dpkg: candidates, installed versions, downloads;
and APT's index inside a guest tree (`offline_index`).

The recipes take their kernels from APT (`apt_candidate`, `apt_download`, `deb_extract`)
and some userland from the host's installed packages (`require_installed`); the versions
enter the recipe hashes, so a new package rebuilds an image.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
from pathlib import Path

from labfixtures.core.runner import run
from labfixtures.errors import CommandError, HostResourceError, LabError
from labfixtures.guestimages.rootfs import chroot


def apt_signature() -> list[int]:
    sig = []
    for p in ("/var/lib/apt/lists", "/etc/apt", "/etc/apt/sources.list",
              "/etc/apt/sources.list.d", "/etc/apt/preferences", "/etc/apt/preferences.d"):
        try:
            sig.append(os.stat(p).st_mtime_ns)
        except OSError:
            sig.append(0)
    return sig


@functools.lru_cache(maxsize=64)
def apt_candidate(package: str) -> tuple[str, str]:
    """(version, Depends line) of PACKAGE's candidate, as APT would install it now."""
    out = run(["apt-cache", "show", "--no-all-versions", package], timeout=600,
              remedy=f"check that {package} exists for this release; run `apt-get update`",
              missing="build images on a Debian host").stdout
    fields = dict(re.findall(r"^(Version|Depends): (.*)$", out, re.M))
    if "Version" not in fields:
        raise LabError(f"APT knows no candidate version of {package}", "run `apt-get update`")
    return fields["Version"], fields.get("Depends", "")


def installed_versions(packages: list[str]) -> dict[str, str | None]:
    """Installed version of each package (None if absent), in one dpkg-query call."""
    try:
        cp = run(["dpkg-query", "-W", "-f=${Package}\t${Status}\t${Version}\n", *packages],
                 timeout=30, check=False)
    except HostResourceError:
        return dict.fromkeys(packages)
    found: dict[str, str | None] = dict.fromkeys(packages)
    for line in cp.stdout.splitlines():
        name, status, version = (line.split("\t") + ["", ""])[:3]
        if name in found and status.endswith(" installed"):
            found[name] = version
    return found


def require_installed(packages: list[str]) -> dict[str, str]:
    versions = installed_versions(packages)
    found = {p: v for p, v in versions.items() if v is not None}
    missing = [p for p in versions if p not in found]
    if missing:
        raise HostResourceError("package", " ".join(missing),
                                f"apt-get install {' '.join(missing)}",
                                problem="the image recipe needs the host packages "
                                f"{', '.join(missing)}")
    return found


def apt_download(package: str, version: str, dest: Path) -> Path:
    """`apt-get download PACKAGE=VERSION` into DEST, unless that exact file is there already.

    The file name (`name_version_arch.deb`) is the version record.
    """
    have = [p for p in dest.glob(f"{package}_*.deb")
            if p.name.split("_")[1].replace("%3a", ":") == version]
    if have:
        return have[0]
    with tempfile.TemporaryDirectory(dir=dest, prefix=".dl-") as tmp:
        os.chmod(tmp, 0o755)
        argv = ["apt-get", "download", "-q", f"{package}={version}"]
        if os.geteuid() == 0:  # root cannot hand the directory to _apt's sandbox: skip it
            argv[1:1] = ["-o", "APT::Sandbox::User=root"]
        run(argv, cwd=tmp, timeout=1800, missing="build images on a Debian host",
            remedy="check the APT sources and network access to the mirror; "
            "run `apt-get update`")
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise LabError(f"apt-get download {package} produced {len(debs)} files", "")
        target = dest / debs[0].name
        debs[0].rename(target)
    return target


def deb_extract(deb: Path, dest: Path, patterns: list[str],
                optional: tuple[str, ...] = ()) -> list[Path]:
    """Extract the members of DEB matching shell PATTERNS (e.g. `./boot/vmlinuz-*`).

    Patterns in OPTIONAL may match nothing (a module this kernel does not have).

    `dpkg-deb --fsys-tarfile | tar --wildcards` writes only what we need: a kernel package
    unpacks to ~400 MB, of which an initramfs needs a dozen modules.
    """
    dest.mkdir(parents=True, exist_ok=True)
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(dest), "--wildcards", *patterns, *optional],
                         stdin=dpkg.stdout, capture_output=True, text=True)
    assert dpkg.stdout is not None
    dpkg.stdout.close()
    dpkg_err = dpkg.stderr.read().decode() if dpkg.stderr else ""
    dpkg.wait()
    if dpkg.returncode != 0:
        raise CommandError(["dpkg-deb", "--fsys-tarfile", str(deb)], dpkg.returncode, dpkg_err)
    errors = [line for line in tar.stderr.splitlines()
              if not any(line.startswith(f"tar: {o}: Not found") for o in optional)
              and not line.startswith("tar: Exiting with failure")]
    if tar.returncode != 0 and errors:
        raise CommandError(["tar", "-x", *patterns], tar.returncode, tar.stderr)
    return [p for p in dest.rglob("*") if p.is_file()]


def mirror_from_apt(suite: str, apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror URI that the host's APT uses for SUITE (deb822 or one-line sources).

    Why: the hosts reach only the mirror configured for them; a mirror written in the code
    would break elsewhere.
    """
    candidates: list[tuple[str, list[str], list[str], list[str]]] = []
    for f in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", f.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            candidates.append((fields.get("uris", ""), fields.get("types", "").split(),
                               fields.get("suites", "").split(),
                               fields.get("components", "").split()))
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for f in lists:
        if not f.exists():
            continue
        for line in f.read_text().splitlines():
            line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] in ("deb", "deb-src"):
                candidates.append((line[1], [line[0]], [line[2]], line[3:]))
    for uris, types, suites, components in candidates:
        if "deb" in types and suite in suites and "main" in components:
            for uri in uris.split():
                if uri.startswith(("http://", "https://", "file:/")):
                    return uri.rstrip("/")
    raise LabError(f"no Debian mirror for '{suite} main' in the APT configuration of {apt_dir}",
                   f"add a 'deb' source for {suite} to /etc/apt/sources.list.d/")


def offline_index(tree: Path) -> None:
    """APT's package lists in TREE cut down to its installed packages, and its binary cache
    built here, at native speed. A lab guest has no network: the archive's whole index
    (50 MB, 63,000 packages) could only slow apt down, and every apt command spent 2.4 s
    of TCG loading its cache (6.3 s for the first one, which built it). The §6 scenario
    runs apt-get and apt-mark on what is installed. Call it last: the cache stays valid as
    long as the lists and dpkg's status keep their dates, which root.img preserves.
    srcpkgcache.bin is only a shortcut for rebuilding the cache."""
    status = (tree / "var/lib/dpkg/status").read_text()
    installed = {m.group(1) for m in re.finditer(
        r"^Package: (\S+)\n(?:(?!\n\n).)*?^Status: install ok installed$", status,
        re.M | re.S)}
    for lst in (tree / "var/lib/apt/lists").glob("*_Packages"):
        stanzas = lst.read_text().split("\n\n")
        keep = [st for st in stanzas
                if (m := re.match(r"Package: (\S+)", st)) and m.group(1) in installed]
        lst.write_text("\n\n".join(keep) + "\n")
    chroot(tree, "apt-cache", "gencaches")
    (tree / "var/cache/apt/srcpkgcache.bin").unlink(missing_ok=True)
