"""Guide §7, "Extension de la capacité de stockage avec LVM": growing a VM's storage.

    « L'énorme avantage de l'utilisation du gestionnaire de volume logique [...] avec les
    images disques de machine virtuelle, c'est que l'on peut manipuler la capacité de
    stockage après installation. »

The guide's steps, done here on the `debian` guest (msdos label, vda5 the physical volume of
VG `vm0`, LV `root` holding `/`), one VM for the whole module:

1. the instance runs: `parted /dev/vda print`, `df -h`; the VG is full;
2. the VM stopped, the image grows on the host:
       $ qemu-img resize vm0-debian-testing-amd64-base.raw +20G
   The guide resizes its raw master. Here the VM runs on a qcow2 differential image of the
   cached master (guide A.3), and it is that differential image that grows, by 2G: the
   master is shared and never changes. The growth stays sparse: nothing is allocated;
3. in the guest, the free space and a new primary partition on it:
       # parted /dev/vda unit % print free
       # parted /dev/vda mkpart primary 62% 100%
       # parted /dev/vda set 3 lvm on
4. a physical volume, the volume group extended, a logical volume on all of it:
       # pvcreate /dev/vda3
       # vgextend vm0 /dev/vda3
       # lvcreate --name var vm0 /dev/vda3 -l 100%FREE
5. the file system, /var copied onto it, the mount point:
       # mkfs.ext4 /dev/mapper/vm0-var
       # mount /dev/mapper/vm0-var /mnt
       # rsync -ah --numeric-ids /var/ /mnt/
       # umount /mnt
       /dev/mapper/vm0-var /var  ext4  noatime,commit=600,defaults  0  2   (/etc/fstab)
6. « après redémarrage »: /var comes from the new volume, with its data.

The module fixture `grown` runs the steps in this order and records each one (title,
outcome, evidence) with labfixtures' step recorder (`labfixtures.grading.steps`); a step
that fails stops the ones after it. Each test checks one step, in the same order, so the
first failing test names the step that broke (the ones after it say they were not reached).
The VM lives on `module_lab`: its disk is resized on the host and it is rebooted twice,
by real power offs and boots. It starts just booted, from its automatic checkpoint
(`booted_vm`, as a `lab_vm` does).

The guide's commands are also run as a student types them (`parted /dev/vda mkpart primary
N% 100%`, without `-s`; `pvdisplay`...) beside the machine-readable forms the checks parse.
The tests marked `guide_commands` (at the end; `pytest -m guide_commands`) compare what
each prints with what the guide shows and record the verdict with the guest's parted or
LVM version (`labctl regress guide RESULTS.json`). The guide's mkpart and set are the ones
that change the disk; their `-s` forms run only if they did not, so vda3 is made once.
"""

from __future__ import annotations

import math
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from assertions import assert_file_contains, assert_service_running
from labfixtures.grading.steps import StepRecorder
from labfixtures.qemu import qemu_img_info

pytestmark = [pytest.mark.root, pytest.mark.vm, pytest.mark.slow(60)]

N = 7  # the VM's number: MAC b8:ad:ca:fe:00:07, SSH forwarded from 2207 (user mode)
GIB = 2**30
MIB = 2**20
GROWTH = "+2G"  # the guide's +20G, smaller: it is the same operation
FSTAB_LINE = "/dev/mapper/vm0-var /var ext4 noatime,commit=600,defaults 0 2"
MARKER = "/var/lib/labfixtures-s07/marker"  # written before the copy: must be on vm0-var
HIDDEN = "/var/lib/labfixtures-s07/written-after-the-copy"  # on the old /var: hidden after
BOOT_TIMEOUT = 300.0  # hang guard only: a Debian boot takes ~15-20 s under TCG
POWEROFF_TIMEOUT = 180.0
#: Every command runs in the guest in the C locale, the guide's too. The guide's shell was
#: French (decimal commas: `34,4GB`, `31,76 GiB`) but parted and LVM spoke English there;
#: the debian image has no `locales` package, so asking for fr_FR.UTF-8 would fall back to
#: C with a warning. The guide tests compare an output's shape, numbers masked (`mask`).
LOCALE = "export LC_ALL=C; "


def power_off(vm, timeout: float = POWEROFF_TIMEOUT) -> float:
    """`systemctl poweroff` in the guest, then QEMU's exit (`VM.power_off`)."""
    return vm.power_off(timeout=timeout)


def lvm_rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.strip()]


def parse_free_space(out: str) -> list[tuple[float, float, float]]:
    """(start %, end %, size %) of the `Free Space` lines of `parted unit % print free`."""
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%\s+Free Space", line)
        if m:
            rows.append(tuple(float(x) for x in m.groups()))
    return rows


def parted_table(out: str) -> dict[int, list[str]]:
    """`parted -s -m DISK unit B print`: {number: [start, end, size, fs, name, flags]}."""
    rows = [line.rstrip(";").split(":") for line in out.splitlines() if line.strip()]
    return {int(r[0]): r[1:] for r in rows[2:] if r[0].isdigit()}


def disk_bytes(out: str) -> int:
    """The disk size from `parted -s -m DISK unit B print` (its second line)."""
    line = [r for r in out.splitlines() if r.startswith("/dev/")][0]
    return int(line.split(":")[1].rstrip("B"))


