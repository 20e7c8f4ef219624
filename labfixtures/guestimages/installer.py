"""The Debian installer: an ISO that lays a blank disk out the guide's way and installs on it.

Why an installer VM at all: the guide's disk (§5, §7) has LVM (VG `vm0`, LV `root`) and the
hosts here have no device-mapper in their kernel, so the layout can only be made by a guest
kernel, the way a real installer does it. Why an ISO: the guide installs its master VM by
booting an installation ISO on a blank image (A.4, `iso-install-startup.sh`); the very same
ISO builds the `debian` image (booted with `-kernel`/`-initrd` taken from it, which skips the
firmware's CD boot), so the scenario and the image build share one code path.

The ISO holds (built with `grub-mkrescue`, i.e. xorriso; the host cannot mount ISO 9660)::

    boot/grub/grub.cfg            El Torito boot, BIOS and UEFI (grub-mkrescue adds an EFI
                                  image when grub-efi-amd64-bin is on the host): GRUB on
                                  the serial console, timeout 0
    labfixtures/vmlinuz           the Debian kernel of the tree
    labfixtures/installer.img     busybox initramfs: loads the modules, finds the medium
    labfixtures/root.img          the configured Debian tree as a read-only ext4 image

At boot the initramfs (files/debian-installer-init.sh) mounts root.img under a tmpfs overlay
and runs files/debian-install.sh from it, which partitions /dev/vda, creates the LVM volumes,
copies root.img onto the root volume block by block (read from the medium's device at the
file's offset, with O_DIRECT) and grows it, moves /boot to vda1, installs GRUB and powers the
VM off. The serial log says
`labfixtures: install ok` (or `failed`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from labfixtures.core.runner import run
from labfixtures.errors import HostResourceError, ImageError, LabError
from labfixtures.guestimages.rootfs import data_file, tree_path
from labfixtures.qemu.accel import resolve as resolve_accel

ProgressFn = Callable[[str], None]

#: Marker lines the installer prints on its serial console.
OK_MARKER = "labfixtures: install ok"
FAILED_MARKER = "labfixtures: install failed"

#: Kernel modules of the installer initramfs, loaded in dependency order: the disk and CD-ROM
#: drivers (virtio, IDE for the `pc` machine, AHCI for `q35`), ISO 9660, loop, ext4, overlay,
#: device-mapper for LVM, FAT for the EFI system partition (the kernel's default codepage 437
#: and iocharset ascii, utf8 names).
INSTALLER_MODULES = (
    "virtio_pci", "virtio_blk", "ata_piix", "ahci", "sr_mod", "isofs", "loop",
    "crc32c_generic", "ext4", "overlay", "dm_mod", "vfat", "nls_cp437", "nls_ascii",
    "nls_utf8",
)

#: GRUB's x86_64-efi modules on the host: what grub-mkrescue needs for a UEFI-bootable ISO.
EFI_GRUB_DIR = Path("/usr/lib/grub/x86_64-efi")

#: Size of the blank disk (sparse): the guide's image, smaller.
DEFAULT_DISK_SIZE = "8G"


# -- kernel modules ---------------------------------------------------------------------------


def kernel_release(tree: Path) -> str:
    """The one kernel release installed in TREE (/lib/modules/RELEASE)."""
    releases = sorted(p.name for p in (tree / "lib" / "modules").iterdir() if p.is_dir())
    if len(releases) != 1:
        raise LabError(f"expected one kernel in {tree}/lib/modules, found {releases}",
                       "rebuild the Debian tree")
    return releases[0]


def resolve_modules(moddir: Path, names: tuple[str, ...] | list[str]) -> list[str]:
    """Module files (relative to MODDIR) for NAMES and their dependencies, deps first.

    Built-in modules are skipped. Why not modprobe: the initramfs has only busybox `insmod`,
    so the order is fixed here from modules.dep.
    """
    def norm(s: str) -> str:
        return s.replace("-", "_")

    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[norm(Path(path).name.split(".ko")[0])] = path
    builtin = {norm(Path(p).name.split(".ko")[0])
               for p in (moddir / "modules.builtin").read_text().split()}
    order: list[str] = []

    def add(path: str) -> None:
        if path in order:
            return
        for dep in reversed(deps.get(path, [])):  # modules.dep lists the nearest dep first
            add(dep)
        order.append(path)

    for name in names:
        n = norm(name)
        if n in builtin:
            continue
        if n not in by_name:
            raise LabError(f"kernel module {name} not found in {moddir}",
                           "the Debian kernel package changed; update INSTALLER_MODULES")
        add(by_name[n])
    return order


# -- the installer media ----------------------------------------------------------------------


@dataclass(frozen=True)
class InstallerMedia:
    """The installer ISO, plus its kernel and initramfs for a direct (-kernel) boot."""

    iso: Path
    kernel: Path
    initrd: Path
    cmdline: str

    @property
    def files(self) -> list[Path]:
        return [self.iso, self.kernel, self.initrd]


@dataclass(frozen=True)
class InstallOptions:
    """The guide's layout: /boot size, VG and LV names, target disk."""

    disk: str = "/dev/vda"
    vg: str = "vm0"
    lv: str = "root"
    boot_mib: int = 244  # the guide's vda1 ends at 256 MB
    extra_cmdline: tuple[str, ...] = field(default=())

    def cmdline(self) -> str:
        words = ["console=ttyS0,115200", "panic=-1", "quiet", "loglevel=4", "tsc=reliable",
                 "no_timer_check", "cryptomgr.notests", "mitigations=off",
                 f"lf.install.disk={self.disk}", f"lf.install.vg={self.vg}",
                 f"lf.install.lv={self.lv}", f"lf.install.boot_mib={self.boot_mib}",
                 *self.extra_cmdline]
        return " ".join(words)


