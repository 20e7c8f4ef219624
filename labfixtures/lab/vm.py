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

import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from labfixtures import guestimages
from labfixtures.core.addressing import eui64_link_local
from labfixtures.errors import ImageError, LabError
from labfixtures.guestimages import kernels
from labfixtures.guestimages.config import GuestConfig
from labfixtures.guests.guest import Guest
from labfixtures.guests.ssh import GuestSSH, Result, forget_host_keys
from labfixtures.lab.state import VM_STATE, VmState
from labfixtures.lab.vmhost import VmHost, check_taps
from labfixtures.lab.vmspec import VmNic, VmOptions, guest_config
from labfixtures.qemu import Machine, MachineSpec
from labfixtures.qemu.images import create_overlay
from labfixtures.qemu.spec import READY_MARKER

__all__ = ["VM", "Guest", "VmNic", "VmOptions", "check_kernel", "guest_config", "image_of"]


class VM(Guest):
    """A guest of the lab, reachable over SSH, torn down with the lab's ledger."""

    def __init__(self, lab: VmHost, name: str, nics: Sequence[VmNic], opts: VmOptions,
                 image: guestimages.GuestImage | None = None,
                 config: GuestConfig | None = None) -> None:
        self.lab = lab  # where it runs: a live Lab, or a PersistentLab
        self.name = name
        self.nics = list(nics)
        self.opts = opts
        self.image = image if image is not None else image_of(opts)
        self.config = config if config is not None else guest_config(name, self.nics,
                                                                     opts.hostname)
        self.dir = lab.rundir / "vms" / name
        self.overlay: Path | None = None
        self.machine: Machine | None = None
        self._ssh: GuestSSH | None = None
        self._known_as: set[str] = set()  # the names vm.ssh() reached it by
        self.boot_seconds: float | None = None
        self.kept_overlay: Path | None = None
        self.loadvm: str | None = None  # the saved state the last start resumed (-loadvm)

    def __repr__(self) -> str:
        return f"VM({self.name!r}, image={self.image.name!r})"

    # -- life cycle ---------------------------------------------------------------------

    def spec(self, extra_args: Sequence[str] = ()) -> MachineSpec:
        """The machine of this VM; EXTRA_ARGS: more QEMU arguments for one start only."""
        return MachineSpec.from_image(
            self.name, self.image, disk=self.overlay, memory_mb=self.opts.memory,
            vcpus=self.opts.vcpus, profile=self.opts.profile,
            nics=[n.nic_spec() for n in self.nics], append=self.config.to_cmdline(),
            extra_args=list(self.opts.extra_args) + list(extra_args),
            **{"tb_size_mb": guestimages.default_tb_size(self.image.name),
               **self.opts.extra_config})

    def state(self) -> VmState:
        """What rebuilds this VM elsewhere (vm.json; checkpoint manifests)."""
        return VmState(name=self.name, image=self.image.name,
                       recipe_hash=self.image.recipe_hash,
                       nics=[replace(n, addresses=tuple(n.addresses)) for n in self.nics],
                       memory_mb=self.opts.memory, vcpus=self.opts.vcpus,
                       profile=self.opts.profile, hostname=self.opts.hostname,
                       extra_args=list(self.opts.extra_args),
                       extra_config=dict(self.opts.extra_config),
                       cmdline=self.config.to_cmdline())

    def description(self) -> dict[str, Any]:
        """`state()` as a plain dict (VmState.to_dict)."""
        return self.state().to_dict()

    def check_taps(self) -> None:
        """Refuse to start on a tap that is missing, or used by another VM of the lab."""
        check_taps(self.lab, self.name,
                   [n.tap for n in self.nics if not n.user and n.tap is not None])

    def start(self, wait: bool = True, timeout: float = 120.0, loadvm: str | None = None,
              extra_args: Sequence[str] = ()) -> VM:
        """Boot; or, with LOADVM, resume the state saved under that tag (a drive of the
        VM must hold it: EXTRA_ARGS, QEMU arguments for this start only, can attach one;
        see labfixtures.checkpoint), ready once SSH answers."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.image.disk is not None and self.overlay is None:
            self.overlay = create_overlay(self.image.disk, self.dir / f"{self.name}.qcow2")
        self.loadvm = loadvm
        once = [*extra_args, *(["-loadvm", loadvm] if loadvm else [])]
        self.machine = Machine(self.spec(once), self.dir, netns=self.lab.ns)
        self.machine.start()
        self.state().save(self.dir / VM_STATE)
        if wait and loadvm:
            self.ssh(deadline=timeout)
            self.boot_seconds = self.machine.uptime()
        elif wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for the guest's ready marker on its console (after `start(wait=False)`);
        returns the seconds it took to boot (also in `boot_seconds`)."""
        if self.machine is None:
            raise LabError(f"VM {self.name} is not started", "call vm.start() first")
        self.boot_seconds = self.machine.wait_for_marker(
            self.image.facts.get("marker", READY_MARKER), timeout=timeout)
        return self.boot_seconds

    def stop(self) -> None:
        self.stop_ssh()
        if self.machine is not None:
            self.machine.stop()

    def power_off(self, command: str = "systemctl --no-block poweroff",
                  timeout: float = 180.0) -> float:
        """Shut the guest down from inside (COMMAND) and wait for QEMU to exit: a clean
        shutdown writes everything back, as the guide's students do before a reboot (QEMU
        runs with -no-reboot). Returns the seconds taken; a LabError with the end of the
        serial console if the guest did not power off by itself within TIMEOUT."""
        machine = self.machine
        if machine is None or machine.proc is None:
            raise LabError(f"VM {self.name} is not running", "call vm.start() first")
        t0 = time.monotonic()
        try:
            self.run(command, timeout=30, check=True)
        except Exception:  # noqa: BLE001 - the connection may go down first: QEMU's exit says
            pass
        self.stop_ssh()
        try:
            machine.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            tail = machine.serial_text()[-1500:]
            self.stop()
            raise LabError(f"VM {self.name} did not power off within {timeout:.0f}s; its "
                           f"serial console ends with:\n{tail}",
                           "a shutdown that hangs is often a mount that cannot be undone: "
                           "check /etc/fstab") from None
        self.stop()  # QEMU has exited: this only tidies up (QMP socket, pidfile)
        return time.monotonic() - t0

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
        if nic.tap is None:
            raise LabError(f"{self.name}'s first NIC has no tap", "give it a tap number")
        return self.lab.ssh_scope(nic.tap)

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
                                 netns=ns, known_hosts=self.lab.known_hosts)
            self._ssh.connect(deadline=deadline)
            self._known_as.add(self._ssh.host_key_name)
        return self._ssh

    def forget_host_keys(self) -> None:
        """Remove this VM's host keys from the lab's known-hosts file (its teardown): the
        next VM at its address is another machine. While the VM lives, a changed key is
        refused (HostKeyChangedError), reboots and restores included."""
        forget_host_keys(self.lab.known_hosts, self._known_as)
        self._known_as.clear()

    def run(self, cmd: str, timeout: float = 60.0, check: bool = False) -> Result:
        """Run CMD in the guest (exit status, stdout, stderr)."""
        return self.ssh().run(cmd, timeout=timeout, check=check)

    @property
    def host(self) -> Any:
        """A pytest-testinfra host over the same SSH connection."""
        return self.ssh().testinfra_host()