# -- the guide's commands as typed: what it shows, and the shape of an output -------------

def mask(text: str) -> str:
    """TEXT with every number a `#` and its spaces collapsed: the guide's `34,4GB` (French
    decimal comma) and today's `10.7GB` (C locale), or `20,00 GiB` and `<2.00 GiB`, are
    the same `#GB`, `# GiB`."""
    return " ".join(re.sub(r"<?\d+(?:[.,]\d+)?", "#", text).split())


def parted_shape(out: str) -> list[str]:
    """The lines of a human `parted print` other than its partition and free space rows
    (they depend on the disk), numbers masked: `Model: ...`, `Disk /dev/vda: #GB`, the
    column header, and any warning or message."""
    return [mask(line) for line in out.splitlines()
            if line.strip() and not re.match(r"\s*\d", line)]


def display_shape(out: str) -> list[str]:
    """The field names of `pvdisplay` / `lvdisplay` (`PV Name`, `# open`, `LV Creation
    host, time`...): a line's text up to two spaces or to its first word holding a digit,
    a slash or a quote; a line with no such name (`"/dev/vda3" is a new physical volume of
    "# GiB"`) is kept whole, masked."""
    shape = []
    for line in out.splitlines():
        if not line.strip():
            continue
        words = []
        for word in re.split(r"\s{2,}", line.strip())[0].split():
            if re.search(r'[\d/"]', word):
                break
            words.append(word)
        shape.append(" ".join(words) if words else mask(line))
    return shape


def message_shape(out: str) -> list[str]:
    """The lines a command prints, spaces collapsed (`Logical volume "var" created`)."""
    return [" ".join(line.split()) for line in out.splitlines() if line.strip()]


def shape_difference(shown: list[str], got: list[str]) -> str:
    """How GOT differs from what the guide SHOWS, for a person."""
    if len(shown) == len(got) == 1:
        return f"prints {got[0]!r}; the guide shows {shown[0]!r}"
    if not got:
        return f"prints nothing; the guide shows {shown!r}"
    extra = [line for line in got if line not in shown]
    missing = [line for line in shown if line not in got]
    parts = []
    if extra:
        parts.append("prints " + ", ".join(repr(x) for x in extra) +
                     " that the guide does not show")
    if missing:
        parts.append("does not print the guide's " + ", ".join(repr(x) for x in missing))
    return "; ".join(parts) or "prints the guide's lines in another order"


def judge(step, said: tuple[int, str, str], shown: str, shape=message_shape) -> None:
    """The verdict on a guide command that SAID (exit status, stdout, stderr) against the
    output the guide SHOWS, compared by SHAPE: refused (its first line of complaint),
    differs (how), or works."""
    code, out, err = said
    if code != 0:
        complaint = (err.strip() or out.strip()).splitlines()
        step.refused(f"exit status {code}" + (f": {complaint[0]}" if complaint else ""))
        return
    got, want = shape(out + ("\n" + err if err.strip() else "")), shape(shown)
    if got == want:
        step.works()
    else:
        step.differs(shape_difference(want, got))


def display_blocks(out: str) -> list[dict[str, str]]:
    """`pvdisplay` / `lvdisplay` as one {field: value} per `--- ... ---` block."""
    blocks: list[dict[str, str]] = []
    for line in out.splitlines():
        text = line.strip()
        if text.startswith("---"):
            blocks.append({"": text.strip("- ")})
        elif blocks and text:
            name, _, value = text.partition("  ")
            blocks[-1][name.strip()] = value.strip()
    return blocks


def parted_rows(out: str) -> dict[int, dict[str, str]]:
    """The partition rows of a human `parted print`: {number: {Start, End, Size, Type,
    File system, Flags}}, cut at the columns of its header."""
    lines = out.splitlines()
    head = next((line for line in lines if line.startswith("Number")), None)
    if head is None:
        return {}
    cols = [c for c in ("Number", "Start", "End", "Size", "Type", "File system", "Flags")
            if c in head]
    at = [head.index(c) for c in cols] + [None]
    rows = {}
    for line in lines[lines.index(head) + 1:]:
        if re.match(r"\s*\d+\s", line):
            cells = {c: line[at[i]:at[i + 1]].strip() for i, c in enumerate(cols)}
            rows[int(cells.pop("Number"))] = cells
    return rows



