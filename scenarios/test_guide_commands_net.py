"""The guide's network commands, typed as a student types them: §10 and its scripts.

The companion of `test_guide_commands.py` (same `guide_step` records, same `labctl regress
guide`), for what needs a lab: the §10 switch set-up and `ovs-vsctl show`, the checks that
`ovs-startup.sh` (A.2) and `iso-install-startup.sh` (A.4) run before starting QEMU, and the
§10 SSH login to the VM over its EUI-64 link-local address. Everything runs inside the
test's lab namespace, against the lab's private Open vSwitch (`ovs-vsctl` finds its database
through OVS_RUNDIR, as a student's finds /var/run/openvswitch); the guide's `sudo` is
dropped (the tests run as root). What a test creates by hand, outside the lab's ledger, it
removes in a `finally`.

    pytest -m guide_commands scenarios/ --lab-results guide.json
    labctl regress guide guide.json
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import socket
from pathlib import Path

import pytest

from labfixtures.core import runner
from labfixtures.core.addressing import (
    check_memory,
    eui64_link_local,
    mac_from_tap,
)
from labfixtures.errors import LabError
from labfixtures.lab import labfile as topology
from labfixtures.lab.lab import VM, Lab
from labfixtures.net.ovs import parse_port_mode

pytestmark = [pytest.mark.guide_commands, pytest.mark.root]

SEED_MINIMAL = Path(__file__).parent / "labs" / "seed-minimal.yaml"

# The guide's §10 `ovs-vsctl show`, as structure: bridge -> port -> (tag, {interface: type})
GUIDE_SHOW = {"sw0": {"sw0-vlan2": ("2", {"sw0-vlan2": "internal"}),
                      "tap2": ("2", {"tap2": ""}),
                      "sw0": (None, {"sw0": "internal"})}}
GUIDE_PORT_ORDER = ["sw0-vlan2", "tap2", "sw0"]
GUIDE_OVS_VERSION = "1.9.3"


def bash(lab: Lab, script: str, timeout: float = 30, **env: str) -> runner.CommandResult:
    """SCRIPT as bash runs it in the lab namespace, with the lab's ovs-vsctl settings, ENV
    and no COLUMNS: a script started from a terminal does not see the shell's COLUMNS
    (not exported), and `ps` cuts its lines to COLUMNS when it is set (xdist's workers
    set COLUMNS=80)."""
    base = {k: v for k, v in lab.ovs.env.items() if k != "COLUMNS"}
    return lab.run(["bash", "-c", script], env={**base, **env}, check=False,
                   timeout=timeout)


def vsctl(lab: Lab, *args: str) -> runner.CommandResult:
    """`ovs-vsctl ARGS` as typed (no --db: OVS_RUNDIR says where the lab's database is)."""
    return lab.run(["ovs-vsctl", *args], env=lab.ovs.env, check=False)


def parse_show(text: str) -> tuple[dict[str, dict[str, tuple[str | None, dict[str, str]]]],
                                   list[str], str | None, bool]:
    """`ovs-vsctl show` read by its indentation: ({bridge: {port: (tag, {interface:
    type})}}, the ports in the order shown, ovs_version, whether names are quoted)."""
    bridges: dict[str, dict[str, tuple[str | None, dict[str, str]]]] = {}
    order: list[str] = []
    version, quoted = None, False
    bridge = port = iface = None
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        quoted |= rest.startswith('"')
        name = rest.strip('"')
        if word == "Bridge":
            bridge, port = name, None
            bridges[bridge] = {}
        elif word == "Port" and bridge is not None:
            port, iface = name, None
            bridges[bridge][port] = (None, {})
            order.append(port)
        elif word == "Interface" and bridge is not None and port is not None:
            iface = name
            bridges[bridge][port][1][iface] = ""
        elif word == "tag:" and bridge is not None and port is not None:
            bridges[bridge][port] = (rest, bridges[bridge][port][1])
        elif word == "type:" and bridge and port and iface:
            bridges[bridge][port][1][iface] = rest
        elif word == "ovs_version:":
            version = rest.strip('"')
    return bridges, order, version, quoted


# -- §10: the switch, by hand ---------------------------------------------------------------

def test_s10_switch_set_up_and_ovs_vsctl_show(guide_step, lab: Lab) -> None:
    """§10 « Configuration du commutateur »::

        $ sudo ovs-vsctl add-br sw0
        $ sudo ovs-vsctl add-port sw0 sw0-vlan2 tag=2 -- set Interface sw0-vlan2 type=internal
        $ sudo ip tuntap add mode tap dev tap2 group kvm
        $ sudo ovs-vsctl add-port sw0 tap2 tag=2
        $ sudo ovs-vsctl show
        cd95ab0d-643d-4a23-bae3-2e6c900a367f
          Bridge "sw0"
            Port "sw0-vlan2"
              tag: 2
              Interface "sw0-vlan2"
                type: internal
            Port "tap2"
              tag: 2
              Interface "tap2"
            Port "sw0"
              Interface "sw0"
                type: internal
          ovs_version: "1.9.3"

    The bridge is the guide's `sw0`: the test's lab holds no other switch (the `switch`
    fixture is not used here), and each xdist worker has its own lab namespace and
    Open vSwitch. Without the openvswitch kernel module the lab runs the userspace
    datapath, where a bridge made by `add-br` alone cannot be created: that is recorded,
    and `datapath_type=netdev` is set before the next commands."""
    assert "sw0" not in lab.switches and not lab.nl.exists("tap2"), "sw0/tap2 already here"
    assert vsctl(lab, "br-exists", "sw0").returncode == 2, "a bridge sw0 already exists"
    add_br = guide_step("§10", "ovs-vsctl add-br sw0", tool="ovs-vsctl",
                        fix="load the openvswitch kernel module (`modprobe openvswitch`; "
                            "the openvswitch-switch service does it), or use the userspace "
                            "datapath: `ovs-vsctl set bridge sw0 datapath_type=netdev`")
    svi = guide_step("§10", "ovs-vsctl add-port sw0 sw0-vlan2 tag=2 -- set Interface "
                     "sw0-vlan2 type=internal", tool="ovs-vsctl")
    tap = guide_step("§10", "ip tuntap add mode tap dev tap2 group kvm", tool="ip")
    port = guide_step("§10", "ovs-vsctl add-port sw0 tap2 tag=2", tool="ovs-vsctl",
                      fix="add `vlan_mode=access` (an explicit access port: see A.2's "
                          "vlan_mode check)")
    show = guide_step("§10", "ovs-vsctl show", tool="ovs-vsctl",
                      fix="nothing to fix: read it by structure (bridge, ports, tags, "
                          "interface types), not as text")
    try:
        cp = vsctl(lab, "add-br", "sw0")
        if cp.ok and not cp.stderr.strip() and lab.nl.exists("sw0"):
            add_br.works()
        else:
            said = (cp.stderr.strip().splitlines() or [f"exit status {cp.returncode}"])[0]
            add_br.refused(f"{said.removeprefix('ovs-vsctl: ')} (exit status "
                           f"{cp.returncode}; this host's datapath: {lab.datapath})")
            assert vsctl(lab, "set", "bridge", "sw0", f"datapath_type={lab.datapath}").ok
            # the errors ovs-vswitchd logged for the bridge it could not create are this
            # step's verdict; any other error still fails the test (the lab fixture's check)
            unexpected = [p for p in lab.ovs.log_problems()
                          if "failed to create bridge sw0" not in p]
            assert not unexpected, unexpected
        for step, argv in ((svi, ["ovs-vsctl", "add-port", "sw0", "sw0-vlan2", "tag=2", "--",
                                  "set", "Interface", "sw0-vlan2", "type=internal"]),
                           (tap, ["ip", "tuntap", "add", "mode", "tap", "dev", "tap2",
                                  "group", "kvm"]),
                           (port, ["ovs-vsctl", "add-port", "sw0", "tap2", "tag=2"])):
            cp = lab.run(argv, env=lab.ovs.env, check=False)
            if not cp.ok or cp.stderr.strip():
                step.refused((cp.stderr or cp.stdout).strip() or f"exit {cp.returncode}")
            elif cp.stdout.strip():
                step.differs(f"prints {cp.stdout.strip()!r}")
            else:
                step.works()
        out = vsctl(lab, "show").stdout
        bridges, order, version, quoted = parse_show(out)
        sw0 = bridges.get("sw0", {})
        differences = []
        if not quoted:
            differences.append('names are no longer quoted (Bridge sw0, not Bridge "sw0")')
        if order != GUIDE_PORT_ORDER:
            differences.append(f"ports in another order ({', '.join(order)})")
        if version != GUIDE_OVS_VERSION:
            differences.append(f"ovs_version {version!r}" if version else
                               "no ovs_version line (set by the distribution's start "
                               "script, not by ovs-vswitchd)")
        if {"sw0": sw0} != GUIDE_SHOW:
            show.refused(f"the switch is not the guide's: {bridges}")
        elif differences:
            show.differs("; ".join(differences))
        else:
            show.works()
        # what the guide wanted: sw0 with the SVI and tap2 in VLAN 2, both access ports
        assert {"sw0": sw0} == GUIDE_SHOW, out
        fixed = vsctl(lab, "set", "port", "tap2", "vlan_mode=access")
        assert fixed.ok, fixed.stderr
        mode = parse_port_mode(vsctl(lab, "list", "port", "tap2").stdout)
        assert (mode.mode, mode.tag) == ("access", 2), mode
        assert lab.nl.exists("sw0-vlan2"), "the SVI sw0-vlan2 is not a device of the lab"
    finally:
        vsctl(lab, "--if-exists", "del-br", "sw0")
        if lab.nl.exists("tap2"):
            lab.run(["ip", "tuntap", "del", "mode", "tap", "dev", "tap2"], check=False)
    assert vsctl(lab, "br-exists", "sw0").returncode == 2 and not lab.nl.exists("tap2")


# -- A.2 ovs-startup.sh: which mode, which VLAN ---------------------------------------------

VLAN_MODE = ("vlan_mode=\"$(ovs-vsctl list port tap2 | grep vlan_mode | "
             "egrep -o '(access|trunk)')\"")
SVI_AS_PRINTED = ("svi=\"vlan$(ovs-vsctl list port tap2 | grep tag | "
                  "grep -o -E '[0-9]+)\"")
SVI_QUOTED = ("svi=\"vlan$(ovs-vsctl list port tap2 | grep tag | "
              "grep -o -E '[0-9]+')\"")


@pytest.fixture
def access_port_tap2(lab: Lab) -> Lab:
    """§10's switch: sw0 (the lab's, datapath of this host) and tap2 added the guide's way,
    `ovs-vsctl add-port sw0 tap2 tag=2` (labfixtures itself also sets vlan_mode=access)."""
    lab.switch("sw0")
    lab.tap(2, group="kvm")
    cp = vsctl(lab, "add-port", "sw0", "tap2", "tag=2")
    assert cp.ok, cp.stderr
    return lab


def test_a2_vlan_mode_of_a_port_added_with_a_tag(guide_step, access_port_tap2: Lab) -> None:
    """A.2 `ovs-startup.sh`::

        vlan_mode="$(sudo ovs-vsctl list port tap${tapnum} | grep vlan_mode | egrep -o '(access|trunk)')"
        if [[ "$vlan_mode" == "access" ]] ... else svi="dsw-host"

    and it prints `Switch port interface : tap2, access mode` for §10's tap2 (`add-port
    sw0 tap2 tag=2`)."""  # noqa: E501 - the guide's line, whole
    lab = access_port_tap2
    step = guide_step("A.2", VLAN_MODE.replace("tap2", "tap${tapnum}"), tool="ovs-vsctl",
                      fix="read the tag instead (`ovs-vsctl get port tapN tag`), or add the "
                          "port with `vlan_mode=access` beside `tag=N`")
    probe = VLAN_MODE + '; printf "%s" "$vlan_mode"'
    cp = bash(lab, probe)
    listed = vsctl(lab, "list", "port", "tap2").stdout
    shown = next((ln.split(":", 1)[1].strip() for ln in listed.splitlines()
                  if ln.startswith("vlan_mode")), "?")
    if cp.stdout == "access":
        step.works()
    elif cp.stdout == "":
        step.differs(f"`list port` shows `vlan_mode : {shown}` for a port added with "
                     "tag=2 only: vlan_mode is empty, the script prints `tap2,  mode` and "
                     "takes the SVI dsw-host")
    else:
        step.differs(f"vlan_mode is {cp.stdout!r}")
    # the fix: the tag says VLAN 2; an explicit vlan_mode makes the script's line work
    assert vsctl(lab, "get", "port", "tap2", "tag").stdout.strip() == "2"
    assert vsctl(lab, "set", "port", "tap2", "vlan_mode=access").ok
    assert bash(lab, probe).stdout == "access"
    mode = parse_port_mode(vsctl(lab, "list", "port", "tap2").stdout)
    assert (mode.mode, mode.tag) == ("access", 2), mode


def test_a2_svi_name_from_the_port_tag(guide_step, access_port_tap2: Lab) -> None:
    """A.2 `ovs-startup.sh`, for an access port::

        svi="vlan$(sudo ovs-vsctl list port tap${tapnum} | grep tag | grep -o -E '[0-9]+)"

    (the line as the guide prints it, in A.2 and A.4 alike: its last quote is missing)."""
    lab = access_port_tap2
    step = guide_step("A.2", SVI_AS_PRINTED.replace("tap2", "tap${tapnum}"), tool="bash",
                      fix="close the quote (`'[0-9]+')`), or better `svi=\"vlan$(ovs-vsctl "
                          "get port tap${tapnum} tag)\"`; the SVI is then vlanN, where §10 "
                          "names it sw0-vlanN")
    cp = bash(lab, SVI_AS_PRINTED + '; printf "%s" "$svi"')
    tag_lines = [ln for ln in vsctl(lab, "list", "port", "tap2").stdout.splitlines()
                 if "tag" in ln]
    quoted = bash(lab, SVI_QUOTED + '; printf "%s" "$svi"').stdout
    if cp.returncode != 0:
        err = (cp.stderr.strip().splitlines() or [f"exit status {cp.returncode}"])[-1]
        step.refused(f"{err.removeprefix('bash: -c: ')}; with the quote closed it gives "
                     f"{quoted!r} (`grep tag` matches {len(tag_lines)} line(s) of "
                     f"`list port`: {'; '.join(' '.join(t.split()) for t in tag_lines)})")
    elif cp.stdout == "vlan2":
        step.works()
    else:
        step.differs(f"svi is {cp.stdout!r}")
    # the fix gives the VLAN of the access port
    assert quoted == "vlan2", (quoted, tag_lines)
    assert bash(lab, 'svi="vlan$(ovs-vsctl get port tap2 tag)"; printf "%s" "$svi"'
                ).stdout == "vlan2"


# -- A.2 / A.4: the link-local address the scripts print -------------------------------------

LLADDRESS = {"A.2": 'lladdress="fe80::baad:caff:fe80:$(printf "%x" ${tapnum})"',
             "A.4": 'lladdress="fe80::baad:caff:fefe:$(printf "%x" ${tapnum})"'}
TAP_NUMBERS = (0, 2, 10, 255, 256, 300, 4095, 65535)


@pytest.fixture
def vm_on_tap2(lab: Lab, lab_vm) -> VM:
    """§10's minimal topology and vm0 on tap2 (`scenarios/labs/seed-minimal.yaml`, the
    VM of test_s10_vm: restored from the same automatic checkpoint)."""
    built = topology.build(topology.load(SEED_MINIMAL), lab, make_vm=lab_vm)
    (vm,) = built.vms.values()
    return vm


@pytest.mark.vm
@pytest.mark.parametrize("where", ["A.2", "A.4"])
def test_script_link_local_address(guide_step, lab: Lab, vm_on_tap2, where: str) -> None:
    """A.2 `ovs-startup.sh` prints the VM's link-local address from its tap number::

        lladdress="fe80::baad:caff:fe80:$(printf "%x" ${tapnum})"

    A.4 `iso-install-startup.sh` has `fe80::baad:caff:fefe:...`. The kernel's EUI-64
    address of MAC b8:ad:ca:fe:HH:LL is fe80::baad:caff:fefe:HHLL: read on a real VM
    (tap2), and for other tap numbers against labfixtures's own rule."""
    vm = vm_on_tap2
    line = LLADDRESS[where]
    step = guide_step(where, line, tool="bash",
                      fix="`lladdress=\"fe80::baad:caff:fefe:$(printf \"%x\" ${tapnum})\"` "
                          "(the 2 bytes of ff:fe, then the tap number: A.4's line)")
    real = [a.address for a in vm.addresses(socket.AF_INET6)
            if a.dev == "eth0" and a.scope == "link"]
    assert real == [eui64_link_local(vm.mac)], f"the VM's link-local address: {real}"

    def script(n: int, text: str = line) -> str:
        cp = bash(lab, f'tapnum={n}; {text}; printf "%s" "$lladdress"')
        assert cp.ok, cp.stderr
        return cp.stdout

    def same(a: str, b: str) -> bool:
        return ipaddress.IPv6Address(a) == ipaddress.IPv6Address(b)

    wrong = [(n, script(n)) for n in TAP_NUMBERS
             if not same(script(n), eui64_link_local(mac_from_tap(n)))]
    if same(script(2), real[0]) and not wrong:
        step.works()
    else:
        step.differs(f"tap2 gives {script(2)} where the VM's address is {real[0]}"
                     + (f"; wrong for tap numbers {[n for n, _ in wrong]}" if wrong else ""))
    # the fix gives the kernel's address for every tap number
    fixed = LLADDRESS["A.4"]
    assert same(script(2, fixed), real[0])
    for n in TAP_NUMBERS:
        assert same(script(n, fixed), eui64_link_local(mac_from_tap(n))), n


# -- A.2: is the tap free? -------------------------------------------------------------------

@pytest.mark.vm
def test_a2_tap_in_use_check(guide_step, lab: Lab, lab_vm) -> None:
    """A.2 `ovs-startup.sh` (and A.4)::

        if [[ ! -z "$(ps aux | grep =[t]ap${tapnum}, )" ]]
        then
            echo -e "${RED}tap${tapnum} is already in use by another process.${NC}"

    Here with a VM on tap11, started as labfixtures starts QEMU (`-netdev
    tap,id=net0,ifname=tap11,script=no,...`): is tap11 seen in use, and is tap1 (a prefix
    of tap11) seen free? `ps` sees every process of the host, whatever its network
    namespace: other labs' VMs may show up too, so only this VM's pid is looked for.

    The check reads `ps aux` cut to the terminal's width when COLUMNS is in the
    environment (`COLUMNS=80`: the QEMU line ends long before `ifname=`): run here without
    COLUMNS, as from a terminal; `pgrep -f` reads the whole command line either way."""
    sw0 = lab.switch("sw0")
    sw0.svi(2, "203.0.113.129/26")
    lab.tap(11, group="kvm")
    sw0.add_port("tap11", tag=2)
    vm = lab_vm("vm0", tap=11, addresses=["203.0.113.140/26"], gateway="203.0.113.129")
    assert vm.machine is not None and vm.machine.proc is not None
    pid = str(vm.machine.proc.pid)
    check = 'ps aux | grep =[t]ap{n}, '
    step = guide_step("A.2", check.format(n="${tapnum}"), tool="ps",
                      fix="`pgrep -f \"=tap${tapnum},\"` (the whole command line, "
                          "whatever COLUMNS says), or `ip link show tapN` (LOWER_UP once "
                          "a process holds it)")

    def pids(n: int) -> set[str]:
        cp = bash(lab, check.format(n=n))
        return {ln.split()[1] for ln in cp.stdout.splitlines() if ln.strip()}

    seen11, seen1 = pid in pids(11), pid in pids(1)
    if seen11 and not seen1:
        step.works()
    elif not seen11:
        step.refused("QEMU on tap11 is not found: the script would start a second one")
    else:
        step.differs("tap1 is seen in use while only tap11 is")
    # what the check wants to know holds: QEMU holds tap11, not tap1
    assert seen11 and not seen1, (seen11, seen1)
    for columns in ("80", "4096"):
        found = bash(lab, 'pgrep -f "=tap11,"', COLUMNS=columns).stdout.split()
        assert pid in found and pid not in bash(lab, 'pgrep -f "=tap1,"').stdout.split()
    cmd = (Path("/proc") / pid / "cmdline").read_bytes().split(b"\0")
    assert any(b"ifname=tap11," in a for a in cmd), cmd
    assert "LOWER_UP" in lab.run(["ip", "link", "show", "tap11"]).stdout


# -- A.2: enough RAM? ------------------------------------------------------------------------

RAM_CHECK = """memory={m}
if [[ ${{memory}} -lt 128 ]]
then
    echo -e "ERROR : unsufficient RAM size : ${{memory}}MB"
    echo -e "RAM size must be above 128MB."
    exit 1
fi"""
RAM_VALUES = (-1, 0, 64, 127, 128, 129, 256, 1024, 65536)


def test_a2_ram_check(guide_step, lab: Lab) -> None:
    """A.2 `ovs-startup.sh` (and A.1, A.4)::

        if [[ ${memory} -lt 128 ]]
        then
            echo -e "${RED}ERROR : unsufficient RAM size : ${memory}MB${NC}"
            echo -e "${GREEN}RAM size must be above 128MB.${NC}"
            exit 1

    labfixtures refuses the same sizes (`check_memory`, run by every machine spec) with
    the script's words. A size with a unit (`512M`, which QEMU's -m understands) is
    refused by labfixtures; bash cannot compare it, prints an error and lets it through."""
    step = guide_step("A.2", "if [[ ${memory} -lt 128 ]] ... exit 1", tool="bash")

    def script_refuses(m: object) -> tuple[bool, str]:
        cp = bash(lab, RAM_CHECK.format(m=shlex.quote(str(m))))
        return cp.returncode == 1 and "unsufficient RAM size" in cp.stdout, cp.stdout

    def we_refuse(m: object) -> tuple[bool, str]:
        try:
            check_memory(m)  # type: ignore[arg-type]  # a student's word, as typed
        except LabError as e:
            return True, f"{e.problem} / {e.remedy}"
        return False, ""

    table = {m: (script_refuses(m), we_refuse(m)) for m in RAM_VALUES}
    refused = sorted(m for m, ((s, _), _) in table.items() if s)
    if refused == [m for m in RAM_VALUES if m < 128] and table[64][0][1].splitlines() == [
            "ERROR : unsufficient RAM size : 64MB", "RAM size must be above 128MB."]:
        step.works()
    else:
        step.differs(f"refuses {refused}; says {table[64][0][1]!r} for 64")
    # labfixtures refuses exactly the sizes the script refuses, with its words
    for m, ((script, _), (ours, _)) in table.items():
        assert script == ours, f"{m} MB: script refuses {script}, labfixtures {ours}"
    assert table[64][1][1] == "unsufficient RAM size: 64MB / RAM size must be above 128MB."
    assert not script_refuses("512M")[0] and we_refuse("512M")[0]


# -- §10: ssh etu@fe80::...%sw0-vlan2 --------------------------------------------------------

@pytest.mark.vm
def test_s10_ssh_to_the_vm_link_local_address(guide_step, lab: Lab, vm_on_tap2,
                                              tmp_path: Path) -> None:
    """§10 « Validation des communications entre système hôte et système virtuel »::

        $ ssh etu@fe80::b8ad:ff:feca:fe02%sw0-vlan2
        etu@fe80::b8ad:ff:feca:fe02%sw0-vlan2's password:
        ...
        etu@vm0:~$

    and the guide's later logins (`ssh etu@fe80::b8ad:caff:fefe:0%vlan214`) start with
    `Warning: Permanently added '...' (ECDSA) to the list of known hosts.` The guide's §10
    address is that of its older MAC prefix (ba:ad:00:ca:fe:02); with the scripts' MAC
    b8:ad:ca:fe:00:02 the same rule gives fe80::baad:caff:fefe:2, the address typed here,
    with the host's OpenSSH client in the lab namespace. The guide logs in by password;
    the tiny image has key logins only (its key, BatchMode): a documented difference."""
    vm = vm_on_tap2
    target = f"etu@{eui64_link_local(vm.mac)}%sw0-vlan2"
    step = guide_step("§10", f"ssh {target}", tool="ssh",
                      fix="log in with the image's key (labfixtures's images have no "
                          "password): `ssh -i KEY etu@...%sw0-vlan2`")
    known = tmp_path / "known_hosts"
    argv = ["ssh", "-i", str(vm.image.private_key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=accept-new",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", target, "id -un; hostname"]
    cp = lab.run(argv, check=False, timeout=60)
    warning = next((ln for ln in cp.stderr.splitlines() if "Permanently added" in ln), "")
    m = re.search(r"\((\w+)\) to the list of known hosts", warning)
    if not cp.ok:
        step.refused((cp.stderr.strip().splitlines() or [f"exit {cp.returncode}"])[-1])
    else:
        step.differs("no password prompt: key login (BatchMode, the image's key); "
                     + (f"host key added as {m.group(1)}, not ECDSA" if m else
                        f"known-hosts warning: {warning!r}")
                     + f"; the session runs {cp.stdout.split()!r}")
    # what the guide wanted: a session as etu on vm0, over sw0-vlan2
    assert cp.ok, cp.stderr
    assert cp.stdout.split() == ["etu", "vm0"], cp.stdout
    # the VM's host key is on record under the address typed (hashed: Debian's ssh_config)
    found = lab.run(["ssh-keygen", "-F", target.partition("@")[2], "-f", str(known)],
                    check=False)
    assert found.ok and "ssh-" in found.stdout, known.read_text()
