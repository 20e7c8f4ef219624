"""Guide §6, "Optimisation système": tuning a Debian guest, on two clones of one image.

    « Cette section est une liste de quelques trucs et astuces permettant d'optimiser
    l'usage d'une instance virtuelle de système d'exploitation. »

Two `debian` guests (systemd, openssh, user etu, login by key) cloned from the same image,
vm0 on tap6 and vm1 on tap7, both access ports of VLAN 2 on sw0 (Table 1: SVI sw0-vlan2
203.0.113.129/26, the VMs .130 and .131), up once for the module (just booted), each
on its own qcow2 overlay of the image. What the section asks, done and checked:

1. Système de fichiers ext4, on vm0's root (the logical volume vm0/root):
   /dev/mapper/vm0-root / ext4 relatime,data=writeback,commit=6000,barrier=0,errors=remount-ro 0 1
       # tune2fs -o journal_data_writeback /dev/mapper/vm0-root
       # tune2fs -l /dev/mapper/vm0-root | grep '^Default mount options:'
   (the guide's options on the root's line; its dump and pass fields stay the image's),
   then a real reboot (the guest powers off, QEMU exits, the VM boots again: a new boot
   id). The options are read back from the mounted file system: /proc/mounts (rw,
   relatime, nobarrier, commit=6000) and /proc/fs/ext4/dm-N/options (data=writeback: the
   kernel leaves the data mode out of /proc/mounts when it is the superblock's default,
   which tune2fs just made it). The two go together: the initramfs mounts / with the
   superblock's defaults, and `mount -o remount` of fstab's data=writeback is refused
   ("Cannot change data mode on remount") unless tune2fs made writeback the default: the
   root would then stay read-only. Each is also read before the change, so a check that
   passes only after it cannot pass without it.
2. Gestion de paquets, on vm0. The image has neither `aptitude`, `deborphan` nor
   `localepurge`, and a lab guest has no network, so nothing can be installed in it:
   - « aptitude clean »: `apt-get clean`, the same cleaning of /var/cache/apt, after a
     dummy .deb was put in /var/cache/apt/archives (seen there before the clean);
   - « aptitude purge $(deborphan) »: deborphan is absent; APT's own orphan search,
     `apt-get -s autoremove` (simulated), finds a package once nothing needs it: ethtool,
     marked automatically installed (`apt-mark auto`), is listed, and was not before;
   - localepurge is absent: /etc/locale.nopurge is written as the guide's `tail` shows it
     (en, fr, fr_FR.UTF-8 kept), and only its content is checked: nothing purges;
   - « Transparent proxy »: /etc/apt/apt.conf.d/10proxy with the guide's two lines, and
     `apt-config dump` shows APT reads them (it did not before).
3. « Duplication du jeu de paquets entre systèmes »: aptitude-create-state-bundle is
   absent too; the same idea with dpkg. vm0's reference set first differs from the image's
   (linux-image-amd64 on hold, rsync to deinstall), then
       etu@vm0:~$ dpkg --get-selections > ~/selections
       etu@vm1:~$ scp etu@[fe80::baad:caff:fefe:6%eth0]:~/selections .
       root@vm1:~# dpkg --set-selections < ~etu/selections
   over vm1's own interface (the scope inside a guest is its interface, eth0). vm1's etu
   gets a key pair; its public key goes into vm0's ~etu/.ssh/authorized_keys through the
   test's SSH session (the scp is refused before). vm1's selections then match vm0's, and
   `apt-get dselect-upgrade` applies them (rsync removed, no download needed).
4. « Accès SSH »: « une même image système avec une même clé d'hôte [...] est dupliquée
   autant de fois que nécessaire ». Both clones offer the image's host key. The guide turns
   checking off (StrictHostKeyChecking no, UserKnownHostsFile=/dev/null); the lab keeps
   one known-hosts file per lab instead, keyed by address, so it reaches both clones with
   the same key, and a key that changes for a VM of the lab is reported
   (`HostKeyChangedError`, both fingerprints) and not written over: vm0's ed25519 host
   key, the one clients negotiate, is regenerated (`ssh-keygen -t ed25519`, sshd
   restarted; `ssh-keygen -A` would also draw a 3072-bit RSA key, 3-13 s under TCG), a
   new client is refused, so is OpenSSH in vm1; the old key put back, a new client
   connects again.

The module fixture `tuned` runs the steps (1 up to the reboot, 2, 3, 1's reboot, 4) and
records each one with the step recorder (`labfixtures.grading.steps`): a step that fails
stops the ones after it, and each test checks its steps, so the first failing test names
what broke (a failed test's captured output lists every step). vm1 applies the package set
while vm0 reboots. Each check was seen to fail with its change left out (tune2fs: / stays
read-only after the reboot; no clean, no 10proxy, a line missing from locale.nopurge, no
set-selections, host keys not regenerated: "the changed key was accepted"). The VMs live
on `module_lab` (vm0 is rebooted, by a real power off and boot); they start just booted,
from their automatic checkpoints (`booted_vm`), as a `lab_vm` does.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable

import pytest

from assertions import (
    assert_file_contains,
    assert_reachable,
    assert_service_running,
    eventually,
)
from labfixtures.errors import HostKeyChangedError
from labfixtures.grading.steps import StepRecorder
from labfixtures.guestimages import GuestImage
from labfixtures.guests.ssh import GuestSSH, Result
from labfixtures.lab.lab import Lab
from labfixtures.lab.vm import VM

pytestmark = [pytest.mark.root, pytest.mark.vm, pytest.mark.slow(80)]

VLAN, SVI = 2, "203.0.113.129/26"
TAPS = {"vm0": 6, "vm1": 7}  # MACs b8:ad:ca:fe:00:06 and :07
ADDRESSES = {"vm0": "203.0.113.130/26", "vm1": "203.0.113.131/26"}
VM0_LL = "fe80::baad:caff:fefe:6"  # EUI-64 of b8:ad:ca:fe:00:06
ROOT = "/dev/mapper/vm0-root"
GUIDE_OPTIONS = "relatime,data=writeback,commit=6000,barrier=0,errors=remount-ro"
FSTAB_LINE = f"{ROOT} / ext4 {GUIDE_OPTIONS} 0 1"
DUMMY_DEB = "/var/cache/apt/archives/lf-dummy_1.0_all.deb"
PROXY_FILE = "/etc/apt/apt.conf.d/10proxy"
PROXY_LINES = ['Acquire::http::No-Cache "true";', 'Acquire::http::Max-Age "0";']
NOPURGE = "/etc/locale.nopurge"
NOPURGE_TAIL = """#VERBOSE

