"""How labfixtures names what it creates: the `lf-` prefix, lab ids, the run directory.

Every lab is named `lf-SOMETHING`: its network namespace, its run directory
`RUN_BASE/lf-SOMETHING` and its veth hosts' namespaces `lf-SOMETHING-HOST`. The reaper
and `labctl` recognise labfixtures' own objects by this prefix, so it is written here
and nowhere else.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from labfixtures.core import netns
from labfixtures.errors import LabError

#: the prefix of every lab id (namespace, run directory)
PREFIX = "lf-"
#: where labs keep their run directories (LABFIXTURES_RUNDIR overrides it)
RUN_BASE = Path(os.environ.get("LABFIXTURES_RUNDIR", "/run/labfixtures"))
# Names made by pytest runs: lf-<run id>-<worker>; anything else needs a record to be reaped.
PYTEST_LABID = re.compile(r"^(lf-[0-9a-f]{6}-(?:m|w\d+)(?:\.\d+)?)(?:-|$)")


def labid(name: str) -> str:
    """The lab id of NAME: `seed` and `lf-seed` both give `lf-seed`."""
    return name if name.startswith(PREFIX) else f"{PREFIX}{name}"


def short_name(lab_id: str) -> str:
    """The name a user types for LAB_ID (`lf-seed` gives `seed`)."""
    return lab_id.removeprefix(PREFIX)


def is_labid(name: str) -> bool:
    return name.startswith(PREFIX)


def run_id() -> str:
    """Six hex digits shared by every worker of one pytest run (xdist gives us a run uid)."""
    rid = os.environ.get("LABFIXTURES_RUN_ID") or os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if rid:
        rid = re.sub(r"[^0-9a-f]", "", rid.lower())[:6]
    if not rid or len(rid) < 6:
        rid = secrets.token_hex(3)
        os.environ["LABFIXTURES_RUN_ID"] = rid
    return rid


def worker_id() -> str:
    """`w3` for xdist worker gw3, `m` for a run without workers."""
    w = os.environ.get("PYTEST_XDIST_WORKER", "")
    return "w" + w[2:] if w.startswith("gw") else "m"


def default_labid(run_base: Path | None = None) -> str:
    """lf-<run>-<worker>; a second lab of the same worker gets `.2`, `.3`... (not `-N`,
    which would read as a veth host's namespace of the first lab)."""
    base = f"{PREFIX}{run_id()}-{worker_id()}"
    root = run_base or RUN_BASE
    lab_id, n = base, 1
    while (root / lab_id).exists() or netns.exists(lab_id):
        n += 1
        lab_id = f"{base}.{n}"
    return lab_id


def check_labid(lab_id: str) -> None:
    if not re.fullmatch(rf"{PREFIX}[A-Za-z0-9][A-Za-z0-9_.-]{{0,40}}", lab_id):
        raise LabError(
            f"lab name {lab_id!r} is not valid",
            "use letters, digits, '-', '_' or '.', up to 40 characters (labfixtures adds "
            f"the {PREFIX!r} prefix)",
        )


def rundir(lab_id: str, run_base: Path | None = None) -> Path:
    """The run directory of lab LAB_ID."""
    return (run_base or RUN_BASE) / lab_id