def build_initrd(tree: Path, out: Path) -> Path:
    """The installer initramfs: static busybox, the init script, a dozen kernel modules."""
    return make_initramfs(tree, out, data_file("debian-installer-init.sh"), INSTALLER_MODULES)


def make_initramfs(tree: Path, out: Path, init: Path, modules: tuple[str, ...] | list[str],
                   binaries: dict[str, list[str]] | None = None,
                   files: tuple[str, ...] = ()) -> Path:
    """A busybox initramfs: INIT as /init, MODULES of TREE's kernel (in load order, listed in
    /modules.order), BINARIES (path in TREE -> the libraries it loads) and FILES of TREE.

    Uncompressed cpio: under TCG the kernel would spend longer inflating it than QEMU spends
    loading the few extra megabytes.
    """
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise HostResourceError("binary", str(busybox), "apt-get install busybox-static",
                                problem="busybox (static) is not installed on the host")
    release = kernel_release(tree)
    moddir = tree / "lib" / "modules" / release
    with tempfile.TemporaryDirectory(prefix="lf-initrd-") as tmp:
        root = Path(tmp)
        for d in ("bin", "sbin", "dev", "proc", "sys", "lib/modules", "etc", "tmp", "run",
                  "root"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in run([str(busybox), "--list"]).stdout.split():
            link = root / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        order = []
        for rel in resolve_modules(moddir, modules):
            name = Path(rel).name
            shutil.copy2(moddir / rel, root / "lib" / "modules" / name)
            order.append(name)
        (root / "modules.order").write_text("".join(f"{n}\n" for n in order))
        wanted = list(files)
        for binary, libs in (binaries or {}).items():
            wanted += [binary, *libs]
        for rel in wanted:
            dst = root / rel.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(tree_path(tree, rel), dst)  # the file, not a usrmerge symlink
        shutil.copy2(init, root / "init")
        (root / "init").chmod(0o755)
        entries = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0", "--force-local",
             "-O", str(Path(out).absolute())],
            input="\n".join(entries), cwd=root, timeout=600, remedy="apt-get install cpio")
    return out