#####
# Following locales won't be deleted from this system
# after package installations done with apt-get(8):

en
fr
fr_FR.UTF-8
"""
HELD, DESELECTED, ORPHAN = "linux-image-amd64", "rsync", "ethtool"
ABSENT = ("aptitude", "deborphan", "localepurge")
BOOT_TIMEOUT = 300.0  # hang guard only: the debian guest boots in 15-60 s under TCG
POWEROFF_TIMEOUT = 180.0
# hang guards for a loaded host: a TCG guest's sshd may take seconds to send its banner
CONNECT_TIMEOUT, SSH_DEADLINE = 5.0, 120.0
SCP = (f"scp -o BatchMode=yes -o StrictHostKeyChecking=accept-new "
       f"'etu@[{VM0_LL}%eth0]:~/selections' .")


def as_etu(cmd: str) -> str:
    """CMD run by etu in its login shell (HOME=/home/etu), from a root session."""
    return f"runuser -l etu -c {shlex.quote(cmd)}"


def power_off(vm: VM, timeout: float = POWEROFF_TIMEOUT) -> float:
    """`systemctl poweroff` in the guest, then QEMU's exit (`VM.power_off`)."""
    return vm.power_off(timeout=timeout)


def mount_options(proc_mounts: str, mountpoint: str = "/") -> list[str]:
    """The options of MOUNTPOINT's last line in /proc/mounts (the one in effect)."""
    rows = [line.split() for line in proc_mounts.splitlines()]
    found = [r[3].split(",") for r in rows if len(r) >= 4 and r[1] == mountpoint]
    assert found, f"{mountpoint} is not in /proc/mounts:\n{proc_mounts}"
    return found[-1]


