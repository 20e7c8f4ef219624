"""The guide's own commands, as a student types them: does each still work?

A scenario marked `guide_commands` runs one command of the reference guide word for word
and records a `GuideStep` through the `guide_step` fixture: it works as the guide shows,
works with a different output, or is refused, with the version of the tool that ran it and
the fix when there is one. The results file keeps the steps of each test; `labctl regress
guide RESULTS` lists the broken ones ("the guide's step A.3 breaks on qemu-img 7.2.22"),
and `compare` says which step a new version broke.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from labfixtures.core.runner import run
from labfixtures.errors import LabError

WORKS, DIFFERS, REFUSED = "works", "differs", "refused"
VERDICTS = {WORKS: "works as the guide shows", DIFFERS: "works, with a different output",
            REFUSED: "refused"}


@dataclass
class GuideStep:
    """One command of the guide and what it did here."""

    step: str  # the guide's section: "A.3", "§5"
    command: str  # as the guide shows it
    verdict: str = ""  # works, differs, refused ('' until the test says)
    detail: str = ""  # what differed, or the refusal's message
    fix: str = ""  # what makes it work today, when it does not
    tool: str = ""  # the program that ran it (qemu-img, ip...)
    tool_version: str = ""

    def works(self) -> None:
        self.verdict, self.detail = WORKS, ""

    def differs(self, detail: str) -> None:
        self.verdict, self.detail = DIFFERS, detail

    def refused(self, detail: str) -> None:
        self.verdict, self.detail = REFUSED, detail

    @property
    def as_shown(self) -> bool:
        """It works and prints what the guide shows."""
        return self.verdict == WORKS

    @property
    def broken(self) -> bool:
        """Refused (or never checked): a student following the guide is stuck here."""
        return self.verdict not in (WORKS, DIFFERS)

    @property
    def key(self) -> tuple[str, str]:
        return self.step, self.command

    def describe(self) -> str:
        head = f"the guide's step {self.step} (`{self.command}`)"
        on = f"{self.tool} {self.tool_version}".strip()
        if self.as_shown:
            return f"{head} works on {on}"
        what = {DIFFERS: "works with a different output", REFUSED: "breaks"}.get(
            self.verdict, "was not checked")
        text = f"{head} {what} on {on}"
        if self.detail:
            text += f": {self.detail}"
        if self.fix:
            text += f" — fix: {self.fix}"
        return text

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GuideStep:
        return cls(**{k: str(v) for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class StepChange:
    base: GuideStep | None
    new: GuideStep

    @property
    def kind(self) -> str:
        """From BASE to NEW: 'newly broken' / 'newly different' (it worked as the guide
        shows in BASE), 'still broken' / 'still different', 'fixed', 'works'; without a
        base, 'broken' / 'different'."""
        new = self.new
        what = "broken" if new.broken else "different"
        if self.base is None:
            return "works" if new.as_shown else what
        if not new.as_shown:
            return f"newly {what}" if self.base.as_shown else f"still {what}"
        return "works" if self.base.as_shown else "fixed"

    def describe(self) -> str:
        text = self.new.describe()
        if self.kind.startswith("newly") and self.base is not None:
            text += f" (it worked on {self.base.tool} {self.base.tool_version})"
        return text


def changes(base: list[GuideStep], new: list[GuideStep]) -> list[StepChange]:
    before = {s.key: s for s in base}
    return [StepChange(before.get(s.key), s) for s in new]


#: How tools print their version, most specific first: `ovs-vsctl (Open vSwitch) 3.1.0`,
#: `OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.17` (on stderr), `ip utility,
#: iproute2-6.1.0, libbpf 1.1.0`, `ps from procps-ng 4.0.2`, `GNU parted 3.5`,
#: `GNU bash, version 5.2.15(1)-release`, `qemu-img version 7.2.22 (Debian ...)`.
_VERSION_PATTERNS = (
    r"\(Open vSwitch\) (\S+)",
    r"OpenSSH_([^\s,]+)",
    r"iproute2-([^\s,]+)",
    r"procps-ng (\S+)",
    r"version ([0-9][^\s(,]*)",
    r"\b([0-9]+\.[0-9]+(?:\.[0-9]+)*\S*)\s*$",
)


def version_in(text: str) -> str:
    """The version number in what `TOOL --version` (or `-V`) printed, else its first line:
    steps recorded on two machines compare by number, not by banner."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    for pattern in _VERSION_PATTERNS:
        m = re.search(pattern, line)
        if m:
            return m.group(1)
    return line or "unknown"


def tool_version(tool: str) -> str:
    """What TOOL says of its version (`--version`, else `-V`; stdout, else stderr, where
    OpenSSH writes it); 'not installed' when there is no such program."""
    for flag in ("--version", "-V"):
        try:
            cp = run([tool, flag], timeout=30, check=False)
        except LabError:
            return "not installed"
        said = cp.stdout if cp.stdout.strip() else cp.stderr
        if cp.ok and said.strip():
            return version_in(said)
    return "unknown"
