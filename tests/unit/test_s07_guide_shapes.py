"""The pure helpers of scenarios/test_s07_lvm.py that compare the guide's shown output of a
§7 command with what today's parted or LVM prints, on outputs read in the debian guest
(parted 3.5, LVM 2.03.16): no VM needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from labfixtures.regress.guide import DIFFERS, REFUSED, WORKS, GuideStep

SCENARIO = Path(__file__).parents[2] / "scenarios" / "test_s07_lvm.py"

PRINT = """\
Model: Virtio Block Device (virtblk)
Disk /dev/vda: 10.7GB
Sector size (logical/physical): 512B/512B
Partition Table: msdos
Disk Flags:

Number  Start   End     Size    Type      File system  Flags
 1      1049kB  256MB   255MB   primary   ext2         boot
 4      256MB   323MB   67.1MB  primary   fat16        esp
 2      324MB   8590MB  8266MB  extended
 5      325MB   8590MB  8265MB  logical                lvm
 3      8590MB  10.7GB  2147MB  primary                lvm

"""  # parted prints `Disk Flags: ` (a space at the end): the same shape

LVDISPLAY = """\
  --- Logical volume ---
  LV Path                /dev/vm0/var
  LV Name                var
  VG Name                vm0
  LV UUID                Zr1Nxe-xaWb-1ggy-AuTd-1d34-TCm9-PRgyP4
  LV Write Access        read/write
  LV Creation host, time vm0, 2026-11-30 15:44:04 +0000
  LV Status              available
  # open                 0
  LV Size                <2.00 GiB
  Current LE             511
  Segments               1
  Allocation             inherit
  Read ahead sectors     auto
  - currently set to     256
  Block device           253:1
"""


@pytest.fixture(scope="module")
def s07() -> ModuleType:
    spec = importlib.util.spec_from_file_location("s07_lvm_helpers", SCENARIO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step() -> GuideStep:
    return GuideStep("§7", "cmd", tool="parted")


def test_mask_makes_the_guides_decimal_commas_and_todays_points_alike(s07) -> None:
    assert s07.mask("Disk /dev/vda: 55,8GB") == s07.mask("Disk /dev/vda:  10.7GB")
    assert s07.mask('of "20,00 GiB"') == s07.mask('of "<2.00 GiB"') == 'of "# GiB"'


def test_parted_print_today_adds_disk_flags_to_the_guides_lines(s07) -> None:
    s = step()
    s07.judge(s, (0, PRINT, ""), s07.SHOWN_PRINT, s07.parted_shape)
    assert (s.verdict, s.detail) == (DIFFERS, "prints 'Disk Flags:' that the guide does "
                                              "not show")
    without = PRINT.replace("Disk Flags:\n", "")
    s07.judge(s, (0, without, ""), s07.SHOWN_PRINT, s07.parted_shape)
    assert s.verdict == WORKS


def test_parted_rows_cut_at_the_header_columns(s07) -> None:
    rows = s07.parted_rows(PRINT)
    assert sorted(rows) == [1, 2, 3, 4, 5]
    assert rows[3] == {"Start": "8590MB", "End": "10.7GB", "Size": "2147MB",
                       "Type": "primary", "File system": "", "Flags": "lvm"}
    assert s07.parted_rows(s07.SHOWN_PRINT)[1]["File system"] == "ext2"


def test_one_line_messages_differ_by_their_period(s07) -> None:
    s = step()
    s07.judge(s, (0, '  Logical volume "var" created.\n', ""), s07.SHOWN_LVCREATE)
    assert s.verdict == DIFFERS
    assert s.detail == ("prints 'Logical volume \"var\" created.'; the guide shows "
                        "'Logical volume \"var\" created'")
    # parted's progress line (`\r`, spaces, `\r`) on stdout is nothing a student reads
    s07.judge(s, (0, "\r      \r", "Information: You may need to update /etc/fstab.\n\n"),
              s07.SHOWN_MKPART)
    assert s.verdict == WORKS


def test_a_refusal_keeps_the_first_line_of_the_complaint(s07) -> None:
    s = step()
    s07.judge(s, (1, "", "Error: Can't have overlapping partitions.\nmore\n"), "")
    assert (s.verdict, s.detail) == (REFUSED, "exit status 1: Error: Can't have "
                                              "overlapping partitions.")


def test_lvdisplay_today_has_the_guides_fields(s07) -> None:
    assert s07.display_shape(LVDISPLAY) == s07.display_shape(s07.SHOWN_LVDISPLAY)
    assert "LV Creation host, time" in s07.display_shape(LVDISPLAY)
    lv = s07.display_blocks(LVDISPLAY)[0]
    assert (lv[""], lv["LV Path"], lv["Current LE"]) == ("Logical volume", "/dev/vm0/var",
                                                         "511")


def test_the_new_physical_volume_block_of_the_guides_pvdisplay(s07) -> None:
    pvs = {b["PV Name"]: b for b in s07.display_blocks(s07.SHOWN_PVDISPLAY)}
    assert (pvs["/dev/vda3"][""], pvs["/dev/vda3"]["VG Name"]) == ("NEW Physical volume", "")
    assert '"/dev/vda#" is a new physical volume of "# GiB"' in \
        s07.display_shape(s07.SHOWN_PVDISPLAY)