@pytest.fixture(scope="module")
def grown(module_lab, debian_image, booted_vm) -> StepRecorder:
    """The whole of §7 on one VM, each step recorded (see the module docstring)."""
    # just booted: restored from its automatic checkpoint (booted the first time)
    vm = booted_vm(module_lab, "vm0", tap=N, user=True, image=debian_image, profile="pc",
                   memory=512)
    s = StepRecorder("§7: growing the storage of vm0 with LVM")

    def guest(name: str, cmd: str, timeout: float = 120.0):
        """CMD in the guest as step NAME, in the C locale (parted's output is parsed)."""
        return s.command(name, vm, cmd, timeout=timeout, prefix=LOCALE)

    def typed(name: str, cmd: str, timeout: float = 120.0):
        """CMD as the guide shows it, as step NAME (C locale, no terminal): the step passes
        whatever CMD's exit status, kept with its output in the step's value (`said`), so
        that a refusal is a guide test's verdict, not the end of §7."""
        return s.call(name, cmd, lambda: vm.run(LOCALE + cmd, timeout=timeout))

    token = secrets.token_hex(8)
    s.facts["token"] = token
    s.facts["vm"] = vm

    # the versions of the tools that run the guide's commands, read in the guest
    typed("parted --version", "parted --version")
    typed("lvm version", "lvm version")
    # 1. « Une fois l'instance de système virtuel lancée »: the disk and the VG before.
    guest("before: parted print", "parted -s -m /dev/vda unit B print")
    guest("before: df -h", "df -h")
    guest("before: vgs", "vgs --noheadings --units b --nosuffix "
                         "-o vg_name,pv_count,lv_count,vg_size,vg_free")

    # 2. The VM stopped, the image grows on the host (the overlay: see the docstring).
    s.call("power off before the resize", "systemctl poweroff (in the guest)",
           lambda: power_off(vm))
    overlay: Path = vm.overlay
    s.facts["overlay"] = overlay
    s.call("qemu-img info before", f"qemu-img info {overlay}",
           lambda: s.facts.setdefault("info before", qemu_img_info(overlay)))
    s.call("qemu-img resize", f"qemu-img resize -f qcow2 {overlay} {GROWTH}",
           lambda: subprocess.run(["qemu-img", "resize", "-f", "qcow2", str(overlay), GROWTH],
                                  capture_output=True, text=True, check=True).stdout)
    s.call("qemu-img info after", f"qemu-img info {overlay}",
           lambda: s.facts.setdefault("info after", qemu_img_info(overlay)))
    s.facts["master info"] = qemu_img_info(debian_image.disk)
    s.call("boot on the grown disk", "start the VM again",
           lambda: vm.start(timeout=BOOT_TIMEOUT).boot_seconds)

    # 3. The free space, and a primary partition on it (the guide's percentages).
    guest("after: parted print", "parted -s -m /dev/vda unit B print")
    free = guest("parted unit % print free", "parted -s /dev/vda unit % print free")
    start = None
    if free is not None and free.ok:
        spaces = parse_free_space(free.stdout)
        if spaces:
            biggest = max(spaces, key=lambda r: r[2])
            start = math.ceil(biggest[0])  # the guide: free from 61,5% -> mkpart 62%
    s.facts["mkpart start"] = start
    typed("guide: parted unit % print free", "parted /dev/vda unit % print free")
    # the guide's mkpart and set as typed; the `-s` form only if they did not do it, so
    # that vda3 is made exactly once (steps "mkpart" and "set 3 lvm on" say which made it)
    if start is None:
        s.fail("mkpart", "parted -s /dev/vda mkpart primary ...",
               "no Free Space line in `parted unit % print free`")
    else:
        mkpart = f"parted /dev/vda mkpart primary {start}% 100%"
        typed("guide: mkpart", mkpart)
        table = guest("table after the guide's mkpart", "parted -s -m /dev/vda unit B print")
        if table is not None and 3 in parted_table(table.stdout):
            s.call("mkpart", mkpart, lambda: "vda3 made by the guide's command")
        else:
            guest("mkpart", f"parted -s /dev/vda mkpart primary {start}% 100%")
    typed("guide: set 3 lvm on", "parted /dev/vda set 3 lvm on")
    table = guest("table after the guide's set", "parted -s -m /dev/vda unit B print")
    if table is not None and "lvm" in parted_table(table.stdout).get(3, [""])[-1]:
        s.call("set 3 lvm on", "parted /dev/vda set 3 lvm on",
               lambda: "flag set by the guide's command")
    else:
        guest("set 3 lvm on", "parted -s /dev/vda set 3 lvm on")
    # parted tells the kernel itself (BLKPG); partx -u is the fallback if it could not
    guest("kernel sees vda3", "test -b /dev/vda3 || partx -u /dev/vda; "
                              "for i in $(seq 50); do test -b /dev/vda3 && break; "
                              "sleep 0.1; done; test -b /dev/vda3 && lsblk -rnbo "
                              "NAME,SIZE,TYPE /dev/vda3")
    guest("parted print with vda3", "parted -s -m /dev/vda unit B print")
    typed("guide: parted print", "parted /dev/vda print")

    # 4. LVM: the physical volume, the volume group, the logical volume.
    guest("pvcreate", "pvcreate /dev/vda3")  # pvcreate, vgextend, lvcreate: the guide's own
    typed("guide: pvdisplay", "pvdisplay")
    guest("pvdisplay new PV", "pvdisplay -C --noheadings --units b --nosuffix "
                              "-o pv_name,pv_size,pv_pe_count,pv_attr,vg_name /dev/vda3")
    guest("vgextend", "vgextend vm0 /dev/vda3")
    guest("pvdisplay in vm0", "pvdisplay -C --noheadings --units b --nosuffix "
                              "-o pv_name,vg_name,pv_pe_count,pv_pe_alloc_count,pv_attr "
                              "/dev/vda3")
    typed("guide: pvdisplay /dev/vda3", "pvdisplay /dev/vda3")
    guest("lvcreate", "lvcreate --name var vm0 /dev/vda3 -l 100%FREE")
    guest("lvdisplay var", "lvs --noheadings --units b --nosuffix "
                           "-o lv_path,lv_name,vg_name,lv_size,devices vm0/var")
    typed("guide: lvdisplay /dev/vm0/var", "lvdisplay /dev/vm0/var")
    typed("var extents", "lvs --noheadings --units b --nosuffix "
                         "-o lv_size,vg_extent_size vm0/var")

    # 5. File system, copy of /var (a marker written first), mount point in fstab.
    guest("mkfs.ext4", "mkfs.ext4 /dev/mapper/vm0-var")
    guest("marker in /var", f"mkdir -p {Path(MARKER).parent} && echo {token} > {MARKER}"
                            " && sync")
    guest("mount /mnt", "mount /dev/mapper/vm0-var /mnt && findmnt -no SOURCE /mnt")
    guest("rsync /var", "rsync -ah --numeric-ids /var/ /mnt/", timeout=600)
    # the same paths with the same owners and modes (-a, --numeric-ids), not a byte diff:
    # a running system writes to /var now and then
    guest("copy checked", f"cat /mnt/{MARKER[len('/var/'):]} && "
                          "(cd /var && find . -printf '%p %U:%G %m\\n' | sort) >/tmp/a && "
                          "(cd /mnt && find . -path ./lost+found -prune -o "
                          "-printf '%p %U:%G %m\\n' | sort) >/tmp/b && "
                          "{ diff /tmp/a /tmp/b && echo same; }")
    guest("umount /mnt", "umount /mnt")
    guest("write to the old /var", f"echo old > {HIDDEN}")
    guest("fstab entry", f"echo '{FSTAB_LINE}' >> /etc/fstab && grep var /etc/fstab")

    # 6. « après redémarrage »
    s.call("power off for the reboot", "systemctl poweroff (in the guest)",
           lambda: power_off(vm))
    s.call("boot with /var on vm0-var", "start the VM again",
           lambda: vm.start(timeout=BOOT_TIMEOUT).boot_seconds)
    guest("after: findmnt /var", "findmnt -no SOURCE,FSTYPE,OPTIONS /var")
    guest("after: marker", f"cat {MARKER}")
    guest("after: old /var hidden", f"test -e {HIDDEN} && echo visible || echo hidden")
    guest("after: pvs", "pvs --noheadings --units b --nosuffix "
                        "-o pv_name,vg_name,pv_size,pv_free")
    guest("after: lvs", "lvs --noheadings --units b --nosuffix -o lv_name,vg_name,lv_size")
    guest("after: vgs", "vgs --noheadings --units b --nosuffix "
                        "-o vg_name,pv_count,lv_count,vg_size,vg_free")
    guest("after: df -h", "df -h")
    guest("after: failed units", "systemctl --failed --no-legend --plain")
    return s