def selections(out: str) -> dict[str, str]:
    """`dpkg --get-selections` as {package: state}."""
    return dict(line.split() for line in out.splitlines() if line.strip())


def fresh_client(lab: Lab, vm: VM) -> GuestSSH:
    """A new SSH client to VM with the lab's known-hosts file (not the VM's own session)."""
    host, port, ns = vm.ssh_target()
    return GuestSSH(host, port, user="etu", key=vm.image.private_key, netns=ns,
                    known_hosts=lab.known_hosts, connect_timeout=CONNECT_TIMEOUT)


def reach(lab: Lab, vm: VM) -> str:
    """Connect a new client to VM (see fresh_client), log in, close; its known-hosts name."""
    client = fresh_client(lab, vm).connect(deadline=SSH_DEADLINE)
    client.close()
    return client.host_key_name


@pytest.fixture(scope="module")
def tuned(module_lab: Lab, debian_image: GuestImage,
          booted_vm: Callable[..., VM]) -> StepRecorder:
    """The whole of §6 on vm0 and vm1, each step recorded (see the module docstring)."""
    lab = module_lab
    sw0 = lab.switch("sw0")
    sw0.svi(VLAN, SVI)
    s = StepRecorder("§6: tuning the debian guest (vm0, vm1)")
    vms = {}
    for name, n in TAPS.items():
        lab.tap(n, group="kvm")
        sw0.add_port(f"tap{n}", tag=VLAN)
        # just booted: restored from the automatic checkpoint of this VM (`booted_vm`),
        # booted the first time; the two run at once, on two cores: one vCPU each
        vms[name] = s.call(f"{name} boots", f"{name} just booted, on tap{n} (VLAN {VLAN})",
                           functools.partial(booted_vm, lab, name, tap=n,
                                             addresses=[ADDRESSES[name]],
                                             gateway=SVI.split("/")[0], image=debian_image,
                                             memory=512, vcpus=1))
    vm0, vm1 = vms["vm0"], vms["vm1"]
    s.facts.update(vm0=vm0, vm1=vm1, lab=lab, sw0=sw0, image=debian_image)

    def guest(name: str, vm: VM, cmd: str, timeout: float = 120.0) -> Result | None:
        r: Result | None = s.command(name, vm, cmd, timeout=timeout,
                                     prefix="export LC_ALL=C; ")
        return r

    s.call("vm1 reaches vm0's link-local address", f"ping -6 {VM0_LL}%eth0 (in vm1)",
           lambda: eventually(lambda: assert_reachable(vm1, f"{VM0_LL}%eth0", timeout=1),
                              timeout=SSH_DEADLINE))

    # 4. (first half) the clones' host keys, and the lab's known hosts
    for name, vm in vms.items():
        guest(f"{name} host keys", vm, "for f in /etc/ssh/ssh_host_*_key.pub; do "
                                       "ssh-keygen -lf $f; done")
    s.call("new clients reach both", "GuestSSH(...).connect() to vm0 and vm1",
           lambda: [reach(lab, vm) for vm in (vm0, vm1)])
    s.call("known hosts with both", "read the lab's known-hosts file",
           lambda: lab.known_hosts.read_text())

    # 1. ext4 on vm0's root: before, the change, not yet in effect
    guest("boot id before", vm0, "cat /proc/sys/kernel/random/boot_id")
    guest("fstab before", vm0, "grep -v '^#' /etc/fstab")
    guest("mounts before", vm0, "cat /proc/mounts")
    guest("ext4 options before", vm0, f"cat /proc/fs/ext4/$(lsblk -dno KNAME {ROOT})"
                                      "/options")
    guest("tune2fs -l before", vm0, f"tune2fs -l {ROOT} | grep '^Default mount options:'")
    guest("fstab root options", vm0,
          f"awk -v o={GUIDE_OPTIONS} '$2 == \"/\" {{ $4 = o }} {{ print }}' /etc/fstab "
          "> /etc/fstab.new && mv /etc/fstab.new /etc/fstab && grep ext4 /etc/fstab")
    guest("tune2fs -o journal_data_writeback", vm0, f"tune2fs -o journal_data_writeback {ROOT}")
    guest("tune2fs -l after", vm0, f"tune2fs -l {ROOT} | grep '^Default mount options:'")
    guest("mounts before the reboot", vm0, "cat /proc/mounts")

    # 2. package management on vm0
    guest("absent tools", vm0, "for p in " + " ".join(ABSENT) + "; do "
                               "dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n' $p "
                               "2>/dev/null || echo \"$p none\"; done")
    guest("autoremove before", vm0, "apt-get -s autoremove")
    guest("apt-mark auto", vm0, f"apt-mark auto {ORPHAN}")
    guest("autoremove after", vm0, "apt-get -s autoremove")
    guest("dummy .deb", vm0, f"head -c 1048576 /dev/urandom > {DUMMY_DEB} && "
                             "ls /var/cache/apt/archives/ && du -sk /var/cache/apt")
    guest("apt-get clean", vm0, "apt-get clean && ls -A /var/cache/apt/archives/ && "
                                "du -sk /var/cache/apt && find /var/cache/apt -type f")
    guest("proxy before", vm0, "apt-config dump | grep -i '^Acquire::http' || true; "
                               f"test -e {PROXY_FILE} && echo present || echo absent")
    guest("10proxy", vm0, f"printf '%s\\n' {' '.join(shlex.quote(x) for x in PROXY_LINES)} "
                          f"> {PROXY_FILE} && cat {PROXY_FILE}")
    guest("proxy after", vm0, "apt-config dump | grep -i '^Acquire::http' || true")
    guest("locale.nopurge before", vm0, f"test -e {NOPURGE} && echo present || echo absent")
    guest("locale.nopurge", vm0, f"cat > {NOPURGE} <<'EOF'\n{NOPURGE_TAIL}EOF\ntail {NOPURGE}")

    # 3. the package set: vm0's reference differs from the image's, vm1 copies it
    guest("vm1 selections before", vm1, "dpkg --get-selections")
    guest("vm0 reference set", vm0, f"apt-mark hold {HELD} && "
                                    f"echo '{DESELECTED} deinstall' | dpkg --set-selections")
    guest("dpkg --get-selections > ~/selections", vm0,
          as_etu("dpkg --get-selections > ~/selections && wc -l < ~/selections"))
    guest("vm0 selections", vm0, "cat /home/etu/selections")
    guest("vm1 ssh-keygen", vm1, as_etu("ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519 "
                                        "&& cat ~/.ssh/id_ed25519.pub"))
    s.call("scp before the key", SCP,  # the control: vm1's key is not in vm0 yet
           lambda: vm1.run(as_etu(SCP), timeout=60))
    pub = s["vm1 ssh-keygen"].stdout.strip() if "vm1 ssh-keygen" in s else ""
    guest("vm0 authorized_keys", vm0, f"echo {shlex.quote(pub)} >> "
                                      "/home/etu/.ssh/authorized_keys && "
                                      "cat /home/etu/.ssh/authorized_keys")
    guest("scp from vm1", vm1, as_etu(f"{SCP} && ls -l selections"), timeout=60)
    guest("vm1 known hosts", vm1, as_etu("ssh-keygen -lf ~/.ssh/known_hosts"))

    # 1. (end) « après redémarrage »: vm0 powers off and boots again; vm1 works meanwhile
    s.call("power off vm0", "systemctl poweroff (in vm0)", lambda: power_off(vm0))
    s.call("start vm0 again", "start vm0 again", lambda: vm0.start(wait=False))
    guest("dpkg --set-selections", vm1, "dpkg --set-selections < /home/etu/selections")
    guest("vm1 selections after", vm1, "dpkg --get-selections")
    guest("apt-get dselect-upgrade", vm1, "DEBIAN_FRONTEND=noninteractive "
                                          "apt-get -y dselect-upgrade", timeout=300)
    guest("vm1 after dselect-upgrade", vm1,
          f"dpkg-query -W -f '${{db:Status-Abbrev}}' {DESELECTED}; echo; "
          f"command -v {DESELECTED} || echo gone; dpkg --get-selections")

    s.call("vm0 boots again", "wait for vm0's ready marker",
           lambda: vm0.wait_ready(BOOT_TIMEOUT))
    guest("boot id after", vm0, "cat /proc/sys/kernel/random/boot_id")
    guest("mounts after", vm0, "cat /proc/mounts")
    guest("ext4 options after", vm0, f"cat /proc/fs/ext4/$(lsblk -dno KNAME {ROOT})"
                                     "/options")
    guest("tune2fs -l after the reboot", vm0,
          f"tune2fs -l {ROOT} | grep '^Default mount options:'")
    guest("failed units", vm0, "systemctl --failed --no-legend --plain")

    # 4. (second half) vm0's host key changes
    s.call("known hosts before the change", "read the lab's known-hosts file",
           lambda: lab.known_hosts.read_text())
    s.call("new client after the reboot", "GuestSSH(...).connect() to vm0",
           lambda: reach(lab, vm0))
    guest("regenerate vm0's host keys", vm0,
          "mkdir -p /root/hostkeys && cp -a /etc/ssh/ssh_host_* /root/hostkeys/ && "
          "rm /etc/ssh/ssh_host_ed25519_key* && "
          "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && "
          "systemctl restart ssh && "
          "for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $f; done")

    def refused() -> HostKeyChangedError:
        try:
            reach(lab, vm0)
        except HostKeyChangedError as e:
            return e
        raise AssertionError(f"a new client connected to vm0 with its new host key: the "
                             f"changed key was accepted (known hosts: {lab.known_hosts})")
    s.call("new client after the change", "GuestSSH(...).connect() to vm0", refused)
    s.call("known hosts after the change", "read the lab's known-hosts file",
           lambda: lab.known_hosts.read_text())
    s.call("openssh in vm1 after the change", f"ssh etu@{VM0_LL}%eth0 true (in vm1)",
           lambda: vm1.run(as_etu(f"ssh -o BatchMode=yes 'etu@{VM0_LL}%eth0' true"),
                           timeout=60))
    guest("put vm0's host keys back", vm0, "cp -a /root/hostkeys/ssh_host_* /etc/ssh/ && "
                                          "systemctl restart ssh")
    s.call("new client with the old key", "GuestSSH(...).connect() to vm0",
           lambda: reach(lab, vm0))
    return s


