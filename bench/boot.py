"""Cold boot of the tiny guest to SSH-ready, per machine profile (medians of N runs).

    sudo .venv/bin/python bench/boot.py [--runs 5] [--profiles fast,pc] [--net tap|user]
                                        [--peer]
    sudo .venv/bin/python bench/boot.py --image debian --profiles pc,guide --runs 3
    sudo .venv/bin/python bench/boot.py --tb-sizes default,32 --rss 5 [--balloon]

--image debian boots the debian disk (an overlay of it) by its firmware, as the guide's
VMs boot: `pc` is SeaBIOS then GRUB in the MBR, `q35` the same on Q35, `guide` the guide's
own machine (qemu/guide.py): OVMF (UEFI) then EFI/BOOT/BOOTX64.EFI, with its swtpm TPM 2.0
and a two-queue NIC (a multi_queue tap). No kernel command line reaches such a guest: SSH
goes to its EUI-64 link-local address on the tap (--net tap) or to a forward (user).

"SSH ready" = from just before QEMU is started to the first `true` run over SSH
(key exchange and authentication included). The serial marker time is shown too.
Timings are reported, never asserted (docs/host-facts.md).

--tb-sizes boots each profile with each TCG translation-cache size (MiB, `default`: QEMU's
own, 1 GiB), interleaved like the profiles. --rss S: S seconds after SSH answered, QEMU's
memory from /proc/PID/smaps: RSS, PSS and what they hold (guest RAM, the TCG code buffer,
other anonymous memory, mapped files: `boot_files` the kernel and initramfs images, which
QEMU keeps mapped to load them again at a reset, `qemu_files` QEMU and its libraries; the
files are page cache shared between VMs). --balloon adds virtio-balloon
with free page reporting.

--peer also boots the same kernel (the tiny image's `vmlinux`) with virtme-ng to a command,
N times: `vng --run VMLINUX --force-9p --exec 'echo MARKER'` (+ `--disable-kvm` under TCG),
from .venv-bench (`ci/setup --bench`). It shares the host's root filesystem read-only over
9p and needs /lib/modules/<the kernel's release> there (its 9p modules); no network option
is passed, so QEMU gets `-net none`. Timed from just before `vng` is started to the marker
line on its output ("command ran") and to the process exit. Its exit status is recorded,
not trusted: success is the marker.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labfixtures import guestimages  # noqa: E402
from labfixtures.core import netns, runner  # noqa: E402
from labfixtures.core.addressing import eui64_link_local  # noqa: E402
from labfixtures.guestimages import kernels  # noqa: E402
from labfixtures.guests.ssh import GuestSSH  # noqa: E402
from labfixtures.qemu import (  # noqa: E402
    Machine,
    MachineSpec,
    NicSpec,
    create_overlay,
    detect,
)
from labfixtures.qemu.spec import TB_SIZE_MB  # noqa: E402

TUNSETIFF, TUNSETPERSIST = 0x400454CA, 0x400454CB
ROOT = Path(__file__).resolve().parents[1]
VNG = ROOT / ".venv-bench" / "bin" / "vng"
PEER_MARKER = "labfixtures-peer: command ran"
# host state the peer must leave alone (the lab lives in namespaces)
WATCHED_SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding",
                   "net/ipv4/conf/all/rp_filter")


def make_tap(ns: str, name: str, multi_queue: bool = False) -> None:
    flags = 0x0002 | 0x1000 | (0x0100 if multi_queue else 0)  # TAP, NO_PI, [MULTI_QUEUE]
    with netns.entered(ns):
        Path("/proc/sys/net/ipv6/conf/default/accept_dad").write_text("0")
        fd = os.open("/dev/net/tun", os.O_RDWR)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        finally:
            os.close(fd)
    runner.run(["ip", "link", "set", name, "up"], netns=ns)


MEM_PARTS = ("rss", "pss", "guest_ram", "tcg_code", "other_anon", "boot_files", "qemu_files")


def memory_mib(pid: int, ram_mb: int, boot_files: tuple[str, ...] = ()) -> dict[str, float]:
    """QEMU's RSS and PSS in MiB, and the RSS of what holds it (see the module's doc)."""
    out = dict.fromkeys(MEM_PARTS, 0.0)
    maps: list[dict[str, Any]] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head, _, rest = line.partition(" ")
            if "-" in head and ":" not in head:
                lo, hi = (int(x, 16) for x in head.split("-"))
                words = rest.split()
                maps.append({"size": hi - lo, "perm": words[0],
                             "name": words[4] if len(words) > 4 else ""})
            elif head in ("Rss:", "Pss:"):
                maps[-1][head[:-1]] = int(rest.split()[0]) / 1024
    ram = max((m for m in maps if not m["name"] and m["perm"] == "rw-p"),
              key=lambda m: m["size"], default=None)
    for m in maps:
        out["rss"] += m.get("Rss", 0)
        out["pss"] += m.get("Pss", 0)
        part = ("boot_files" if m["name"] in boot_files else
                "qemu_files" if m["name"].startswith("/") else "tcg_code" if m["perm"] == "rwxp"
                else "guest_ram" if m is ram and m["size"] >= ram_mb << 20 else "other_anon")
        out[part] += m.get("Rss", 0)
    return out


def one_boot(img: guestimages.GuestImage, profile: str, net: str, run_dir: Path,
             ns: str, memory: int = 256, tb_size: int | None = TB_SIZE_MB,
             balloon: bool = False, rss_after: float = 0.0
             ) -> tuple[float, float, dict[str, float]]:
    nic = NicSpec(net, number=2)
    if img.disk is not None:  # by its firmware and the disk's GRUB (see the module's doc)
        disk = create_overlay(img.disk, run_dir / "vm0.qcow2")
        spec = MachineSpec("vm0", disk=disk, profile=profile, nics=[nic], tuned=False,
                           memory_mb=memory, tb_size_mb=tb_size, balloon=balloon)
    else:
        cfg = guestimages.GuestConfig(hostname="vm0") if net == "tap" else \
            guestimages.GuestConfig.dhcp(hostname="vm0")
        spec = MachineSpec.from_image("vm0", img, profile=profile, nics=[nic],
                                      append=cfg.to_cmdline(), memory_mb=memory,
                                      tb_size_mb=tb_size, balloon=balloon)
    m = Machine(spec, run_dir, netns=ns)
    t0 = time.monotonic()
    mem: dict[str, float] = {}
    with m:
        marker = m.wait_for_marker(img.facts["marker"], timeout=600)
        host, port = (f"{eui64_link_local(nic.mac)}%tap2", 22) if net == "tap" else \
            ("127.0.0.1", nic.ssh_port)
        with GuestSSH(host, port, key=img.private_key, netns=ns).connect(deadline=120) as c:
            c.run("true", check=True)
            ready = time.monotonic() - t0
        if rss_after > 0 and m.pid is not None:
            time.sleep(rss_after)
            mem = memory_mib(m.pid, memory, tuple(str(f) for f in (img.kernel, img.initrd)
                                                  if f is not None))
    return marker, ready, mem


def root_links() -> set[str]:
    """Interfaces of the root network namespace (what `ip -o link` would list)."""
    return set(os.listdir("/sys/class/net"))


def sysctls() -> dict[str, str]:
    return {k: Path("/proc/sys", k).read_text().strip() for k in WATCHED_SYSCTLS
            if Path("/proc/sys", k).exists()}


def peer_command(img: guestimages.GuestImage, tcg: bool, extra: str) -> list[str]:
    cmd = [str(VNG), "--run", str(img.kernel), "--force-9p",
           "--exec", f"echo '{PEER_MARKER}'"]
    if tcg:
        # /dev/kvm exists here but KVM does not work (docs/host-facts.md): vng would pick it
        # and the guest dies with "KVM internal error"
        cmd.append("--disable-kvm")
    return cmd + shlex.split(extra)


def one_peer(cmd: list[str], timeout: float) -> tuple[float | None, float, int, set[str]]:
    """(marker seconds or None, exit seconds, exit status, links that appeared)."""
    env = dict(os.environ, PATH=f"{VNG.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    before, seen, stop = root_links(), set(), threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            seen.update(root_links() - before)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    marker = None
    tail: list[str] = []
    # stdout must be a pipe: vng hands QEMU `path=/proc/self/fd/1` for the guest's
    # stdout, and QEMU reopens a regular file at offset 0, overwriting what was there
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env, cwd="/tmp",
                         start_new_session=True)

    def kill() -> None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    killer = threading.Timer(timeout, kill)
    killer.start()
    try:
        assert p.stdout is not None
        for raw in p.stdout:
            line = raw.decode(errors="replace").rstrip()
            if marker is None and PEER_MARKER in line:
                marker = time.monotonic() - t0
            tail = (tail + [line])[-20:]
        rc = p.wait()
        done = time.monotonic() - t0
    finally:
        killer.cancel()
        kill()  # anything left in its session (QEMU) ends with it
        p.wait()
        stop.set()
        watcher.join()
    seen.update(root_links() - before)
    if marker is None:
        print("    virtme-ng output (last lines):\n      " + "\n      ".join(tail),
              flush=True)
    return marker, done, rc, seen


def run_peer(img: guestimages.GuestImage, runs: int, extra: str,
             timeout: float) -> tuple[list[float], list[float]] | None:
    release = img.facts.get("kernel_release", "")
    if not Path("/lib/modules", release).is_dir():
        print(f"peer: /lib/modules/{release} is missing on the host (virtme-ng loads the "
              f"kernel's 9p modules from there): apt-get install linux-image-{release}")
        return None
    cmd = peer_command(img, detect().name != "kvm", extra)
    print("peer: " + shlex.join(cmd), flush=True)
    sys_before = sysctls()
    markers, exits, links = [], [], set()
    for i in range(runs):
        marker, done, rc, seen = one_peer(cmd, timeout)
        links |= seen
        status = f"command ran {marker:.2f}s" if marker is not None else "NO MARKER"
        print(f"  virtme-ng run {i + 1}: {status}, exit {done:.2f}s (status {rc})",
              flush=True)
        if marker is not None:
            markers.append(marker)
            exits.append(done)
    changed = {k: (v, sysctls().get(k)) for k, v in sys_before.items()
               if sysctls().get(k) != v}
    print(f"  peer side effects: new links in the root namespace during runs: "
          f"{sorted(links) or 'none'}; sysctls changed: {changed or 'none'}")
    if not markers:
        return None
    return markers, exits


def kernel_label(package: str) -> str:
    """`6.1.0-57-cloud-amd64` of linux-image-6.1.0-57-cloud-amd64; `default` stays."""
    return package.removeprefix("linux-image-")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profiles", default="fast,pc")
    ap.add_argument("--net", choices=("tap", "user"), default="tap")
    ap.add_argument("--image", choices=("tiny", "debian"), default="tiny",
                    help="debian: boot its disk by the firmware (pc: BIOS, guide: UEFI)")
    ap.add_argument("--memory", type=int, default=0,
                    help="RAM in MB (default: 256 for tiny, 1024 for debian, the guide's)")
    ap.add_argument("--ns-prefix", default="lf-bench",
                    help="prefix of the throw-away namespaces (one per run)")
    ap.add_argument("--tb-sizes", default=str(TB_SIZE_MB),
                    help=f"TCG translation cache sizes in MiB, comma-separated; 'default': "
                         f"QEMU's own (default: {TB_SIZE_MB}, labfixtures' own)")
    ap.add_argument("--kernels", default="default",
                    help="tiny only: the Debian kernel packages to boot it on, comma-separated "
                         "('default': the recipe's), e.g. default,linux-image-6.1.0-57-cloud-amd64")
    ap.add_argument("--balloon", action="store_true",
                    help="add virtio-balloon with free page reporting")
    ap.add_argument("--rss", type=float, default=0.0, metavar="S",
                    help="S seconds after SSH ready, read QEMU's RSS/PSS and its parts")
    ap.add_argument("--peer", action="store_true",
                    help="also boot the same kernel to a command with virtme-ng "
                         "(.venv-bench, from ci/setup --bench)")
    ap.add_argument("--peer-opts", default="",
                    help="extra vng options, e.g. '--memory 512M' (never a network one)")
    ap.add_argument("--peer-timeout", type=float, default=300.0)
    args = ap.parse_args()
    if args.peer and not VNG.exists():
        ap.error(f"--peer needs {VNG.relative_to(ROOT)}: run ci/setup --bench")
    if any(o in args.peer_opts for o in ("--net", "-n ", "--ssh")):
        ap.error("--peer-opts: no network options (they would touch the host's network)")

    if args.image != "tiny" and args.kernels != "default":
        ap.error("--kernels is for the tiny image")
    t = time.monotonic()
    images = {k: guestimages.build(args.image) if k == "default" else
              kernels.build_tiny(k, progress=None) for k in args.kernels.split(",")}
    memory = args.memory or (1024 if args.image == "debian" else 256)
    for k, img in images.items():
        print(f"image: {img.path.name} ({k}: {img.facts.get('kernel_release', '?')})")
    print(f"(ready in {time.monotonic() - t:.2f}s)")
    print(f"accel: {detect().name} ({detect().reason}); load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rows = []
    tbs = {t: None if t == "default" else int(t) for t in args.tb_sizes.split(",")}
    variants = [(p, t, k) for p in args.profiles.split(",") for t in tbs for k in images]
    label = {v: v[0] + ("" if len(tbs) == 1 else f"/tb{v[1]}")
             + ("" if len(images) == 1 else f"/{kernel_label(v[2])}") for v in variants}
    times: dict[tuple[str, str, str], tuple[list[float], list[float]]] = \
        {v: ([], []) for v in variants}
    mems: dict[tuple[str, str, str], list[dict[str, float]]] = {v: [] for v in variants}
    # interleaved (run 1 of each profile, then run 2...): a load that changes during the
    # bench (a shared machine) weighs on every profile alike
    for i in range(args.runs):
        for variant in variants:
            profile, tb, kernel = variant
            img = images[kernel]
            markers, readies = times[variant]
            ns = (f"{args.ns_prefix}-{os.getpid() % 100000}-{profile[:4]}-{tb[:3]}-"
                  f"{list(images).index(kernel)}-{i}")
            netns.create(ns)
            try:
                runner.run(["ip", "link", "set", "lo", "up"], netns=ns)
                if args.net == "tap":
                    make_tap(ns, "tap2", multi_queue=profile == "guide")
                with tempfile.TemporaryDirectory(prefix="lf-bench-") as tmp:
                    marker, ready, mem = one_boot(img, profile, args.net, Path(tmp), ns,
                                                  memory, tbs[tb], args.balloon, args.rss)
            finally:
                netns.delete(ns)
            markers.append(marker)
            readies.append(ready)
            if mem:
                mems[variant].append(mem)
            print(f"  {label[variant]} run {i + 1}: marker {marker:.2f}s, ssh ready "
                  f"{ready:.2f}s (load {os.getloadavg()[0]:.1f})"
                  + (f", RSS {mem['rss']:.0f} MiB PSS {mem['pss']:.0f}" if mem else ""),
                  flush=True)
    for variant, (markers, readies) in times.items():
        rows.append((label[variant], statistics.median(markers), statistics.median(readies),
                     min(readies), max(readies)))
    peer = run_peer(img, args.runs, args.peer_opts, args.peer_timeout) if args.peer else None
    print()
    w = max(9, *(len(r[0]) for r in rows))
    print(f"{'profile':<{w}} {'net':<5} {'marker (med)':>13} {'ready (med)':>12} "
          f"{'min':>6} {'max':>6} {'peer/this':>10}")
    peer_med = statistics.median(peer[0]) if peer else None
    for profile, mk, med, lo, hi in rows:
        ratio = f"{peer_med / med:>9.1f}x" if peer_med else f"{'-':>10}"
        print(f"{profile:<{w}} {args.net:<5} {mk:>12.2f}s {med:>11.2f}s {lo:>5.2f}s "
              f"{hi:>5.2f}s {ratio}")
    if peer:
        markers, exits = peer
        print(f"{'virtme-ng':<9} {'none':<5} {peer_med:>12.2f}s {statistics.median(exits):>11.2f}s "
              f"{min(exits):>5.2f}s {max(exits):>5.2f}s {'-':>10}")
        print(f"ready = SSH `true` answered (ours); process exit after the command "
              f"(virtme-ng, {len(markers)}/{args.runs} runs with the marker). "
              f"peer/this = virtme-ng's command-ran median / this SSH-ready median.")
    elif args.peer:
        print("virtme-ng: no run printed the marker (see above)")
    if any(mems.values()):
        print(f"\nQEMU memory {args.rss:g} s after SSH ready, MiB (medians; -m {memory}"
              f"{', balloon' if args.balloon else ''}; files: shared page cache):")
        lw = max(12, *(len(v) + 1 for v in label.values()))
        print(f"{'variant':<{lw}}" + "".join(f"{k:>11}" for k in MEM_PARTS))
        for variant, ms in mems.items():
            if ms:
                print(f"{label[variant]:<{lw}}" + "".join(
                    f"{statistics.median(m[k] for m in ms):>11.1f}" for k in MEM_PARTS))
    print(f"(load average now {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
