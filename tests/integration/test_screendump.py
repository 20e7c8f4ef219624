"""A VM's screen for the report: QMP screendump to PNG on a `pc` VM with a display device;
refused, with the remedy, where there is no screen."""

import pytest

from labfixtures.errors import LabError, QmpError
from labfixtures.report import artifacts, png

pytestmark = [pytest.mark.root, pytest.mark.vm]


@pytest.fixture
def plugged(lab, switch):
    switch.svi(2, "203.0.113.129/26")
    for n in (2, 3):
        lab.tap(n, group="kvm")
        switch.add_port(f"tap{n}", tag=2)
    return lab


def test_screendump_of_a_pc_vm_is_a_png_that_is_not_blank(plugged):
    vm = plugged.vm("vm0", tap=2, addresses=["203.0.113.130/26"], profile="pc",
                    extra_args=["-vga", "std"])
    data = artifacts.screendump(vm)
    image = png.decode(data)
    assert artifacts.png_size(data) == (image.width, image.height)
    assert image.width >= 640 and image.height >= 400
    colours = image.colours()
    background, n = colours.most_common(1)[0]
    assert len(colours) >= 2 and n < image.width * image.height  # text on it
    [screen] = artifacts.screens(plugged)
    assert screen.name == "vm0-screen.png" and screen.data.startswith(artifacts.PNG_MAGIC)


def test_no_screen_on_microvm_and_none_without_a_display_device(plugged):
    fast = plugged.vm("vm1", tap=2, addresses=["203.0.113.130/26"])
    with pytest.raises(LabError) as e:
        artifacts.screendump(fast)
    assert "profile 'pc'" in e.value.remedy
    bare = plugged.vm("vm2", tap=3, addresses=["203.0.113.131/26"], profile="pc")
    with pytest.raises(QmpError, match="no console"):
        artifacts.screendump(bare)
    assert artifacts.screens(plugged) == []  # the report leaves them out, quietly
