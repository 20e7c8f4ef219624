"""Boot the tiny guest on each profile, reach it over SSH, check its EUI-64 address.

Below the `Lab` API on purpose: the qemu layer with a private namespace and a tap
(tests/integration/conftest.py), everything removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from labfixtures import guestimages
from labfixtures.core import netns, runner
from labfixtures.core.addressing import eui64_link_local
from labfixtures.errors import BootError, QmpError, TapInUseError
from labfixtures.guests.ssh import GuestSSH
from labfixtures.qemu import Machine, MachineSpec, NicSpec
from labfixtures.qemu.launch import LaunchInfo

pytestmark = [
    pytest.mark.vm,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, taps)"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86 is not installed"),
]

@pytest.fixture(scope="session")
def tiny() -> guestimages.GuestImage:
    return guestimages.build("tiny", progress=None)


def boot(tiny, ns, run_dir, profile, nic, cfg, name="vm0") -> Machine:
    spec = MachineSpec.from_image(name, tiny, profile=profile, nics=[nic],
                                  append=cfg.to_cmdline())
    m = Machine(spec, run_dir, netns=ns).start()
    try:
        m.wait_for_marker(tiny.facts["marker"], timeout=120)
    except BaseException:
        m.stop()
        raise
    return m


@pytest.mark.parametrize("profile", ["fast", "pc"])
def test_boot_on_a_tap_and_ssh_to_the_eui64_link_local(tiny, private_ns, make_tap, tmp_path,
                                                      profile):
    make_tap("tap2")
    nic = NicSpec("tap", number=2)
    with boot(tiny, private_ns, tmp_path, profile, nic,
              guestimages.GuestConfig(hostname="vm0")) as m:
        lladdr = eui64_link_local(nic.mac)
        assert lladdr == "fe80::baad:caff:fefe:2"
        with GuestSSH(f"{lladdr}%tap2", key=tiny.private_key, netns=private_ns,
                      known_hosts=tmp_path / "known_hosts") as c:
            assert c.run("uname -r", check=True).stdout.strip() == \
                tiny.facts["kernel_release"]
            out = c.run("ip -6 addr show dev eth0", check=True).stdout
            assert f"inet6 {lladdr}/64 scope link" in out
            # the init script adds the link-local address itself (not waiting for
            # linkwatch): one address, not tentative, with the kernel's routes
            assert out.count("scope link") == 1 and "tentative" not in out
            routes = c.run("ip -6 route show table all dev eth0", check=True).stdout
            assert "fe80::/64 proto kernel" in routes
            assert "iproute2" in c.run("ip -V", check=True).stdout  # not busybox's ip
            mods = c.run("cat /proc/modules", check=True).stdout
            assert {"virtio_net", "virtio_rng"} <= {ln.split()[0] for ln in mods.splitlines()}
            assert c.run("hostname").stdout.strip() == "vm0"
            host = c.testinfra_host()
            assert host.file("/root/.ssh/authorized_keys").contains("ssh-ed25519")
            assert host.interface("eth0").exists

        # the guide's check: a tap already used by a running VM is refused before starting
        other = MachineSpec.from_image("vm1", tiny, profile=profile, nics=[NicSpec(number=2)])
        with pytest.raises(TapInUseError) as e:
            Machine(other, tmp_path, netns=private_ns).start()
        assert (e.value.tap, e.value.vm, e.value.pid) == ("tap2", "vm1", m.pid)
        assert (tmp_path / "vm0.cmdline").read_text().count("ip netns exec") == 1
        assert int((tmp_path / "vm0.pid").read_text()) == m.pid
        launch = LaunchInfo.read(tmp_path, "vm0")
        assert launch is not None and launch == m.launch
        assert launch.pid == m.pid and launch.netns == private_ns
        assert launch.accel == m.accel.name and launch.accel_reason == m.accel.reason
        assert launch.qemu_version[:1].isdigit()
        assert launch.command_line() == (tmp_path / "vm0.cmdline").read_text().splitlines()[-1]
        check_memory(m)
    assert not m.running
    assert not (tmp_path / "vm0.pid").exists()


def check_memory(m: Machine) -> None:
    """A guard against gross regressions only (figures: bench/boot.py --rss): QEMU's
    private memory once the guest is up is ~150 MiB (guest RAM the kernel touched ~100,
    TCG code buffer 32), its file mappings ~90 MiB (page cache shared between VMs)."""
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{m.pid}/status").read_text().splitlines())
    anon_mib = int(status["RssAnon"].split()[0]) / 1024
    assert anon_mib < 220, f"QEMU holds {anon_mib:.0f} MiB of anonymous memory (~150 expected)"
    if m.accel.name == "tcg" and m.spec.tb_size_mb is not None:
        code = [line for line in Path(f"/proc/{m.pid}/maps").read_text().splitlines()
                if line.split()[1] == "rwxp"]  # TCG's code buffer: the one rwx mapping
        sizes = [int(hi, 16) - int(lo, 16) for lo, hi in
                 (line.split()[0].split("-") for line in code)]
        assert sizes and max(sizes) <= (m.spec.tb_size_mb + 1) << 20, \
            f"TCG code buffer of {max(sizes, default=0) >> 20} MiB, tb-size is {m.spec.tb_size_mb}"


@pytest.mark.parametrize("profile", ["fast", "pc"])
def test_boot_user_mode_with_dhcp_and_hostfwd(tiny, private_ns, tmp_path, profile):
    nic = NicSpec("user", number=10)
    assert nic.ssh_port == 2210
    with boot(tiny, private_ns, tmp_path, profile, nic,
              guestimages.GuestConfig.dhcp(hostname="vm0")) as m, \
            GuestSSH("127.0.0.1", nic.ssh_port, key=tiny.private_key, netns=private_ns,
                     known_hosts=tmp_path / "known_hosts") as c:
        assert c.run("uname -r").stdout.strip() == tiny.facts["kernel_release"]
        v4 = c.run("ip -4 addr show dev eth0", check=True).stdout
        assert "inet 10.0.2.15/24" in v4
        assert "nameserver 10.0.2.3" in c.run("cat /etc/resolv.conf").stdout
        v6 = c.run("ip -6 addr show dev eth0", check=True).stdout
        assert f"inet6 {eui64_link_local(nic.mac)}/64 scope link" in v6
        assert m.hmp("info status").strip() == "VM status: running"
        with pytest.raises(QmpError) as e:
            m.qmp("lf-no-such-command")
        assert (e.value.command, e.value.machine) == ("lf-no-such-command", "vm0")
        assert e.value.error_class == "CommandNotFound"
        assert m.qmp("query-status")["status"] == "running"  # the connection survives


def test_static_guest_configuration(tiny, private_ns, make_tap, tmp_path):
    """The guide's Table 1 plan, given on the kernel command line."""
    make_tap("tap3")
    runner.run(["ip", "addr", "add", "203.0.113.129/26", "dev", "tap3"], netns=private_ns)
    cfg = guestimages.GuestConfig(
        hostname="vm3",
        interfaces=[guestimages.InterfaceConfig("eth0", addresses=("203.0.113.130/26",))],
        gateway="203.0.113.129")
    with boot(tiny, private_ns, tmp_path, "fast", NicSpec(number=3), cfg), \
            GuestSSH("203.0.113.130", key=tiny.private_key, netns=private_ns) as c:
        assert "default via 203.0.113.129 dev eth0" in c.run("ip route").stdout
        assert c.run("ping -c1 -W2 203.0.113.129").ok


