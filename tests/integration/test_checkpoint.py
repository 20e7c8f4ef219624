"""Checkpoints of a real tiny guest: save live, restore, restore into a fresh lab, bundles.

Timings are measured in bench/checkpoint.py, never asserted here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labfixtures import checkpoint as ck
from labfixtures import guestimages
from labfixtures.checkpoint import memfile
from labfixtures.core import netns
from labfixtures.errors import CheckpointError, LabError
from labfixtures.lab.lab import Lab
from labfixtures.lab.vm import VmNic
from labfixtures.pytest_plugin.checkpoint_fixtures import boot_once
from labfixtures.qemu import builds
from labfixtures.regress.qemusel import builds_root

pytestmark = [
    pytest.mark.vm,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, taps)"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86 is not installed"),
]

VM_ADDR = "203.0.113.130/26"
GATEWAY = "203.0.113.129"


def fresh_labid(suffix: str) -> str:
    """Another lab beside the session's own (`lf-RUN-WORKER`), reaped with it."""
    from labfixtures.lab.labhost import default_labid

    return f"{default_labid()}-{suffix}"


def table1(lab: Lab) -> None:
    """The guide's Table 1: sw0, its SVI on VLAN 2, tap2 an access port of VLAN 2."""
    sw0 = lab.switch("sw0")
    sw0.svi(2, f"{GATEWAY}/26")
    lab.tap(2)
    sw0.add_port("tap2", tag=2)


@pytest.fixture(scope="module")
def tiny() -> guestimages.GuestImage:
    try:
        return guestimages.get("tiny")
    except LabError as e:
        pytest.skip(f"{e.problem} ({e.remedy})")


@pytest.fixture
def store(tmp_path, tiny) -> ck.CheckpointStore:
    return ck.CheckpointStore(tmp_path / "checkpoints")


def test_a_file_written_before_the_save_is_back_and_a_later_change_is_gone(lab, store):
    table1(lab)
    vm = lab.vm("vm0", tap=2, addresses=[VM_ADDR], gateway=GATEWAY)
    vm.run("echo before > /root/kept", check=True)
    vm.run("date -u -s @1000000000", check=True)  # 2001: the restore must set it to now
    pid_before = vm.machine.pid

    cp = ck.save(vm, "step1", store=store)
    assert vm.machine.pid == pid_before and vm.machine.running, "the save must be live"
    assert vm.run("cat /root/kept", check=True).stdout == "before\n"
    assert cp.manifest.files[ck.STATE_FILE].size > 1 << 20
    assert [c.tag for c in store.list("vm0")] == ["step1"]

    vm.run("echo after > /root/kept; echo new > /root/later", check=True)
    ck.restore(vm, "step1", store=store)
    assert vm.machine.pid != pid_before
    assert vm.run("cat /root/kept", check=True).stdout == "before\n"
    guest_now = int(vm.run("date -u +%s", check=True).stdout)
    assert abs(guest_now - time.time()) < 5, f"the guest's clock says {guest_now}"
    assert not vm.run("test -e /root/later").ok, "a change made after the save survived"
    # same MAC on the same tap
    argv = vm.machine.cmdline_file.read_text()
    assert "ifname=tap2," in argv and "mac=b8:ad:ca:fe:00:02" in argv
    assert "b8:ad:ca:fe:00:02" in vm.run("cat /sys/class/net/eth0/address").stdout
    assert vm.ping(GATEWAY)
    assert lab.ping(VM_ADDR.split("/")[0])

    # a second save and restore from the restored VM works the same way
    vm.run("echo second > /root/kept", check=True)
    ck.save(vm, "step2", store=store)
    vm.run("rm /root/kept", check=True)
    ck.restore(vm, "step2", store=store)
    assert vm.run("cat /root/kept", check=True).stdout == "second\n"
    store.delete("vm0", "step2")
    assert [c.tag for c in store.list("vm0")] == ["step1"]


