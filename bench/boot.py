"""Cold boot of the tiny guest to SSH-ready, per machine profile (medians of N runs).

    sudo .venv/bin/python bench/boot.py [--runs 5] [--profiles fast,pc] [--net tap|user]

"SSH ready" = from just before QEMU is started to the first `true` run over SSH
(key exchange and authentication included). The serial marker time is shown too.
Timings are reported, never asserted (DESIGN §4).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labfixtures import guestimages, netns  # noqa: E402
from labfixtures.addressing import eui64_link_local  # noqa: E402
from labfixtures.qemu import Machine, MachineSpec, NicSpec, detect  # noqa: E402
from labfixtures.ssh import GuestSSH  # noqa: E402

TUNSETIFF, TUNSETPERSIST = 0x400454CA, 0x400454CB


def make_tap(ns: str, name: str) -> None:
    with netns.entered(ns):
        Path("/proc/sys/net/ipv6/conf/default/accept_dad").write_text("0")
        fd = os.open("/dev/net/tun", os.O_RDWR)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), 0x0002 | 0x1000))
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        finally:
            os.close(fd)
    netns.run(ns, ["ip", "link", "set", name, "up"])


def one_boot(img: guestimages.GuestImage, profile: str, net: str, run_dir: Path,
             ns: str) -> tuple[float, float]:
    nic = NicSpec(net, number=2)
    cfg = guestimages.GuestConfig(hostname="vm0") if net == "tap" else \
        guestimages.GuestConfig.dhcp(hostname="vm0")
    spec = MachineSpec.from_image("vm0", img, profile=profile, nics=[nic],
                                  append=cfg.to_cmdline())
    m = Machine(spec, run_dir, netns=ns)
    t0 = time.monotonic()
    with m:
        marker = m.wait_for_marker(img.facts["marker"], timeout=120)
        host, port = (f"{eui64_link_local(nic.mac)}%tap2", 22) if net == "tap" else \
            ("127.0.0.1", nic.ssh_port)
        with GuestSSH(host, port, key=img.private_key, netns=ns) as c:
            c.run("true", check=True)
            ready = time.monotonic() - t0
    return marker, ready


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profiles", default="fast,pc")
    ap.add_argument("--net", choices=("tap", "user"), default="tap")
    ap.add_argument("--ns-prefix", default="lf-bench",
                    help="prefix of the throw-away namespaces (one per run)")
    args = ap.parse_args()

    t = time.monotonic()
    img = guestimages.build("tiny")
    print(f"image: {img.path.name} (ready in {time.monotonic() - t:.2f}s)")
    print(f"accel: {detect().name} ({detect().reason}); load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rows = []
    for profile in args.profiles.split(","):
        markers, readies = [], []
        for i in range(args.runs):
            ns = f"{args.ns_prefix}-{os.getpid() % 100000}-{profile[:4]}-{i}"
            netns.create(ns)
            try:
                netns.run(ns, ["ip", "link", "set", "lo", "up"])
                if args.net == "tap":
                    make_tap(ns, "tap2")
                with tempfile.TemporaryDirectory(prefix="lf-bench-") as tmp:
                    marker, ready = one_boot(img, profile, args.net, Path(tmp), ns)
            finally:
                netns.delete(ns)
            markers.append(marker)
            readies.append(ready)
            print(f"  {profile} run {i + 1}: marker {marker:.2f}s, ssh ready {ready:.2f}s",
                  flush=True)
        rows.append((profile, statistics.median(markers), statistics.median(readies),
                     min(readies), max(readies)))
    print()
    print(f"{'profile':<8} {'net':<5} {'marker (med)':>13} {'SSH ready (med)':>16} "
          f"{'min':>6} {'max':>6}")
    for profile, mk, med, lo, hi in rows:
        print(f"{profile:<8} {args.net:<5} {mk:>12.2f}s {med:>15.2f}s {lo:>5.2f}s {hi:>5.2f}s")
    print(f"(load average now {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
