"""Measurements a regression run compares between versions (`lab_metric`): boot to SSH,
checkpoint restore, ping round trip, TCP throughput between two VMs, on the guide's
Table 1 network (VLAN 2, SVI 203.0.113.129/26, tiny guests on taps).

Nothing here asserts a figure: the numbers go into `--lab-results FILE.json`, and
`labctl regress compare` tells a change beyond the noise of the runs from noise. (Timings
of labfixtures itself are benchmarks: bench/.)
"""

from __future__ import annotations

import re
import time

import pytest

GW = "203.0.113.129"
VM0, VM1 = "203.0.113.130", "203.0.113.131"

pytestmark = [pytest.mark.vm, pytest.mark.root]


def table1(lab, switch, taps=(2,)):
    switch.svi(2, f"{GW}/26")
    for n in taps:
        lab.tap(n)
        switch.add_port(f"tap{n}", tag=2)


def test_boot_to_ssh(lab, switch, lab_metric) -> None:
    table1(lab, switch)
    t0 = time.monotonic()
    vm = lab.vm("vm0", tap=2, addresses=[f"{VM0}/26"], gateway=GW)
    vm.ssh()
    lab_metric("boot_to_ssh", time.monotonic() - t0, "s")
    lab_metric("boot_to_ready", vm.boot_seconds, "s")
    assert vm.run("hostname").stdout.strip() == "vm0"


def test_a_checkpoint_exists(lab, switch, lab_vm) -> None:
    """Boots vm0 once (or restores it): the next test then restores it."""
    table1(lab, switch)
    vm = lab_vm("vm0", tap=2, addresses=[f"{VM0}/26"], gateway=GW)
    assert vm.run("hostname").stdout.strip() == "vm0"


def test_checkpoint_restore_to_ssh(lab, switch, lab_vm, lab_metric, request) -> None:
    """Restores the checkpoint that the test above made (or an earlier run: checkpoints
    stay in the cache), so it runs after it, in the same worker (loadscope)."""
    if request.config.getoption("--lab-no-checkpoints"):
        pytest.skip("--lab-no-checkpoints: nothing is restored")
    table1(lab, switch)
    t0 = time.monotonic()
    vm = lab_vm("vm0", tap=2, addresses=[f"{VM0}/26"], gateway=GW)
    vm.ssh()
    elapsed = time.monotonic() - t0
    assert vm.loadvm, "lab_vm booted instead of restoring its automatic checkpoint"
    lab_metric("checkpoint_restore_to_ssh", elapsed, "s")


def test_ping_round_trip(lab, switch, lab_vm, lab_metric) -> None:
    table1(lab, switch)
    vm = lab_vm("vm0", tap=2, addresses=[f"{VM0}/26"], gateway=GW)
    out = lab.run(["ping", "-n", "-c", "10", "-i", "0.2", VM0]).stdout
    rtts = [float(x) for x in re.findall(r"time=([0-9.]+) ms", out)]
    assert len(rtts) == 10, out
    for rtt in rtts[1:]:  # the first one includes neighbour discovery
        lab_metric("ping_rtt_host_to_vm", rtt, "ms")
    assert vm.run("hostname").exit_status == 0


def test_tcp_throughput_between_two_vms(lab, switch, lab_metric) -> None:
    table1(lab, switch, taps=(2, 3))
    vm0 = lab.vm("vm0", tap=2, addresses=[f"{VM0}/26"], gateway=GW, start=False)
    vm1 = lab.vm("vm1", tap=3, addresses=[f"{VM1}/26"], gateway=GW, start=False)
    for vm in (vm0, vm1):
        vm.start(wait=False)
    for vm in (vm0, vm1):
        vm.wait_ready()
    size = 8 * 2**20
    # busybox's httpd on vm1 serves a file from RAM, busybox's wget on vm0 fetches it;
    # both ends of the clock are vm0's uptime (busybox nc drops data at EOF: not usable)
    vm1.run(f"mkdir -p /tmp/www && head -c {size} /dev/zero > /tmp/www/blob && "
            "busybox httpd -p 8080 -h /tmp/www")
    out = vm0.run("a=$(cut -d' ' -f1 /proc/uptime); "
                  f"busybox wget -q -O /tmp/blob http://{VM1}:8080/blob; "
                  "b=$(cut -d' ' -f1 /proc/uptime); echo $a $b $(wc -c < /tmp/blob)",
                  timeout=120)
    a, b, received = out.stdout.split()[-3:]
    assert int(received) == size, f"vm0 received {received} of {size} bytes: {out.stderr}"
    lab_metric("tcp_vm_to_vm", size * 8 / 1e6 / max(float(b) - float(a), 1e-3), "Mbit/s")