def test_a_vm_with_a_disk_gets_its_memory_and_its_disk_back(lab, lab_vm, store,
                                                           debian_image):
    """The debian guest on its qcow2 overlay: the memory (a file in /run, a tmpfs) and the
    disk (a file in /root, synced) come back. `-loadvm` cannot restore it (it looks for
    the memory in the overlay, whose snapshot is disk-only: "This is a disk-only
    snapshot"), so QEMU starts paused and loads by QMP; the overlay keeps no snapshot.
    vm0 itself comes up from its automatic checkpoint (`lab_vm`: booted and saved the
    first time, that same path): the checkpoint saved here is of a restored VM."""
    table1(lab)  # and tap9, a tap of its own
    lab.tap(9)
    lab.switches["sw0"].add_port("tap9", tag=2)
    vm = lab_vm("vm0", tap=9, addresses=["203.0.113.139/26"], gateway=GATEWAY,
                image=debian_image, memory=512, vcpus=1)
    vm.run("echo disk > /root/kept && echo mem > /run/kept && sync", check=True)
    boot_id = vm.run("cat /proc/sys/kernel/random/boot_id", check=True).stdout
    cp = ck.save(vm, "step1", store=store)
    assert cp.file(ck.DISK_FILE) is not None, "a VM with an overlay saves its disk"

    vm.run("echo changed > /root/kept && rm /run/kept && echo new > /root/later && sync",
           check=True)
    ck.restore(vm, "step1", store=store)
    assert vm.run("cat /root/kept /run/kept", check=True).stdout == "disk\nmem\n"
    assert not vm.run("test -e /root/later").ok, "a change made after the save survived"
    assert vm.run("cat /proc/sys/kernel/random/boot_id", check=True).stdout == boot_id, (
        "the VM booted instead of resuming")
    assert "-loadvm" not in vm.machine.cmdline_file.read_text()
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json",
                                      str(vm.overlay)], capture_output=True, text=True,
                                     check=True, timeout=30).stdout)
    assert not info.get("snapshots"), f"the restored overlay keeps a snapshot: {info}"


def test_a_tiny_vm_restores_on_the_checkpoints_memory_file_copy_on_write(lab, store):
    """memfile.py: the first restore unpacks the state into memfile/ (RAM file, device
    stream); each restore maps the RAM file privately: what the guest writes never reaches
    the file, and with use_memfile=False the same checkpoint still restores by -loadvm."""
    table1(lab)
    vm = lab.vm("vm0", tap=2, addresses=[VM_ADDR], gateway=GATEWAY)
    vm.run("echo before > /root/kept", check=True)
    cp = ck.save(vm, "mem", store=store)
    qemu_id = ck.qemu_identity(builds.selected(), store.hash_cache)
    assert memfile.files(cp, qemu_id) is None  # unpacked at the first restore
    ram = memfile.directory(cp, qemu_id) / memfile.RAM_FILE

    ck.restore(vm, "mem", store=store)
    assert memfile.files(cp, qemu_id) is not None
    argv = vm.machine.cmdline_file.read_text()
    assert f"memory-backend-file,id=microvm.ram,size=256M,mem-path={ram},share=off" in argv
    assert "-incoming defer" in argv and "-loadvm" not in argv and vm.loadvm == "mem"
    assert vm.run("cat /root/kept", check=True).stdout == "before\n"
    digest = hashlib.sha256(ram.read_bytes()).hexdigest()
    # the guest writes 32 MiB of its RAM: its own pages, not the file's
    vm.run("dd if=/dev/urandom of=/root/noise bs=1M count=32 2>/dev/null; sync", check=True)
    assert hashlib.sha256(ram.read_bytes()).hexdigest() == digest

    ck.restore(vm, "mem", store=store)  # the file as it was: noise gone, kept back
    assert not vm.run("test -e /root/noise").ok
    assert vm.run("cat /root/kept", check=True).stdout == "before\n"

    ck.restore(vm, "mem", store=store, use_memfile=False)
    argv = vm.machine.cmdline_file.read_text()
    assert "-loadvm mem" in argv and "memory-backend-file" not in argv
    assert vm.run("cat /root/kept", check=True).stdout == "before\n"