def image_of(opts: VmOptions) -> guestimages.GuestImage:
    """The image OPTS name or hold: a built image, or the cached build of a recipe name
    (never built here: an ImageError says how), on OPTS.kernel if given (tiny only)."""
    if opts.kernel:
        return kernels.get_tiny(check_kernel(opts.image, opts.kernel))
    if isinstance(opts.image, guestimages.GuestImage):
        return opts.image
    return guestimages.get(opts.image)


def check_kernel(image: str | guestimages.GuestImage, kernel: str) -> str:
    """KERNEL if it can go with IMAGE: a kernel package name, with the tiny recipe only."""
    kernels.parse(kernel)
    if isinstance(image, guestimages.GuestImage):
        raise ImageError(image.name, f"kernel={kernel!r} goes with image=\"tiny\" (a recipe "
                         f"name), not with a built image ({image.name}-{image.recipe_hash})",
                         f"give image=\"tiny\", kernel={kernel!r}; or the image alone "
                         "(kernels.build_tiny(PACKAGE) makes one)")
    if image != "tiny":
        raise ImageError(str(image), f"kernel={kernel!r}: the {image} image cannot be built "
                         "on another kernel (only tiny can, for now)",
                         f"use image=\"tiny\" with kernel=, or drop kernel= for {image}")
    return kernel
