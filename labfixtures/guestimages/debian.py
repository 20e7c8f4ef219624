"""The `debian` guest image: Debian bookworm installed the guide's way, from Debian packages.

What the image is (guide §5, §7): a qcow2 disk with an msdos label, vda1 `/boot` (ext2, boot
flag), vda2 extended, vda5 the LVM physical volume of VG `vm0`, whose LV `root` holds `/`
(ext4); GRUB in the MBR, so SeaBIOS boots it on its own. Beside the disk, what a fast direct
kernel boot needs (`-kernel vmlinux -initrd initrd.img -append root=/dev/mapper/vm0-root
...`), and the installer ISO that made it (guide A.4).

Files of a built image (`images/debian-HASH/`)::

    disk.qcow2          the installed 8 GiB (virtual) disk
    vmlinux             the kernel, uncompressed: boots through its PVH entry (GuestImage.kernel)
    vmlinuz             the same kernel as Debian ships it (what GRUB boots)
    initrd.img          the fast initramfs for direct boots (files/debian-fast-init.sh)
    initrd-debian.img   Debian's own initramfs, as on the disk's /boot
    installer.iso       the installer (installer.py), for `iso_install()`
    install.log         the installer's serial console (install.log.qemu: its QEMU command)
    timings.txt, manifest.json  seconds per build step; the GuestImage (facts: marker...)

How it is built, and why:

1. `debootstrap --variant=minbase` of bookworm from the mirror of the host's own APT
   configuration (nothing else may be downloaded). The tree is cached apart
   (`trees/debian-SUITE-KEY/`), keyed by suite and package list: it is the slow step and
   rarely changes.
2. A copy of the tree is configured on the host: user `etu`, root login by key only (the
   cache's key), the `lf.*` guest configuration hook (files/debian-lf-*), EUI-64 link-local
   addresses, `net.ifnames=0` (the interface is eth0), units masked and modules blacklisted
   for a fast boot under TCG (generators too), sshd started without waiting for udev's
   coldplug.
3. Its initramfs is rebuilt with only the modules a virtio + LVM root needs (MODULES=list).
4. The installer ISO is made from the tree (installer.py) and booted on a blank qcow2 disk,
   because LVM can only be created by a guest kernel here (no device-mapper on the host).
   It partitions, copies the tree's ext4 image block by block, installs GRUB, powers off.
   (APT's index is cut to the installed packages first: apt.offline_index.)

Public API: `DebianRecipe` / `RECIPE` (a cache `Recipe`), `build(cache, progress) ->
GuestImage`, `iso_install(image, disk, ...)` (A.4).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from labfixtures.core.runner import run
from labfixtures.errors import CommandError, HostResourceError, ImageError, LabError
from labfixtures.guestimages import apt, bzimage, installer, rootfs
from labfixtures.guestimages.cache import (
    GuestImage,
    ImageCache,
    Progress,
    ProgressFn,
    source_digest,
)
from labfixtures.guestimages.installer import InstallerMedia, InstallOptions
from labfixtures.guestimages.rootfs import chroot, data_file
from labfixtures.qemu.accel import resolve as resolve_accel
from labfixtures.qemu.spec import READY_MARKER

SUITE = "bookworm"
MARKER = READY_MARKER  # what lf-ready.service prints on ttyS0 once sshd is up

#: What the guide's VM needs (LVM, parted, GRUB, SSH, ifupdown) and what scenarios check
#: (lspci, ping, ethtool, python3 for testinfra), nothing more.
PACKAGES: tuple[str, ...] = (
    "systemd-sysv", "udev", "kmod", "openssh-server", "iproute2", "ifupdown",
    "iputils-ping", "ethtool", "pciutils", "procps", "lvm2", "parted", "e2fsprogs",
    "rsync", "sudo", "python3", "linux-image-amd64", "initramfs-tools", "zstd", "grub-pc",
    # UEFI as well (the guide's ovs-startup.sh boots OVMF): GRUB for x86_64-efi beside
    # grub-pc, the FAT tools for the EFI system partition, sfdisk to number it vda4
    "grub-efi-amd64-bin", "dosfstools", "fdisk",
)

#: Host packages the build runs.
HOST_TOOLS = {
    "debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs", "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86", "grub-mkrescue": "grub-common",
    "xorriso": "xorriso", "cpio": "cpio", "unshare": "util-linux",
}


def _names(file: str) -> tuple[str, ...]:
    """The names listed in data file FILE (one a line, `#` comments)."""
    lines = (line.split("#", 1)[0].strip() for line in data_file(file).read_text().splitlines())
    return tuple(line for line in lines if line)


#: Units masked and systemd generators turned off for a fast boot (the files say why).
MASKED_UNITS = _names("debian-masked-units")
MASKED_GENERATORS = _names("debian-masked-generators")

#: Kernel parameters shared by the direct boot and GRUB. `net.ifnames=0`: the NIC is eth0.
#: The rest trims what TCG makes slow: console output, timer checks, crypto self-tests,
#: kernel audit records for every unit started (`audit=0`).
BASE_CMDLINE = ("console=ttyS0,115200", "net.ifnames=0", "quiet", "loglevel=3",
                "systemd.show_status=0", "tsc=reliable", "no_timer_check", "cryptomgr.notests",
                "mitigations=off", "audit=0")

#: grub.cfg's: a direct boot gets qemu.cmdline.TUNED_CMDLINE from its machine spec, GRUB only
#: what grub.cfg says, so the host-independent rest of it too (not `tsc_early_khz`, nor `pc`'s
#: `pci=noacpi`); written out, as the recipe's hash covers this file and not qemu's.
GRUB_CMDLINE = (*BASE_CMDLINE, "initcall_blacklist=crypto_kdf108_init", "noreplace-smp",
                "rodata=off", "init_on_alloc=0")

#: In the initramfs: the root's path (virtio disk, device-mapper, ext4), virtio_net so that
#: eth0 exists before lf-config runs, virtio_mmio for the microvm profile.
_INITRAMFS_MODULES = ("virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "dm_mod", "ext4",
                      "crc32c_generic")


def require_host_tools() -> None:  # what the build runs on the host
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool)})
    if missing:
        raise HostResourceError("package", " ".join(missing),
                                f"apt-get install {' '.join(missing)}",
                                problem=f"building the debian image needs {', '.join(missing)}")
    if os.geteuid() != 0:
        raise LabError("building the debian image needs root (debootstrap, chroot)",
                       "run the build as root, or use an image built beforehand")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


@dataclass
class DebianRecipe:
    """The `debian` image recipe; its fields are what the image hash depends on."""

    name: str = "debian"
    description: str = "Debian bookworm on msdos + LVM (vm0/root) + GRUB, installed the guide's way"
    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES
    user: str = "etu"
    hostname: str = "vm0"
    disk_size: str = installer.DEFAULT_DISK_SIZE
    layout: InstallOptions = field(default_factory=InstallOptions)
    compress: bool = False
    accel: str = "auto"  # of the installer VM: KVM only where a probe proves it works
    mirror: str | None = None  # None: from the host's APT configuration
    steps: int = 6

    # -- cache protocol ------------------------------------------------------------------

    def fingerprint(self, cache: ImageCache) -> dict[str, Any]:
        """Cheap: the recipe's fields, its source files, the kernel version APT offers."""
        try:
            kernel = cache.apt_candidate("linux-image-amd64")[0]  # memoized: apt-cache is 1.5 s
        except LabError:
            kernel = "unknown"
        files = [*(Path(m.__file__ or "") for m in (installer, rootfs, bzimage)), Path(__file__),
                 Path(apt.__file__), *sorted(data_file("").glob("debian-*"))]
        return {"suite": self.suite, "packages": sorted(self.packages), "user": self.user,
                "hostname": self.hostname, "disk_size": self.disk_size,
                "layout": [self.layout.disk, self.layout.vg, self.layout.lv,
                           self.layout.boot_mib], "compress": self.compress,
                "kernel_candidate": kernel, "sources": source_digest(*files)}

    def tree_key(self) -> str:
        """Key of the cached debootstrap tree: only what debootstrap itself depends on."""
        blob = "\n".join([self.suite, "minbase", *sorted(self.packages)]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def root_device(self) -> str:
        return f"/dev/mapper/{self.layout.vg}-{self.layout.lv}"

    def cmdline(self) -> str:
        """Kernel command line for the direct boot of the installed disk."""
        return " ".join([f"root={self.root_device}", "ro", *BASE_CMDLINE])

    def build(self, cache: ImageCache, out: Path, progress: Progress) -> GuestImage:
        require_host_tools()
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        # Scratch space inside OUT: if the build dies, the cache removes it with OUT.
        work = Path(tempfile.mkdtemp(prefix=".work-", dir=out))
        try:
            t = time.monotonic()
            base = self.base_tree(cache, progress)
            timings["debootstrap"] = round(time.monotonic() - t, 1)

            t = time.monotonic()
            progress.step("copying and configuring the tree (user, ssh, lf-config, units)")
            tree = work / "tree"
            run(["cp", "-a", "--reflink=auto", str(base), str(tree)], timeout=1800)
            self.customize_tree(tree, cache.public_key())
            timings["configure"] = round(time.monotonic() - t, 1)

            t = time.monotonic()
            progress.step("rebuilding the initramfs (virtio + LVM modules only)")
            self.rebuild_initramfs(tree)
            apt.offline_index(tree)
            timings["initramfs"] = round(time.monotonic() - t, 1)

            t = time.monotonic()
            progress.step("building the installer ISO (grub-mkrescue/xorriso)")
            media = installer.build_iso(tree, work, out / "installer.iso", self.layout)
            timings["iso"] = round(time.monotonic() - t, 1)

            t = time.monotonic()
            accel = resolve_accel(self.accel)
            progress.step(f"installing onto a blank {self.disk_size} qcow2 disk "
                          f"in a VM ({accel.name}: {accel.reason})")
            disk = work / "disk.qcow2"
            result = installer.install(media, disk, boot="direct", disk_size=self.disk_size,
                                       accel=accel.name, log=out / "install.log",
                                       progress=progress.out)
            timings["install"] = round(result.seconds, 1)

            t = time.monotonic()
            progress.step("kernel and initramfs for direct boot"
                          + (", compressing the disk" if self.compress else ""))
            release = installer.kernel_release(tree)
            vmlinuz, initrd = out / "vmlinuz", out / "initrd.img"
            shutil.copy2(tree / "boot" / f"vmlinuz-{release}", vmlinuz)
            shutil.copy2(tree / "boot" / f"initrd.img-{release}", out / "initrd-debian.img")
            self.build_fast_initrd(tree, initrd)
            # The uncompressed kernel boots through its PVH entry: no inflating of vmlinuz,
            # seconds saved under TCG (docs/host-facts.md).
            kernel = out / "vmlinux"
            bzimage.extract_vmlinux(vmlinuz, kernel)
            final_disk = out / "disk.qcow2"
            if self.compress:
                run(["qemu-img", "convert", "-c", "-O", "qcow2", str(disk), str(final_disk)],
                    timeout=1800)
            else:
                os.replace(disk, final_disk)
            timings["finish"] = round(time.monotonic() - t, 1)
            packages = self.package_versions(tree)
            host_key = (tree / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        timings["total"] = round(time.monotonic() - t0, 1)
        _write(out / "timings.txt", "".join(f"{k} {v}\n" for k, v in timings.items()))
        progress.done("debian image built")
        return GuestImage(name=self.name, recipe_hash="", path=out, kernel=kernel, initrd=initrd,
                          disk=final_disk, cmdline=self.cmdline(), ssh_user="root",
                          private_key=cache.private_key, public_key=cache.public_key(),
                          packages=packages, host_public_key=" ".join(host_key[:2]),
                          facts={"marker": MARKER, "kernel_release": release,
                                 "root_device": self.root_device, "vg": self.layout.vg,
                                 "lv": self.layout.lv, "user": self.user,
                                 "hostname": self.hostname, "vmlinuz": "vmlinuz",
                                 "initrd_debian": "initrd-debian.img",
                                 "installer_iso": "installer.iso",
                                 **{f"seconds_{k}": str(v) for k, v in timings.items()}})

    # -- the steps -----------------------------------------------------------------------

    def base_tree(self, cache: ImageCache, progress: Progress) -> Path:
        """The pristine debootstrap tree, built once per suite and package list."""
        trees = cache.root / "trees"
        trees.mkdir(parents=True, exist_ok=True)
        final = trees / f"debian-{self.suite}-{self.tree_key()}"
        if (final / ".complete").exists():
            progress.step(f"debootstrap: reusing {final}")
            return final
        with cache.lock(f"debian-tree-{self.tree_key()}", progress.out):
            if (final / ".complete").exists():
                progress.step(f"debootstrap: reusing {final}")
                return final
            mirror = self.mirror or apt.mirror_from_apt(self.suite)
            progress.step(f"debootstrap --variant=minbase {self.suite} "
                          f"({len(self.packages)} packages, about 2 minutes)")
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=trees))
            try:
                argv = ["debootstrap", "--variant=minbase",
                        "--include=" + ",".join(self.packages), self.suite, str(tmp), mirror]
                try:
                    cp = run(argv, timeout=3600, check=False)
                except CommandError:  # timed out
                    raise LabError("debootstrap took more than an hour",
                                   "check access to the APT mirror") from None
                if cp.returncode != 0:
                    log = tmp / "debootstrap" / "debootstrap.log"
                    detail = log.read_text()[-2000:] if log.exists() else cp.stderr
                    raise CommandError(argv, cp.returncode, detail,
                                       "check the APT sources and access to the mirror")
                for deb in (tmp / "var/cache/apt/archives").glob("*.deb"):
                    deb.unlink()
                (tmp / ".complete").write_text(f"{time.time()}\n")
                if final.exists():
                    shutil.rmtree(final)
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final

    def customize_tree(self, tree: Path, public_key: str) -> None:
        """Everything that makes the tree a labfixtures guest (see the module docstring)."""
        (tree / ".complete").unlink(missing_ok=True)
        _write(tree / "etc/hostname", f"{self.hostname}\n")
        _write(tree / "etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.hostname}\n"
               "::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\n"
               "ff02::2\tip6-allrouters\n")
        # A machine id per boot (empty file), not one shared by every VM of the image.
        _write(tree / "etc/machine-id", "", 0o444)
        (tree / "var/lib/dbus/machine-id").unlink(missing_ok=True)
        _write(tree / "etc/resolv.conf", "")

        # Users: root by key only; etu as in the guide, with sudo and the same key.
        ssh = tree / "root/.ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        _write(ssh / "authorized_keys", public_key + "\n", 0o600)
        if f"\n{self.user}:" not in "\n" + (tree / "etc/passwd").read_text():
            chroot(tree, "useradd", "--create-home", "--shell", "/bin/bash", "--groups",
                   "sudo", "--comment", "labfixtures user", self.user)
        chroot(tree, "sh", "-c", f"install -d -m 700 -o {self.user} -g {self.user} "
               f"/home/{self.user}/.ssh && install -m 600 -o {self.user} -g {self.user} "
               f"/root/.ssh/authorized_keys /home/{self.user}/.ssh/authorized_keys")
        _write(tree / f"etc/sudoers.d/{self.user}", f"{self.user} ALL=(ALL) NOPASSWD: ALL\n",
               0o440)
        _write(tree / "etc/ssh/sshd_config.d/labfixtures.conf",
               "# labfixtures: keys only, no reverse DNS (no resolver in a lab)\n"
               "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
               "KbdInteractiveAuthentication no\nUseDNS no\n")
        # sshd starts once fstab's file systems are mounted (a login logs to /var), not after
        # sysinit.target (udev coldplug: seconds under TCG) nor lf-config (beside it; lf-ready
        # waits for both); no `sshd -t`. Until booted, its cgroup (the first logins too) gets
        # 10x the CPU share of the coldplug and the rest: the handshake is not starved.
        _write(tree / "etc/systemd/system/ssh.service.d/labfixtures.conf",
               "[Unit]\nDefaultDependencies=no\n"
               "After=local-fs.target systemd-journald.socket\n"
               "Before=shutdown.target\nConflicts=shutdown.target\n\n"
               "[Service]\nExecStartPre=\nStartupCPUWeight=1000\n")
        # The serial console's login prompt after the marker: agetty is not on the way to
        # ssh, and under TCG every process started beside sshd delays it.
        _write(tree / "etc/systemd/system/serial-getty@.service.d/labfixtures.conf",
               "[Unit]\nAfter=lf-ready.service\n")
        shutil.copy2(data_file("debian-modprobe.conf"), tree / "etc/modprobe.d/labfixtures.conf")

        # Networking: lo via ifupdown, every eth* up with EUI-64 link-local, lf.* at boot.
        _write(tree / "etc/network/interfaces",
               "# eth* are brought up by udev (labfixtures lf-link) and configured from the\n"
               "# kernel command line by lf-config.service; add stanzas here as usual.\n"
               "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n")
        lib = tree / "usr/lib/labfixtures"
        lib.mkdir(parents=True, exist_ok=True)
        for src, dst in (("debian-lf-config.sh", "lf-config"), ("debian-lf-link.sh", "lf-link"),
                         ("debian-install.sh", "install.sh")):
            shutil.copy2(data_file(src), lib / dst)
            (lib / dst).chmod(0o755)
        shutil.copy2(data_file("debian-lf-link.rules"),
                     tree / "etc/udev/rules.d/70-labfixtures-link.rules")
        for unit in ("lf-config.service", "lf-ready.service"):
            _write(tree / "etc/systemd/system" / unit,
                   data_file(f"debian-{unit}").read_text().replace("@MARKER@", MARKER))
        _write(tree / "etc/sysctl.d/60-labfixtures.conf",
               "# EUI-64 link-local addresses, as the guide computes them from the MAC\n"
               "net.ipv6.conf.all.addr_gen_mode = 0\nnet.ipv6.conf.default.addr_gen_mode = 0\n")

        # Boot speed: no persistent journal to flush, needless units masked.
        _write(tree / "etc/systemd/journald.conf.d/labfixtures.conf",
               "[Journal]\nStorage=volatile\n")
        chroot(tree, "systemctl", "enable", "lf-config.service", "lf-ready.service")
        chroot(tree, "systemctl", "mask", *MASKED_UNITS)
        generators = tree / "etc/systemd/system-generators"
        generators.mkdir(parents=True, exist_ok=True)
        for name in MASKED_GENERATORS:
            (generators / name).unlink(missing_ok=True)
            (generators / name).symlink_to("/dev/null")

        # GRUB, for the boot from disk: no menu delay, serial console, same parameters.
        _write(tree / "etc/default/grub.d/labfixtures.cfg",
               "GRUB_TIMEOUT=0\nGRUB_DISABLE_OS_PROBER=true\n"
               "GRUB_DISABLE_RECOVERY=true\n"
               'GRUB_TERMINAL="serial console"\nGRUB_SERIAL_COMMAND="serial --speed=115200"\n'
               'GRUB_CMDLINE_LINUX_DEFAULT=""\n'
               f'GRUB_CMDLINE_LINUX="{" ".join(GRUB_CMDLINE)}"\n')

        xen = tree / "etc/grub.d/20_linux_xen"  # no Xen in a lab VM: grub-mkconfig skips
        if xen.exists():  # a script not executable (this one: 1.6 s of update-grub, TCG)
            xen.chmod(0o644)

    def rebuild_initramfs(self, tree: Path) -> None:
        """An initramfs with only virtio, device-mapper and ext4: smaller, faster to boot."""
        _write(tree / "etc/initramfs-tools/conf.d/labfixtures.conf",
               "# labfixtures: only what a virtio disk with an LVM root needs\n"
               "MODULES=list\nRESUME=none\nCOMPRESS=zstd\nCOMPRESSLEVEL=1\n")
        _write(tree / "etc/initramfs-tools/modules", "".join(f"{m}\n" for m in _INITRAMFS_MODULES))
        chroot(tree, "update-initramfs", "-u", "-k", "all")

    @staticmethod
    def build_fast_initrd(tree: Path, out: Path) -> Path:
        """The direct-boot initramfs (files/debian-fast-init.sh): busybox, modules, lvm."""
        lvm = "/usr/sbin/lvm"
        return installer.make_initramfs(
            tree, out, data_file("debian-fast-init.sh"), _INITRAMFS_MODULES,
            binaries={lvm: rootfs.tree_libraries(tree, lvm)}, files=("/etc/lvm/lvm.conf",))

    @staticmethod
    def package_versions(tree: Path) -> dict[str, str]:
        out = run(["dpkg-query", "--admindir", str(tree / "var/lib/dpkg"), "-W",
                   "-f", "${Package}\t${Version}\n"]).stdout
        return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def build(cache: ImageCache | None = None, progress: ProgressFn | None = print,
          force: bool = False, recipe: DebianRecipe | None = None) -> GuestImage:
    """The `debian` image from CACHE, built first if its recipe hash is not there."""
    cache = cache or ImageCache()
    return cache.build(recipe or DebianRecipe(), progress, force=force)


