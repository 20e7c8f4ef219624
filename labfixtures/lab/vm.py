"""A virtual machine *in a lab*: the strategy that joins the pieces.

`qemu/` runs a machine and knows nothing of switches; `guestimages/` builds images;
`ssh.py` reaches a guest. A `VM` puts them together the way the guide does: a qcow2
overlay on the image (`diff-img.sh`: the base never changes), QEMU inside the lab
namespace on tapN (MAC `b8:ad:ca:fe:HH:LL`), the guest's addressing given on the kernel
command line, and SSH from the test process to the EUI-64 link-local address
`fe80::baad:caff:fefe:N%<the lab host's interface on that VLAN>` (the guide's
`%sw0-vlan2`), or to a forwarded port in user mode.

A VM also answers the same reads as a lab host or a veth host (`routes()`,
`addresses()`, `neighbours()`, `links()`, `ping()`, `tcp()`), parsed from the guest's
`ip -j`, so `assertions/` work on all three.
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labfixtures import guestimages
from labfixtures.core.addressing import eui64_link_local
from labfixtures.errors import LabError
from labfixtures.guestimages.config import GuestConfig, InterfaceConfig
from labfixtures.guests.ssh import GuestSSH, Result
from labfixtures.net.netlink import RT_PROTOS, Address, Link, Neighbour, Route
from labfixtures.qemu import Machine, MachineSpec, NicSpec
from labfixtures.qemu.images import create_overlay

if TYPE_CHECKING:
    from labfixtures.lab.lab import Lab


@dataclass
class VmNic:
    """One NIC of a VM in a lab: a tap number (the tap must exist in the lab), or user
    mode; and the guest's addressing on it."""

    tap: int | None = None
    user: bool = False
    addresses: Sequence[str] = ()
    gateway: str | None = None
    dhcp: bool = False
    mac: str | None = None
    ssh_port: int | None = None
    queues: int = 1

    def nic_spec(self) -> NicSpec:
        if self.user:
            fwd = {self.ssh_port: 22} if self.ssh_port else {}
            return NicSpec("user", number=self.tap, mac=self.mac, hostfwd=fwd)
        if self.tap is None:
            raise LabError("a tap NIC needs its tap number", "VmNic(tap=2, ...)")
        return NicSpec("tap", number=self.tap, mac=self.mac, queues=self.queues)


@dataclass
class VmOptions:
    image: str | guestimages.GuestImage = "tiny"  # a recipe name, or a built image
    memory: int = 256
    vcpus: int = 1
    profile: str = "fast"
    hostname: str | None = None
    extra_args: list[str] = field(default_factory=list)  # more QEMU arguments, as given
    extra_config: dict[str, Any] = field(default_factory=dict)  # more MachineSpec fields


class Guest:
    """What every guest answers, whoever started it: commands over SSH, and the same
    reads as a lab host or a veth host, parsed from the guest's `ip -j`. Subclasses give
    `name` and `run()`."""

    name: str

    def run(self, cmd: str, timeout: float = 60.0, check: bool = False) -> Result:
        raise NotImplementedError

    def _ip_json(self, *args: str) -> list[dict]:
        out = self.run("ip -j " + " ".join(shlex.quote(a) for a in args), check=True).stdout
        return json.loads(out or "[]")

    def links(self) -> list[Link]:
        return [Link(index=d["ifindex"], name=d["ifname"], mac=d.get("address", ""),
                     up="UP" in d.get("flags", []), carrier="LOWER_UP" in d.get("flags", []),
                     kind=d.get("link_type", ""), mtu=d.get("mtu", 0))
                for d in self._ip_json("link", "show")]

    def addresses(self, family: int = 0) -> list[Address]:
        out = []
        for d in self._ip_json("addr", "show"):
            for a in d.get("addr_info", []):
                fam = socket.AF_INET6 if a["family"] == "inet6" else socket.AF_INET
                if family and fam != family:
                    continue
                out.append(Address(dev=d["ifname"], address=a["local"],
                                   prefixlen=a["prefixlen"], family=fam, scope=a["scope"]))
        return out

    def routes(self, family: int = socket.AF_INET) -> list[Route]:
        flag = "-6" if family == socket.AF_INET6 else "-4"
        out = []
        for d in self._ip_json(flag, "route", "show"):
            proto = d.get("protocol", "boot")
            out.append(Route(dst=d["dst"], gateway=d.get("gateway"), dev=d.get("dev"),
                             family=family, proto=RT_PROTOS.get(proto, str(proto))
                             if isinstance(proto, int) else proto,
                             scope=d.get("scope", "global")))
        return out

    def neighbours(self, family: int = 0) -> list[Neighbour]:
        out = []
        for d in self._ip_json("neigh", "show"):
            state = d.get("state", ["NONE"])
            fam = socket.AF_INET6 if ":" in d["dst"] else socket.AF_INET
            if family and fam != family:
                continue
            out.append(Neighbour(address=d["dst"], mac=d.get("lladdr"), dev=d.get("dev", ""),
                                 state=state[0] if state else "NONE", family=fam))
        return out

    def ping(self, address: str, timeout: float = 2.0) -> bool:
        """One ICMP echo from the guest (its own ping), True on a reply within TIMEOUT."""
        flag = "-6 " if ":" in address else ""
        res = self.run(f"ping {flag}-c 1 -W {max(1, round(timeout))} "
                       f"{shlex.quote(address)} >/dev/null 2>&1", timeout=timeout + 10)
        return res.exit_status == 0

    def tcp(self, address: str, port: int, timeout: float = 2.0) -> bool:
        res = self.run(f"nc -z -w {max(1, int(timeout))} {shlex.quote(address)} {port}",
                       timeout=timeout + 10)
        return res.exit_status == 0




