"""A student's output folder, written from the one `grade.json`:

    grade.json      everything (the record the others are rendered from)
    feedback.md     the student's report, feedback.html the same as a page
    results.json    Gradescope's format
    evidence.json   every probe and the state seen

`write()` renders all of them; `render()` again later (e.g. with `reveal=True`) needs
only grade.json: the grading file's own messages and title are kept in it.
"""

from __future__ import annotations

from pathlib import Path

from labfixtures.grading import evidence, feedback, gradescope
from labfixtures.grading.messages import Catalogue
from labfixtures.grading.model import Grade, write_json, write_text

GRADE_FILE = "grade.json"


def catalogue_for(grade: Grade) -> Catalogue:
    cat = Catalogue()
    if grade.messages:
        cat.extend(grade.messages, f"{grade.grading_file}: MESSAGES")
    return cat


def write(grade: Grade, out: Path, lang: str = "en", reveal: bool = False) -> None:
    """grade.json, then everything rendered from it, in OUT."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "evidence.json", evidence.evidence(grade))
    render(grade, out, lang, reveal)
    grade.write(out / GRADE_FILE)  # last: its presence means the student is done


def render(grade: Grade, out: Path, lang: str = "en", reveal: bool = False) -> None:
    """feedback.md, feedback.html and results.json of GRADE in OUT."""
    cat = catalogue_for(grade)
    md = feedback.markdown(grade, cat, lang, reveal, lab=grade.lab)
    write_text(out / "feedback.md", md)
    write_text(out / "feedback.html", feedback.to_html(md, f"{grade.lab} — {grade.student}",
                                                       grade.drawing))
    write_json(out / "results.json", gradescope.results(grade, cat, lang, reveal))
