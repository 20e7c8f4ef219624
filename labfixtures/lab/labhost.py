"""The lab host: one private network namespace, one run directory, one ledger.

Everything a lab creates is pushed on a `Ledger` together with the function that undoes
it, and undone in reverse order when the lab closes, whatever the reason (success,
failure, exception, Ctrl-C). This is the `on_exit` pattern of Open vSwitch's own test
suite.

A run that dies without closing (SIGKILL, power cut) leaves its *record* behind: the run
directory `RUN_BASE/LABID/record.json` with the owner's pid and start time. `reap()`
removes what belongs to records whose owner is dead: processes in the lab's namespaces
(found through /proc, not pidfiles, so nothing escapes), the namespaces named LABID and
LABID-*, and the run directory. Every pytest session reaps at start; `labctl clean` does
it on demand.

Nothing is ever created in the root namespace: the lab namespace is created by the
calling thread alone (see `netns.create`) and every interface is made from inside it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labfixtures.core import netns, procs
from labfixtures.core.ledger import Ledger
from labfixtures.core.naming import (
    PREFIX,
    PYTEST_LABID,
    RUN_BASE,
    check_labid,
    default_labid,
    run_id,
    worker_id,
)
from labfixtures.errors import LabError
from labfixtures.net.netlink import Netlink

# the names tests and older callers import from here (their home is core/)
__all__ = ["PREFIX", "RUN_BASE", "LabHost", "Ledger", "Record", "check_labid",
           "default_labid", "destroy_lab", "lab_namespaces", "reap", "records", "run_id",
           "worker_id"]
_PYTEST_LABID = PYTEST_LABID


# -- records and the reaper ------------------------------------------------------------------

@dataclass
class Record:
    labid: str
    pid: int
    pid_start: int | None
    created: float
    persistent: bool = False
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def owner_alive(self) -> bool:
        st = procs.start_time(self.pid)
        return st is not None and st == self.pid_start

    @classmethod
    def load(cls, path: Path) -> Record:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)


def lab_namespaces(labid: str) -> list[str]:
    return [n for n in netns.list_names() if n == labid or n.startswith(labid + "-")]


def destroy_lab(labid: str, run_base: Path | None = None) -> list[str]:
    """Kill every process of lab LABID, delete its namespaces and run directory."""
    removed: list[str] = []
    namespaces = lab_namespaces(labid)
    victims = sorted({p for n in namespaces for p in netns.pids(n)} - {os.getpid()})
    if victims:
        procs.terminate(victims)
        removed.append(f"{len(victims)} process(es) of {labid}: {victims}")
    for name in namespaces:
        if netns.delete(name):
            removed.append(f"network namespace {name}")
    rundir = (run_base or RUN_BASE) / labid
    if rundir.exists():
        shutil.rmtree(rundir, ignore_errors=True)
        removed.append(f"run directory {rundir}")
    return removed


def records(run_base: Path | None = None) -> list[Record]:
    base = run_base or RUN_BASE
    out = []
    for rec in sorted(base.glob("*/record.json")) if base.exists() else []:
        try:
            out.append(Record.load(rec))
        except (OSError, ValueError, TypeError):
            continue
    return out


def reap(run_base: Path | None = None, *, include_persistent: bool = False) -> list[str]:
    """Remove the labs whose owner is dead (and, if asked, the persistent `labctl up` labs).

    Returns one line per thing removed, for `labctl clean` to print.
    """
    base = run_base or RUN_BASE
    removed: list[str] = []
    known: set[str] = set()
    if base.exists():
        for d in sorted(base.iterdir()):
            if not d.is_dir() or not d.name.startswith(PREFIX):
                continue
            known.add(d.name)
            try:
                rec = Record.load(d / "record.json")
            except (OSError, ValueError, TypeError):
                rec = None
            if rec is not None:
                if rec.persistent and not include_persistent:
                    continue
                if not rec.persistent and rec.owner_alive():
                    continue
            elif time.time() - d.stat().st_mtime < 10:
                continue  # being created right now
            removed += destroy_lab(d.name, base)
    # namespaces of a pytest run that died before writing its record: only those that no
    # record claims (a live lab may be named lf-<run>-w0.2-named, which *looks* like a
    # host of lab lf-<run>-w0.2), each removed alone, never by prefix
    for name in netns.list_names():
        if any(name == k or name.startswith(k + "-") for k in known):
            continue
        if _PYTEST_LABID.match(name):
            victims = [p for p in netns.pids(name) if p != os.getpid()]
            if victims:
                procs.terminate(victims)
                removed.append(f"{len(victims)} process(es) of {name}: {victims}")
            if netns.delete(name):
                removed.append(f"network namespace {name}")
    return removed


# -- the lab host ----------------------------------------------------------------------------

class LabHost:
    """A private network namespace and run directory, torn down by its ledger.

    `with LabHost() as host:` creates them; `host.ledger` records every later creation.
    The namespace is named LABID; extra namespaces (veth hosts) are named LABID-NAME so
    that the reaper finds them.
    """

    def __init__(self, labid: str | None = None, *, run_base: Path | None = None,
                 persistent: bool = False, source: str = "") -> None:
        self.labid = labid or default_labid(run_base)
        check_labid(self.labid)
        self.run_base = run_base or RUN_BASE
        self.rundir = self.run_base / self.labid
        self.persistent = persistent
        self.source = source
        self.ledger = Ledger(self.labid)
        self._opened = False

    @property
    def ns(self) -> str:
        return self.labid

    def child_ns(self, name: str) -> str:
        return f"{self.labid}-{name}"

    def open(self) -> LabHost:
        if os.geteuid() != 0:
            raise LabError("labfixtures needs root privileges to build a lab",
                           "run as root: `sudo .venv/bin/pytest ...` or `sudo labctl ...`")
        if self.rundir.exists() or netns.exists(self.ns):
            raise LabError(f"a lab named {self.labid!r} already exists",
                           f"take it down with `labctl down {self.labid}` or pick another name")
        procs.become_subreaper()
        self.rundir.mkdir(parents=True, mode=0o755)
        self.ledger.push(f"run directory {self.rundir}",
                         lambda: shutil.rmtree(self.rundir, ignore_errors=True))
        Record(self.labid, os.getpid(), procs.start_time(os.getpid()), time.time(),
               self.persistent, self.source).save(self.rundir / "record.json")
        try:
            netns.create(self.ns)
            self.ledger.push(f"network namespace {self.ns}", lambda: self._delete_ns())
            with Netlink(self.ns) as nl:
                nl.set_up("lo")
        except BaseException:
            self.ledger.close()
            raise
        self._opened = True
        return self

    def _delete_ns(self) -> None:
        # anything still running in our namespaces (a daemon that ignored SIGTERM) dies now
        leftovers = [p for n in lab_namespaces(self.labid) for p in netns.pids(n)]
        leftovers = [p for p in leftovers if p != os.getpid()]
        if leftovers:
            procs.terminate(leftovers, grace=1.0)
        for n in lab_namespaces(self.labid):
            netns.delete(n)

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> LabHost:
        if not self._opened:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