class VM(Guest):
    """A guest of the lab, reachable over SSH, torn down with the lab's ledger."""

    def __init__(self, lab: Lab, name: str, nics: list[VmNic], opts: VmOptions,
                 image: guestimages.GuestImage, config: GuestConfig) -> None:
        self.lab = lab
        self.name = name
        self.nics = nics
        self.opts = opts
        self.image = image
        self.config = config
        self.dir = lab.rundir / "vms" / name
        self.overlay: Path | None = None
        self.machine: Machine | None = None
        self._ssh: GuestSSH | None = None
        self.boot_seconds: float | None = None
        self.kept_overlay: Path | None = None
        # checkpoints (labfixtures.checkpoint.operations): a qcow2 attached without a guest device,
        # holding a saved state for an image without a disk; the tag to restore at start
        self.state_disk: Path | None = None
        self.loadvm: str | None = None

    def __repr__(self) -> str:
        return f"VM({self.name!r}, image={self.image.name!r})"

    # -- life cycle ---------------------------------------------------------------------

    def spec(self) -> MachineSpec:
        return MachineSpec.from_image(
            self.name, self.image, disk=self.overlay, memory_mb=self.opts.memory,
            vcpus=self.opts.vcpus, profile=self.opts.profile,  # type: ignore[arg-type]
            nics=[n.nic_spec() for n in self.nics], append=self.config.to_cmdline(),
            extra_args=list(self.opts.extra_args) + self._checkpoint_args(),
            **self.opts.extra_config)

    def _checkpoint_args(self) -> list[str]:
        args = []
        if self.state_disk is not None:
            args += ["-drive", f"if=none,id=lfstate,format=qcow2,"
                               f"file={str(self.state_disk).replace(',', ',,')}"]
        if self.loadvm:
            args += ["-loadvm", self.loadvm]
        return args

    def description(self) -> dict:
        """What rebuilds this VM elsewhere (vm.json; checkpoint manifests)."""
        from dataclasses import asdict, replace

        return {"name": self.name, "image": self.image.name,
                "recipe_hash": self.image.recipe_hash,
                "nics": [asdict(n) | {"addresses": list(n.addresses)}
                         for n in self.nics],
                "opts": asdict(replace(self.opts, image=self.image.name)),
                "cmdline": self.config.to_cmdline()}

    def start(self, wait: bool = True, timeout: float = 120.0, loadvm: str | None = None
              ) -> VM:
        """Boot; or, with LOADVM, resume the state saved under that tag (the VM's qcow2 or
        state disk must hold it: see labfixtures.checkpoint.operations), ready once SSH answers."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.image.disk is not None and self.overlay is None:
            self.overlay = create_overlay(self.image.disk, self.dir / f"{self.name}.qcow2")
        self.loadvm = loadvm
        self.machine = Machine(self.spec(), self.dir, netns=self.lab.ns)
        self.machine.start()
        (self.dir / "vm.json").write_text(json.dumps(self.description(), indent=1))
        if wait and loadvm:
            self.ssh(deadline=timeout)
            self.boot_seconds = self.machine.uptime()
        elif wait:
            self.boot_seconds = self.machine.wait_for_marker(
                self.image.facts.get("marker", "labfixtures: ready"), timeout=timeout)
        return self

    def stop(self) -> None:
        self.stop_ssh()
        if self.machine is not None:
            self.machine.stop()

    def stop_ssh(self) -> None:
        """Close the SSH connection (the VM keeps running)."""
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    def remove_overlay(self) -> None:
        """Delete the overlay at teardown, or move it to the lab's keep directory when the
        user asked to keep overlays (`--lab-keep-overlays DIR`): the base is untouched
        either way."""
        if self.overlay is None or not self.overlay.exists():
            return
        keep = self.lab.keep_overlays
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            target = keep / f"{self.lab.labid}-{self.name}.qcow2"
            shutil.move(str(self.overlay), target)
            self.kept_overlay = target
        else:
            self.overlay.unlink()

    @property
    def serial_log(self) -> Path | None:
        return self.machine.serial_log if self.machine else None

    # -- reaching it ----------------------------------------------------------------------

    def _first_nic(self) -> VmNic:
        if not self.nics:
            raise LabError(f"VM {self.name} has no NIC: it cannot be reached",
                           "give it a tap (tap=N) or user-mode networking (user=True)")
        return self.nics[0]

    @property
    def mac(self) -> str:
        """The MAC of the first NIC (from its tap number, the guide's rule)."""
        mac = self._first_nic().nic_spec().mac
        if mac is None:
            raise LabError(f"{self.name}'s first NIC has no MAC", "give it a tap number")
        return mac

    @property
    def link_local(self) -> str:
        """The EUI-64 link-local address of the first NIC, computed from its MAC."""
        return eui64_link_local(self.mac)

    def scope(self) -> str:
        """The lab host interface that reaches the first NIC: the switch's SVI of the tap's
        VLAN if there is one (`%sw0-vlan2` in the guide), else the tap itself."""
        nic = self._first_nic()
        tap = f"tap{nic.tap}"
        for sw in self.lab.switches.values():
            if tap in sw.ports():
                mode = sw.port_mode(tap)
                svi = f"{sw.name}-vlan{mode.tag}"
                if mode.mode == "access" and self.lab.nl.exists(svi):
                    return svi
        return tap

    def ssh_target(self) -> tuple[str, int, str | None]:
        """(address, port, namespace) the test process connects to."""
        nic = self._first_nic()
        if nic.user:
            port = nic.nic_spec().ssh_port
            if port is None:
                raise LabError(f"{self.name} is in user mode without an SSH forward",
                               "give VmNic(user=True, ssh_port=2210) or a tap number")
            return "127.0.0.1", port, self.lab.ns
        return f"{self.link_local}%{self.scope()}", 22, self.lab.ns

    def ssh(self, deadline: float = 60.0) -> GuestSSH:
        if self._ssh is None or not self._ssh.active:
            host, port, ns = self.ssh_target()
            self._ssh = GuestSSH(host, port, user="root", key=self.image.private_key,
                                 netns=ns, known_hosts=self.lab.rundir / "known_hosts")
            self._ssh.connect(deadline=deadline)
        return self._ssh

    def run(self, cmd: str, timeout: float = 60.0, check: bool = False) -> Result:
        """Run CMD in the guest (exit status, stdout, stderr)."""
        return self.ssh().run(cmd, timeout=timeout, check=check)

    @property
    def host(self) -> Any:
        """A pytest-testinfra host over the same SSH connection."""
        return self.ssh().testinfra_host()

def guest_config(name: str, nics: Sequence[VmNic], hostname: str | None = None
                 ) -> GuestConfig:
    """The per-VM configuration the guest applies at boot (see guestimages.config)."""
    interfaces = []
    gateway = None
    for i, nic in enumerate(nics):
        if nic.addresses or nic.dhcp or nic.user:
            interfaces.append(InterfaceConfig(f"eth{i}", dhcp=nic.dhcp or (
                nic.user and not nic.addresses), addresses=tuple(nic.addresses)))
        if nic.gateway and gateway is None:
            gateway = nic.gateway
    return GuestConfig(hostname=hostname or name, interfaces=interfaces, gateway=gateway)


def create(lab: Lab, name: str, nics: Sequence[VmNic], opts: VmOptions,
           start: bool = True) -> VM:
    """Build the VM's overlay and machine, push its undo on LAB's ledger, boot it."""
    image = opts.image if isinstance(opts.image, guestimages.GuestImage) else \
        guestimages.get(opts.image)
    vm = VM(lab, name, list(nics), opts, image,
            guest_config(name, nics, opts.hostname))
    lab.ledger.push(f"VM {name} overlay", vm.remove_overlay)
    lab.ledger.push(f"VM {name}", vm.stop)
    if start:
        vm.start()
    return vm
