"""The `tiny` guest: Debian's kernel + a busybox/dropbear initramfs, SSH-ready in ~2 s.

Why these choices (docs/host-facts.md, measured under TCG):

* the kernel is Debian's own (`linux-image-amd64`'s dependency, fetched with
  `apt-get download`), never the host's /boot: the image must not change when the host
  upgrades its kernel, only when APT offers a new package;
* `vmlinux` is extracted from the xz stream inside `vmlinuz` and booted through its PVH
  entry: decompressing under TCG costs ~3 s per boot, extracting once costs ~1 s;
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

import io
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from labfixtures.errors import LabError
from labfixtures.guestimages.cache import (
    GuestImage,
    ImageCache,
    Progress,
    apt_download,
    deb_extract,
    require_installed,
    source_digest,
)

KERNEL_META = "linux-image-amd64"
HOST_PACKAGES = ["busybox-static", "dropbear-bin", "iproute2", "libc6"]
MARKER = "labfixtures: ready"

#: the load order of docs/host-facts.md, plus the transports and devices the profiles use. Missing optional
#: modules are skipped; dependencies found in each module's .modinfo are added first.
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

INITTAB = """\
::sysinit:/etc/rc.lab
::ctrlaltdel:/bin/poweroff -f
::shutdown:/bin/umount -a -r
"""

# Run once by busybox init. Reads the lf.* words of /proc/cmdline (config.py).
RC = r"""#!/bin/sh
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
ln -sf /proc/self/fd /dev/fd
read -r CMDLINE < /proc/cmdline
csv() { local IFS=,; set -- $1; echo "$@"; }
TRACE=
for w in $CMDLINE; do case "$w" in lf.trace=1) TRACE=1 ;; esac; done
trace() { [ -n "$TRACE" ] && echo "lf-trace: $1 $(cut -d' ' -f1 /proc/uptime)"; }
trace start

DAD=0
UP=
for w in $CMDLINE; do case "$w" in lf.dad=1) DAD=1 ;; esac; done
# EUI-64 link-local addresses (addr_gen_mode 0, not stable-privacy), set before any NIC
for c in all default; do
    echo 0 > /proc/sys/net/ipv6/conf/$c/addr_gen_mode
    echo $DAD > /proc/sys/net/ipv6/conf/$c/accept_dad
done