def iso_install(image: GuestImage, disk: Path, *,
                boot: Literal["direct", "firmware"] = "firmware",
                progress: ProgressFn | None = print, **kw: Any) -> installer.InstallResult:
    """The guide's A.4: boot the image's installer ISO once onto a new blank DISK.

    With `boot="firmware"` SeaBIOS boots the CD-ROM (El Torito, GRUB), as in
    `iso-install-startup.sh`; the disk then boots on its own through GRUB.
    """
    iso = image.path / "installer.iso"
    if not iso.exists():
        raise ImageError(image.name, f"{image.path} has no installer.iso",
                         "rebuild the debian image")
    media = _media_from_iso(iso, Path(tempfile.mkdtemp(prefix="lf-iso-")))
    try:
        return installer.install(media, disk, boot=boot, progress=progress, **kw)
    finally:
        shutil.rmtree(media.kernel.parent, ignore_errors=True)


def _media_from_iso(iso: Path, tmp: Path) -> InstallerMedia:
    """Kernel, initramfs and command line read back from the ISO with xorriso."""
    files = {"vmlinuz": "/labfixtures/vmlinuz", "installer.img": "/labfixtures/installer.img",
             "grub.cfg": "/boot/grub/grub.cfg"}
    argv = ["xorriso", "-osirrox", "on", "-indev", str(iso)]
    for local, inside in files.items():
        argv += ["-extract", inside, str(tmp / local)]
    run(argv, remedy="apt-get install xorriso")
    m = re.search(r"linux /labfixtures/vmlinuz (.*)", (tmp / "grub.cfg").read_text())
    return InstallerMedia(iso=iso, kernel=tmp / "vmlinuz", initrd=tmp / "installer.img",
                          cmdline=m.group(1).strip() if m else InstallOptions().cmdline())


#: The recipe with its defaults, for `guestimages.RECIPES` (as tiny.RECIPE).
RECIPE = DebianRecipe()
