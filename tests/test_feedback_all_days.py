"""Feedback for everyone (issue #15 item 4): every notebook of every day under solutions/ (enumerated, so new ones are
covered) yields feedback HTML for a reference, a blank and a half-done submission, with no hidden-test code in it,
and the leak check withholds none of them.

Cheap by construction: no kernel runs. Each submission is built as nbgrader's autograde leaves it (test cells from
the source, hidden tests included; solution cells from the reference or the lesson), failing test cells get the
error output IPython would print (its traceback quotes the failing hidden line), and nbgrader's feedback exporter
(its template, our StripHiddenTests) renders it; only nbgrader's gradebook lookup is replaced by scoring the outputs.
"""

from __future__ import annotations

import copy
import json

import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import determine_grade

from course.authoring.cells import has_hidden, is_solution, is_test, read_source
from course.authoring.grade import hidden_lines, html_text, leak_lines, own_lines, shown_lines
from course.authoring.layout import Layout
from course.authoring.nbgrader_setup import StripHiddenTests

LAYOUT = Layout.default()
NOTEBOOKS = [(day, src) for day in LAYOUT.days() for src in LAYOUT.sources(day)]


class ScoreFromOutputs(NbGraderPreprocessor):
    """GetGrades without a gradebook: each test cell's score from its outputs (nbgrader's own determine_grade)."""

    def preprocess(self, nb, resources):
        total = max_total = 0.0
        for cell in nb.cells:
            if is_test(cell):
                score, points = determine_grade(cell)
                cell.metadata.nbgrader["score"], cell.metadata.nbgrader["points"] = score, points
                total, max_total = total + (score or 0), max_total + (points or 0)
        resources["nbgrader"].update(score=total, max_score=max_total, late_penalty=0)
        return nb, resources


def _exporter() -> HTMLExporter:
    import os

    import nbgrader.converters as conv
    from traitlets.config import Config

    base = os.path.dirname(conv.__file__)
    c = Config()
    c.HTMLExporter.template_name = "feedback"
    c.HTMLExporter.extra_template_basedirs = [os.path.join(base, "..", "server_extensions", "formgrader",
                                                           "templates")]
    c.HTMLExporter.extra_template_paths = [os.path.join(base, "..", "server_extensions", "formgrader", "static",
                                                        "node_modules", "bootstrap", "dist", "css")]
    ex = HTMLExporter(config=c)
    for pp in (ScoreFromOutputs, StripHiddenTests, CSSHTMLHeaderPreprocessor):
        ex.register_preprocessor(pp, enabled=True)
    return ex


def _failed(cell) -> None:
    """The error output IPython prints for a failing assert: its traceback quotes the cell's lines."""
    lines = cell.source.splitlines()
    tb = ["---------------------------------------------------------------------------",
          "AssertionError                            Traceback (most recent call last)",
          "Cell In[7], line 1", *[f"      {i + 1} {ln}" for i, ln in enumerate(lines)],
          "AssertionError: the check failed"]
    cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="the check failed",
                                           traceback=tb)]


def submissions(day: str, src) -> dict[str, nbformat.NotebookNode]:
    ref = read_source(src)
    lesson = nbformat.read(LAYOUT.lessons / day / f"{src.stem}.ipynb", as_version=4)
    stubs = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in lesson.cells if is_solution(c)}
    out = {}
    solution_ids = [c.metadata.nbgrader["grade_id"] for c in ref.cells if is_solution(c)]
    done = set(solution_ids[: len(solution_ids) // 2])
    for kind in ("reference", "blank", "half"):
        nb = copy.deepcopy(ref)
        for c in nb.cells:
            gid = c.metadata.get("nbgrader", {}).get("grade_id")
            if is_solution(c) and (kind == "blank" or (kind == "half" and gid not in done)):
                c.source = stubs.get(gid, c.source)
            if is_test(c) and kind != "reference":
                _failed(c)
        out[kind] = nb
    return out


@pytest.mark.parametrize("day,src", NOTEBOOKS, ids=[f"{d}/{s.stem}" for d, s in NOTEBOOKS])
def test_feedback_for_reference_blank_and_half_done(day, src, tmp_path):
    assert any(has_hidden(c.source) for c in read_source(src).cells if is_test(c)), "no hidden tests?"
    leaks = leak_lines(LAYOUT, day)
    ex = _exporter()
    for kind, nb in submissions(day, src).items():
        body, _ = ex.from_notebook_node(nb, resources={"nbgrader": {"notebook": src.stem}})
        page = tmp_path / f"{kind}.html"
        page.write_text(body, encoding="utf-8")
        (tmp_path / f"{kind}.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
        own = own_lines(tmp_path / f"{kind}.ipynb")        # the student's own code is theirs to see
        text = html_text(page)
        assert "BEGIN HIDDEN TESTS" not in text and "Test cell" in text, kind
        leaked = [ln for ln in shown_lines(text, leaks) if ln not in own]
        assert not leaked, (kind, leaked[:3])


def test_a_leak_is_seen_in_code_and_in_a_traceback():
    text = "x = 1\n----> 3 assert f(2) == 4\n      4 assert g(1) == 0, 'visible message'\n"
    assert shown_lines(text, ["assert f(2) == 4", "assert g(1) == 0", "x = 1", "y = 2"]) == ["assert f(2) == 4",
                                                                                           "x = 1"]


def test_every_day_is_covered_and_the_old_check_was_too_broad():
    """19 notebooks when this was written (more may come); the old check (every hidden line, even those the lesson
    shows too) flags ordinary visible code such as a ``with torch.no_grad():`` line."""
    assert len(NOTEBOOKS) >= 19 and len({d for d, _ in NOTEBOOKS}) >= 7
    broad = 0
    for day in LAYOUT.days():
        public = set()
        for nb in (LAYOUT.lessons / day).glob("*.ipynb"):
            for c in json.loads(nb.read_text())["cells"]:
                public |= {ln.strip() for ln in "".join(c["source"]).splitlines()}
        broad += len(set(hidden_lines(LAYOUT, day)) & public)
        assert not set(leak_lines(LAYOUT, day)) & public
    assert broad > 0