def build_root_image(tree: Path, out: Path) -> Path:
    """TREE as a read-only ext4 image, made with `mkfs.ext4 -d` (no mount, no root loop)."""
    used = int(run(["du", "-s", "-B1", "--apparent-size", str(tree)], timeout=600
                   ).stdout.split()[0])
    files = int(run(["sh", "-c", f"find '{tree}' -xdev | wc -l"], timeout=600).stdout.strip())
    size_mb = int(used * 1.15 / 2**20) + 128 + files * 4096 // 2**20
    out.unlink(missing_ok=True)
    run(["mkfs.ext4", "-q", "-F", "-d", str(tree), "-L", "lfroot", "-O", "^has_journal",
         "-N", str(int(files * 1.2) + 4096), "-E", "root_owner=0:0", str(out), f"{size_mb}M"],
        timeout=1800, remedy="apt-get install e2fsprogs")
    return out


def build_iso(tree: Path, workdir: Path, out: Path,
              options: InstallOptions | None = None) -> InstallerMedia:
    """The installer ISO for the Debian TREE (which must contain install.sh), via grub-mkrescue.

    The kernel and initramfs are also left in WORKDIR so that a build can boot them directly.
    """
    options = options or InstallOptions()
    if not (tree / "usr/lib/labfixtures/install.sh").exists():
        raise LabError(f"{tree} has no usr/lib/labfixtures/install.sh",
                       "prepare the tree with debian.customize_tree() first")
    if not EFI_GRUB_DIR.is_dir():  # grub-mkrescue silently makes a BIOS-only ISO without it
        raise HostResourceError("package", "grub-efi-amd64-bin",
                                "apt-get install grub-efi-amd64-bin",
                                problem=f"{EFI_GRUB_DIR} is missing: the installer ISO would "
                                        "not boot under UEFI")
    release = kernel_release(tree)
    iso_root = workdir / "iso"
    shutil.rmtree(iso_root, ignore_errors=True)
    (iso_root / "boot" / "grub").mkdir(parents=True)
    lf = iso_root / "labfixtures"
    lf.mkdir()
    kernel = workdir / "installer-vmlinuz"
    shutil.copy2(tree / "boot" / f"vmlinuz-{release}", kernel)
    initrd = build_initrd(tree, workdir / "installer.img")
    build_root_image(tree, lf / "root.img")
    os.link(kernel, lf / "vmlinuz")
    os.link(initrd, lf / "installer.img")
    cmdline = options.cmdline()
    (iso_root / "boot" / "grub" / "grub.cfg").write_text(
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial console\n"
        "terminal_output serial console\n"
        "set timeout=0\n"
        'menuentry "labfixtures Debian installer" {\n'
        f"  linux /labfixtures/vmlinuz {cmdline}\n"
        "  initrd /labfixtures/installer.img\n"
        "}\n")
    out.unlink(missing_ok=True)
    run(["grub-mkrescue", "-o", str(out), str(iso_root), "--", "-volid", "LFINSTALL",
         "-compliance", "iso_9660_level=3"],
        timeout=1800, remedy="apt-get install grub-common grub-pc-bin xorriso")
    shutil.rmtree(iso_root)
    return InstallerMedia(iso=out, kernel=kernel, initrd=initrd, cmdline=cmdline)


def iso_files(iso: Path) -> list[str]:
    """Paths inside ISO, read with xorriso (the host kernel has no ISO 9660 driver)."""
    out = run(["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"], timeout=120,
              check=False, remedy="apt-get install xorriso")
    return [line.strip().strip("'") for line in out.stdout.splitlines() if line.startswith("'")]


# -- running the installer --------------------------------------------------------------------


@dataclass
class InstallResult:
    """What an installer run did: how long, and its serial log."""

    disk: Path
    seconds: float
    log: Path
    boot: str