# -- 1. before ----------------------------------------------------------------------------


def test_before_the_disk_is_8g_and_vm0_has_no_free_space(grown):
    """« Allocatable yes (but full) »: without a new physical volume, no room to grow."""
    size = disk_bytes(grown.require("before: parted print"))
    assert size == 8 * GIB, f"the debian image's disk should be 8 GiB, parted says {size} B"
    parts = parted_table(grown.require("before: parted print"))
    # the guide's 1, 2, 5, plus the EFI system partition 4 that lets the disk boot by UEFI
    assert sorted(parts) == [1, 2, 4, 5], \
        f"expected partitions 1, 2, 5 as in the guide (and the ESP 4): {parts}"
    assert "esp" in parts[4][-1], f"partition 4 should be the EFI system partition: {parts}"
    rows = lvm_rows(grown.require("before: vgs"))
    assert [r[:3] for r in rows] == [["vm0", "1", "1"]], (
        f"before the growth, vgs should show vm0 with 1 PV and 1 LV: {rows}")
    assert rows[0][4] == "0", f"vm0 should be full before the growth, vg_free = {rows[0][4]}"
    assert "/dev/mapper/vm0-root" in grown.require("before: df -h")


# -- 2. the image grows on the host ---------------------------------------------------------


def test_qemu_img_resize_grows_the_overlay_by_2g_sparse(grown):
    """`qemu-img resize IMAGE +2G`, the VM stopped: the virtual disk grows, nothing is
    allocated for it (a sparse growth, as the guide's raw file), the master is untouched."""
    grown.require("power off before the resize")
    grown.require("qemu-img resize")
    before, after = grown.facts["info before"], grown.facts["info after"]
    assert after["virtual-size"] == before["virtual-size"] + 2 * GIB == 10 * GIB, (
        f"the overlay should grow from 8 GiB to 10 GiB, qemu-img info says "
        f"{before['virtual-size']} -> {after['virtual-size']} bytes")
    grew = after["actual-size"] - before["actual-size"]
    assert grew < MIB, f"the growth should allocate nothing, the file grew by {grew} bytes"
    assert grown.facts["master info"]["virtual-size"] == 8 * GIB, (
        "the master image must keep its size: only the VM's differential image grows")
    assert after.get("backing-filename"), "the grown disk is still an overlay of the master"


# -- 3. the new partition -----------------------------------------------------------------


