"""How every assertion shows what it saw: one table rendering, one way to name a target.

    routing table:
        default via 203.0.113.129 dev eth0
        203.0.113.128/26 dev eth0 scope link

A failure message is a sentence (what was expected, what is wrong), then the real table
under a title, each row indented as `ip route` would print it, then a hint.
"""

from __future__ import annotations

from collections.abc import Iterable

INDENT = "    "


def table(rows: Iterable[object], empty: str = "(empty)") -> str:
    """ROWS one per line, indented; EMPTY (in the same place) when there is none."""
    lines = [f"{INDENT}{r}" for r in rows]
    return "\n".join(lines) if lines else f"{INDENT}{empty}"


def titled(title: str, rows: Iterable[object], empty: str = "(empty)") -> str:
    """`  TITLE:` then the table: the block every failure message ends with."""
    return f"  {title}:\n{table(rows, empty)}"


def name_of(target: object) -> str:
    """What a student calls the target: its name (a host, a VM), the lab's id, or repr."""
    return (getattr(target, "name", None) or getattr(target, "labid", None)
            or repr(target))


def bullets(items: Iterable[object]) -> str:
    """Items one per line under a sentence ending with ':'."""
    return "".join(f"\n  {i}" for i in items)
