"""Limits on what a student's lab file may ask of the grading host.

A lab file is untrusted input: it is parsed safely (YAML's safe loader, every key checked
by `labfixtures.lab.labfile`), and before anything is built it must stay within `Limits`
(a class of students in parallel shares the host's memory and cores). A grading module
may set its own: `LIMITS = {"vms": 3, "memory_mb": 512}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from labfixtures.errors import LabError
from labfixtures.lab.labspec import LabFile


@dataclass(frozen=True)
class Limits:
    vms: int = 4
    memory_mb: int = 1024  # per VM
    total_memory_mb: int = 2048
    vcpus: int = 2  # per VM
    nics: int = 4  # per VM
    switches: int = 4
    taps: int = 16
    hosts: int = 16

    @classmethod
    def of(cls, overrides: Mapping[str, Any] | None) -> Limits:
        """The defaults with a grading module's LIMITS on top (unknown keys refused)."""
        if not overrides:
            return cls()
        known = {f.name for f in fields(cls)}
        wrong = sorted(set(overrides) - known)
        if wrong:
            raise LabError(f"LIMITS: unknown limit(s) {', '.join(wrong)}",
                           f"use some of: {', '.join(sorted(known))}")
        return replace(cls(), **{k: int(v) for k, v in overrides.items()})


def check(spec: LabFile, limits: Limits | None = None) -> None:
    """Refuse SPEC if it asks for more than LIMITS (every excess named at once)."""
    lim = limits or Limits()
    over: list[str] = []

    def cap(what: str, n: int, most: int) -> None:
        if n > most:
            over.append(f"{what}: {n} (at most {most})")

    cap("VMs", len(spec.vms), lim.vms)
    cap("switches", len(spec.switches), lim.switches)
    cap("taps", len(spec.taps), lim.taps)
    cap("hosts", len(spec.hosts), lim.hosts)
    for v in spec.vms.values():
        cap(f"vms.{v.name}.memory", v.memory, lim.memory_mb)
        cap(f"vms.{v.name}.vcpus", v.vcpus, lim.vcpus)
        cap(f"vms.{v.name}.nics", len(v.nics), lim.nics)
    cap("memory of all VMs", sum(v.memory for v in spec.vms.values()), lim.total_memory_mb)
    if over:
        raise LabError(f"lab file {spec.source} asks for more than grading allows: "
                       + "; ".join(over),
                       "the lab needs far less: check the lab file against the "
                       "instructions")