@pytest.fixture(autouse=True)
def _steps_in_the_report(tuned: StepRecorder) -> None:
    """Every step's outcome, and the first failure's evidence, in a failed test's report
    (captured stdout): a test that finds its step "not reached" shows what broke first."""
    print(tuned.summary())


# -- the two clones ------------------------------------------------------------------------


def test_both_clones_are_on_vlan_2_and_vm1_reaches_vm0_link_local(tuned: StepRecorder) -> None:
    """Two taps on sw0, access ports of the same VLAN: vm1 reaches `fe80::…%eth0`."""
    tuned.require("vm0 boots")
    tuned.require("vm1 boots")
    sw0 = tuned.facts["sw0"]
    for n in TAPS.values():
        mode = sw0.port_mode(f"tap{n}")
        assert (mode.mode, mode.tag) == ("access", VLAN), f"tap{n} is {mode}"
    assert tuned.facts["vm0"].link_local == VM0_LL
    tuned.require("vm1 reaches vm0's link-local address")


# -- 1. ext4 ---------------------------------------------------------------------------------


def test_fstab_has_the_guides_root_options(tuned: StepRecorder) -> None:
    """« Voici un extrait de fichier /etc/fstab qui donne la liste des options de montage
    de la racine du système de fichiers. »"""
    before = [line.split() for line in tuned.require("fstab before").splitlines()]
    root_before = [r for r in before if len(r) > 3 and r[1] == "/"]
    assert root_before and root_before[0][3] != GUIDE_OPTIONS, (
        f"the image's fstab should not have the guide's options yet: {root_before}")
    lines = [line.split()[:4] for line in tuned.require("fstab root options").splitlines()]
    assert FSTAB_LINE.split()[:4] in lines, (
        f"`grep ext4 /etc/fstab` should show {FSTAB_LINE} (dump and pass as they were): "
        f"{lines}")
    assert_file_contains(tuned.facts["vm0"], "/etc/fstab", re.compile(
        r"^/dev/mapper/vm0-root\s+/\s+ext4\s+" + re.escape(GUIDE_OPTIONS) + r"\s+\d\s+\d$",
        re.M))


