"""Boot of the debian image to SSH-ready, direct and by its firmware, one build or several.

    sudo .venv/bin/python bench/debian_boot.py [--runs 3] [--modes direct,pc,guide]
        [--build ~/.cache/labfixtures/images/debian-OLDHASH --build current] [--net tap|user]
        [--tb-size image,32,256,default] [--cpu default --cpu max] [--then 'GUEST COMMAND']

Modes: `direct` is how most tests boot it: `pc` with the image's kernel and fast initramfs
(`-kernel/-initrd`, the tuned command line, lf.hostname=vm0 plus lf.dhcp=eth0 on --net
user). `pc` (SeaBIOS, GRUB in the MBR), `q35` and `guide` (the guide's machine: OVMF, GRUB
from the ESP, swtpm, a two-queue NIC) boot the disk by the firmware, as bench/boot.py
--image debian does: no kernel command line reaches the guest, it has no address but its
EUI-64 link-local one (--net tap, the default) or what its background DHCP gets (user).

--tb-size: TCG translation cache sizes to compare (MiB; `default`: QEMU's 1 GiB; `image`:
what labfixtures gives a VM of the image, guestimages.default_tb_size), interleaved too.
--cpu MODEL (repeatable; `default`: what labfixtures gives, qemu/cmdline.py) boots with
`-cpu MODEL` instead, e.g. `max` (every feature TCG has, ERMS included) against the
default. --then CMD: once SSH answered, CMD runs in the guest and is timed too (the work
after the boot: `apt-get -s dist-upgrade`, a copy...).
--build DIR (repeatable; `current`: the cache's build of the recipe, built if missing)
compares builds kept in the cache, e.g. the previous recipe's beside the new one. Every
build × mode is booted once per round, the rounds interleaved, so that the load of a shared
machine weighs on each alike; the load average is printed per boot and summed up.
"SSH ready" = from just before QEMU is started to the first `true` run over SSH. Timings
are reported, never asserted (docs/host-facts.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boot import make_tap  # noqa: E402  (bench/boot.py, beside this file)

from labfixtures import guestimages  # noqa: E402
from labfixtures.core import netns, runner  # noqa: E402
from labfixtures.core.addressing import eui64_link_local  # noqa: E402
from labfixtures.guestimages.cache import GuestImage, ImageCache  # noqa: E402
from labfixtures.guests.ssh import GuestSSH  # noqa: E402
from labfixtures.qemu import Machine, MachineSpec, NicSpec, create_overlay, detect  # noqa: E402


def tb_size(img: GuestImage, tb: str) -> int | None:
    if tb == "image":
        return guestimages.default_tb_size(img.name)
    return None if tb == "default" else int(tb)


def one_boot(img: GuestImage, mode: str, net: str, run_dir: Path, ns: str, memory: int,
             vcpus: int, tb: str = "image", cpu: str = "default", then: str = ""
             ) -> tuple[float, float, float]:
    """(seconds to the serial marker, seconds to SSH `true`, seconds THEN took) of one
    cold boot."""
    extra = [] if cpu == "default" else ["-cpu", cpu]  # the last -cpu wins
    nic = NicSpec(net, number=2)
    disk = create_overlay(img.disk, run_dir / "vm0.qcow2")
    if mode == "direct":
        cfg = guestimages.GuestConfig(hostname="vm0") if net == "tap" else \
            guestimages.GuestConfig.dhcp(hostname="vm0")
        spec = MachineSpec.from_image("vm0", img, disk=disk, profile="pc", nics=[nic],
                                      append=cfg.to_cmdline(), memory_mb=memory, vcpus=vcpus,
                                      tb_size_mb=tb_size(img, tb), extra_args=extra)
    else:
        spec = MachineSpec("vm0", disk=disk, profile=mode, nics=[nic], tuned=False,
                           memory_mb=memory, vcpus=vcpus, tb_size_mb=tb_size(img, tb),
                           extra_args=extra)
    m = Machine(spec, run_dir, netns=ns)
    t0 = time.monotonic()
    with m:
        marker = m.wait_for_marker(img.facts["marker"], timeout=600)
        host, port = (f"{eui64_link_local(nic.mac)}%tap2", 22) if net == "tap" else \
            ("127.0.0.1", nic.ssh_port)
        with GuestSSH(host, port, key=img.private_key, netns=ns).connect(deadline=180) as c:
            c.run("true", check=True)
            ready = time.monotonic() - t0
            t1 = time.monotonic()
            if then:
                c.run(then, check=True, timeout=600)
            work = time.monotonic() - t1
    return marker, ready, work


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default="direct,pc,guide")
    ap.add_argument("--net", choices=("tap", "user"), default="tap")
    ap.add_argument("--memory", type=int, default=1024)
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--build", action="append", default=[], metavar="DIR",
                    help="a build directory of the debian image (repeatable); "
                         "'current' (default): the cache's build of the recipe")
    ap.add_argument("--tb-size", default="image",
                    help="comma-separated TCG translation cache sizes (MiB, default, image)")
    ap.add_argument("--cpu", action="append", default=[], metavar="MODEL",
                    help="-cpu MODEL instead of labfixtures' (repeatable; 'default')")
    ap.add_argument("--then", default="", metavar="CMD",
                    help="a guest command to time once SSH answers")
    ap.add_argument("--ns-prefix", default="lf-dbench")
    args = ap.parse_args()

    cache = ImageCache()
    builds: dict[str, GuestImage] = {}
    for b in args.build or ["current"]:
        img = guestimages.build("debian") if b == "current" else \
            GuestImage.load(Path(b).expanduser(), cache.private_key)
        builds[img.path.name.removeprefix("debian-")[:8]] = img
    print(f"builds: {', '.join(i.path.name for i in builds.values())}")
    print(f"accel: {detect().name} ({detect().reason}); load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.vcpus} vCPU(s), "
          f"{args.memory} MB, net {args.net}")
    keys = [(b, mode, tb, cpu) for mode in args.modes.split(",") for b in builds
            for tb in args.tb_size.split(",") for cpu in args.cpu or ["default"]]
    times: dict[tuple[str, str, str, str], tuple[list[float], list[float], list[float]]] = {
        k: ([], [], []) for k in keys}
    loads: list[float] = []
    for i in range(args.runs):
        for build, mode, tb, cpu in keys:
            ns = f"{args.ns_prefix}-{os.getpid() % 100000}-{mode[:4]}-{i}"
            netns.create(ns)
            try:
                runner.run(["ip", "link", "set", "lo", "up"], netns=ns)
                if args.net == "tap":
                    make_tap(ns, "tap2", multi_queue=mode == "guide")
                with tempfile.TemporaryDirectory(prefix="lf-dbench-") as tmp:
                    marker, ready, work = one_boot(builds[build], mode, args.net, Path(tmp),
                                                   ns, args.memory, args.vcpus, tb, cpu,
                                                   args.then)
            finally:
                netns.delete(ns)
            for series, value in zip(times[build, mode, tb, cpu], (marker, ready, work),
                                     strict=True):
                series.append(value)
            loads.append(os.getloadavg()[0])
            print(f"  {build} {mode:<6} tb {tb:<7} cpu {cpu:<10} run {i + 1}: marker "
                  f"{marker:6.2f}s, ssh ready {ready:6.2f}s"
                  + (f", then {work:6.2f}s" if args.then else "")
                  + f" (load {loads[-1]:.1f})", flush=True)
    print()
    print(f"{'build':<9} {'mode':<7} {'tb':<8} {'cpu':<11} {'marker (med)':>13} "
          f"{'ready (med)':>12} {'min':>7} {'max':>7}"
          + (f" {'then (med)':>11} {'min':>7} {'max':>7}" if args.then else ""))
    for (build, mode, tb, cpu), (markers, readies, works) in times.items():
        print(f"{build:<9} {mode:<7} {tb:<8} {cpu:<11} {statistics.median(markers):>12.2f}s "
              f"{statistics.median(readies):>11.2f}s {min(readies):>6.2f}s "
              f"{max(readies):>6.2f}s"
              + (f" {statistics.median(works):>10.2f}s {min(works):>6.2f}s "
                 f"{max(works):>6.2f}s" if args.then else ""))
    print(f"load average during the runs {min(loads):.1f}-{max(loads):.1f} (median "
          f"{statistics.median(loads):.1f}), now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
