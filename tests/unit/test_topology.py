"""Lab-file validation: every mistake names the file, the key and the fix (pure logic)."""

from pathlib import Path

import pytest
import yaml

from labfixtures.errors import LabError
from labfixtures.guestimages import GuestImage, ImageCache
from labfixtures.guestimages.kernels import TinyOnKernel
from labfixtures.lab.build import vm_arguments
from labfixtures.lab.labfile import LabFileError, load, parse

SEED = Path(__file__).parents[2] / "scenarios" / "labs" / "seed-minimal.yaml"


def base() -> dict:
    return yaml.safe_load(SEED.read_text())


def error(data, source="lab.yaml") -> LabFileError:
    with pytest.raises(LabFileError) as e:
        parse(data, source)
    return e.value


def test_seed_minimal_is_table_1():
    lab = load(SEED)
    assert lab.labid == "lf-seed-minimal"
    assert lab.forwarding
    assert lab.switches["sw0"].svis[0].addresses == ("203.0.113.129/26",)
    (tap,) = lab.taps
    assert (tap.name, tap.port.vlan, tap.group) == ("tap2", 2, "kvm")
    nic = lab.vms["vm0"].nics[0]
    assert (nic.tap, nic.addresses, nic.gateway) == (2, ("203.0.113.130/26",), "203.0.113.129")


def test_typo_in_a_key_suggests_the_right_one():
    data = base()
    data["vms"]["vm0"]["memroy"] = data["vms"]["vm0"].pop("memory")
    e = error(data)
    assert str(e).startswith("lab.yaml: vms.vm0.memroy: unknown key")
    assert e.remedy == "did you mean `memory`?"


def test_memory_below_128_is_refused_like_the_guide():
    data = base()
    data["vms"]["vm0"]["memory"] = 64
    e = error(data)
    assert e.key == "vms.vm0.memory"
    assert "64 MB is not enough RAM" in e.problem
    assert "above 128MB" in e.remedy


def test_unknown_switch_names_the_declared_ones():
    data = base()
    data["taps"][0]["switch"] = "sw1"
    e = error(data)
    assert e.key == "taps[0].switch"
    assert "no switch named 'sw1'" in e.problem
    assert "switches: sw0" in e.remedy


def test_vm_on_an_undeclared_tap():
    data = base()
    data["vms"]["vm0"]["nics"][0]["tap"] = 3
    e = error(data)
    assert e.key == "vms.vm0.nics[0].tap"
    assert "tap3 is not declared" in e.problem
    assert "number: 3" in e.remedy


def test_tap_used_twice_is_refused():
    data = base()
    data["vms"]["vm1"] = {"nics": [{"tap": 2}]}
    e = error(data)
    assert "tap2 is already used by vms.vm0" in e.problem


def test_tap_number_out_of_range():
    data = base()
    data["taps"][0]["number"] = 70000
    e = error(data)
    assert e.key == "taps[0].number" and "0 to 65535" in e.remedy


def test_address_without_prefix():
    data = base()
    data["vms"]["vm0"]["nics"][0]["addresses"] = ["203.0.113.130"]
    e = error(data)
    assert e.key == "vms.vm0.nics[0].addresses[0]"
    assert "203.0.113.130/26" in e.remedy


def test_access_and_trunk_together():
    data = base()
    data["taps"][0]["trunks"] = [2, 3]
    e = error(data)
    assert "cannot also be a trunk" in e.problem


def test_vlan_without_switch():
    data = base()
    data["hosts"] = {"h1": {"vlan": 3}}
    e = error(data)
    assert e.key == "hosts.h1" and "switch: sw0" in e.remedy


def test_nic_needs_tap_or_user():
    data = base()
    data["vms"]["vm0"]["nics"] = [{"addresses": ["10.0.0.1/24"]}]
    assert "exactly one of `tap: N` or `user:`" in error(data).problem


def test_missing_name():
    data = base()
    del data["name"]
    e = error(data)
    assert e.key == "name" and "add `name:`" in e.remedy


def test_wrong_type_is_explained():
    data = base()
    data["taps"] = {"number": 2}
    e = error(data)
    assert e.key == "taps" and "expected a list" in e.problem


def test_bad_yaml_names_the_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("name: x\nswitches:\n  sw0:\n\t svis: []\n")
    with pytest.raises(LabFileError) as e:
        load(f)
    assert str(f) in str(e.value) and "line 4" in str(e.value)
    assert "indentation" in e.value.remedy


def test_missing_file(tmp_path):
    with pytest.raises(LabError, match="does not exist"):
        load(tmp_path / "nope.yaml")


def test_user_mode_nic_defaults_to_dhcp():
    data = base()
    data["vms"]["vm0"]["nics"].append({"user": {"ssh_port": 2222}})
    nic = parse(data).vms["vm0"].nics[1]
    assert (nic.kind, nic.dhcp, nic.ssh_port) == ("user", True, 2222)