def test_tune2fs_makes_writeback_the_default_data_mode(tuned: StepRecorder) -> None:
    """`tune2fs -o journal_data_writeback /dev/mapper/vm0-root`, then
    « Default mount options:    journal_data_writeback »"""
    assert "journal_data_writeback" not in tuned.require("tune2fs -l before")
    tuned.require("tune2fs -o journal_data_writeback")
    after = tuned.require("tune2fs -l after").split(":", 1)[1].split()
    assert "journal_data_writeback" in after, f"tune2fs -l: {after}"


def test_the_new_options_wait_for_the_next_mount(tuned: StepRecorder) -> None:
    """Written, not applied: the mounted root keeps its options until the reboot."""
    before = mount_options(tuned.require("mounts before"))
    assert mount_options(tuned.require("mounts before the reboot")) == before
    assert "commit=6000" not in before and "nobarrier" not in before, before
    assert "data=ordered" in tuned.require("ext4 options before").split(), (
        "the image's root should start in ordered mode")


def test_after_a_reboot_the_root_is_mounted_with_the_guides_options(tuned: StepRecorder) -> None:
    """« après redémarrage »: rw (the remount with data=writeback was accepted, since
    tune2fs made it the default), relatime, commit=6000, barrier=0 (`nobarrier`), and
    data=writeback (/proc/fs/ext4/…/options: /proc/mounts leaves out a default mode)."""
    tuned.require("power off vm0")
    tuned.require("start vm0 again")
    tuned.require("vm0 boots again")
    assert tuned.require("boot id after") != tuned.require("boot id before"), (
        "vm0 should have booted again (the same boot id means no reboot happened)")
    opts = mount_options(tuned.require("mounts after"))
    for want in ("rw", "relatime", "commit=6000", "nobarrier"):
        assert want in opts, f"/ should be mounted with {want}: /proc/mounts says {opts}"
    ext4 = tuned.require("ext4 options after").split()
    assert "data=writeback" in ext4, f"the root should be in writeback mode: {ext4}"
    assert "journal_data_writeback" in tuned.require("tune2fs -l after the reboot")
    assert tuned.require("failed units").strip() == "", (
        f"units failed at boot (systemd-remount-fs?): {tuned.require('failed units')}")
    assert_service_running(tuned.facts["vm0"], "ssh")