# virtio_net turns the carrier off in its probe and back on from a work item a moment later;
# linkwatch applies the second change up to 1 s late (one run per second), and the kernel
# makes the link-local address only then. So each NIC gets its EUI-64 link-local address
# from here, as soon as it is up: the very address the kernel would make (addr_gen_mode 0),
# usable at once with DAD off (with lf.dad=1 it stays tentative until the link is ready,
# then DAD runs as usual). The kernel's own attempt later finds it there.
# (No subshells here: each fork costs milliseconds under TCG.)
eui64() {  # sets LL from a MAC address
    local IFS=:
    set -- $1
    [ $# = 6 ] || return 1
    LL=$(printf 'fe80::%x:%x:%x:%x' $(((0x$1 ^ 2) << 8 | 0x$2)) $((0x$3 << 8 | 0xff)) \
         $((0xfe00 | 0x$4)) $((0x$5 << 8 | 0x$6)))
}
links_up() {
    for d in /sys/class/net/*; do
        n=${d##*/}
        case " lo $UP " in *" $n "*) continue ;; esac
        UP="$UP $n"
        ip link set "$n" up
        read -r t < "$d/type"; read -r mac < "$d/address"
        [ "$t" = 1 ] && eui64 "$mac" && ip -6 addr add "$LL/64" dev "$n" 2>/dev/null
    done
}
# Each insmod costs tens of ms under TCG: load a transport only if its bus has devices,
# a device driver only if a virtio device of its type (virtio ids) is present.
VIRTIO_IDS=
has_id() {
    if [ -z "$VIRTIO_IDS" ]; then
        VIRTIO_IDS=" "
        for f in /sys/bus/virtio/devices/*/device; do
            [ -e "$f" ] && read -r id < "$f" && VIRTIO_IDS="$VIRTIO_IDS$id "
        done
    fi
    case "$VIRTIO_IDS" in *" $1 "*) return 0 ;; esac
    return 1
}
while read -r m; do
    case "$m" in
    virtio_pci*) set -- /sys/bus/pci/devices/*; [ -e "$1" ] || continue ;;
    virtio_mmio) set -- /sys/bus/acpi/devices/LNRO0005:* /sys/bus/platform/devices/*virtio*
                 [ -e "$1" ] || [ -e "$2" ] || case "$CMDLINE" in
                     *virtio_mmio.device=*) ;; *) continue ;; esac ;;
    virtio_net) has_id 0x0001 || continue ;;
    virtio_blk) has_id 0x0002 || continue ;;
    virtio_console) has_id 0x0003 || continue ;;
    virtio_rng) has_id 0x0004 || continue ;;
    virtio_balloon) has_id 0x0005 || continue ;;
    esac
    args=
    for w in $CMDLINE; do case "$w" in "$m".*=*) args="$args ${w#"$m".}" ;; esac; done
    insmod /lib/modules/"$m".ko $args
    trace "insmod-$m"
    [ "$m" = virtio_net ] && links_up
done < /etc/modules
trace modules
ip link set lo up
links_up

for w in $CMDLINE; do
    v=${w#*=}
    case "$w" in
    lf.hostname=*) hostname "$v"; echo "$v" > /etc/hostname
                   echo "127.0.1.1 $v" >> /etc/hosts ;;
    lf.mtu=*) set -- $(csv "$v"); ip link set dev "$1" mtu "$2" ;;
    lf.ip=*) set -- $(csv "$v"); dev=$1; shift
             for a in "$@"; do ip addr add "$a" dev "$dev"; done ;;
    lf.dns=*) echo "nameserver $v" >> /etc/resolv.conf ;;
    lf.key=*) echo "${v%%:*} ${v#*:}" >> /root/.ssh/authorized_keys ;;
    esac
done
trace addresses
dropbear -r /etc/dropbear/dropbear_ed25519_host_key -s -P /run/dropbear.pid
trace dropbear-started
for w in $CMDLINE; do
    case "$w" in
    lf.dhcp=*) udhcpc -i "${w#*=}" -s /etc/udhcpc.script -t 20 -T 1 -A 1 -b -S ;;
    esac
done
for w in $CMDLINE; do
    v=${w#*=}
    case "$w" in
    lf.gw=*) ip route replace default via "$v" ;;
    lf.gw6=*) set -- $(csv "$v"); ip -6 route replace default via "$1" ${2:+dev "$2"} ;;
    lf.route=*) set -- $(csv "$v")
                ip route replace "$1" ${2:+via "$2"} ${3:+dev "$3"} ;;
    esac
done

trace routes
i=0
until grep -q ':0016 [0-9A-F]*:0000 0A' /proc/net/tcp6 /proc/net/tcp 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 1000 ] && break; usleep 5000
done
# "ready" means reachable: every NIC has its (non-tentative) IPv6 link-local address
i=0
while [ $i -lt 300 ]; do
    missing=
    for d in /sys/class/net/*; do
        n=${d##*/}
        [ "$n" = lo ] && continue
        ok=
        while read -r addr idx plen scope flags name; do
            [ "$name" = "$n" ] && [ "$scope" = 20 ] || continue
            case "$flags" in [4567cdef]?) ;; *) ok=1 ;; esac
        done < /proc/net/if_inet6
        [ -z "$ok" ] && missing="$missing $n"
    done
    [ -z "$missing" ] && break
    i=$((i + 1)); usleep 10000