def test_parted_sees_the_bigger_disk_and_the_free_space_at_its_end(grown):
    """« On remarque que l'espace total a bien été augmenté et qu'aucune partition n'est
    disponible. » (`parted /dev/vda unit % print free`)"""
    grown.require("boot on the grown disk")
    size = disk_bytes(grown.require("after: parted print"))
    assert size == 10 * GIB, (f"after the resize the guest should see a 10 GiB vda, parted "
                              f"says {size} B: was the VM stopped during the resize?")
    out = grown.require("parted unit % print free")
    spaces = parse_free_space(out)
    assert spaces, f"`parted unit % print free` shows no Free Space:\n{out}"
    start, end, length = max(spaces, key=lambda r: r[2])
    assert end == 100.0 and 19.0 <= length <= 21.0 and 79.0 <= start <= 81.0, (
        f"the new 2G should be free at the end of the disk (about 80% -> 100%), "
        f"parted shows {start}% -> {end}% ({length}%):\n{out}")


def test_mkpart_primary_and_lvm_flag_make_vda3(grown):
    """`parted /dev/vda mkpart primary 80% 100%` (the free space's start, rounded up, as
    the guide's 61,5% -> 62%), `parted /dev/vda set 3 lvm on`."""
    grown.require("mkpart")
    grown.require("set 3 lvm on")
    grown.require("kernel sees vda3")
    parts = parted_table(grown.require("parted print with vda3"))
    assert sorted(parts) == [1, 2, 3, 4, 5], \
        f"expected partitions 1, 2, 3, 5 (and the ESP 4): {parts}"
    start, end = int(parts[3][0].rstrip("B")), int(parts[3][1].rstrip("B"))
    ext_end = int(parts[2][1].rstrip("B"))
    assert start > ext_end, f"vda3 ({start} B) must start after the extended vda2 ({ext_end} B)"
    assert end >= 10 * GIB - MIB, f"vda3 should run to the end of the disk, it ends at {end} B"
    assert "lvm" in parts[3][5], f"vda3 should have the lvm flag: {parts[3]}"
    human = grown.require("parted unit % print free")  # before mkpart: no partition 3 yet
    assert not re.search(r"^\s*3\s", human, re.M), "vda3 existed before mkpart"


# -- 4. LVM ---------------------------------------------------------------------------------


def test_pvcreate_makes_vda3_a_physical_volume_outside_any_group(grown):
    """« Le volume physique /dev/vda3 n'est associé à aucun groupe de volumes et ne dispose
    pas d'une taille de bloc ou Physical Extent (PE) définie. »"""
    assert "successfully created" in grown.require("pvcreate")
    rows = lvm_rows(grown.require("pvdisplay new PV"))
    assert len(rows) == 1 and rows[0][0] == "/dev/vda3", f"pvdisplay /dev/vda3: {rows}"
    assert len(rows[0]) == 4, f"a new PV belongs to no volume group: VG Name {rows[0][4:]}"
    size, pe_count, attr = int(rows[0][1]), rows[0][2], rows[0][3]
    assert pe_count == "0", f"a new PV has no extents yet (Total PE 0): {rows[0]}"
    assert "a" not in attr[:2], f"a new PV is not allocatable (Allocatable NO): attr {attr}"
    assert 2 * GIB - 16 * MIB <= size <= 2 * GIB, f"vda3's PV should be ~2 GiB: {size} B"


def test_vgextend_adds_vda3_to_vm0(grown):
    """`vgextend vm0 /dev/vda3`: « Allocatable yes », Free PE = Total PE."""
    assert "successfully extended" in grown.require("vgextend")
    rows = lvm_rows(grown.require("pvdisplay in vm0"))
    assert rows and rows[0][:2] == ["/dev/vda3", "vm0"], f"vda3 should be in vm0: {rows}"
    total, allocated = int(rows[0][2]), int(rows[0][3])
    assert total > 0 and allocated == 0, (
        f"vda3 in vm0 should have extents, none allocated yet: total {total}, "
        f"allocated {allocated}")


def test_lvcreate_var_takes_all_of_vda3(grown):
    """`lvcreate --name var vm0 /dev/vda3 -l 100%FREE`"""
    assert 'Logical volume "var" created' in grown.require("lvcreate")
    rows = lvm_rows(grown.require("lvdisplay var"))
    assert rows and rows[0][:3] == ["/dev/vm0/var", "var", "vm0"], f"lvs vm0/var: {rows}"
    assert rows[0][4].startswith("/dev/vda3"), (
        f"the LV var must sit on /dev/vda3 only (the guide names the PV): {rows[0][4]}")
    assert 2 * GIB - 16 * MIB <= int(rows[0][3]) <= 2 * GIB, f"var should be ~2 GiB: {rows[0]}"


# -- 5. file system and copy ----------------------------------------------------------------


def test_mkfs_and_rsync_copy_var_onto_the_new_volume(grown):
    """`mkfs.ext4`, `mount /dev/mapper/vm0-var /mnt`, `rsync -ah --numeric-ids /var/ /mnt/`,
    `umount /mnt`."""
    grown.require("mkfs.ext4")
    grown.require("marker in /var")
    assert grown.require("mount /mnt").strip() == "/dev/mapper/vm0-var"
    grown.require("rsync /var")
    copied = grown.require("copy checked").split("\n")
    assert copied[0] == grown.facts["token"], (
        f"after rsync, /mnt should hold the marker written in /var: {copied[0]!r}")
    assert copied[1] == "same", "the copy should have every path of /var"
    grown.require("umount /mnt")


def test_fstab_mounts_the_new_volume_on_var(grown):
    """« on crée l'entrée pour le nouveau point de montage dans le fichier /etc/fstab »"""
    lines = [line.split() for line in grown.require("fstab entry").splitlines()]
    assert FSTAB_LINE.split() in lines, f"/etc/fstab should have `{FSTAB_LINE}`: {lines}"