# -- 2. package management -------------------------------------------------------------------


def test_the_image_has_no_aptitude_deborphan_or_localepurge(tuned: StepRecorder) -> None:
    """Why this module uses apt-get, apt-get autoremove and a bare /etc/locale.nopurge: if
    the image gains these packages, this test fails, and the scenario should use them."""
    rows = dict(line.split(" ", 1) for line in tuned.require("absent tools").splitlines())
    installed = [p for p, st in rows.items() if st.startswith("ii")]
    assert not installed, f"the image now has {installed}: run them instead"


def test_apt_get_clean_empties_the_package_cache(tuned: StepRecorder) -> None:
    """« Il est inutile de conserver les fichiers .deb correspondant aux paquets installés
    sur le système virtuel. »"""
    assert DUMMY_DEB.rsplit("/", 1)[1] in tuned.require("dummy .deb").split(), (
        "the dummy package should be in the cache before the clean")
    out = tuned.require("apt-get clean").splitlines()
    assert not any(line.endswith(".deb") for line in out), (
        f"/var/cache/apt/archives should hold no .deb after apt-get clean: {out}")
    assert not any(line.endswith(".bin") for line in out), f"APT's caches remain: {out}"
    kib_before = int(tuned.require("dummy .deb").split()[-2])
    kib_after = int([line for line in out if "/var/cache/apt" in line][0].split()[0])
    assert kib_after < kib_before - 1000, (
        f"/var/cache/apt should shrink by the dummy's 1 MiB: {kib_before} -> {kib_after} KiB")