def test_restore_refuses_a_vm_with_other_settings(lab, store):
    table1(lab)
    lab.tap(3)
    vm = lab.vm("vm0", tap=2, addresses=[VM_ADDR], gateway=GATEWAY)
    ck.save(vm, "s", store=store)
    other = lab.vm("vm1", tap=3, memory=192, start=False)
    with pytest.raises(CheckpointError) as e:
        ck.restore(other, "s", store=store, source="vm0")
    assert (e.value.reason, e.value.checkpoint) == ("mismatch", "vm0@s")
    assert "memory_mb: checkpoint 256, VM 192" in e.value.problem
    with pytest.raises(CheckpointError) as e:
        ck.save(vm, "s", store=store)
    assert (e.value.reason, e.value.checkpoint) == ("exists", "vm0@s")
    with pytest.raises(CheckpointError) as e:
        ck.restore(vm, "nope", store=store)
    assert (e.value.reason, e.value.checkpoint) == ("missing", "vm0@nope")


def test_export_import_into_an_empty_store_and_restore_into_a_fresh_lab(lab, store,
                                                                        tmp_path):
    table1(lab)
    vm = lab.vm("vm0", tap=2, addresses=[VM_ADDR], gateway=GATEWAY)
    vm.run("echo from-the-first-lab > /root/note", check=True)
    ck.save(vm, "handout", store=store)
    bundle = ck.export("vm0", "handout", tmp_path / "handout.tar", store=store)

    # a corrupted copy of the real bundle is refused and leaves nothing behind
    bad = tmp_path / "bad.tar"
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    empty = ck.CheckpointStore(tmp_path / "empty")
    with pytest.raises(CheckpointError) as e:
        ck.import_bundle(bad, store=empty)
    assert e.value.reason == "corrupt"
    assert not empty.root.exists() or not any(empty.root.iterdir())

    cp = ck.import_bundle(bundle, store=empty)
    assert cp.manifest.vm.nics[0].tap == 2
    # another lab: other namespace, other Open vSwitch, the same plan
    with Lab.open(fresh_labid("fresh")) as fresh:
        table1(fresh)
        vm2 = ck.restore_into(fresh, "vm0", "handout", store=empty)
        assert vm2.run("cat /root/note", check=True).stdout == "from-the-first-lab\n"
        assert vm2.mac == "b8:ad:ca:fe:00:02"
        assert vm2.ping(GATEWAY)
        assert vm2.run("ip route", check=True).stdout.startswith(f"default via {GATEWAY}")
    # the original VM is untouched by all this
    assert vm.run("cat /root/note", check=True).stdout == "from-the-first-lab\n"


def test_restore_into_a_lab_without_the_tap_says_so(store, tmp_path):
    with Lab.open(fresh_labid("src")) as lab:
        table1(lab)
        vm = lab.vm("vm0", tap=2, addresses=[VM_ADDR], gateway=GATEWAY)
        ck.save(vm, "t", store=store)
    with Lab.open(fresh_labid("bare"), start_ovs=False) as bare, \
            pytest.raises(LabError, match="tap2 does not exist"):
        ck.restore_into(bare, "vm0", "t", store=store)


#: a "QEMU" that gives the guest 64 MiB more than it asks: a state saved with the asked
#: size does not load (-loadvm: "Size mismatch ... while loading"; a checkpoint's memory
#: file: "does not match the size of the memory backend"); QEMU exits at once
BIGGER = '''#!{python}
import os, sys
args = sys.argv[1:]
args = [str(int(a) + 64) if i and args[i - 1] == "-m" else a for i, a in enumerate(args)]
os.execv({qemu!r}, [{qemu!r}] + args)
'''


def fallback(lab: Lab, store: ck.CheckpointStore, qemu: Path, taps: Callable[[Lab], None],
             **kw: Any) -> tuple[str, float]:
    """vm0 as `lab_vm` makes it, on the host's automatic checkpoint restored on QEMU (it
    fails): how it came up, and the seconds until the restore failed (what it took in all,
    less the cold boot after it)."""
    host = shutil.which("qemu-system-x86_64")
    assert host is not None
    notes: list[str] = []
    with Lab.open(fresh_labid("good")) as good:  # the host's QEMU boots and saves
        taps(good)
        boot_once(good, "vm0", store.auto, reference=host, note=notes.append, **kw)
    assert notes == ["booted"]
    taps(lab)
    with builds.use(qemu), pytest.warns(UserWarning, match="unusable, booting"):
        t0 = time.monotonic()
        vm = boot_once(lab, "vm0", store.auto, reference=host, note=notes.append, **kw)
        took = time.monotonic() - t0
    assert vm.machine is not None and vm.machine.argv[0] == str(qemu)  # booted on it
    assert vm.run("hostname", check=True).stdout.strip() == "vm0"
    return notes[1], took - (vm.boot_seconds or 0.0)