done
trace link-local${missing:+-missing:$missing}
echo "@MARKER@ (uptime $(cut -d' ' -f1 /proc/uptime)s)"
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# busybox udhcpc hook: $interface $ip $mask(prefix length) $router $dns $domain
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
    ip addr replace "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    if [ -n "$dns" ]; then
        : > /etc/resolv.conf
        [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    fi ;;
esac
exit 0
"""


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


def extract_vmlinux(vmlinuz: Path, out: Path) -> None:
    """The uncompressed kernel (ELF with a PVH note) from the xz stream inside bzImage."""
    data = vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise LabError(f"{vmlinuz.name} holds no xz stream",
                       "this recipe expects Debian's xz-compressed kernel (CONFIG_KERNEL_XZ)")
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    elf = dec.decompress(data[start:])
    if not elf.startswith(b"\x7fELF"):
        raise LabError(f"the xz stream in {vmlinuz.name} is not an ELF kernel", "")
    out.write_bytes(elf)


def shared_libraries(binary: Path) -> list[str]:
    """Absolute paths (as the loader sees them) of BINARY's libraries, via ldd."""
    cp = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if cp.returncode != 0:
        return []  # static
    libs = []
    for line in cp.stdout.splitlines():
        m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            libs.append(m.group(1))
    return libs


def module_depends(ko: bytes) -> list[str]:
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def _package_file(package: str, pattern: str) -> Path:
    cp = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True)
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
        """The kernel the `linux-image-amd64` metapackage would install now, and its version."""
        _, depends = cache.apt_candidate(KERNEL_META)
        m = re.search(r"(linux-image-[0-9][^ ,()]*)(?: \(= ([^)]+)\))?", depends)
        if not m:
            raise LabError(f"cannot tell which kernel {KERNEL_META} depends on ({depends!r})",
                           "run `apt-get update`; check the APT sources")
        pkg = m.group(1)
        return pkg, m.group(2) or cache.apt_candidate(pkg)[0]

    def fingerprint(self, cache: ImageCache) -> dict:
        pkg, version = self.kernel_package(cache)
        return {
            "sources": source_digest(Path(__file__), Path(__file__).with_name("cache.py")),
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
                        optional=tuple(f"*/kernel/{p}.ko*" for p in MODULE_PATHS.values()))
            vmlinuz = next(root.glob("boot/vmlinuz-*"))
            release = vmlinuz.name.removeprefix("vmlinuz-")
            modules = self._modules(root)

            progress.step("extracting vmlinux (PVH entry) from the xz stream of vmlinuz")
            extract_vmlinux(vmlinuz, out / "vmlinux")

        progress.step("collecting busybox, dropbear, ip and their libraries")
        img = Cpio()
        self._userland(img, cache, release, modules)

        progress.step("generating the dropbear host key")
        host_pub = self._host_key(img)

        progress.step(f"writing the initramfs ({self.compress})")
        initrd = out / "initrd.img"
        with open(initrd, "wb") as f:
            if self.compress == "gzip":
                import gzip

                with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=6) as gz:
                    img.write(gz)  # type: ignore[arg-type]
            else:
                img.write(f)
        progress.done(f"built {out.name}")
        return GuestImage(
            name=self.name, recipe_hash="", path=out, kernel=out / "vmlinux", initrd=initrd,
            disk=None, cmdline="console=ttyS0 panic=-1", ssh_user="root",
            private_key=cache.private_key, public_key=cache.public_key(),
            packages={pkg: version, **host}, host_public_key=host_pub,
            facts={"kernel_release": release, "marker": MARKER,
                   "modules": " ".join(m for m, _ in modules)},
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
        applets = subprocess.run([str(busybox), "--list"], capture_output=True,
                                 text=True, check=True).stdout.split()
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
        img.file("etc/inittab", INITTAB.encode())
        img.file("etc/rc.lab", RC.replace("@MARKER@", MARKER).encode(), 0o755)
        img.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)

    def _host_key(self, img: Cpio) -> str:
        dropbearkey = shutil.which("dropbearkey") or "/usr/bin/dropbearkey"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "key")
            cp = subprocess.run([dropbearkey, "-t", "ed25519", "-f", path],
                                capture_output=True, text=True)
            if cp.returncode != 0:
                raise LabError(f"dropbearkey failed: {cp.stderr.strip()}",
                               "apt-get install dropbear-bin")
            img.dir("etc/dropbear", 0o700)
            img.file("etc/dropbear/dropbear_ed25519_host_key",
                     Path(path).read_bytes(), 0o600)
            pub = subprocess.run([dropbearkey, "-y", "-f", path], capture_output=True,
                                 text=True).stdout
        line = next((x for x in pub.splitlines() if x.startswith("ssh-ed25519 ")), "")
        return " ".join(line.split()[:2])


RECIPE = TinyRecipe()