def test_an_orphan_is_found_without_deborphan(tuned: StepRecorder) -> None:
    """« aptitude purge $(deborphan) »: with APT, `apt-get autoremove` removes the packages
    installed automatically that nothing needs any more (simulated here)."""
    assert f"Remv {ORPHAN}" not in tuned.require("autoremove before")
    tuned.require("apt-mark auto")
    assert f"Remv {ORPHAN} " in tuned.require("autoremove after"), (
        f"{ORPHAN}, marked automatic and needed by nothing, should be proposed for removal")


def test_the_proxy_file_has_the_guides_two_lines_and_apt_reads_them(tuned: StepRecorder) -> None:
    """« il faut compléter la configuration du gestionnaire de paquets sur chaque instance
    de système virtuel en ajoutant un fichier dans le répertoire /etc/apt/apt.conf.d/ »"""
    before = tuned.require("proxy before")
    assert "absent" in before and "No-Cache" not in before, before
    assert tuned.require("10proxy").splitlines() == PROXY_LINES
    for line in PROXY_LINES:
        assert_file_contains(tuned.facts["vm0"], PROXY_FILE, line)
    dump = tuned.require("proxy after")
    assert 'Acquire::http::No-Cache "true";' in dump and 'Acquire::http::Max-Age "0";' in dump, (
        f"apt-config dump should show the two settings: {dump}")


def test_locale_nopurge_keeps_en_fr_and_fr_fr_utf8(tuned: StepRecorder) -> None:
    """« La fin du fichier de configuration /etc/locale.nopurge répertorie les paramètres
    des fichiers de localisation à conserver. » (localepurge itself is absent: the file
    only)"""
    assert tuned.require("locale.nopurge before").strip() == "absent"
    tail = tuned.require("locale.nopurge").splitlines()
    assert tail[-3:] == ["en", "fr", "fr_FR.UTF-8"], f"tail {NOPURGE}: {tail}"
    for locale in ("en", "fr", "fr_FR.UTF-8"):
        assert_file_contains(tuned.facts["vm0"], NOPURGE,
                             re.compile(rf"^{re.escape(locale)}$", re.M))


# -- 3. the package set ----------------------------------------------------------------------


def test_vm1_fetches_vm0_selections_by_scp_over_link_local(tuned: StepRecorder) -> None:
    """`scp etu@[fe80::baad:caff:fefe:6%eth0]:~/selections .` from vm1, with vm1's key in
    vm0's authorized_keys (refused before it was there)."""
    tuned.require("scp before the key")
    refused = tuned["scp before the key"].value
    assert refused.exit_status != 0 and "Permission denied" in refused.stderr, (
        f"without its key in vm0, vm1's scp should be refused: {refused}")
    assert "Permanently added" in refused.stderr, (
        f"the first connection should add vm0 to etu's known hosts: {refused.stderr}")
    pub = tuned.require("vm1 ssh-keygen").strip()
    assert pub in tuned.require("vm0 authorized_keys").splitlines()
    tuned.require("scp from vm1")
    count = int(tuned.require("dpkg --get-selections > ~/selections").strip())
    assert count == len(selections(tuned.require("vm0 selections"))) > 100


