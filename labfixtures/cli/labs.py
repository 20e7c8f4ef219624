"""`labctl up|status|ssh|exec|down`: labs built from a lab file and left running."""

from __future__ import annotations

import argparse
import shlex

from labfixtures.cli.common import labid, need_root, short_name
from labfixtures.core import netns
from labfixtures.errors import LabError
from labfixtures.lab import persistent
from labfixtures.lab.labhost import lab_namespaces, records


def cmd_up(args: argparse.Namespace) -> int:
    need_root()
    lab_id = persistent.up(args.file, name=args.name, progress=print)
    name = short_name(lab_id)
    print(f"lab {lab_id} is up: `labctl status {name}` (how to reach and grade it), "
          f"`labctl down {name}`")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    need_root()
    for line in persistent.down(labid(args.lab)):
        print(f"removed {line}")
    return 0


def _target(host: str, port: int, user: str) -> str:
    addr = f"[{host}]" if ":" in host else host
    return f"{user}@{addr}" + (f":{port}" if port != 22 else "")


def attach_lines(lab_id: str) -> list[str]:
    """The SSH key of LAB_ID's VMs and the pytest command lines that grade them."""
    try:
        state = persistent.PersistentLab.open(lab_id).state()
    except LabError:  # not a lab of `labctl up`: nothing to attach to
        return []
    if not state.vms:
        return []
    keys = sorted({v.key for v in state.vms.values()})
    explicit = " ".join(f"--lab-attach {name}={_target(v.host, v.port, v.user)}"
                        for name, v in state.vms.items())
    return [
        f"  SSH key: {', '.join(keys)}",
        "  grade it with pytest (tests get the VMs from the `attached` fixture):",
        f"    pytest TESTS --lab-attach-lab {short_name(lab_id)}",
        "  or, naming everything:",
        f"    pytest TESTS {explicit} --lab-attach-key {keys[0]} --lab-attach-netns {lab_id}",
    ]


def cmd_status(args: argparse.Namespace) -> int:
    if args.lab:
        lab_id = labid(args.lab)
        print(persistent.describe(lab_id))
        for line in attach_lines(lab_id):
            print(line)
        return 0
    recs = records()
    if not recs:
        print("no lab exists")
        return 0
    for r in recs:
        owner = ("persistent (labctl up)" if r.persistent else
                 f"pid {r.pid} {'alive' if r.owner_alive() else 'DEAD (run labctl clean)'}")
        spaces = lab_namespaces(r.labid)
        procs = sum(len(netns.pids(n)) for n in spaces)
        print(f"{r.labid}: {owner}; {len(spaces)} namespace(s), {procs} process(es)"
              + (f"; from {r.source}" if r.source else ""))
    print("details of one lab (its VMs, how to reach and grade them): labctl status NAME")
    return 0


def _command(words: list[str]) -> list[str]:
    """The words after `--` (argparse.REMAINDER keeps it); later `--` belong to CMD."""
    return words[1:] if words[:1] == ["--"] else words


def cmd_ssh(args: argparse.Namespace) -> int:
    need_root()
    words = _command(args.command)
    # like ssh: the words are joined into one line for the guest's shell
    return persistent.ssh(labid(args.lab), args.vm, [" ".join(words)] if words else [])


def cmd_exec(args: argparse.Namespace) -> int:
    need_root()
    argv = _command(args.argv)
    if not argv:
        raise LabError("labctl exec needs a command after `--`",
                       f"e.g. labctl exec {args.lab} {args.vm} -- ip -j route")
    return persistent.ssh(labid(args.lab), args.vm, [shlex.join(argv)])


SSH_HELP = """\
Without a command: an interactive shell in the VM (needs openssh-client).
With `-- CMD...`: run it in the VM, print its output, exit with its status.

As with ssh, the words of CMD are joined with spaces into ONE line that the guest's
shell interprets: quotes you typed are gone by then, and `;`, `>`, `$VAR` and `*` act
in the guest. So
  labctl ssh seed-minimal vm0 -- 'ip route; hostname'     runs two commands there
  labctl ssh seed-minimal vm0 -- echo x '>' /etc/motd    writes x to the guest's motd
To run a command word for word (each argument passed as it is), use `labctl exec`.
"""

EXEC_HELP = """\
Run ARGV in the VM exactly as given: each argument is quoted for the guest's shell
(shlex.quote), so nothing is split or expanded again. Prints its output and exits with
its status.
  labctl exec seed-minimal vm0 -- sh -c 'echo x > /etc/motd'    writes x
  labctl exec seed-minimal vm0 -- ls 'a file with spaces'
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    u = sub.add_parser(
        "up", help="build a lab from a lab file and leave it running",
        description="Build the lab described by FILE (YAML, see "
                    "scenarios/labs/seed-minimal.yaml): switches, SVIs, taps, veth hosts "
                    "and VMs, booted and checked over SSH. It stays up, untouched by the "
                    "reaper, until `labctl down NAME`. Its name is the file's `name:` "
                    "(lab lf-NAME).")
    u.add_argument("file", help="the lab file")
    u.add_argument("--name", help="use this name instead of the file's (to run the same "
                                  "file twice)")
    u.set_defaults(func=cmd_up)

    s = sub.add_parser(
        "status", help="list existing labs, or describe one",
        description="Without LAB: every lab and its owner (a pytest run, or persistent). "
                    "With LAB: its VMs (running or not, address, MAC), its switches and "
                    "ports, the VMs' SSH key and the pytest command lines that grade them "
                    "(--lab-attach-lab, or --lab-attach with key and namespace).")
    s.add_argument("lab", nargs="?", help="a lab name (seed-minimal or lf-seed-minimal)")
    s.set_defaults(func=cmd_status)

    sh = sub.add_parser("ssh", help="a shell in a VM of a lab, or run one command line there",
                        description=SSH_HELP, formatter_class=raw)
    sh.add_argument("lab", help="the lab's name")
    sh.add_argument("vm", help="the VM's name (vm0)")
    sh.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD",
                    help="a command line for the guest's shell")
    sh.set_defaults(func=cmd_ssh)

    ex = sub.add_parser("exec", help="run a command in a VM word for word (no shell "
                                     "re-splitting)", description=EXEC_HELP,
                        formatter_class=raw)
    ex.add_argument("lab", help="the lab's name")
    ex.add_argument("vm", help="the VM's name (vm0)")
    ex.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- ARGV",
                    help="the program and its arguments")
    ex.set_defaults(func=cmd_exec)

    dn = sub.add_parser("down", help="tear a lab down (VMs, switches, namespaces, files)",
                        description="Stop the lab's VMs and Open vSwitch, remove its "
                                    "namespaces and run directory; prints what it removed.")
    dn.add_argument("lab", help="the lab's name")
    dn.set_defaults(func=cmd_down)