def test_unknown_image_is_refused_when_the_file_is_read():
    data = base()
    data["vms"]["vm0"]["image"] = "windows95"
    e = error(data)
    assert e.key == "vms.vm0.image"
    assert "'windows95' is not a guest image" in e.problem
    assert "tiny" in e.remedy and "debian" in e.remedy


def test_image_typo_suggests_the_recipe():
    data = base()
    data["vms"]["vm0"]["image"] = "tinny"
    assert "did you mean `tiny`?" in error(data).remedy


def test_gateway_outside_every_subnet_of_the_nic_is_refused():
    data = base()
    data["vms"]["vm0"]["nics"][0]["gateway"] = "192.0.2.1"
    e = error(data)
    assert e.key == "vms.vm0.nics[0].gateway"
    assert "192.0.2.1" in e.problem and "203.0.113.128/26" in e.problem
    assert "203.0.113.129" in e.remedy


def test_gateway_without_any_address_is_refused_unless_dhcp():
    data = base()
    nic = data["vms"]["vm0"]["nics"][0]
    del nic["addresses"]
    assert "has no address" in error(data).problem
    nic["dhcp"] = True
    parse(data, "lab.yaml")


def test_veth_host_gateway_is_checked_too():
    data = base()
    data["hosts"] = {"h3": {"switch": "sw0", "vlan": 3, "addresses": ["198.51.100.2/24"],
                            "gateway": "203.0.113.129"}}
    assert error(data).key == "hosts.h3.gateway"


def test_every_mistake_is_reported_in_one_run():
    data = base()
    vm = data["vms"]["vm0"]
    vm["imgae"] = vm.pop("image")
    data["hosts"] = {"h3": {"switch": "sw0", "vlan": 3, "gatway": "203.0.113.129"}}
    e = error(data)
    keys = [m.key for m in e.mistakes]
    assert keys == ["hosts.h3.gatway", "vms.vm0.imgae"], keys
    text = str(e)
    assert "2 mistakes" in text and "did you mean `image`?" in text
    assert "did you mean `gateway`?" in text


def test_a_bad_tap_is_not_reported_again_by_the_vm_that_uses_it():
    data = base()
    data["taps"][0]["number"] = 70000
    assert [m.key for m in error(data).mistakes] == ["taps[0].number"]


# -- a VM's kernel: (the tiny guest on another Debian kernel package) -----------------------

GHOST = "linux-image-6.1.0-99-amd64=6.1.999-1"  # pinned: no APT question, never built


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An image cache with no build (its key pair is made on first use)."""
    monkeypatch.setenv("LABFIXTURES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_build(cache: Path, kernel: str) -> Path:
    """A manifest where the tiny build on KERNEL would be: what the check looks for."""
    c = ImageCache(cache)
    d = c.image_dir("tiny", c.recipe_hash(TinyOnKernel(kernel=kernel)))
    d.mkdir(parents=True)
    package, version = kernel.split("=")
    GuestImage("tiny", d.name.removeprefix("tiny-"), d, d / "vmlinux", d / "initrd.img", None,
               "", "root", c.private_key, packages={package: version}).write_manifest()
    return d


def test_kernel_of_a_vm_is_kept_when_its_tiny_build_is_in_the_cache(empty_cache):
    fake_build(empty_cache, GHOST)
    data = base()
    data["vms"]["vm0"]["kernel"] = GHOST
    vm = parse(data).vms["vm0"]
    assert (vm.image, vm.kernel) == ("tiny", GHOST)
    assert vm_arguments(vm)["kernel"] == GHOST
    assert "kernel" not in vm_arguments(parse(base()).vms["vm0"])


def test_kernel_not_built_names_the_key_and_the_build_command(empty_cache):
    data = base()
    data["vms"]["vm0"]["kernel"] = GHOST
    e = error(data)
    assert e.key == "vms.vm0.kernel"
    assert f"the tiny guest on {GHOST} is not built" in e.problem
    assert f"labctl image build tiny --kernel {GHOST}" in e.remedy
    assert not list((empty_cache / "images").glob("tiny-*"))  # nothing built or fetched


def test_kernel_must_be_a_kernel_package():
    data = base()
    data["vms"]["vm0"]["kernel"] = "linux-6.1"
    e = error(data)
    assert e.key == "vms.vm0.kernel"
    assert "not a Debian kernel image package" in e.problem
    assert "linux-image-6.1.0-50-amd64" in e.remedy
    data["vms"]["vm0"]["kernel"] = 61
    assert "not a kernel package name" in error(data).problem


def test_kernel_goes_with_the_tiny_image_only():
    data = base()
    data["vms"]["vm0"].update(image="debian", kernel="linux-image-6.1.0-50-amd64")
    e = error(data)
    assert e.key == "vms.vm0.kernel"
    assert "debian image cannot be built on another kernel" in e.problem
    assert "image: tiny" in e.remedy


def test_kernel_typo_suggests_the_key():
    data = base()
    data["vms"]["vm0"]["kernal"] = "linux-image-6.1.0-50-amd64"
    assert "did you mean `kernel`?" in error(data).remedy