def test_dpkg_set_selections_gives_vm1_the_set_of_vm0(tuned: StepRecorder) -> None:
    """`dpkg --set-selections < selections`: vm1's list matches vm0's (it did not before),
    and `apt-get dselect-upgrade` applies it."""
    reference = selections(tuned.require("vm0 selections"))
    assert reference[HELD] == "hold" and reference[DESELECTED] == "deinstall", (
        f"vm0's reference set: {HELD} {reference.get(HELD)}, "
        f"{DESELECTED} {reference.get(DESELECTED)}")
    before = selections(tuned.require("vm1 selections before"))
    assert before != reference, "vm1 should differ from vm0's set before the copy"
    tuned.require("dpkg --set-selections")
    after = selections(tuned.require("vm1 selections after"))
    diff = {p: (after.get(p), want) for p, want in reference.items() if after.get(p) != want}
    assert not diff, f"vm1's selections differ from vm0's (vm1, vm0): {diff}"
    assert after == reference
    tuned.require("apt-get dselect-upgrade")
    status, where, *rest = tuned.require("vm1 after dselect-upgrade").splitlines()
    assert status.strip() in ("rc", "un", ""), f"{DESELECTED} should be removed: {status!r}"
    assert where == "gone", f"{DESELECTED} is still installed in vm1: {where}"
    assert selections("\n".join(rest)) == reference


# -- 4. host keys ----------------------------------------------------------------------------


def test_the_clones_share_one_host_key_and_the_lab_reaches_both(tuned: StepRecorder) -> None:
    """« une même image système avec une même clé d'hôte [...] est dupliquée »: the two
    VMs offer the same keys; the lab's known hosts hold both addresses, with that key."""
    keys0 = tuned.require("vm0 host keys").split()
    keys1 = tuned.require("vm1 host keys").split()
    fingerprints0 = [w for w in keys0 if w.startswith("SHA256:")]
    assert fingerprints0 and fingerprints0 == [w for w in keys1 if w.startswith("SHA256:")]
    image_key = tuned.facts["image"].host_public_key.split()[1]
    tuned.require("new clients reach both")
    known = [line.split() for line in tuned.require("known hosts with both").splitlines()]
    hosts = {row[0]: row[2] for row in known if len(row) >= 3}
    clones = [vm.ssh_target()[0] for vm in (tuned.facts["vm0"], tuned.facts["vm1"])]
    for host in clones:
        assert host in hosts, f"the lab's known hosts should have {host}: {list(hosts)}"
    # only the clones' lines: the worker's lab host also knows other modules' VMs
    mine = {h: hosts[h] for h in clones}
    assert set(mine.values()) == {image_key}, (
        f"both clones should be known with the image's host key (its manifest): {mine}")
    # vm1's OpenSSH found at vm0 a key of its own: it is the same image
    seen = tuned.require("vm1 known hosts").split()
    assert any(fp in seen for fp in fingerprints0), (
        f"vm1 should know vm0 by a key vm1 has too: {seen} vs {fingerprints0}")


def test_a_changed_host_key_is_reported_not_accepted(tuned: StepRecorder) -> None:
    """The same VM (vm0, same address) with new host keys: a new client of the lab is
    refused with HostKeyChangedError naming both fingerprints, the lab's known hosts keep
    the old key; OpenSSH in vm1 refuses too. With the old keys back, it connects."""
    vm0 = tuned.facts["vm0"]
    tuned.require("new client after the reboot")  # the control: the same key connects
    new_fingerprints = [w for w in tuned.require("regenerate vm0's host keys").split()
                        if w.startswith("SHA256:")]
    err = tuned["new client after the change"].value
    tuned.require("new client after the change")
    assert isinstance(err, HostKeyChangedError)
    assert err.host == vm0.ssh_target()[0]
    assert err.known_hosts == str(tuned.facts["lab"].known_hosts)
    old_fingerprints = [w for w in tuned.require("vm0 host keys").split()
                        if w.startswith("SHA256:")]
    assert err.old_fingerprint in old_fingerprints, (err.old_fingerprint, old_fingerprints)
    assert err.new_fingerprint in new_fingerprints, (err.new_fingerprint, new_fingerprints)
    assert err.old_fingerprint != err.new_fingerprint
    assert tuned.require("known hosts after the change") == \
        tuned.require("known hosts before the change"), "the old key must stay"
    tuned.require("openssh in vm1 after the change")
    ssh = tuned["openssh in vm1 after the change"].value
    assert ssh.exit_status != 0 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in ssh.stderr, (
        f"vm1's ssh to vm0 should refuse the new key: {ssh}")
    tuned.require("put vm0's host keys back")
    tuned.require("new client with the old key")
