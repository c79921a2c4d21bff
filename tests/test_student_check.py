"""`course check` on what learners really hand it: a blank lesson (knock-on errors tied to their exercise), a copy
whose failing test cell was deleted (never "all pass"), a foreign notebook and a corrupt one (one sentence)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from course.authoring import build
from course.authoring.cells import grade_id
from course.authoring.layout import Layout
from course.authoring.student import check, defined_names, start, used_names
from course.cli import main

SAMPLE = Path(__file__).parent / "fixtures" / "sample_course"
DAY = "day0_sample"


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Layout:
    layout = Layout.under(tmp_path_factory.mktemp("course"), solutions=SAMPLE / "solutions")
    build.build(layout, [DAY], log=lambda *a: None)
    start(layout, DAY, log=lambda *a: None)
    return layout


def test_names_a_cell_defines_and_uses():
    src = "%matplotlib inline\nimport torch as T\nMiB = 2 ** 20\ndef f(x):\n    return x\nclass C: pass\nfor i, j in []: pass\n"
    assert defined_names(src) == {"T", "MiB", "f", "C", "i", "j"}
    assert used_names("print(MiB, f(3))") == ["print", "MiB", "f"]


def test_knock_on_errors_and_a_deleted_failing_check(course):
    mine = course.workspace / DAY / "01_basics.ipynb"
    nb = nbformat.read(mine, as_version=4)
    # lora_scale solved, masked_mean left blank, and masked_mean's failing test cells deleted
    next(c for c in nb.cells if grade_id(c) == "lora_scale").source = "def lora_scale(alpha, r):\n    return float(alpha) / r\n"
    nb.cells = [c for c in nb.cells if not (grade_id(c) or "").startswith("masked_mean__")]
    # a given cell that uses the unsolved exercise, and one that depends on that given cell
    nb.cells.append(nbformat.v4.new_code_cell("HALF = masked_mean([1.0, 2.0], [1, 1]) / 2"))
    nb.cells.append(nbformat.v4.new_code_cell("print(HALF * 2)"))
    nbformat.write(nb, mine)
    res = check(mine, timeout=60, layout=course)
    out = res.format()
    assert res.missing == ["masked_mean__given", "masked_mean__hidden"], out
    assert (res.passed, res.total) == (2, 4) and not res.ok, out
    assert "missing from this notebook" in out and "masked_mean__given" in out
    n = len(nb.cells)
    assert f"given cells {n - 1}/{n}, {n}/{n} need exercise masked_mean first" in out, out
    assert "Traceback" not in out


def test_blank_lesson_ties_failures_to_exercises(course, tmp_path):
    blank = tmp_path / DAY / "01_basics.ipynb"
    blank.parent.mkdir()
    blank.write_bytes((course.lessons / DAY / "01_basics.ipynb").read_bytes())
    res = check(blank, timeout=60, layout=course)
    out = res.format()
    assert res.passed == 0 and not res.missing
    assert "exercise lora_scale is not done yet" in out
    assert "need" in out and "exercise lora_scale first" in out, out    # the given print(lora_scale(16, 8)) cell


def test_foreign_and_corrupt_notebooks_get_one_sentence(tmp_path, capsys):
    foreign = tmp_path / "mine.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1 + 1")]
    nbformat.write(nb, foreign)
    res = check(foreign)
    assert res.fatal and "not a course lesson" in res.fatal and not res.ok
    corrupt = tmp_path / "cut.ipynb"
    corrupt.write_text(nbformat.writes(nb)[:40])
    res = check(corrupt)
    assert res.fatal and "invalid JSON" in res.fatal
    for f in (foreign, corrupt):
        assert main(["check", str(f)]) == 2
        out = capsys.readouterr()
        assert "Traceback" not in out.out + out.err
        assert len([ln for ln in out.out.splitlines() if ln.strip()]) == 2     # "running ..." + one sentence
