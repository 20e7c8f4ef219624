"""What every labctl command shares: root checks and lab names."""

from __future__ import annotations

import os

from labfixtures.errors import LabError


def need_root() -> None:
    if os.geteuid() != 0:
        raise LabError("this command needs root privileges", "run it with sudo")


def labid(name: str) -> str:
    """The lab id of NAME as a user types it: seed-minimal or lf-seed-minimal."""
    return name if name.startswith("lf-") else f"lf-{name}"


def short_name(lab_id: str) -> str:
    return lab_id.removeprefix("lf-")
