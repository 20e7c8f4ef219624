"""The guide's own commands, as a student types them: does each still work?

A scenario marked `guide_commands` runs one command of the reference guide word for word
and records a `GuideStep` through the `guide_step` fixture: it works as the guide shows,
works with a different output, or is refused, with the version of the tool that ran it and
the fix when there is one. The results file keeps the steps of each test; `labctl regress
guide RESULTS` lists the broken ones ("the guide's step A.3 breaks on qemu-img 7.2.22"),
and `compare` says which step a new version broke.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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