# -- 6. after the reboot --------------------------------------------------------------------


def test_the_guest_shuts_down_and_boots_again_cleanly(grown):
    grown.require("power off for the reboot")
    grown.require("boot with /var on vm0-var")
    failed = grown.require("after: failed units").strip()
    assert failed == "", f"units failed at the boot after the change: {failed}"
    assert_service_running(grown.facts["vm"], "ssh")  # systemd: `systemctl is-active ssh`


def test_after_the_reboot_var_is_mounted_from_vm0_var(grown):
    src = grown.require("after: findmnt /var").split()
    assert src[:2] == ["/dev/mapper/vm0-var", "ext4"], (
        f"/var should be mounted from /dev/mapper/vm0-var (ext4): findmnt says {src}; "
        "check the fstab line")
    opts = src[2].split(",")
    assert "noatime" in opts and "commit=600" in opts, f"fstab options not applied: {opts}"
    assert_file_contains(grown.facts["vm"], "/etc/fstab",
                         re.compile(r"^/dev/mapper/vm0-var\s+/var\s+ext4\s", re.M))
    assert "/dev/mapper/vm0-var" in grown.require("after: df -h")


def test_after_the_reboot_the_copied_data_is_on_var(grown):
    assert grown.require("after: marker").strip() == grown.facts["token"], (
        f"{MARKER}, written before the copy, should be on the new /var")
    assert grown.require("after: old /var hidden").strip() == "hidden", (
        f"{HIDDEN} was written on the old /var after the copy: it should be hidden under "
        "the new mount, it is visible, so /var is not the new volume")


def test_after_the_reboot_lvm_shows_vda3_in_vm0_and_var_using_it(grown):
    pvs = {r[0]: r[1:] for r in lvm_rows(grown.require("after: pvs"))}
    assert set(pvs) == {"/dev/vda5", "/dev/vda3"}, f"pvs should show vda5 and vda3: {pvs}"
    assert pvs["/dev/vda3"][0] == "vm0", f"vda3 should be in vm0: {pvs['/dev/vda3']}"
    assert pvs["/dev/vda3"][2] == "0", f"vda3 should be fully used: {pvs['/dev/vda3']}"
    lvs = {r[0]: r[1:] for r in lvm_rows(grown.require("after: lvs"))}
    assert set(lvs) == {"root", "var"}, f"lvs should show root and var: {lvs}"
    vgs = lvm_rows(grown.require("after: vgs"))
    assert [r[:3] for r in vgs] == [["vm0", "2", "2"]], (
        f"vgs should show vm0 with 2 PVs and 2 LVs: {vgs}")
    size_before = int(lvm_rows(grown.require("before: vgs"))[0][3])
    assert int(vgs[0][3]) > size_before + GIB, (
        f"vm0 should have grown by ~2 GiB: {size_before} -> {vgs[0][3]} B")
    assert vgs[0][4] == "0", f"all the new space should be used by var, vg_free = {vgs[0][4]}"


# -- the guide's commands, typed as a student types them (`-m guide_commands`) -------------
#
# Each test compares what the guide shows (below, as the guide prints it, its French
# decimal commas included) with what today's parted or LVM prints in the guest, records the
# verdict with the tool's version read in the guest, then checks what the guide wanted.

SHOWN_PRINT = """\
Model: Virtio Block Device (virtblk)
Disk /dev/vda: 55,8GB
Sector size (logical/physical): 512B/512B
Partition Table: msdos

Number  Start   End     Size    Type      File system  Flags
 1      1049kB  256MB   255MB   primary   ext2         boot
 2      257MB   34,4GB  34,1GB  extended
 5      257MB   34,4GB  34,1GB  logical                lvm
 3      34,4GB  55,8GB  21,5GB  primary                lvm
"""
SHOWN_PRINT_FREE = """\
Model: Virtio Block Device (virtblk)
Disk /dev/vda: 100%
Sector size (logical/physical): 512B/512B
Partition Table: msdos

Number  Start  End    Size   Type      File system  Flags
 1      0,00%  0,00%  0,00%  primary   ext2         boot
 2      0,46%  0,46%  0,00%  extended
 5      0,46%  61,5%  61,1%  logical                lvm
        61,5%  100%   38,5%            Free Space
"""
SHOWN_MKPART = "Information: You may need to update /etc/fstab."
SHOWN_PVCREATE = 'Physical volume "/dev/vda3" successfully created'
SHOWN_PVDISPLAY = """\
  --- Physical volume ---
  PV Name               /dev/vda5
  VG Name               vm0
  PV Size               31,76 GiB / not usable 2,00 MiB
  Allocatable           yes (but full)
  PE Size               4,00 MiB
  Total PE              8130
  Free PE               0
  Allocated PE          8130
  PV UUID               CpaZ5D-vbVS-32w3-QLnk-GVAd-06pB-y2Iw8Y

  "/dev/vda3" is a new physical volume of "20,00 GiB"
  --- NEW Physical volume ---
  PV Name               /dev/vda3
  VG Name
  PV Size               20,00 GiB
  Allocatable           NO
  PE Size               0
  Total PE              0
  Free PE               0
  Allocated PE          0
  PV UUID               jZJ5xq-bZ1t-m0ZL-RkUG-Phe2-bbDY-r6cAPI
"""
SHOWN_VGEXTEND = 'Volume group "vm0" successfully extended'
SHOWN_PVDISPLAY_VDA3 = """\
  --- Physical volume ---
  PV Name               /dev/vda3
  VG Name               vm0
  PV Size               20,00 GiB / not usable 0
  Allocatable           yes
  PE Size               4,00 MiB
  Total PE              5120
  Free PE               5120
  Allocated PE          0
  PV UUID               jZJ5xq-bZ1t-m0ZL-RkUG-Phe2-bbDY-r6cAPI
"""
SHOWN_LVCREATE = 'Logical volume "var" created'
SHOWN_LVDISPLAY = """\
  --- Logical volume ---
  LV Path                /dev/vm0/var
  LV Name                var
  VG Name                vm0
  LV UUID                mQTwlc-4zNt-0V7P-SfWM-qh3G-Zulh-y4zYN4
  LV Write Access        read/write
  LV Creation host, time vm0, 2014-01-15 00:20:40 +0100
  LV Status              available
  # open                 0
  LV Size                20,00 GiB
  Current LE             5120
  Segments               1
  Allocation             inherit
  Read ahead sectors     auto
  - currently set to     256
  Block device           253:2
"""


