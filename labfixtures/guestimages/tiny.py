"""The `tiny` guest: Debian's kernel + a busybox/dropbear initramfs, SSH-ready in ~2 s.

Why these choices (docs/host-facts.md, measured under TCG):

* the kernel is Debian's own (`linux-image-amd64`'s dependency, fetched with
  `apt-get download`), never the host's /boot: the image must not change when the host
  upgrades its kernel, only when APT offers a new package;
* `vmlinux` is extracted from the compressed stream inside `vmlinuz` (xz; lz4 in Debian's
  `cloud` flavour) and booted through its PVH entry: decompressing under TCG costs ~3 s
  per boot, extracting once costs ~1 s;
* the initramfs is the root filesystem (no disk, nothing to copy per VM); it holds
  busybox-static, dropbear with a host key made at build time (generating one at first
  connection cost ~1 s), iproute2's real `ip` (busybox's lacks much of what scenarios
  check) with its libraries, and the virtio modules in dependency order;
* the guest's identity comes from the kernel command line (see `config.py`), so one image
  serves every VM of every lab.

Userland binaries are taken from the host's installed Debian packages (busybox-static,
dropbear-bin, iproute2): their versions enter the recipe hash, so an upgrade rebuilds.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labfixtures.core.runner import run
from labfixtures.errors import LabError
from labfixtures.guestimages import apt, bzimage, rootfs
from labfixtures.guestimages.apt import apt_download, deb_extract, require_installed
from labfixtures.guestimages.cache import GuestImage, ImageCache, Progress, source_digest
from labfixtures.guestimages.rootfs import data_file, shared_libraries
from labfixtures.qemu.spec import READY_MARKER

KERNEL_META = "linux-image-amd64"
HOST_PACKAGES = ["busybox-static", "dropbear-bin", "iproute2", "libc6"]
MARKER = READY_MARKER

#: the load order of docs/host-facts.md, plus the transports and devices the profiles use.
#: Missing optional modules are skipped; dependencies found in each module's .modinfo are
#: added first.
MODULES = [
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
    "virtio_mmio", "failover", "net_failover", "virtio_net", "virtio_blk",
    "virtio_balloon", "virtio_console", "virtio_rng",
]
REQUIRED_MODULES = {"virtio_ring", "virtio", "virtio_pci", "virtio_mmio", "virtio_net",
                    "virtio_blk"}
MODULE_PATHS = {  # where each module lives under lib/modules/VERSION/kernel
    "virtio_ring": "drivers/virtio/virtio_ring", "virtio": "drivers/virtio/virtio",
    "virtio_pci_modern_dev": "drivers/virtio/virtio_pci_modern_dev",
    "virtio_pci_legacy_dev": "drivers/virtio/virtio_pci_legacy_dev",
    "virtio_pci": "drivers/virtio/virtio_pci", "virtio_mmio": "drivers/virtio/virtio_mmio",
    "failover": "net/core/failover", "net_failover": "drivers/net/net_failover",
    "virtio_net": "drivers/net/virtio_net", "virtio_blk": "drivers/block/virtio_blk",
    "virtio_balloon": "drivers/virtio/virtio_balloon",
    "virtio_console": "drivers/char/virtio_console",
    "virtio_rng": "drivers/char/hw_random/virtio-rng",
}

#: busybox init's table, its boot script (reads the lf.* words of /proc/cmdline, config.py)
#: and the udhcpc hook: shell files in files/, hashed into the recipe
INIT_FILES = {"etc/inittab": ("tiny-inittab", 0o644), "etc/rc.lab": ("tiny-rc.sh", 0o755),
              "etc/udhcpc.script": ("tiny-udhcpc.sh", 0o755)}


# -- newc cpio ------------------------------------------------------------------------------


@dataclass
class Cpio:
    """An initramfs built in memory: deterministic (mtime 0, sorted), no root needed."""

    entries: dict[str, tuple[int, int, int, bytes, int]] = field(default_factory=dict)

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p and p not in self.entries:
                self.dir(p)

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFDIR | mode, uid, gid, b"", 0)

    def file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0,
             gid: int = 0) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFREG | mode, uid, gid, data, 0)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFLNK | 0o777, 0, 0, target.encode(), 0)

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFCHR | mode, 0, 0, b"", (major << 8) | minor)

    def write(self, out: io.BufferedIOBase) -> None:
        def rec(name: str, ino: int, mode: int, uid: int, gid: int, data: bytes,
                rdev: int) -> None:
            bname = name.encode() + b"\0"
            hdr = "070701" + "".join(f"{x:08x}" for x in (
                ino, mode, uid, gid, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0,
                rdev >> 8, rdev & 0xFF, len(bname), 0))
            out.write(hdr.encode() + bname + b"\0" * (-(110 + len(bname)) % 4))
            out.write(data + b"\0" * (-len(data) % 4))

        for ino, name in enumerate(sorted(self.entries), start=1):
            rec(name, ino, *self.entries[name])
        rec("TRAILER!!!", 0, 0, 0, 0, b"", 0)


# -- helpers -------------------------------------------------------------------------------


def module_depends(ko: bytes) -> list[str]:
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def _package_file(package: str, pattern: str) -> Path:
    cp = run(["dpkg-query", "-L", package], check=False, missing="build images on Debian")
    for line in cp.stdout.splitlines():
        if re.search(pattern, line) and Path(line).is_file():
            return Path(line)
    raise LabError(f"no file matching {pattern!r} in the installed package {package}",
                   f"apt-get install --reinstall {package}")


# -- the recipe ----------------------------------------------------------------------------


LOGIN_SHELL = """#!/bin/sh
# login shell of the tiny guest: `sh -c CMD` (what SSH runs) with iproute2's ip first
. /etc/lf-shell-functions
if [ "$1" = "-c" ]; then
    shift
    eval "$1"