def _qemu_argv(media: InstallerMedia, disk: Path, log: Path, boot: str, accel: str,
               memory_mb: int, smp: int) -> list[str]:
    """A private minimal command line: `pc` machine, virtio target disk, IDE CD-ROM, no NIC."""
    argv = ["qemu-system-x86_64", "-machine", f"pc,accel={accel}", "-cpu", "max",
            "-smp", str(smp), "-m", str(memory_mb), "-nodefaults", "-display", "none",
            "-no-reboot", "-nic", "none", "-chardev", f"file,id=ser0,path={log}",
            "-serial", "chardev:ser0",
            "-drive", f"file={disk},if=virtio,format=qcow2,cache=unsafe,discard=unmap"]
    if boot == "direct":
        # The same ISO, as a read-only virtio disk: reading 800 MB through the emulated IDE
        # CD-ROM is the slowest part of an install under TCG.
        argv += ["-drive", f"file={media.iso},if=virtio,format=raw,readonly=on"]
    else:
        argv += ["-drive", f"file={media.iso},if=ide,index=2,media=cdrom,readonly=on"]
    if boot == "direct":
        argv += ["-kernel", str(media.kernel), "-initrd", str(media.initrd),
                 "-append", media.cmdline]
    else:
        argv += ["-boot", "once=d"]
    return argv


def install(media: InstallerMedia, disk: Path, *, boot: Literal["direct", "firmware"] = "direct",
            disk_size: str = DEFAULT_DISK_SIZE, accel: str = "auto", memory_mb: int = 1024,
            smp: int = 2, timeout: float = 1800, log: Path | None = None,
            progress: ProgressFn | None = print) -> InstallResult:
    """Boot the installer once on a new blank qcow2 DISK; it powers off when done.

    `boot="firmware"` is the guide's A.4: SeaBIOS boots the ISO from the CD-ROM. `"direct"`
    gives the same kernel and initramfs with `-kernel`/`-initrd` (a few seconds faster).
    """
    if disk.exists():
        raise LabError(f"{disk} exists already", "the installer writes a new blank disk only")
    log = log or disk.with_suffix(".install.log")
    accel = resolve_accel(accel).name
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), disk_size],
        remedy="apt-get install qemu-utils")
    argv = _qemu_argv(media, disk, log, boot, accel, memory_mb, smp)
    t0 = time.monotonic()
    qemu_log = log.with_name(log.name + ".qemu")  # QEMU's own messages: a file, not a pipe
    with open(qemu_log, "wb") as qout:  # that nobody reads while it runs
        qout.write((shlex.join(argv) + "\n").encode())
        qout.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qout,
                                stderr=subprocess.STDOUT)
    seen = 0
    try:
        while proc.poll() is None:
            if time.monotonic() - t0 > timeout:
                raise ImageError("debian", f"the installer did not finish within {timeout:.0f}s",
                                 f"see its serial log {log}")
            time.sleep(0.5)
            seen = _forward(log, seen, progress, t0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - t0
    _forward(log, seen, progress, t0)
    text = log.read_text(errors="replace") if log.exists() else ""
    qemu_out = qemu_log.read_text(errors="replace").splitlines()[1:]
    if OK_MARKER not in text:
        disk.unlink(missing_ok=True)
        tail = "\n".join(text.splitlines()[-25:])
        raise ImageError("debian", f"the Debian installer failed (qemu exit {proc.returncode}) "
                         f"{' '.join(qemu_out)[-500:]}"
                         f"\n--- last lines of {log} ---\n{tail}",
                         f"read the whole serial log {log}")
    return InstallResult(disk=disk, seconds=seconds, log=log, boot=boot)


def _forward(log: Path, seen: int, progress: ProgressFn | None, t0: float) -> int:
    """Pass the installer's own step lines on to PROGRESS, with the elapsed time."""
    if not log.exists():
        return seen
    text = log.read_text(errors="replace")
    lines = text.splitlines()
    if text and not text.endswith("\n"):
        lines = lines[:-1]  # a line still being written
    for line in lines[seen:]:
        if progress and ("labfixtures-installer:" in line or "labfixtures: install" in line):
            msg = line[line.index("labfixtures"):]
            progress(f"    [{time.monotonic() - t0:5.1f}s] {msg}")
    return len(lines)