def said(grown: StepRecorder, name: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the guide's command run as step NAME: a `typed`
    step, or a command step that ran (passed or failed). StepFailed if it never ran."""
    step = grown.steps.get(name)
    if step is not None and step.exit_status is not None:
        return step.exit_status, step.stdout, step.stderr
    grown.require(name)  # not run, not reached, or no answer from the guest: says which
    r = grown[name].value
    return r.exit_status, r.stdout, r.stderr


def guest_version(grown: StepRecorder, tool: str) -> str:
    """TOOL's version as the guest reports it: `parted --version` (`parted (GNU parted)
    3.6`), `lvm version` (`LVM version: 2.03.16(2) (2022-05-18)`)."""
    name = {"parted": "parted --version", "lvm": "lvm version"}[tool]
    step = grown.steps.get(name)
    if step is None or not step.passed or step.value.exit_status != 0:
        return "unknown (not read in the guest)"
    out = step.value.stdout
    m = re.search(r"LVM version:\s*(\S+)", out) if tool == "lvm" else \
        re.search(r"parted\)?\s+(\S+)\s*$", out.strip().splitlines()[0])
    return m.group(1) if m else out.strip().splitlines()[0]


@pytest.fixture
def typed_step(grown, guide_step):
    """`typed_step(command, tool, fix="")`: a guide step of §7 whose tool version is the
    guest's (guide_step reads the host's, where parted and LVM may not even be)."""

    def make(command: str, tool: str, fix: str = ""):
        step = guide_step("§7", command, tool=tool, fix=fix)
        step.tool_version = guest_version(grown, tool)
        return step

    return make


PARTED_FIX = ("nothing to fix: the same table, with the lines today's parted adds (`Disk "
              "Flags:`, empty on an msdos disk); the guide's decimal commas (34,4GB) are "
              "points in the C locale")
LVM_FIX = "nothing to fix: the same report"
PERIOD_FIX = "nothing to fix: the same message (today's LVM ends it with a period)"


@pytest.mark.guide_commands
def test_guide_parted_unit_percent_print_free(grown, typed_step):
    """`parted /dev/vda unit % print free`: the free space, at the end of the disk."""
    typed = said(grown, "guide: parted unit % print free")
    step = typed_step("parted /dev/vda unit % print free", "parted", fix=PARTED_FIX)
    judge(step, typed, SHOWN_PRINT_FREE, parted_shape)
    free = parse_free_space(typed[1])
    assert free and max(free, key=lambda r: r[2])[1] == 100.0, (
        f"the guide's command should show the free space up to 100%:\n{typed[1]}")


@pytest.mark.guide_commands
def test_guide_parted_mkpart_primary(grown, typed_step):
    """`parted /dev/vda mkpart primary 62% 100%` in the guide, where its free space starts
    at 61,5%; here the free space's start rounded up the same way (80%)."""
    typed = said(grown, "guide: mkpart")
    start = grown.facts["mkpart start"]
    step = typed_step(f"parted /dev/vda mkpart primary {start}% 100%", "parted",
                      fix=f"`parted -s /dev/vda mkpart primary {start}% 100%` (script "
                          "mode: parted asks nothing)")
    judge(step, typed, SHOWN_MKPART)
    parts = parted_table(grown.require("parted print with vda3"))
    assert 3 in parts and int(parts[3][0].rstrip("B")) > int(parts[2][1].rstrip("B")), (
        f"vda3 should exist after the extended vda2: {parts}")


@pytest.mark.guide_commands
def test_guide_parted_set_3_lvm_on(grown, typed_step):
    """`parted /dev/vda set 3 lvm on` prints nothing in the guide."""
    typed = said(grown, "guide: set 3 lvm on")
    step = typed_step("parted /dev/vda set 3 lvm on", "parted",
                      fix="nothing to fix: parted notes after any change of the table that "
                          "/etc/fstab may need updating, as after the guide's mkpart "
                          "(`parted -s` says nothing; a refusal: `parted -s /dev/vda set 3 "
                          "lvm on`)")
    judge(step, typed, "")
    parts = parted_table(grown.require("parted print with vda3"))
    assert "lvm" in parts[3][5], f"vda3 should have the lvm flag: {parts[3]}"


