"""Attach mode in pytest: the `--lab-attach*` options read once, at configure time.

Every mistake the options can hold (a malformed target, no credentials, a missing key
file, a namespace that does not exist, a link-local target whose interface is not where
pytest runs, a lab name that `labctl up` never started) is one `pytest.UsageError` before
any test runs, with the option that fixes it. What only the network can tell (the VM does
not answer, the login is refused) fails the first test that asks for the VM; later tests
fail at once with the same message instead of waiting out SSH again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from labfixtures.core import netns
from labfixtures.errors import LabError
from labfixtures.guests.attach import AttachCredentialsError, AttachedVM, AttachNamespaceError
from labfixtures.lab.persistent import PersistentLab
from labfixtures.pytest_plugin.options import ATTACH_PASSWORD_VAR

CREDENTIALS_FIX = (f"give --lab-attach-key PATH (a private key the guest accepts) or set "
                   f"{ATTACH_PASSWORD_VAR}=... in the environment")


def target_text(vm: AttachedVM) -> str:
    """USER@HOST:PORT as `--lab-attach` takes it (an IPv6 address in brackets)."""
    host = f"[{vm.address}]" if ":" in vm.address else vm.address
    return f"{vm.user}@{host}:{vm.port}"


def namespace_fix() -> str:
    labs = [n for n in netns.list_names() if n.startswith("lf-")]
    known = f" (lab namespaces here: {', '.join(labs[:6])})" if labs else ""
    return (f"give the namespace that holds it: --lab-attach-netns NS{known}; for a lab "
            "started with `labctl up`, --lab-attach-lab NAME finds everything by itself")


def explain(e: LabError) -> str:
    """E's problem with the remedy a pytest user can act on (the option to give)."""
    if isinstance(e, AttachCredentialsError):
        return f"{e.problem}\n  remedy: {CREDENTIALS_FIX}"
    if isinstance(e, AttachNamespaceError):
        return f"{e.problem}\n  remedy: {namespace_fix()}"
    return str(e)


@dataclass
class AttachPlan:
    """The machines to grade, by name, not connected yet; and how they were named."""

    vms: dict[str, AttachedVM] = field(default_factory=dict)
    lab: str | None = None  # --lab-attach-lab, when given

    def close(self) -> None:
        for vm in self.vms.values():
            vm.close()


def _usage(what: str, e: LabError) -> pytest.UsageError:
    return pytest.UsageError(f"{what}: {explain(e)}")


def from_lab(name: str) -> dict[str, AttachedVM]:
    """The VMs of the persistent lab NAME (`labctl up`), with its key and namespace."""
    try:
        lab = PersistentLab.open(name)
        state = lab.state()
    except (LabError, ValueError) as e:
        problem = e.problem if isinstance(e, LabError) else str(e)
        raise pytest.UsageError(
            f"--lab-attach-lab {name}: {problem}\n  remedy: start it with `labctl up "
            "LABFILE`; `labctl status` lists the labs here") from None
    vms = {vm_name: AttachedVM(vm_name, v.host, v.port, user=v.user, key=v.key,
                               netns=lab.ns, known_hosts=lab.known_hosts)
           for vm_name, v in state.vms.items()}
    if not vms:
        raise pytest.UsageError(f"--lab-attach-lab {name}: lab {lab.labid} has no VM")
    return vms


def read_options(config: pytest.Config) -> AttachPlan:
    """The plan of `--lab-attach-lab` and `--lab-attach*`; a `pytest.UsageError` for any
    mistake in them."""
    plan = AttachPlan(lab=config.getoption("--lab-attach-lab"))
    if plan.lab:
        plan.vms.update(from_lab(plan.lab))
    specs: list[str] = config.getoption("--lab-attach") or []
    key = config.getoption("--lab-attach-key")
    ns = config.getoption("--lab-attach-netns")
    password = os.environ.get(ATTACH_PASSWORD_VAR) or None
    for spec in specs:
        try:
            vm = AttachedVM.parse(spec, key=key, password=password, netns=ns)
        except LabError as e:
            raise _usage(f"--lab-attach {spec}", e) from None
        if vm.name in plan.vms:
            raise pytest.UsageError(
                f"--lab-attach {spec}: the name {vm.name!r} is given twice"
                + (f" (lab {plan.lab} has a VM of that name)" if plan.lab else "")
                + "\n  remedy: one target per name")
        plan.vms[vm.name] = vm
    for vm in plan.vms.values():
        try:
            vm.check_reachable_here()
        except LabError as e:
            raise _usage(f"--lab-attach {vm.name}={target_text(vm)}", e) from None
    return plan


class AttachedVMs(dict[str, AttachedVM]):
    """`attached["vm0"]`: the machine, connected on first use. A name that was not given
    fails the test with the option to give; a machine that did not answer once fails
    every later test at once, with the same message."""

    def __init__(self, plan: AttachPlan) -> None:
        super().__init__(plan.vms)
        self.plan = plan
        self._failed: dict[str, str] = {}

    def __missing__(self, name: str) -> AttachedVM:
        given = ", ".join(sorted(self)) or "none"
        pytest.fail(
            f"attached[{name!r}]: no machine named {name!r} was given (given: {given})\n"
            f"  remedy: run pytest with --lab-attach {name}=USER@HOST (and --lab-attach-key "
            f"or {ATTACH_PASSWORD_VAR}), or --lab-attach-lab LAB for a lab started with "
            "`labctl up` that has a VM of that name", pytrace=False)

    def __getitem__(self, name: str) -> AttachedVM:
        vm = super().__getitem__(name)
        if name in self._failed:
            pytest.fail(f"{self._failed[name]}\n  (as in an earlier test: not tried again)",
                        pytrace=False)
        try:
            vm.connect(deadline=30.0)
        except LabError as e:
            msg = f"attached[{name!r}] ({target_text(vm)}): {explain(e)}"
            if vm.netns is None and "no SSH connection" in e.problem:
                msg += ("\n  if the machine is inside a lab's namespace: --lab-attach-netns "
                        "NS, or --lab-attach-lab NAME for a lab started with `labctl up`")
            self._failed[name] = msg
            pytest.fail(self._failed[name], pytrace=False)
        return vm