else
    exec /bin/sh -l "$@"
fi
"""


@dataclass
class TinyRecipe:
    name: str = "tiny"
    description: str = "Debian kernel + busybox/dropbear initramfs (root in RAM, ~2 s boot)"
    compress: str = "none"  # "none" boots fastest under TCG; "gzip" is smaller
    steps: int = 7

    def kernel_package(self, cache: ImageCache) -> tuple[str, str]:
        """The kernel the KERNEL_META metapackage would install now, and its version."""
        _, depends = cache.apt_candidate(KERNEL_META)
        m = re.search(r"(linux-image-[0-9][^ ,()]*)(?: \(= ([^)]+)\))?", depends)
        if not m:
            raise LabError(f"cannot tell which kernel {KERNEL_META} depends on ({depends!r})",
                           "run `apt-get update`; check the APT sources")
        pkg = m.group(1)
        return pkg, m.group(2) or cache.apt_candidate(pkg)[0]

    def fingerprint(self, cache: ImageCache) -> dict[str, Any]:
        pkg, version = self.kernel_package(cache)
        here = Path(__file__).parent
        return {
            "sources": source_digest(Path(__file__), here / "cache.py", Path(apt.__file__),
                                     Path(rootfs.__file__), Path(bzimage.__file__),
                                     *(data_file(f) for f, _ in INIT_FILES.values())),
            "params": {"compress": self.compress, "modules": MODULES},
            "packages": {pkg: version, **require_installed(HOST_PACKAGES)},
        }

    def build(self, cache: ImageCache, out: Path, progress: Progress) -> GuestImage:
        progress.step("resolving packages")
        pkg, version = self.kernel_package(cache)
        host = require_installed(HOST_PACKAGES)

        progress.step(f"apt-get download {pkg}={version}")
        deb = apt_download(pkg, version, cache.debs_dir)

        progress.step(f"extracting the kernel and {len(MODULES)} modules from {deb.name}")
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            root = Path(tmp)
            deb_extract(deb, root, ["./boot/vmlinuz-*"],
                        optional=("./boot/config-*",
                                  *(f"*/kernel/{p}.ko*" for p in MODULE_PATHS.values())))
            vmlinuz = next(root.glob("boot/vmlinuz-*"))
            release = vmlinuz.name.removeprefix("vmlinuz-")
            modules = self._modules(root)
            config = root / "boot" / f"config-{release}"
            mp_table = not config.exists() or \
                "# CONFIG_X86_MPPARSE is not set" not in config.read_text(errors="replace")

            progress.step("extracting vmlinux (PVH entry) from vmlinuz")
            bzimage.extract_vmlinux(vmlinuz, out / "vmlinux")

        progress.step("collecting busybox, dropbear, ip and their libraries")
        img = Cpio()
        self._userland(img, cache, release, modules)

        progress.step("generating the dropbear host key")
        host_pub = self._host_key(img)

        progress.step(f"writing the initramfs ({self.compress})")
        initrd = out / "initrd.img"
        with open(initrd, "wb") as f:
            if self.compress == "gzip":
                with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=6) as gz:
                    img.write(gz)
            else:
                img.write(f)
        progress.done(f"built {out.name}")
        return GuestImage(
            name=self.name, recipe_hash="", path=out, kernel=out / "vmlinux", initrd=initrd,
            disk=None, cmdline="console=ttyS0 panic=-1", ssh_user="root",
            private_key=cache.private_key, public_key=cache.public_key(),
            packages={pkg: version, **host}, host_public_key=host_pub,
            facts={"kernel_release": release, "marker": MARKER,
                   "modules": " ".join(m for m, _ in modules),
                   "mp_table": "yes" if mp_table else "no"},
        )

    def _modules(self, root: Path) -> list[tuple[str, bytes]]:
        """(name, .ko bytes) in load order: MODULES order, dependencies first."""
        found: dict[str, bytes] = {}
        for name, rel in MODULE_PATHS.items():
            hits = list(root.glob(f"*/modules/*/kernel/{rel}.ko*")) + \
                list(root.glob(f"modules/*/kernel/{rel}.ko*"))
            if not hits:
                if name in REQUIRED_MODULES:
                    raise LabError(f"the kernel package has no {name} module",
                                   "this recipe needs a kernel with virtio as modules")
                continue
            data = hits[0].read_bytes()
            if hits[0].suffix == ".xz":
                data = lzma.decompress(data)
            elif hits[0].suffix != ".ko":
                raise LabError(f"module {hits[0].name} is compressed in an unknown format",
                               "extend tiny.py to decompress it")
            found[name] = data
        order: list[str] = []

        def visit(n: str) -> None:
            if n in order or n not in found:
                return
            for dep in module_depends(found[n]):
                visit(dep.replace("-", "_"))
            order.append(n)

        for n in MODULES:
            visit(n)
        return [(n, found[n]) for n in order]

    def _userland(self, img: Cpio, cache: ImageCache, release: str,
                  modules: list[tuple[str, bytes]]) -> None:
        for d in ("bin", "lib", "lib64", "etc", "proc", "sys", "dev", "run", "usr", "var"):
            img.dir(d)
        img.dir("tmp", 0o1777)
        img.chardev("dev/console", 5, 1)
        img.symlink("sbin", "bin")
        img.symlink("usr/bin", "../bin")
        img.symlink("usr/sbin", "../bin")
        img.symlink("var/run", "../run")
        img.dir("var/log")

        busybox = _package_file("busybox-static", r"/s?bin/busybox$")
        img.file("bin/busybox", busybox.read_bytes(), 0o755)
        applets = run([str(busybox), "--list"]).stdout.split()
        for a in applets:
            if a not in ("busybox", "ip") and "/" not in a:
                img.symlink(f"bin/{a}", "busybox")
        img.symlink("init", "bin/busybox")

        binaries = {
            "bin/ip": _package_file("iproute2", r"/s?bin/ip$"),
            "bin/dropbear": _package_file("dropbear-bin", r"/s?bin/dropbear$"),
        }
        libs: set[str] = set()
        for dest, src in binaries.items():
            img.file(dest, src.read_bytes(), 0o755)
            libs.update(shared_libraries(src))
        for lib in sorted(libs):
            img.file(lib, Path(lib).resolve().read_bytes(), 0o755)
        for conf in (Path("/etc/iproute2"), Path("/usr/share/iproute2")):
            if conf.is_dir():
                for f in conf.rglob("*"):
                    if f.is_file():
                        img.file(str(f), f.read_bytes())

        img.dir(f"lib/modules/{release}")
        for name, data in modules:
            img.file(f"lib/modules/{name}.ko", data)
        img.file("etc/modules", "".join(f"{n}\n" for n, _ in modules).encode())

        key = (cache.public_key() + "\n").encode()
        img.dir("root", 0o700)
        img.dir("root/.ssh", 0o700)
        img.file("root/.ssh/authorized_keys", key, 0o600)
        img.dir("home/etu", 0o755, 1000, 1000)
        img.dir("home/etu/.ssh", 0o700, 1000, 1000)
        img.file("home/etu/.ssh/authorized_keys", key, 0o600, 1000, 1000)

        img.file("etc/passwd", b"root:*:0:0:root:/root:/bin/lfsh\n"
                               b"etu:*:1000:1000:etu:/home/etu:/bin/lfsh\n")
        img.file("etc/group", b"root:x:0:\ntty:x:5:\netu:x:1000:\n")
        img.file("etc/shells", b"/bin/sh\n/bin/ash\n/bin/lfsh\n")
        # Debian's busybox ash runs its own applets before anything on PATH, so `ip`
        # would be busybox's, without -j or `neigh` states: the login shell makes
        # iproute2's ip win (a shell function beats an applet).
        img.file("etc/lf-shell-functions", b'ip() { /bin/ip "$@"; }\n')
        img.file("bin/lfsh", LOGIN_SHELL.encode(), 0o755)
        img.file("etc/hostname", b"tiny\n")
        img.file("etc/hosts", b"127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
        img.file("etc/resolv.conf", b"")
        img.file("etc/profile", b"export PATH=/bin:/sbin\nexport PS1='\\h:\\w\\$ '\n"
                                b". /etc/lf-shell-functions\n")
        img.file("etc/os-release", (
            'NAME="labfixtures tiny"\nID=labfixtures-tiny\nID_LIKE=debian\n'
            f'VERSION_ID="{release}"\nPRETTY_NAME="labfixtures tiny ({release})"\n').encode())
        for dest, (name, mode) in INIT_FILES.items():
            text = data_file(name).read_text().replace("@MARKER@", MARKER)
            img.file(dest, text.encode(), mode)

    def _host_key(self, img: Cpio) -> str:
        dropbearkey = shutil.which("dropbearkey") or "/usr/bin/dropbearkey"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "key")
            run([dropbearkey, "-t", "ed25519", "-f", path], remedy="apt-get install dropbear-bin")
            img.dir("etc/dropbear", 0o700)
            img.file("etc/dropbear/dropbear_ed25519_host_key",
                     Path(path).read_bytes(), 0o600)
            pub = run([dropbearkey, "-y", "-f", path], check=False).stdout
        line = next((x for x in pub.splitlines() if x.startswith("ssh-ed25519 ")), "")
        return " ".join(line.split()[:2])


RECIPE = TinyRecipe()