@pytest.mark.guide_commands
def test_guide_parted_print(grown, typed_step):
    """`parted /dev/vda print` after the new partition: vda3, primary, flag lvm."""
    typed = said(grown, "guide: parted print")
    step = typed_step("parted /dev/vda print", "parted", fix=PARTED_FIX)
    judge(step, typed, SHOWN_PRINT, parted_shape)
    rows = parted_rows(typed[1])
    assert 3 in rows, f"the guide's command should show partition 3:\n{typed[1]}"
    assert rows[3]["Type"] == "primary" and "lvm" in rows[3]["Flags"], (
        f"vda3 should be primary with the lvm flag: {rows[3]}")


@pytest.mark.guide_commands
def test_guide_pvcreate(grown, typed_step):
    """`pvcreate /dev/vda3` prints `Physical volume "/dev/vda3" successfully created`."""
    typed = said(grown, "pvcreate")
    step = typed_step("pvcreate /dev/vda3", "lvm",
                      fix=PERIOD_FIX)
    judge(step, typed, SHOWN_PVCREATE)
    rows = lvm_rows(grown.require("pvdisplay new PV"))
    assert rows and rows[0][0] == "/dev/vda3", f"vda3 should be a physical volume: {rows}"


@pytest.mark.guide_commands
def test_guide_pvdisplay(grown, typed_step):
    """`pvdisplay`: vda5 in vm0, full; the NEW physical volume vda3 in no group."""
    typed = said(grown, "guide: pvdisplay")
    step = typed_step("pvdisplay", "lvm", fix=LVM_FIX)
    judge(step, typed, SHOWN_PVDISPLAY, display_shape)
    pvs = {b.get("PV Name"): b for b in display_blocks(typed[1])}
    assert set(pvs) == {"/dev/vda5", "/dev/vda3"}, f"pvdisplay should show vda5, vda3: {pvs}"
    assert pvs["/dev/vda5"]["VG Name"] == "vm0" and pvs["/dev/vda5"]["Free PE"] == "0"
    new = pvs["/dev/vda3"]
    assert (new[""], new["VG Name"], new["Allocatable"], new["Total PE"]) == \
        ("NEW Physical volume", "", "NO", "0"), f"vda3 should be a new PV in no group: {new}"


@pytest.mark.guide_commands
def test_guide_vgextend(grown, typed_step):
    """`vgextend vm0 /dev/vda3` prints `Volume group "vm0" successfully extended`."""
    typed = said(grown, "vgextend")
    step = typed_step("vgextend vm0 /dev/vda3", "lvm", fix="nothing to fix: the same message")
    judge(step, typed, SHOWN_VGEXTEND)
    rows = lvm_rows(grown.require("pvdisplay in vm0"))
    assert rows and rows[0][:2] == ["/dev/vda3", "vm0"], f"vda3 should be in vm0: {rows}"


@pytest.mark.guide_commands
def test_guide_pvdisplay_vda3(grown, typed_step):
    """`pvdisplay /dev/vda3`: in vm0, allocatable, all its extents free."""
    typed = said(grown, "guide: pvdisplay /dev/vda3")
    step = typed_step("pvdisplay /dev/vda3", "lvm", fix=LVM_FIX)
    judge(step, typed, SHOWN_PVDISPLAY_VDA3, display_shape)
    pv = display_blocks(typed[1])[0]
    assert (pv["PV Name"], pv["VG Name"], pv["Allocatable"]) == ("/dev/vda3", "vm0", "yes")
    assert int(pv["Total PE"]) > 0 and pv["Free PE"] == pv["Total PE"], (
        f"vda3's extents should all be free: {pv}")


@pytest.mark.guide_commands
def test_guide_lvcreate(grown, typed_step):
    """`lvcreate --name var vm0 /dev/vda3 -l 100%FREE` prints `Logical volume "var"
    created`: var takes every extent of vda3."""
    typed = said(grown, "lvcreate")
    step = typed_step("lvcreate --name var vm0 /dev/vda3 -l 100%FREE", "lvm",
                      fix=PERIOD_FIX)
    judge(step, typed, SHOWN_LVCREATE)
    size, extent = (int(x) for x in said(grown, "var extents")[1].split())
    vda3 = lvm_rows(grown.require("pvdisplay in vm0"))[0]
    assert size // extent == int(vda3[2]) > 0, (
        f"var should have all of vda3's {vda3[2]} extents, it has {size // extent}")


@pytest.mark.guide_commands
def test_guide_lvdisplay(grown, typed_step):
    """`lvdisplay /dev/vm0/var`: the new logical volume, available."""
    typed = said(grown, "guide: lvdisplay /dev/vm0/var")
    step = typed_step("lvdisplay /dev/vm0/var", "lvm", fix=LVM_FIX)
    judge(step, typed, SHOWN_LVDISPLAY, display_shape)
    lv = display_blocks(typed[1])[0]
    assert (lv["LV Path"], lv["LV Name"], lv["VG Name"], lv["LV Status"]) == \
        ("/dev/vm0/var", "var", "vm0", "available"), f"lvdisplay: {lv}"
    assert lv["Segments"] == "1", f"var should be one segment, on vda3: {lv}"