def test_boot_restarts_a_stalled_machine_once_then_fails(tiny, private_ns, tmp_path):
    """Machine.boot(): no marker within the timeout -> one restart, with a warning naming
    the kept serial log; still nothing -> the error, and no QEMU left."""
    spec = MachineSpec.from_image("stall", tiny, profile="fast", nics=[])
    m = Machine(spec, tmp_path, netns=private_ns)
    with pytest.warns(UserWarning, match="attempt 1/2, serial log kept in .*stall.serial.log.1"), \
            pytest.raises(BootError) as e:
        m.boot("never printed", timeout=1.5, attempts=2)
    assert (e.value.machine, e.value.marker, e.value.timeout) == ("stall", "never printed", 1.5)
    assert not e.value.stopped
    assert (tmp_path / "stall.serial.log.1").exists()
    assert not m.running
    assert netns.pids(private_ns) == []


def test_a_frozen_qemu_is_killed_without_waiting_for_sigterm(tiny, private_ns, tmp_path):
    """A QEMU that does not answer `quit` has its main loop stuck, so SIGTERM (handled by
    that loop) would not end it either: stop() sends SIGKILL once `quit` times out. With
    a 60 s SIGTERM wait, the old order took over a minute."""
    spec = MachineSpec.from_image("frozen", tiny, profile="fast", nics=[])
    m = Machine(spec, tmp_path, netns=private_ns).start()
    pid = m.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    began = time.monotonic()
    rc = m.stop(quit_timeout=2.0, term_timeout=60.0)
    took = time.monotonic() - began
    assert rc == -signal.SIGKILL
    assert took < 30, f"stop() took {took:.1f} s: it waited for SIGTERM"
    assert netns.pids(private_ns) == []
