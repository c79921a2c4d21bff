"""The authoring pipeline on the small sample course (tests/fixtures/sample_course, pure Python, fast):
build/--check, the planted-bug runner, course start/check, and class grading with real nbgrader autograde —
including the bad submissions a real class produces."""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from autograde_harness import (assert_mutants_caught, assert_reference_full_blank_zero, reference_and_blank)
from course.authoring import build
from course.authoring.cells import dumps, grade_id, has_hidden, read_source, strip_hidden
from course.authoring.execution import LiveKernel
from course.authoring.grade import grade_class, hidden_lines, html_text
from course.authoring.layout import Layout
from course.authoring.mutants import Mutant, apply_mutant, load_mutants, run_mutants
from course.authoring.student import check as student_check
from course.authoring.student import start

SAMPLE = Path(__file__).parent / "fixtures" / "sample_course"
DAY = "day0_sample"
TIMEOUT = 8          # seconds per cell while grading: the sample's cells take milliseconds


def sample_layout(tmp: Path) -> Layout:
    return Layout.under(tmp, solutions=SAMPLE / "solutions")


# pytest-xdist may tear module fixtures down between tests of one worker; these two are expensive, so they are
# computed once per process and kept here (their folders live in the session's temporary directory).
_ONCE: dict = {}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Layout:
    if "built" not in _ONCE:
        layout = sample_layout(tmp_path_factory.mktemp("course"))
        build.build(layout, log=lambda *a: None)
        _ONCE["built"] = layout
    return _ONCE["built"]


# ------------------------------------------------------------------ cells and build
def test_strip_hidden_keeps_visible_asserts():
    src = "assert f(1) == 2, 'visible'\n### BEGIN HIDDEN TESTS\nassert f(3) == 4\n### END HIDDEN TESTS\n"
    out = strip_hidden(src)
    assert "visible" in out and "f(3)" not in out and not has_hidden(out)


def test_sources_convert_deterministically():
    src = SAMPLE / "solutions" / DAY / "01_basics.py"
    assert dumps(read_source(src)) == dumps(read_source(src))
    ids = [c.id for c in read_source(src).cells]
    assert len(set(ids)) == len(ids) and "lora_scale" in ids


