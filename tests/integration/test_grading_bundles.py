"""Checkpoint bundles as grading targets, with real VMs: students' bundles graded by
`labctl grade` in a QEMU confined by seccomp and running as nobody; hostile bundles (a
link, a path outside the folder, QEMU arguments, a memory size of their own) refused and
the student not-gradable; an SSH agent offered to the grader is never used; a host key
is never carried from one student to the next; a regrade of the same bundle gives the
same evidence."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from labfixtures import checkpoint
from labfixtures.grading.evidence import without_times
from labfixtures.guests.ssh import GuestSSH
from labfixtures.lab.build import build
from labfixtures.lab.lab import Lab
from labfixtures.lab.labfile import load

pytestmark = [pytest.mark.root, pytest.mark.vm]

CLASS = Path(__file__).parents[2] / "scenarios" / "grading"
GRADING_FILE = CLASS / "test_table1.py"
NOBODY = 65534


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    """alice's and bob's bundles, made as students would (boot, save, export)."""
    out = tmp_path_factory.mktemp("bundles")
    cp = subprocess.run([sys.executable, str(CLASS / "make_bundles.py"), str(out), "alice",
                         "bob"], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return out


def members(bundle: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(bundle) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]


def write_bundle(path: Path, items: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in items:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def with_manifest(src: Path, dst: Path, change) -> Path:
    """SRC with its manifest changed by CHANGE and its checksum made to match."""
    items = members(src)
    manifest = json.loads(items[0][1])
    change(manifest)
    raw = json.dumps(manifest).encode()
    summ = f"{hashlib.sha256(raw).hexdigest()}  manifest.json\n".encode()
    out = []
    for info, data in items:
        new = {"manifest.json": raw, "manifest.json.sha256": summ}.get(info.name, data)
        info.size = len(new)
        out.append((info, new))
    return write_bundle(dst, out)


def hostile_bundles(bundles: Path, tmp: Path) -> dict[str, Path]:
    items = members(bundles / "bob.tar")
    link = tarfile.TarInfo("state.qcow2")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    outside = tarfile.TarInfo("../state.qcow2")
    outside.size = len(items[2][1])
    return {
        "link": write_bundle(tmp / "link.tar", [*items[:2], (link, b"")]),
        "outside": write_bundle(tmp / "outside.tar", [*items[:2], (outside, items[2][1])]),
        "qemuargs": with_manifest(bundles / "bob.tar", tmp / "qemuargs.tar", lambda m: m[
            "vm"].update(extra_args=["-chardev", "file,id=x,path=/etc/shadow"])),
        "bigmem": with_manifest(bundles / "bob.tar", tmp / "bigmem.tar",
                                lambda m: m["vm"].update(memory_mb=60000)),
    }


def test_bundles_are_graded_in_a_confined_qemu_and_hostile_ones_refused(bundles, tmp_path):
    targets = {"alice": bundles / "alice.tar", "bob": bundles / "bob.tar",
               **hostile_bundles(bundles, tmp_path)}
    roster = tmp_path / "roster.csv"
    roster.write_text("student,name,target\n" + "".join(
        f"{s},{s},{p}\n" for s, p in targets.items()))
    seen: dict[int, tuple[int, int]] = {}
    stop = threading.Event()

    def watch() -> None:  # the uid and seccomp mode of each QEMU restoring a bundle
        while not stop.is_set():
            out = subprocess.run(["pgrep", "-f", "qemu-system.*-runas nobody"],
                                 capture_output=True, text=True).stdout
            for pid in map(int, out.split()):
                try:
                    status = Path(f"/proc/{pid}/status").read_text().splitlines()
                except OSError:
                    continue
                f = {ln.split(":")[0]: ln.split()[1:] for ln in status if ":" in ln}
                if int(f["Uid"][1]) == NOBODY:
                    seen[pid] = (int(f["Uid"][1]), int(f["Seccomp"][0]))
            time.sleep(0.05)

    # an SSH agent offering itself to the grader: SSH to a student's VM must never use it
    agent = socket.socket(socket.AF_UNIX)
    agent.bind(str(tmp_path / "agent.sock"))
    agent.listen(8)
    agent.settimeout(0.1)
    asked: list[int] = []

    def serve_agent() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = agent.accept()
                asked.append(1)
                conn.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    agent_thread = threading.Thread(target=serve_agent, daemon=True)
    agent_thread.start()
    try:
        cp = subprocess.run([sys.executable, "-m", "labfixtures.cli", "grade",
                             str(GRADING_FILE), "--roster", str(roster), "--out",
                             str(tmp_path / "out"), "-n", "2", "--timeout", "120"],
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "SSH_AUTH_SOCK": str(tmp_path / "agent.sock")})
    finally:
        stop.set()
        watcher.join()
        agent_thread.join()
        agent.close()
    assert not asked, "the grader asked the SSH agent"
    assert cp.returncode == 0, cp.stdout + cp.stderr
    rows = {r["student"]: r for r in csv.DictReader((tmp_path / "out" / "grades.csv").open())}
    assert (rows["alice"]["status"], rows["alice"]["score"]) == ("graded", "13")
    assert (rows["bob"]["status"], rows["bob"]["score"]) == ("graded", "9")

    def reason(s: str) -> str:
        g = json.loads((tmp_path / "out" / s / "grade.json").read_text())
        assert g["status"] == "not-gradable" and rows[s]["score"] == "", g
        return g["reason"]

    assert "link" in reason("link") or "not a regular file" in reason("link")
    assert "outside" in reason("outside") or "folder" in reason("outside")
    assert "asks for QEMU settings" in reason("qemuargs")
    assert "memory_mb: checkpoint 60000, VM 256" in reason("bigmem")
    # both good bundles were restored by a QEMU running as nobody under seccomp (mode 2)
    assert len(seen) >= 2 and set(seen.values()) == {(NOBODY, 2)}, seen


def test_regrading_a_bundle_gives_the_same_evidence(bundles, tmp_path):
    def grade(out: Path) -> dict:
        cp = subprocess.run([sys.executable, "-m", "pytest", str(GRADING_FILE), "-q",
                             "-p", "no:cacheprovider", "-o", "addopts=",
                             "--lab-grade-target", str(bundles / "bob.tar"),
                             "--lab-grade-out", str(out)],
                            capture_output=True, text=True, timeout=300)
        assert (out / "evidence.json").is_file(), cp.stdout + cp.stderr
        return json.loads((out / "evidence.json").read_text())

    first, second = grade(tmp_path / "1"), grade(tmp_path / "2")
    assert first["status"] == "graded" and first["started"] != second["started"]
    assert without_times(first) == without_times(second)
    # and the comparison is not blind: the gateway bob set is in it
    vm0 = first["state"]["vms"]["vm0"]
    assert any("default via 203.0.113.190" in r for r in vm0["routes"])
    assert "203.0.113.129 dev eth0 lladdr <sw0-vlan2>" in vm0["neighbours"]


def server_key(conn: GuestSSH) -> str:
    return conn._client.get_transport().get_remote_server_key().get_base64()  # type: ignore[union-attr]


def bundle_with_its_own_host_key(out: Path) -> Path:
    """alice's lab, but the VM's SSH host key replaced by a fresh one (as a student who
    regenerated it would hand in), saved and exported like make_bundles.py does."""
    key = out / "new_host_key"
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(key)], check=True,
                   capture_output=True)
    b64 = base64.b64encode(key.read_bytes()).decode()
    with Lab.open() as host, host.scope("mallory") as lab, \
            tempfile.TemporaryDirectory() as tmp:
        vm = build(load(CLASS / "students" / "alice.yaml"), lab).vms["vm0"]
        hk = "/etc/dropbear/dropbear_ed25519_host_key"
        before = server_key(vm.ssh())
        vm.run(f"echo {b64} | base64 -d > {hk} && kill $(cat /run/dropbear.pid) && "
               f"dropbear -r {hk} -s -P /run/dropbear.pid", check=True)
        address, port, netns = vm.ssh_target()
        with GuestSSH(address, port, key=vm.image.private_key, netns=netns) as fresh:
            fresh.connect(deadline=20)
            assert server_key(fresh) != before, "the VM now shows another host key"
        store = checkpoint.CheckpointStore(tmp)
        checkpoint.save(vm, "submitted", store=store)
        return checkpoint.export("vm0", "submitted", out / "mallory.tar", store=store)


def test_a_host_key_is_never_carried_from_one_student_to_the_next(bundles, tmp_path):
    mallory = bundle_with_its_own_host_key(tmp_path)
    roster = tmp_path / "roster.csv"
    # one at a time, at the same address: alice's VM key first, then mallory's other key
    roster.write_text(f"student,name,target\nalice,A,{bundles / 'alice.tar'}\n"
                      f"mallory,M,{mallory}\n")
    cp = subprocess.run([sys.executable, "-m", "labfixtures.cli", "grade",
                         str(GRADING_FILE), "--roster", str(roster), "--out",
                         str(tmp_path / "out"), "-n", "1", "--timeout", "120"],
                        capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    rows = [(r["student"], r["status"], r["score"]) for r in
            csv.DictReader((tmp_path / "out" / "grades.csv").open())]
    assert rows == [("alice", "graded", "13"), ("mallory", "graded", "13")], cp.stdout