def test_a_restore_qemu_refuses_falls_back_to_a_boot_at_once_with_qemus_words(
        lab, store, tmp_path):
    bigger = tmp_path / "qemu-bigger"
    bigger.write_text(BIGGER.format(python=sys.executable,
                                    qemu=shutil.which("qemu-system-x86_64")))
    bigger.chmod(0o755)
    how, took = fallback(lab, store, bigger, table1, tap=2, addresses=[VM_ADDR])
    assert how.startswith("booted: restore failed"), how
    # QEMU's words: the RAM of a tiny VM's restore is the checkpoint's memory file, which
    # QEMU finds too small as it starts (-loadvm, for a VM with a disk: "Size mismatch")
    assert "does not match the size of the memory backend" in how, how
    assert took < 10, f"the fallback took {took:.1f}s: {how}"  # a hang guard


def _broken_virtio_net_build() -> Path | None:
    """A fetched QEMU 7.2.x before 7.2.20: it restores a two-queue virtio-net NIC broken."""
    for b in builds.list_builds(builds_root()):
        v = tuple(int(x) for x in re.findall(r"\d+", b.qemu_version)[:3])
        if v[:2] == (7, 2) and v < (7, 2, 20) and b.launcher.exists():
            return b.launcher
    return None


@pytest.mark.skipif(_broken_virtio_net_build() is None,
                    reason="no fetched QEMU 7.2.x < 7.2.20 (`labctl qemu fetch "
                           "1:7.2+dfsg-7+deb12u15`)")
def test_a_restore_that_leaves_the_nic_broken_falls_back_at_once(lab, store):
    """QEMU 7.2.18 loads a two-queue virtio-net NIC's state saved by the host's 7.2.22,
    keeps running, and says `virtio-net ctrl missing headers`: the NIC is dead. The
    fallback comes from QEMU's words, not after the SSH timeout (30 s)."""
    launcher = _broken_virtio_net_build()
    assert launcher is not None

    def tap9(lab: Lab) -> None:
        lab.tap(9, group="kvm", multi_queue=True)

    how, took = fallback(lab, store, launcher, tap9, nics=[VmNic(tap=9, queues=2)],
                         profile="pc", vcpus=2)
    assert "virtio-net ctrl missing headers" in how, how
    assert took < 10, f"the fallback took {took:.1f}s: {how}"


PLUGIN_TESTS = '''
import pytest

GW = "203.0.113.129"

def table1(lab):
    sw0 = lab.switch("sw0")
    sw0.svi(2, GW + "/26")
    lab.tap(2)
    sw0.add_port("tap2", tag=2)

@pytest.mark.parametrize("i", range(3))
def test_each_test_starts_from_the_booted_state(lab, lab_vm, i):
    table1(lab)
    vm = lab_vm("vm0", tap=2, addresses=["203.0.113.130/26"], gateway=GW)
    print("MODE", vm.name, "restored" if vm.loadvm else "booted")
    assert not vm.run("test -e /root/dirty").ok
    vm.run("touch /root/dirty", check=True)

@pytest.mark.checkpoint("named")
def test_marker_restores_a_named_checkpoint(lab, lab_vm):
    table1(lab)
    vm = lab_vm("vm0", tap=2)
    assert vm.loadvm == "named"
    assert vm.run("cat /root/mark", check=True).stdout == "named\\n"

def test_factory(lab, vm_from_checkpoint):
    table1(lab)
    vm = vm_from_checkpoint("named", "vm0")
    assert vm.run("cat /root/mark", check=True).stdout == "named\\n"
'''


