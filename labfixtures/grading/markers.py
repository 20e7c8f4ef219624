"""The grading markers, checked (a mistake is one pytest.UsageError naming the test, the
marker and the fix), and what a test item declares as a check.

- `@pytest.mark.points(N)`: a positive number (default 1);
- `@pytest.mark.after("test_x", ...)`: names of checks of the same module;
- `@pytest.mark.hidden`: no arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labfixtures.grading.model import CheckSpec, titles_from_doc

MARKERS = (
    "points(n): the check's weight in the grade (default 1)",
    "after(*names): prerequisites; if one did not pass, this check is not checked",
    "hidden: kept out of the student's feedback until --reveal",
)


def check_points(mark: pytest.Mark) -> str | None:
    if mark.kwargs or len(mark.args) != 1:
        return "it takes one number, the check's points"
    n = mark.args[0]
    if isinstance(n, bool) or not isinstance(n, int | float) or n <= 0:
        return f"the points must be a positive number, not {n!r}"
    return None


def check_after(mark: pytest.Mark, known: set[str]) -> str | None:
    if mark.kwargs or not mark.args:
        return "it takes the names of one or more checks, e.g. after(\"test_gateway\")"
    for a in mark.args:
        if not isinstance(a, str):
            return f"{a!r} is not a check's name (write it as a string)"
        if a not in known:
            return f"no check named {a!r} in this module (checks: {', '.join(sorted(known))})"
    return None


def spec_of(item: pytest.Item) -> CheckSpec:
    """The check ITEM declares (markers already checked)."""
    pm = item.get_closest_marker("points")
    after = tuple(a for m in item.iter_markers("after") for a in m.args)
    doc = getattr(getattr(item, "function", None), "__doc__", None)
    name = getattr(item, "originalname", None) or item.name
    return CheckSpec(item.name, titles_from_doc(doc, name),
                     float(pm.args[0]) if pm else 1.0, after,
                     item.get_closest_marker("hidden") is not None)


def usage_error(item: pytest.Item, mark: pytest.Mark, wrong: str, usage: str) -> pytest.UsageError:
    args = [repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()]
    return pytest.UsageError(f"{item.nodeid}: marker @pytest.mark.{mark.name}"
                             f"({', '.join(args)}): {wrong}\n  remedy: {usage}")


def order(items: list[pytest.Item]) -> list[pytest.Item]:
    """ITEMS with each check after its prerequisites (otherwise in their order); a cycle
    of `after` markers is a UsageError."""
    names = {id(i): getattr(i, "originalname", None) or i.name for i in items}
    placed: list[pytest.Item] = []
    seen: set[int] = set()
    visiting: set[int] = set()

    def place(item: pytest.Item) -> None:
        if id(item) in seen:
            return
        if id(item) in visiting:
            raise pytest.UsageError(f"{item.nodeid}: the `after` markers make a cycle")
        visiting.add(id(item))
        module = item.nodeid.split("::")[0]
        for m in item.iter_markers("after"):
            for pre in m.args:
                for other in items:
                    if other.nodeid.split("::")[0] == module and names[id(other)] == pre:
                        place(other)
        visiting.discard(id(item))
        placed.append(item)
        seen.add(id(item))

    for item in items:
        place(item)
    return placed


def lab_title(module: Any) -> str:
    """The lab's title in the reports: the module's LAB_TITLE, else its docstring's first
    line, else its file name."""
    title = getattr(module, "LAB_TITLE", None)
    if isinstance(title, str) and title:
        return title
    doc = (getattr(module, "__doc__", None) or "").strip().splitlines()
    return doc[0].strip() if doc else Path(getattr(module, "__file__", None) or "lab").stem
