"""Checkpoint store and bundles without QEMU: manifests, export/import, refusals.

The qcow2 files are real (qemu-img makes them, with an internal snapshot under the tag),
the guest image is a fake entry of a temporary image cache: no VM runs here. Refusals are
checked on the error's type and fields (`CheckpointError.reason`, `vm`, `tag`), not on
its wording.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from labfixtures import checkpoint as ck
from labfixtures.checkpoint.manifest import check_name, file_entries, sha256_file
from labfixtures.cli.main import main
from labfixtures.errors import CheckpointError, LabError
from labfixtures.guestimages import GuestImage, ImageCache
from labfixtures.lab.state import VmState

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
    state = VmState.from_dict(dict(DESC, name=vm, recipe_hash=image.recipe_hash))
    ck.Manifest(tag=tag, vm=state, image=ck.ImageIdentity.of(image),
                files=file_entries(tmp), created=time.time(), lab="lf-test", accel="tcg",
                qemu_version="7.2.22 (test)", timings={"paused": 0.1}).write(tmp)
    return store.commit(tmp, vm, tag)


@pytest.fixture
def env(tmp_path):
    images = ImageCache(tmp_path / "cache")
    img = fake_image(images)
    store = ck.CheckpointStore(tmp_path / "store", images)
    cp = make_checkpoint(store, img)
    bundle = ck.export("vm0", "step1", tmp_path / "step1.tar", store=store)
    empty = ck.CheckpointStore(tmp_path / "other-store", images)
    return store, cp, bundle, empty, img


def leftovers(store: ck.CheckpointStore) -> list[str]:
    if not store.root.exists():
        return []
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*")
                  if p.name != ".image-hashes.json")


def members_of(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as t:
        return {n: t.extractfile(n).read() for n in t.getnames()}


def rewrite(bundle: Path, out: Path, edit_manifest=None, edit_member=None,
            fix_sum: bool = True, order=None) -> Path:
    """Copy BUNDLE to OUT, changing the manifest and/or a member on the way."""
    members = members_of(bundle)
    names = list(members)
    if edit_manifest:
        m = json.loads(members[ck.MANIFEST])
        edit_manifest(m)
        members[ck.MANIFEST] = json.dumps(m).encode()
    if fix_sum:
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


def refused(store: ck.CheckpointStore, bundle: Path, **kw) -> CheckpointError:
    with pytest.raises(CheckpointError) as e:
        ck.import_bundle(bundle, store=store, **kw)
    return e.value


# -- the manifest -----------------------------------------------------------------------------

def test_manifest_records_hashes_image_machine_and_qemu(env):
    store, cp, *_ = env
    m = cp.manifest
    assert m.format == ck.FORMAT and m.tag == "step1" and m.vm.name == "vm0"
    assert (m.image.name, m.image.recipe_hash) == ("tiny", HASH)
    assert m.qemu_version == "7.2.22 (test)" and m.accel == "tcg"
    assert m.vm.memory_mb == 256 and m.vm.nics[0].tap == 2
    f = m.files[ck.STATE_FILE]
    assert f.sha256 == sha256_file(cp.path / ck.STATE_FILE)
    assert f.size == (cp.path / ck.STATE_FILE).stat().st_size
    assert [str(c) for c in store.list()] == [str(cp)]
    assert store.list("vm1") == [] and ck.list(store=store) == store.list()


def test_one_writer_one_reader_round_trip(env):
    _, cp, *_ = env
    raw = (cp.path / ck.MANIFEST).read_bytes()
    assert raw == cp.manifest.dumps()
    again = ck.Manifest.loads(raw)
    assert again == cp.manifest
    assert json.loads(raw)["vm"]["version"] == VmState.VERSION


def test_a_format_1_manifest_still_reads(env):
    _, cp, *_ = env
    new = cp.manifest
    old = {"format": 1, "tag": "step1", "created": 1700000000.0, "lab": "lf-old",
           "vm": DESC,
           "image": {"name": "tiny", "recipe_hash": HASH, "public_key": "k",
                     "disk_sha256": None, "disk_format": None},
           "machine": {"profile": "fast", "memory_mb": 256, "vcpus": 1, "accel": "tcg",
                       "extra_args": [], "qemu_argv": ["qemu-system-x86_64", "-m", "256"],
                       "nics": [{"tap": 2, "user": False, "mac": None, "queues": 1}]},
           "qemu_version": "7.2.22 (old)",
           "files": {"state.qcow2": {"sha256": new.files[ck.STATE_FILE].sha256,
                                     "size": 12, "role": "state"}},
           "save_seconds": {"snapshot": 0.1, "paused": 0.12, "save": 0.4}}
    m = ck.Manifest.loads(json.dumps(old))
    assert m.format == 1 and m.lab == "lf-old" and m.accel == "tcg"
    assert m.qemu_argv == ("qemu-system-x86_64", "-m", "256")
    assert m.timings["paused"] == 0.12 and m.size == 12
    assert m.vm == new.vm  # the VM part reads the same from either layout
    assert ck.differences(m.vm, new.vm) == []
    assert ck.Manifest.loads(m.dumps()).format == ck.FORMAT  # written back in the new one


@pytest.mark.parametrize("edit", [
    lambda m: m.update(format=99),
    lambda m: m.update(tag="../etc"),
    lambda m: m["vm"].update(name="a/b"),
    lambda m: m["files"].update({"../../x": m["files"]["state.qcow2"]}),
    lambda m: m["files"].pop("state.qcow2"),
    lambda m: m["files"]["state.qcow2"].update(sha256="zz"),
    lambda m: m["files"]["state.qcow2"].update(size=-1),
    lambda m: m.pop("image"),
    lambda m: m["vm"].pop("name"),
], ids=["format", "tag", "vm-name", "file-name", "no-state", "sha256", "size", "image",
        "vm"])
def test_the_reader_refuses_bad_shapes(env, edit):
    _, cp, *_ = env
    m = cp.manifest.to_dict()
    edit(m)
    with pytest.raises(CheckpointError) as e:
        ck.Manifest.loads(json.dumps(m))
    assert e.value.reason == "invalid"


def test_names_are_checked():
    for bad in ("", "a/b", "..", ".hidden", "x" * 65, "a b"):
        with pytest.raises(CheckpointError) as e:
            check_name(bad, "tag")
        assert e.value.reason == "invalid"
    assert check_name("step-1.b_2", "tag") == "step-1.b_2"


# -- store operations --------------------------------------------------------------------------

def test_commit_refuses_to_overwrite_unless_asked(env):
    store, cp, _, _, img = env
    with pytest.raises(CheckpointError) as e:
        make_checkpoint(store, img)
    assert (e.value.reason, e.value.checkpoint) == ("exists", "vm0@step1")
    assert leftovers(store) == ["vm0", "vm0/step1", "vm0/step1/manifest.json",
                                "vm0/step1/state.qcow2"]
    tmp = store.tmpdir()
    shutil.copytree(cp.path, tmp, dirs_exist_ok=True)
    assert store.commit(tmp, "vm0", "step1", exist_ok=True).path == cp.path
    assert not tmp.exists()


def test_delete_and_missing(env):
    store, *_ = env
    ck.delete("vm0", "step1", store=store)
    assert store.list() == [] and leftovers(store) == []
    for call in (lambda: ck.delete("vm0", "step1", store=store),
                 lambda: store.get("vm0", "step1")):
        with pytest.raises(CheckpointError) as e:
            call()
        assert (e.value.reason, e.value.vm, e.value.tag) == ("missing", "vm0", "step1")
        assert isinstance(e.value, LabError)


# -- bundles -------------------------------------------------------------------------------------

def test_export_import_round_trip_into_an_empty_store(env):
    _, cp, bundle, empty, _ = env
    with tarfile.open(bundle) as t:
        assert t.getnames()[:2] == [ck.MANIFEST, ck.MANIFEST_SUM]
    got = ck.import_bundle(bundle, store=empty)
    assert (got.vm, got.tag) == ("vm0", "step1")
    assert got.manifest == cp.manifest
    assert sha256_file(got.path / ck.STATE_FILE) == cp.manifest.files[ck.STATE_FILE].sha256
    assert leftovers(empty) == ["vm0", "vm0/step1", "vm0/step1/manifest.json",
                                "vm0/step1/state.qcow2"]
    assert refused(empty, bundle).reason == "exists"
    assert ck.import_bundle(bundle, store=empty, replace=True).manifest == cp.manifest


def test_gzip_bundle(env, tmp_path):
    store, _, _, empty, _ = env
    gz = ck.export("vm0", "step1", tmp_path / "b.tar.gz", store=store)
    with open(gz, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    assert ck.import_bundle(gz, store=empty).tag == "step1"


def corrupt_state(members):
    data = bytearray(members[ck.STATE_FILE])
    data[len(data) // 2] ^= 0xFF
    members[ck.STATE_FILE] = bytes(data)


@pytest.mark.parametrize("case, reason", [
    ("flipped byte", "corrupt"),
    ("manifest edited", "corrupt"),
    ("size edited", "corrupt"),
    ("truncated file", "truncated"),
    ("member missing", "truncated"),
    ("no checksum", "truncated"),
    ("not a tar", "invalid"),
    ("empty", "invalid"),
    ("other base image", "mismatch"),
    ("extra member", "invalid"),
    ("manifest not first", "invalid"),
    ("newer format", "invalid"),
])
def test_bad_bundles_are_refused_before_anything_is_written(env, tmp_path, case, reason):
    _, _, bundle, empty, _ = env
    bad = tmp_path / "bad.tar"
    if case == "flipped byte":
        rewrite(bundle, bad, edit_member=corrupt_state)
    elif case == "manifest edited":
        rewrite(bundle, bad, edit_manifest=lambda m: m.update(lab="x"), fix_sum=False)
    elif case == "size edited":
        rewrite(bundle, bad, edit_manifest=lambda m: m["files"]["state.qcow2"].update(
            size=m["files"]["state.qcow2"]["size"] + 1))
    elif case == "truncated file":
        data = bundle.read_bytes()
        bad.write_bytes(data[: len(data) * 2 // 3])
    elif case == "member missing":
        rewrite(bundle, bad, edit_member=lambda ms: ms.pop(ck.STATE_FILE))
    elif case == "no checksum":
        rewrite(bundle, bad, order=[ck.MANIFEST])
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
    elif case == "newer format":
        rewrite(bundle, bad, edit_manifest=lambda m: m.update(format=ck.FORMAT + 1))
    e = refused(empty, bad)
    assert e.reason == reason and e.path == str(bad)
    if case in ("flipped byte", "size edited", "other base image"):  # manifest trusted
        assert e.checkpoint == "vm0@step1"
    assert not empty.root.exists(), "a refused bundle wrote something"


# -- hostile bundles: a valid manifest, then a member that must never be written ---------------

def hostile(bundle: Path, out: Path, info: tarfile.TarInfo, data: bytes = b"",
            first: bool = False) -> Path:
    members = members_of(bundle)
    with tarfile.open(out, "w") as t:
        if first:
            t.addfile(info, io.BytesIO(data))
        for n in (ck.MANIFEST, ck.MANIFEST_SUM):
            i = tarfile.TarInfo(n)
            i.size = len(members[n])
            t.addfile(i, io.BytesIO(members[n]))
        if not first:
            t.addfile(info, io.BytesIO(data))
    return out


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = ""
           ) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = link
    return info


@pytest.mark.parametrize("info, first", [
    (member("../state.qcow2", size=4), False),
    (member("/tmp/state.qcow2", size=4), False),
    (member("sub/state.qcow2", size=4), False),
    (member("../../etc/cron.d/x", size=4), True),
    (member("state.qcow2", tarfile.SYMTYPE, link="/etc/passwd"), False),
    (member("state.qcow2", tarfile.LNKTYPE, link="manifest.json"), False),
    (member("state.qcow2", tarfile.CHRTYPE), False),
    (member("state.qcow2", tarfile.BLKTYPE), False),
    (member("state.qcow2", tarfile.FIFOTYPE), False),
    (member("state.qcow2", tarfile.DIRTYPE), False),
], ids=["dotdot", "absolute", "subdir", "dotdot-first", "symlink", "hardlink", "chardev",
        "blockdev", "fifo", "directory"])
def test_hostile_members_are_refused(env, tmp_path, info, first):
    _, _, bundle, empty, _ = env
    bad = hostile(bundle, tmp_path / "hostile.tar", info, b"evil" if info.size else b"",
                  first)
    e = refused(empty, bad)
    assert e.reason == "unsafe" and e.path == str(bad)
    assert not empty.root.exists()
    assert not (tmp_path / "state.qcow2").exists() and not Path("/tmp/state.qcow2").exists()


def test_a_bundle_over_the_size_limit_is_refused(env, tmp_path):
    _, cp, bundle, empty, _ = env
    assert refused(empty, bundle, max_size=cp.size - 1).reason == "too-large"
    assert not empty.root.exists()
    # a header announcing a huge member is refused before its (absent) data is read
    members = members_of(bundle)
    bad = tmp_path / "huge.tar"
    with open(bad, "wb") as f:
        for n in (ck.MANIFEST, ck.MANIFEST_SUM):
            i = member(n, size=len(members[n]))
            f.write(i.tobuf(tarfile.PAX_FORMAT))
            f.write(members[n] + b"\0" * (-len(members[n]) % 512))
        f.write(member(ck.STATE_FILE, size=1 << 40).tobuf(tarfile.PAX_FORMAT))
        f.write(b"x" * 512)
    assert refused(empty, bad, max_size=1 << 30).reason == "too-large"
    assert not empty.root.exists()


def test_bundle_whose_base_disk_differs_is_refused(tmp_path):
    images = ImageCache(tmp_path / "cache")
    img = fake_image(images, "debian", "1111111111111111", disk=True)
    store = ck.CheckpointStore(tmp_path / "store", images)
    make_checkpoint(store, img)
    bundle = ck.export("vm0", "step1", tmp_path / "b.tar", store=store)
    assert store.get("vm0", "step1").image.disk_sha256 == sha256_file(img.disk)
    # "another machine": the same image name and recipe hash, but other disk bytes
    images2 = ImageCache(tmp_path / "cache2")
    img2 = fake_image(images2, "debian", "1111111111111111", disk=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", str(img2.disk)],
                   check=True, capture_output=True)
    other = ck.CheckpointStore(tmp_path / "store2", images2)
    e = refused(other, bundle)
    assert (e.reason, e.checkpoint) == ("mismatch", "vm0@step1")
    assert leftovers(other) == []
    # and without the image at all
    empty_cache = ck.CheckpointStore(tmp_path / "store3", ImageCache(tmp_path / "cache3"))
    assert refused(empty_cache, bundle).reason == "mismatch"
    assert leftovers(empty_cache) == []


def test_a_bundle_whose_qcow2_is_unsound_is_refused_and_leaves_nothing(env, tmp_path):
    store, cp, _, empty, _ = env
    bad = tmp_path / "noqcow2.tar"
    garbage = b"not a qcow2 at all" * 100

    def swap(ms):
        ms[ck.STATE_FILE] = garbage

    rewrite(ck.export("vm0", "step1", tmp_path / "b.tar", store=store), bad,
            edit_manifest=lambda m: m["files"]["state.qcow2"].update(
                size=len(garbage), sha256=hashlib.sha256(garbage).hexdigest()),
            edit_member=swap)
    assert refused(empty, bad).reason == "corrupt"
    assert leftovers(empty) == []


def test_a_failed_export_leaves_no_partial_file(env, tmp_path):
    store, cp, *_ = env
    (cp.path / ck.STATE_FILE).write_bytes(b"short")
    with pytest.raises(CheckpointError) as e:
        ck.export("vm0", "step1", tmp_path / "out" / "x.tar", store=store)
    assert (e.value.reason, e.value.checkpoint) == ("corrupt", "vm0@step1")
    assert not (tmp_path / "out" / "x.tar").exists()


# -- labctl checkpoint (no VM: list, export, import, delete) -----------------------------------

def test_labctl_checkpoint_list_export_import_delete(env, tmp_path, capsys, monkeypatch):
    store, cp, _, empty, _ = env
    monkeypatch.setattr(ck, "qemu_version", lambda: "7.2.22")
    monkeypatch.setenv("LABFIXTURES_CACHE", str(tmp_path / "cache"))  # the fake image
    main(["checkpoint", "list", "--store", str(store.root)])  # --store after the action
    assert capsys.readouterr().out == f"{cp}\n"
    out = tmp_path / "cli.tar"
    assert main(["checkpoint", "--store", str(store.root), "export", "lf-test", "vm0",
                 "step1", str(out)]) == 0
    assert main(["checkpoint", "import", str(out), "--store", str(empty.root)]) == 0
    assert "imported vm0@step1" in capsys.readouterr().out
    assert main(["checkpoint", "import", str(out), "--store", str(empty.root)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["checkpoint", "delete", "vm0", "step1", "--store", str(empty.root)]) == 0
    main(["checkpoint", "list", "--json", "--store", str(empty.root)])
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1]) == []


def test_orphans_are_the_checkpoints_of_images_no_longer_built(tmp_path):
    images = ImageCache(tmp_path / "cache")
    kept, gone = fake_image(images), fake_image(images, recipe_hash="0" * 16)
    store = ck.CheckpointStore(tmp_path / "store", images)
    make_checkpoint(store, kept, tag="kept")
    make_checkpoint(store, gone, tag="gone")
    assert store.orphans() == []
    assert [cp.tag for cp in store.orphans(gone=[gone.path.name])] == ["gone"]  # dry run
    shutil.rmtree(gone.path)  # `labctl image prune` removed the build
    assert [cp.tag for cp in store.orphans()] == ["gone"]