def test_plugin_boot_once_restore_per_test_and_named_checkpoints(tmp_path, store):
    with Lab.open(fresh_labid("named")) as lab:  # the named checkpoint the marked tests ask for
        table1(lab)
        vm = lab.vm("vm0", tap=2, addresses=[VM_ADDR], gateway=GATEWAY)
        vm.run("echo named > /root/mark", check=True)
        ck.save(vm, "named", store=store)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "test_cp.py").write_text(textwrap.dedent(PLUGIN_TESTS))

    env = {k: v for k, v in os.environ.items()
           if k not in ("LABFIXTURES_RUN_ID", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_TESTRUNUID")}

    def run(*extra: str) -> str:
        cp = subprocess.run(
            [sys.executable, "-m", "pytest", "-s",
             "-p", "labfixtures.pytest_plugin.checkpoint_fixtures",
             "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--lab-no-reap",
             f"--lab-checkpoint-store={store.root}",
             *extra, str(tmp_path / "t")],
            capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2],
            env=env)
        assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
        return cp.stdout

    out = run()
    modes = re.findall(r"MODE vm0 (\w+)", out)
    assert modes == ["booted", "restored", "restored"], out
    assert [c.vm for c in store.auto.list()] == ["vm0"]
    out = run()  # the next run reuses the automatic checkpoint from the start
    modes = re.findall(r"MODE vm0 (\w+)", out)
    assert modes == ["restored"] * 3, out
    out = run("--lab-no-checkpoints", "-k", "booted_state")
    modes = re.findall(r"MODE vm0 (\w+)", out)
    assert modes == ["booted"] * 3, out


SEED = Path(__file__).parents[2] / "scenarios" / "labs" / "seed-minimal.yaml"


def test_labctl_checkpoint_of_a_persistent_lab(tmp_path):
    """labctl up, then checkpoint save / restore / list / export / import through the run
    directory (another process's QEMU), and labctl status still right after the restore."""
    def labctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labfixtures.cli", *args],
                              capture_output=True, text=True, timeout=300)

    name = f"cp{os.getpid()}"
    store = ["--store", str(tmp_path / "store")]
    up = labctl("up", str(SEED), "--name", name)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert labctl("ssh", name, "vm0", "--", "echo before > /root/kept; "
                      "date -u -s @1000000000").returncode == 0  # set to now by the restore
        saved = labctl("checkpoint", "save", name, "vm0", "s1", *store)
        assert saved.returncode == 0, saved.stdout + saved.stderr
        again = labctl("checkpoint", "save", name, "vm0", "s1", *store)
        assert again.returncode == 2 and "already exists" in again.stderr
        assert labctl("ssh", name, "vm0", "--", "echo after > /root/kept; touch /root/x"
                      ).returncode == 0
        back = labctl("checkpoint", "restore", name, "vm0", "s1", *store)
        assert back.returncode == 0, back.stdout + back.stderr
        out = labctl("ssh", name, "vm0", "--", "cat /root/kept; test -e /root/x || echo gone")
        assert out.stdout == "before\ngone\n", out.stdout + out.stderr
        clock = labctl("ssh", name, "vm0", "--", "date -u +%s")
        assert abs(int(clock.stdout) - time.time()) < 5, clock.stdout + clock.stderr
        assert "VM vm0: running" in labctl("status", name).stdout
        listed = json.loads(labctl("checkpoint", "list", "--json", *store).stdout)
        assert [(c["vm"], c["tag"], c["lab"]) for c in listed] == [("vm0", "s1", f"lf-{name}")]
        bundle = tmp_path / "s1.tar.gz"
        assert labctl("checkpoint", "export", name, "vm0", "s1", str(bundle), *store
                      ).returncode == 0
        imported = labctl("checkpoint", "import", str(bundle), "--store",
                          str(tmp_path / "other"))
        assert imported.returncode == 0, imported.stdout + imported.stderr
        assert labctl("checkpoint", "delete", "vm0", "s1", *store).returncode == 0
        assert labctl("checkpoint", "list", *store).stdout == "no checkpoint\n"
    finally:
        labctl("down", name)
    assert not netns.exists(f"lf-{name}")