def test_build_writes_student_versions(built):
    files = sorted((built.lessons / DAY).glob("*.ipynb"))
    assert [f.name for f in files] == ["01_basics.ipynb", "02_softmax.ipynb"]
    for f in files:
        text = f.read_text()
        for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "return float(alpha) / r", "1000.0 + math.log"):
            assert marker not in text, f"{f.name} leaks {marker!r}"
        nb = nbformat.reads(text, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert nb.metadata.kernelspec.name == "python3"
    basics = (built.lessons / DAY / "01_basics.ipynb").read_text()
    assert "raise NotImplementedError()" in basics and "alpha=16, r=8 gives a scale of 16/8 = 2.0" in basics


def test_build_check_names_stale_missing_and_extra(built, tmp_path):
    layout = Layout(built.solutions, tmp_path / "lessons", tmp_path / "autograder", tmp_path / "ws")
    shutil.copytree(built.lessons, layout.lessons)
    assert build.check(layout).ok
    f = layout.lessons / DAY / "01_basics.ipynb"
    f.write_text(f.read_text().replace("Exercise 1", "Exercise one"))
    (layout.lessons / DAY / "02_softmax.ipynb").unlink()
    (layout.lessons / DAY / "99_old.ipynb").write_text("{}")
    rep = build.check(layout)
    assert rep.stale == [f"lessons/{DAY}/01_basics.ipynb"]
    assert rep.missing == [f"lessons/{DAY}/02_softmax.ipynb"]
    assert rep.extra == [f"lessons/{DAY}/99_old.ipynb"]
    build.build(layout, log=lambda *a: None)
    assert build.check(layout).ok and not (layout.lessons / DAY / "99_old.ipynb").exists()


def test_resolve_day(built):
    assert built.resolve_day("day0") == DAY and built.resolve_day(DAY) == DAY
    with pytest.raises(KeyError):
        built.resolve_day("day42")


# ------------------------------------------------------------------ planted bugs
def test_mutant_text_must_occur_exactly_once():
    m = Mutant("x", "f", "", [("a", "b")])
    assert apply_mutant("x = a", m) == "x = b"
    for src in ("x = 1", "a + a"):
        with pytest.raises(ValueError, match="exactly once"):
            apply_mutant(src, m)


def test_mutants_file_problems_are_reported(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("- id: a\n  exercise: e\n  replace: []\n- {id: b}\n")
    mutants, problems = load_mutants(f)
    assert not mutants and len(problems) == 2


def test_sample_planted_bugs_are_caught():
    for src in sorted((SAMPLE / "solutions" / DAY).glob("*.py")):
        assert_mutants_caught(src, SAMPLE / "autograder" / "mutants" / DAY / f"{src.stem}.yaml")


def test_surviving_and_malformed_mutants_fail_the_run(tmp_path):
    f = tmp_path / "02_softmax.yaml"
    f.write_text(json.dumps([
        {"id": "harmless", "exercise": "softmax", "description": "a no-op rename", "replace":
         [{"old": "total = sum(exps)", "new": "total = sum(list(exps))"}]},
        {"id": "typo", "exercise": "softmax", "description": "text not in the cell", "replace":
         [{"old": "no such text", "new": "x"}]},
    ]))
    rep = run_mutants(SAMPLE / "solutions" / DAY / "02_softmax.py", f, timeout=30)
    status = {r.id: r.status for r in rep.results}
    assert status == {"harmless": "NOT CAUGHT", "typo": "ERROR"} and not rep.ok
    assert any("at least 2 needed" in p for p in rep.problems) is False  # two mutants listed: count is met


# ------------------------------------------------------------------ students
def test_start_never_overwrites_and_check_reports_per_exercise(built):
    start(built, DAY, log=lambda *a: None)
    mine = built.workspace / DAY / "01_basics.ipynb"
    nb = nbformat.read(mine, as_version=4)
    sol = next(c for c in nb.cells if grade_id(c) == "lora_scale")
    sol.source = "def lora_scale(alpha, r):\n    return float(alpha) / r\n"
    nbformat.write(nb, mine)
    logs = []
    start(built, DAY, log=logs.append)
    assert any("kept" in line and "01_basics" in line for line in logs)
    assert "float(alpha) / r" in mine.read_text()
    res = student_check(mine, timeout=30)
    assert (res.passed, res.total) == (2, 4)
    by_ex = res.by_exercise()
    assert all(t.passed for t in by_ex["lora_scale"])
    assert not any(t.passed for t in by_ex["masked_mean"])
    assert "NotImplementedError" in by_ex["masked_mean"][0].message
    assert "lora_scale" in res.format()


# ------------------------------------------------------------------ class grading (real nbgrader autograde)
# One class is graded once per session (see the `graded` fixture).
grading = pytest.mark.xdist_group("sample_class_grading")
@pytest.mark.slow
def test_sample_reference_full_marks_blank_zero(built, tmp_path):
    layout = Layout(built.solutions, built.lessons, tmp_path / "autograder", tmp_path / "ws")
    assert_reference_full_blank_zero(reference_and_blank(layout, DAY, tmp_path, timeout=TIMEOUT))


def _with(nb, **sources):
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        if grade_id(c) in sources:
            c.source = sources[grade_id(c)]
    return nb


def _source(nb, gid):
    return next(c.source for c in nb.cells if grade_id(c) == gid)


def _without(nb, *ids):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if grade_id(c) not in ids]
    return nb


NOISY = ("import sys, warnings\n"
         "def lora_scale(alpha, r):\n"
         "    warnings.warn('a library deprecation warning', UserWarning)\n"
         "    sys.stderr.write('progress: 100%\\n')\n"
         "    return float(alpha) / r\n")


def make_class(root: Path) -> Path:
    """A class in the <student>/<notebook>.ipynb layout (plus one flat file), good and bad submissions."""
    ref1 = read_source(SAMPLE / "solutions" / DAY / "01_basics.py")
    ref2 = read_source(SAMPLE / "solutions" / DAY / "02_softmax.py")
    wrong_scale = "def lora_scale(alpha, r):\n    return float(alpha) * r\n"
    wrong_mask = "def masked_mean(values, mask):\n    kept = [v for v, m in zip(values, mask) if not m]\n    return sum(kept) / len(kept)\n"
    huge = copy.deepcopy(ref1)
    huge.cells.append(nbformat.v4.new_code_cell("print('x' * 5_000_000)"))
    huge.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="y" * 3_000_000)]
    subs = {
        "alice_ref": (ref1, ref2),
        "bob_partial": (_with(ref1, masked_mean=wrong_mask), None),
        "carol_loop": (_with(ref1, lora_scale="def lora_scale(alpha, r):\n    while True:\n        pass\n"), ref2),
        "dave_import": (_with(ref1, masked_mean="import not_a_real_module\n" + _source(ref1, "masked_mean")), ref2),
        "dave_edits_locked": (_with(ref1, given_data="import not_a_real_module\n"), ref2),
        "erin_kernel_dies": (_with(ref1, lora_scale="import os\nos._exit(1)\n"), ref2),
        "frank_deleted": (_without(_with(ref1, lora_scale=wrong_scale), "lora_scale__seed_example",
                                   "lora_scale__is_float"), ref2),
        "gina_edited": (_with(ref1, lora_scale=wrong_scale, lora_scale__seed_example="assert True",
                              lora_scale__is_float="pass"), ref2),
        "hugo_huge": (huge, ref2),
        "ivy_noisy": (_with(ref1, lora_scale=NOISY), ref2),
    }
    out = root / "class"
    for student, (nb1, nb2) in subs.items():
        (out / student).mkdir(parents=True)
        (out / student / "01_basics.ipynb").write_text(dumps(nb1))
        if nb2 is not None:
            (out / student / "02_softmax.ipynb").write_text(dumps(nb2))
    (out / "jack_not_json.ipynb").write_text("this is not JSON {")
    (out / "kate_not_notebook").mkdir()
    (out / "kate_not_notebook" / "01_basics.ipynb").write_text('{"hello": "world"}')
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class is graded once per test session, even across pytest-xdist workers (a file lock in the
    session's shared temporary directory; the first worker grades, the others read its results)."""
    if "graded" not in _ONCE:
        import fcntl
        import pickle

        shared = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            shared = shared.parent
        tmp = shared / "sample_class_grading"
        with open(shared / "sample_class_grading.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = tmp / "result.pickle"
            if not done.exists():
                tmp.mkdir(exist_ok=True)
                layout = sample_layout(tmp)
                build.build(layout, log=lambda *a: None)
                result = _grade_class(layout, tmp)
                done.write_bytes(pickle.dumps(result))
            _ONCE["graded"] = pickle.loads(done.read_bytes())
    return _ONCE["graded"]


def _grade_class(built, tmp):
    layout = Layout(built.solutions, built.lessons, tmp / "autograder", tmp / "ws")
    klass = make_class(tmp)
    report = grade_class(layout, DAY, klass, jobs=2, timeout=TIMEOUT, progress=False)
    rows = {r["student"]: r for r in csv.DictReader(report.csv_path.open())}
    return layout, klass, report, rows


@pytest.mark.slow
@grading
def test_good_and_partial_students_are_graded(graded):
    _, _, report, rows = graded
    assert rows["alice_ref"]["score"] == "7" and rows["alice_ref"]["status"] == "graded"
    # partial credit: the inverted mask passes the visible check (same mean on the given data) but not the hidden one
    assert (rows["bob_partial"]["lora_scale"], rows["bob_partial"]["masked_mean"], rows["bob_partial"]["softmax"]) == ("2", "1", "0")


@pytest.mark.slow
@grading
def test_infinite_loop_costs_only_that_exercise(graded):
    row = graded[3]["carol_loop"]
    assert (row["status"], row["lora_scale"], row["masked_mean"], row["softmax"]) == ("graded", "0", "3", "2")


@pytest.mark.slow
@grading
def test_crash_at_import(graded):
    rows = graded[3]
    # a missing module fails its own cell (masked_mean stays undefined); the rest of the notebook is graded
    assert (rows["dave_import"]["status"], rows["dave_import"]["lora_scale"], rows["dave_import"]["masked_mean"],
            rows["dave_import"]["softmax"]) == ("graded", "2", "0", "2")
    # the same import typed into a read-only cell is undone: nbgrader restores locked cells from the gradebook
    assert rows["dave_edits_locked"]["score"] == "7"
    # a kernel that dies is reported for that student, with zero points
    assert rows["erin_kernel_dies"]["status"] == "error" and rows["erin_kernel_dies"]["score"] == "0"
    assert "kernel died" in rows["erin_kernel_dies"]["message"]


@pytest.mark.slow
@grading
def test_deleted_and_edited_test_cells_are_restored(graded):
    layout, _, _, rows = graded
    assert rows["frank_deleted"]["lora_scale"] == "0" and rows["frank_deleted"]["masked_mean"] == "3"
    assert rows["gina_edited"]["lora_scale"] == "0" and rows["gina_edited"]["score"] == "5"
    nb = nbformat.read(layout.autograder / "autograded" / "frank_deleted" / DAY / "01_basics.ipynb", as_version=4)
    assert {"lora_scale__seed_example", "lora_scale__is_float"} <= {grade_id(c) for c in nb.cells}
    edited = nbformat.read(layout.autograder / "autograded" / "gina_edited" / DAY / "01_basics.ipynb", as_version=4)
    assert "16/8 = 2.0" in next(c.source for c in edited.cells if grade_id(c) == "lora_scale__seed_example")


@pytest.mark.slow
@grading
def test_files_that_are_not_notebooks_are_reported(graded):
    rows = graded[3]
    assert rows["jack_not_json"]["status"] == "error" and "invalid JSON" in rows["jack_not_json"]["message"]
    assert rows["kate_not_notebook"]["status"] == "error" and "not a notebook" in rows["kate_not_notebook"]["message"]


@pytest.mark.slow
@grading
def test_huge_outputs_are_cut(graded):
    layout, _, _, rows = graded
    assert rows["hugo_huge"]["score"] == "7"
    out = layout.autograder / "autograded" / "hugo_huge" / DAY / "01_basics.ipynb"
    assert out.stat().st_size < 1_000_000
    # (the page inlines MathJax for offline math, ~1.5 MB of script: count its visible text)
    assert len(html_text(layout.autograder / "feedback" / "hugo_huge" / DAY / "01_basics.html")) < 1_000_000


@pytest.mark.slow
@grading
def test_a_correct_solution_that_warns_on_stderr_gets_full_marks(graded):
    from nbgrader.utils import determine_grade

    layout, klass, _, rows = graded
    assert rows["ivy_noisy"]["score"] == "7"
    # proof that the stderr is really there, and that nbgrader alone would have scored the test cell 0
    nb = nbformat.read(klass / "ivy_noisy" / "01_basics.ipynb", as_version=4)
    with LiveKernel(nb, klass, timeout=30) as k:
        for i, c in enumerate(nb.cells):
            if c.cell_type == "code":
                c.outputs = k.run(c, i)
    test = next(c for c in nb.cells if grade_id(c) == "lora_scale__seed_example")
    assert any(o.get("name") == "stderr" for o in test.outputs)
    assert determine_grade(test)[0] == 0


@pytest.mark.slow
@grading
def test_feedback_has_no_hidden_tests(graded):
    layout, _, report, _ = graded
    leaks = hidden_lines(Layout.under(Path("/nonexistent"), solutions=SAMPLE / "solutions"), DAY)
    assert leaks and any("1000.0" in ln for ln in leaks)
    pages = sorted((layout.autograder / "feedback").glob(f"*/{DAY}/*.html"))
    assert len(pages) >= 10
    for page in pages:
        text = html_text(page)
        assert not [ln for ln in leaks if ln in text], page
        assert "BEGIN HIDDEN TESTS" not in text
    assert "alpha=16, r=8 gives a scale of 16/8 = 2.0" in html_text(
        layout.autograder / "feedback" / "alice_ref" / DAY / "01_basics.html")


@pytest.mark.slow
@grading
def test_regrading_is_idempotent_and_sequential_equals_parallel(graded):
    layout, klass, report, rows = graded
    first = report.csv_path.read_text()
    again = grade_class(layout, DAY, klass, jobs=1, timeout=TIMEOUT, feedback=False, progress=False)
    assert again.csv_path.read_text() == first
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{layout.autograder / 'gradebook.db'}") as gb:
        assert len(gb.students) == len([r for r in rows.values() if r["status"] == "graded" or r["student"].startswith("erin")])
        assert len(gb.find_assignment(DAY).submissions) == len(gb.students)
        # formgrader lists each student by name right after `course grade`, never as "None, None"
        assert all(st.last_name for st in gb.students), [(st.id, st.first_name, st.last_name) for st in gb.students]


# ------------------------------------------------------------------ the command line
def test_cli_start_check_records_progress(built, tmp_path, monkeypatch, capsys):
    from course import paths, progress
    from course.cli import main

    monkeypatch.setattr(paths, "SOLUTIONS", built.solutions)
    monkeypatch.setattr(paths, "LESSONS", built.lessons)
    monkeypatch.setattr(paths, "WORKSPACE", tmp_path / "ws")
    assert main(["start", "day0"]) == 0
    nb = tmp_path / "ws" / DAY / "02_softmax.ipynb"
    assert nb.exists()
    assert main(["check", str(nb), "--timeout", "30"]) == 1          # nothing written yet: checks fail
    out = capsys.readouterr().out
    assert "0/2 checks pass" in out and "softmax__sums_to_one: exercise softmax is not done yet (NotImplementedError)" in out
    assert progress.load(tmp_path / "ws")[f"{DAY}/02_softmax.ipynb"] | {"at": None} == {"passed": 0, "total": 2, "at": None}
    assert main(["check", str(SAMPLE / "solutions" / DAY / "02_softmax.py")]) == 0   # the reference passes all
    assert main(["build", "--check"]) == 0
    assert main(["mutants", "day0", "--notebook", "02_softmax", "--timeout", "30"]) == 1   # no mutants dir here
    assert "does not exist" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_grade_flat_folder(built, tmp_path, monkeypatch, capsys):
    """`course grade` on a flat folder of <student>.ipynb: a multi-notebook day's file is recognised by its cells."""
    from course import paths
    from course.cli import main

    monkeypatch.setattr(paths, "SOLUTIONS", built.solutions)
    monkeypatch.setattr(paths, "LESSONS", built.lessons)
    monkeypatch.setattr(paths, "AUTOGRADER", tmp_path / "autograder")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "zoe.ipynb").write_text(dumps(read_source(SAMPLE / "solutions" / DAY / "02_softmax.py")))
    (flat / "notes.txt").write_text("not a submission")
    assert main(["grade", "day0", str(flat), "--timeout", str(TIMEOUT), "--no-feedback"]) == 0
    out = capsys.readouterr().out
    assert "skipped notes.txt" in out
    rows = {r["student"]: r for r in csv.DictReader((tmp_path / "autograder" / "grades.csv").open())}
    assert (rows["zoe"]["softmax"], rows["zoe"]["lora_scale"], rows["zoe"]["score"]) == ("2", "0", "2")
