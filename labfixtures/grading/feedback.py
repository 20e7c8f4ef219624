"""A student's report, feedback.md and feedback.html, in English or French.

The score, a table of the checks, then for each check that failed what was probed, from
where, what was expected, what was seen, and the hint. A check that could not run because
a prerequisite failed says so once ("not checked: needs ...") and is not listed as a second
mistake. Hidden checks are left out (and counted in one sentence) unless REVEAL.
"""

from __future__ import annotations

import html
import re

from labfixtures.grading.messages import Catalogue
from labfixtures.grading.model import (
    FAILED,
    NOT_GRADABLE,
    PARTIAL,
    PASSED,
    CheckResult,
    Grade,
)

SYMBOL = {PASSED: "✔", FAILED: "✘", PARTIAL: "◐"}


def points(x: float) -> str:
    """2.0 → "2", 1.5 → "1.5"."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def outcome_text(c: CheckResult, grade: Grade, cat: Catalogue, lang: str) -> str:
    if c.needs:
        needs = "”, “".join(
            (grade.check(n).spec.title_in(lang) if grade.check(n) else n)  # type: ignore[union-attr]
            for n in c.needs)
        return cat.text("outcome.not-checked", lang, needs=needs)
    if c.error:
        return cat.text("outcome.error", lang, error=c.error)
    return cat.text(f"outcome.{c.outcome}", lang)


def markdown(grade: Grade, cat: Catalogue, lang: str = "en", reveal: bool = False,
             lab: str = "") -> str:
    """feedback.md for GRADE."""
    t = cat.text
    out = [f"# {t('report.title', lang, lab=lab or grade.grading_file)}", ""]
    who = grade.student + (f" ({grade.name})" if grade.name else "")
    out += [t("report.student", lang, student=who), ""]
    if grade.status == NOT_GRADABLE:
        out += [f"**{t('report.not_gradable', lang, reason=grade.reason)}**", "",
                t("report.not_gradable_note", lang), ""]
        return "\n".join(out)
    shown = grade.visible(reveal)
    hidden = len(grade.checks) - len(shown)
    if hidden:
        score = sum(c.score for c in shown)
        top = sum(c.spec.points for c in shown)
        line = t("report.score_visible", lang, score=points(score), max_score=points(top))
        out.append(f"**{line}**")
        out += ["", t("report.hidden_note", lang, n=hidden)]
    else:
        line = t("report.score", lang, score=points(grade.score),
                 max_score=points(grade.max_score))
        out.append(f"**{line}**")
    out += ["", f"| | {t('report.check', lang)} | {t('report.points', lang)} | "
                f"{t('report.result', lang)} |", "|---|---|---|---|"]
    for c in shown:
        out.append(f"| {SYMBOL.get(c.outcome, '–')} | {_cell(c.spec.title_in(lang))} | "
                   f"{points(c.score)} / {points(c.spec.points)} | "
                   f"{_cell(outcome_text(c, grade, cat, lang))} |")
    mistakes = [c for c in shown if c.outcome in (FAILED, PARTIAL)]
    if not mistakes:
        out += ["", t("report.all_passed", lang)] if all(
            c.outcome == PASSED for c in shown) else []
        return "\n".join(out) + "\n"
    out += ["", f"## {t('report.to_fix', lang)}"]
    for c in mistakes:
        out += ["", f"### {c.spec.title_in(lang)} ({points(c.score)} / "
                    f"{points(c.spec.points)})", ""]
        f = c.finding
        if f is None:
            continue
        for label, m in (("report.probed", f.probe), ("report.from", f.where),
                         ("report.expected", f.expected), ("report.seen", f.seen),
                         ("report.hint", f.hint)):
            if m is not None:
                out.append(f"- **{t(label, lang)}:** {cat.render(m, lang)}")
        if f.details:
            out += ["", f"{t('report.details', lang)}:", "", "```", f.details.rstrip(),
                    "```"]
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_html(md: str, title: str = "feedback", drawing: str = "") -> str:
    """feedback.html from feedback.md: the small subset of Markdown it uses (headings,
    bold, code, bullet lists, one table, fenced blocks), everything else escaped; then
    DRAWING (the lab as an <svg> element, made by labfixtures itself) if given."""
    body: list[str] = []
    in_list = in_table = in_code = False
    for line in md.splitlines():
        if line.startswith("```"):
            body.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            body.append(html.escape(line))
            continue
        if in_list and not line.startswith("- "):
            body.append("</ul>")
            in_list = False
        if in_table and not line.startswith("|"):
            body.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{_inline(line[2:])}</li>")
        elif line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in
                     re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if all(set(c) <= {"-"} for c in cells):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells)
                        + "</tr>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    if in_list:
        body.append("</ul>")
    if in_table:
        body.append("</table>")
    if drawing.startswith("<svg"):
        body.append(f'<figure class="lab">{drawing}</figure>')
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;max-width:50em;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}"
            "pre{background:#f4f4f4;padding:.5em;overflow-x:auto}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)

