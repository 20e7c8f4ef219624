"""Gradescope's autograder results.json for one student.

    {"score": 8.0, "output": "...", "tests": [{"name": ..., "score": 2.0, "max_score": 2.0,
     "status": "passed", "output": ..., "visibility": "visible"}, ...]}

A hidden check has `visibility: hidden` until the teacher reveals it (then `visible`). A
not-gradable student has no tests, the reason in `output`, and `extra_data.gradable:
false` (PrairieLearn's word), so that a 0 is never given silently.
"""

from __future__ import annotations

from typing import Any

from labfixtures.grading.feedback import outcome_text, points
from labfixtures.grading.messages import Catalogue
from labfixtures.grading.model import FAILED, NOT_GRADABLE, PARTIAL, PASSED, Grade


def results(grade: Grade, cat: Catalogue, lang: str = "en", reveal: bool = False
            ) -> dict[str, Any]:
    if grade.status == NOT_GRADABLE:
        return {"score": 0.0, "output": cat.text("report.not_gradable", lang,
                                                 reason=grade.reason)
                + "\n" + cat.text("report.not_gradable_note", lang),
                "tests": [], "extra_data": {"gradable": False, "status": NOT_GRADABLE,
                                            "reason": grade.reason}}
    tests = []
    for c in grade.checks:
        lines = [outcome_text(c, grade, cat, lang)]
        f = c.finding
        if f is not None and c.outcome in (FAILED, PARTIAL):
            for label, m in (("report.probed", f.probe), ("report.from", f.where),
                             ("report.expected", f.expected), ("report.seen", f.seen),
                             ("report.hint", f.hint)):
                if m is not None:
                    lines.append(f"{cat.text(label, lang)}: {cat.render(m, lang)}")
            if f.details:
                lines.append(f.details)
        tests.append({"name": c.spec.title_in(lang), "score": c.score,
                      "max_score": c.spec.points,
                      "status": "passed" if c.outcome == PASSED else "failed",
                      "output": "\n".join(lines),
                      "visibility": "hidden" if c.spec.hidden and not reveal else "visible"})
    return {"score": grade.score,
            "output": cat.text("report.score", lang, score=points(grade.score),
                               max_score=points(grade.max_score)),
            "tests": tests,
            "extra_data": {"gradable": True, "status": grade.status,
                           "max_score": grade.max_score}}
