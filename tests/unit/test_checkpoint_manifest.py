"""Checkpoint store and bundles without QEMU: manifests, export/import, refusals.

The qcow2 files are real (qemu-img makes them, with an internal snapshot under the tag),
the guest image is a fake entry of a temporary image cache: no VM runs here.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from labfixtures.checkpoint import operations as ck
from labfixtures.errors import LabError
from labfixtures.guestimages import GuestImage, ImageCache

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                reason="qemu-utils (qemu-img) is not installed")

HASH = "0123456789abcdef"
DESC = {"name": "vm0", "image": "tiny", "recipe_hash": HASH,
        "nics": [{"tap": 2, "user": False, "addresses": ["203.0.113.130/26"],
                  "gateway": "203.0.113.129", "dhcp": False, "mac": None, "ssh_port": None,
                  "queues": 1}],
        "opts": {"image": "tiny", "memory": 256, "vcpus": 1, "profile": "fast",
                 "hostname": None, "extra_args": [], "extra_config": {}},
        "cmdline": "lf.hostname=vm0"}


@pytest.fixture(autouse=True)
def _no_qemu(monkeypatch):
    monkeypatch.setattr(ck, "_version", "7.2.22 (test)")


def fake_image(cache: ImageCache, name: str = "tiny", recipe_hash: str = HASH,
               disk: bool = False) -> GuestImage:
    d = cache.image_dir(name, recipe_hash)
    d.mkdir(parents=True)
    (d / "vmlinux").write_bytes(b"kernel")
    disk_path = None
    if disk:
        disk_path = d / "disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk_path), "16M"],
                       check=True)
    img = GuestImage(name=name, recipe_hash=recipe_hash, path=d, kernel=d / "vmlinux",
                     initrd=None, disk=disk_path, cmdline="console=ttyS0", ssh_user="root",
                     private_key=cache.private_key, public_key="ssh-ed25519 AAAA test")
    img.write_manifest()
    return img


def qcow2_with_snapshot(path: Path, tag: str, payload: bytes = b"") -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1M"], check=True)
    if payload:
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {len(payload)}",
                        str(path)], check=True, capture_output=True)
    subprocess.run(["qemu-img", "snapshot", "-c", tag, str(path)], check=True)


def make_checkpoint(store: ck.CheckpointStore, image: GuestImage, vm: str = "vm0",
                    tag: str = "step1") -> ck.Checkpoint:
    tmp = store.tmpdir()
    qcow2_with_snapshot(tmp / ck.STATE_FILE, tag, b"x" * 4096)
    desc = dict(DESC, name=vm, recipe_hash=image.recipe_hash)
    ck._write_manifest(tmp, tag=tag, desc=desc, image=ck.image_identity(image),
                       machine=ck._machine_summary(desc, "tcg"), lab="lf-test", timings={})
    return store.commit(tmp, vm, tag)


@pytest.fixture
def env(tmp_path):
    images = ImageCache(tmp_path / "cache")
    img = fake_image(images)
    store = ck.CheckpointStore(tmp_path / "store", images)
    cp = make_checkpoint(store, img)
    bundle = store.export("vm0", "step1", tmp_path / "step1.tar")
    empty = ck.CheckpointStore(tmp_path / "other-store", images)
    return store, cp, bundle, empty, img


def leftovers(store: ck.CheckpointStore) -> list[str]:
    if not store.root.exists():
        return []
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*")
                  if p.name != ".image-hashes.json")


def rewrite(bundle: Path, out: Path, edit_manifest=None, edit_member=None,
            fix_sum: bool = True, order=None) -> Path:
    """Copy BUNDLE to OUT, changing the manifest and/or a member on the way."""
    members = {}
    with tarfile.open(bundle) as t:
        names = t.getnames()
        for n in names:
            members[n] = t.extractfile(n).read()
    if edit_manifest:
        m = json.loads(members[ck.MANIFEST])
        edit_manifest(m)
        members[ck.MANIFEST] = json.dumps(m).encode()
    if fix_sum:
        import hashlib
        members[ck.MANIFEST_SUM] = (hashlib.sha256(members[ck.MANIFEST]).hexdigest()
                                    + "  manifest.json\n").encode()
    if edit_member:
        edit_member(members)
    with tarfile.open(out, "w") as t:
        for n in order or names:
            if n in members:
                info = tarfile.TarInfo(n)
                info.size = len(members[n])
                t.addfile(info, io.BytesIO(members[n]))
    return out


# -- the manifest -----------------------------------------------------------------------------

def test_manifest_records_hashes_image_machine_and_qemu(env):
    store, cp, *_ = env
    m = cp.manifest
    assert m["format"] == ck.FORMAT and m["tag"] == "step1" and m["vm"]["name"] == "vm0"
    assert m["image"]["name"] == "tiny" and m["image"]["recipe_hash"] == HASH
    assert m["qemu_version"] == "7.2.22 (test)"
    assert m["machine"]["memory_mb"] == 256 and m["machine"]["nics"][0]["tap"] == 2
    f = m["files"][ck.STATE_FILE]
    assert f["sha256"] == ck.sha256_file(cp.path / ck.STATE_FILE)
    assert f["size"] == (cp.path / ck.STATE_FILE).stat().st_size
    assert [str(c) for c in store.list()] == [str(cp)]
    assert store.list("vm1") == []


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format=99), "format"),
    (lambda m: m.update(tag="../etc"), "not usable"),
    (lambda m: m["vm"].update(name="a/b"), "not usable"),
    (lambda m: m["files"].update({"../../x": m["files"]["state.qcow2"]}), "unexpected"),
    (lambda m: m["files"].pop("state.qcow2"), "state.qcow2"),
    (lambda m: m["files"]["state.qcow2"].update(sha256="zz"), "sha256"),
])
def test_validate_manifest_refuses_bad_shapes(env, edit, message):
    _, cp, *_ = env
    m = json.loads(json.dumps(cp.manifest))
    edit(m)
    with pytest.raises((ValueError, LabError), match=message):
        ck.validate_manifest(m)


def test_names_are_checked():
    for bad in ("", "a/b", "..", ".hidden", "x" * 65, "a b"):
        with pytest.raises(LabError, match="not usable"):
            ck.check_name(bad, "tag")
    assert ck.check_name("step-1.b_2", "tag") == "step-1.b_2"


# -- store operations --------------------------------------------------------------------------

def test_commit_refuses_to_overwrite_unless_asked(env):
    store, cp, _, _, img = env
    with pytest.raises(LabError, match="already exists"):
        make_checkpoint(store, img)
    assert leftovers(store) == ["vm0", "vm0/step1", "vm0/step1/manifest.json",
                                "vm0/step1/state.qcow2"]
    tmp = store.tmpdir()
    shutil.copytree(cp.path, tmp, dirs_exist_ok=True)
    assert store.commit(tmp, "vm0", "step1", exist_ok=True).path == cp.path
    assert not tmp.exists()


def test_delete(env):
    store, *_ = env
    store.delete("vm0", "step1")
    assert store.list() == [] and leftovers(store) == []
    with pytest.raises(LabError, match="no checkpoint vm0@step1"):
        store.delete("vm0", "step1")
    with pytest.raises(LabError, match="labctl checkpoint import"):
        store.get("vm0", "step1")


# -- bundles -------------------------------------------------------------------------------------

def test_export_import_round_trip_into_an_empty_store(env):
    _, cp, bundle, empty, _ = env
    with tarfile.open(bundle) as t:
        assert t.getnames()[:2] == [ck.MANIFEST, ck.MANIFEST_SUM]
    got = empty.import_bundle(bundle)
    assert (got.vm, got.tag) == ("vm0", "step1")
    assert got.manifest == cp.manifest
    assert ck.sha256_file(got.path / ck.STATE_FILE) == \
        cp.manifest["files"][ck.STATE_FILE]["sha256"]
    assert leftovers(empty) == ["vm0", "vm0/step1", "vm0/step1/manifest.json",
                                "vm0/step1/state.qcow2"]
    with pytest.raises(LabError, match="already exists"):
        empty.import_bundle(bundle)
    assert empty.import_bundle(bundle, replace=True).manifest == cp.manifest


def test_gzip_bundle(env, tmp_path):
    store, _, _, empty, _ = env
    gz = store.export("vm0", "step1", tmp_path / "b.tar.gz")
    with open(gz, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    assert empty.import_bundle(gz).tag == "step1"


def corrupt_state(members):
    data = bytearray(members[ck.STATE_FILE])
    data[len(data) // 2] ^= 0xFF
    members[ck.STATE_FILE] = bytes(data)


@pytest.mark.parametrize("case, message", [
    ("flipped byte", "corrupted: state.qcow2 does not match its sha256"),
    ("manifest edited", "corrupted: its manifest does not match its checksum"),
    ("truncated file", "truncated"),
    ("member missing", "truncated: state.qcow2 missing"),
    ("not a tar", "truncated or damaged, or not a labfixtures checkpoint bundle"),
    ("empty", "truncated or damaged|does not start with"),
    ("other base image", "tiny-fedcba9876543210, which is not in"),
    ("extra member", "unexpected member"),
    ("manifest not first", "does not start with manifest.json"),
])
def test_bad_bundles_are_refused_and_leave_nothing(env, tmp_path, case, message):
    _, _, bundle, empty, _ = env
    bad = tmp_path / "bad.tar"
    if case == "flipped byte":
        rewrite(bundle, bad, edit_member=corrupt_state)
    elif case == "manifest edited":
        rewrite(bundle, bad, edit_manifest=lambda m: m.update(lab="x"), fix_sum=False)
    elif case == "truncated file":
        data = bundle.read_bytes()
        bad.write_bytes(data[: len(data) * 2 // 3])
    elif case == "member missing":
        rewrite(bundle, bad, edit_member=lambda ms: ms.pop(ck.STATE_FILE))
    elif case == "not a tar":
        bad.write_bytes(b"hello" * 1000)
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "other base image":
        rewrite(bundle, bad, edit_manifest=lambda m: m["image"].update(
            recipe_hash="fedcba9876543210"))
    elif case == "extra member":
        rewrite(bundle, bad, edit_member=lambda ms: ms.update({"evil.sh": b"rm -rf /"}),
                order=[ck.MANIFEST, ck.MANIFEST_SUM, ck.STATE_FILE, "evil.sh"])
    elif case == "manifest not first":
        rewrite(bundle, bad, order=[ck.STATE_FILE, ck.MANIFEST, ck.MANIFEST_SUM])
    with pytest.raises(LabError, match=message):
        empty.import_bundle(bad)
    assert leftovers(empty) == []


def test_bundle_whose_base_disk_differs_is_refused(tmp_path):
    images = ImageCache(tmp_path / "cache")
    img = fake_image(images, "debian", "1111111111111111", disk=True)
    store = ck.CheckpointStore(tmp_path / "store", images)
    make_checkpoint(store, img)
    bundle = store.export("vm0", "step1", tmp_path / "b.tar")
    assert store.get("vm0", "step1").image["disk_sha256"] == ck.sha256_file(img.disk)
    # "another machine": the same image name and recipe hash, but other disk bytes
    images2 = ImageCache(tmp_path / "cache2")
    img2 = fake_image(images2, "debian", "1111111111111111", disk=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", str(img2.disk)],
                   check=True, capture_output=True)
    other = ck.CheckpointStore(tmp_path / "store2", images2)
    with pytest.raises(LabError, match="different base disk"):
        other.import_bundle(bundle)
    assert leftovers(other) == []
    # and without the image at all
    empty_cache = ck.CheckpointStore(tmp_path / "store3", ImageCache(tmp_path / "cache3"))
    with pytest.raises(LabError, match="labctl image build debian"):
        empty_cache.import_bundle(bundle)
    assert leftovers(empty_cache) == []


def test_a_failed_export_leaves_no_partial_file(env, tmp_path):
    store, cp, *_ = env
    (cp.path / ck.STATE_FILE).write_bytes(b"short")
    with pytest.raises(LabError, match="damaged"):
        store.export("vm0", "step1", tmp_path / "out" / "x.tar")
    assert not (tmp_path / "out" / "x.tar").exists()
