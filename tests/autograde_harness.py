"""Shared checks for a course day (or the sample course): real nbgrader autograde and the planted-bug runner.

Used by tests/test_days_autograde.py (every solutions/<day>/) and tests/test_authoring.py (the sample course).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from course.authoring.build import check as build_check
from course.authoring.cells import dumps, read_source
from course.authoring.grade import grade_class
from course.authoring.layout import Layout
from course.authoring.mutants import format_reports, run_mutants

def scaled_timeout(base: float, cap: float = 4.0) -> int:
    """``base`` seconds on an idle machine, stretched by the measured load (1-minute load average per core, up
    to ``cap`` times): a 2-core laptop at load 8 gets 4x. ``COURSE_TEST_TIMEOUT`` (seconds) overrides."""
    import os

    if os.environ.get("COURSE_TEST_TIMEOUT"):
        return int(os.environ["COURSE_TEST_TIMEOUT"])
    try:
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        load = 1.0
    return int(base * min(cap, max(1.0, load)))


# seconds per cell; the tiny profile's slowest cells take seconds idle, minutes on a busy 2-core machine
GRADE_TIMEOUT = scaled_timeout(300)


def scratch_layout(source: Layout, tmp: Path) -> Layout:
    """The same sources and lessons, but a private nbgrader root (gradebook) under ``tmp``."""
    return Layout(source.solutions, source.lessons, tmp / "autograder", tmp / "workspace")


def check_lessons_current(layout: Layout, day: str) -> None:
    rep = build_check(layout, [day])
    assert rep.ok, (f"lessons/{day} is out of date (run `course build {day}` and commit lessons/): "
                    f"stale {rep.stale}, missing {rep.missing}, extra {rep.extra}")


def reference_and_blank(layout: Layout, day: str, tmp: Path, timeout: int = GRADE_TIMEOUT):
    """Submit the reference solution ('reference') and the untouched lesson ('blank') as two students; autograde
    both in ONE call (one process, one gradebook). Returns the GradeReport."""
    subs = tmp / "submitted"
    for src in layout.sources(day):
        (subs / "reference" / day).mkdir(parents=True, exist_ok=True)
        (subs / "reference" / day / f"{src.stem}.ipynb").write_text(dumps(read_source(src)), encoding="utf-8")
        (subs / "blank" / day).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(layout.lessons / day / f"{src.stem}.ipynb", subs / "blank" / day / f"{src.stem}.ipynb")
    return grade_class(layout, day, subs, jobs=1, timeout=timeout, feedback=False, progress=False)


def assert_reference_full_blank_zero(report) -> None:
    g = report.by_student()
    ref, blank = g["reference"], g["blank"]
    assert ref.status == "graded" and blank.status == "graded", (ref.message, blank.message)
    assert ref.max_score > 0
    lost = {ex: pts for ex, pts in ref.exercises.items()}
    assert ref.score == ref.max_score, (f"the reference solution scored {ref.score:g}/{ref.max_score:g}; "
                                        f"points per exercise: {lost}; see {report.csv_path.parent}/autograded/reference")
    assert blank.score == 0, f"the untouched lesson scored {blank.score:g}: per exercise {blank.exercises}"
    errors = reference_errors(report)
    assert not errors, ("the reference raised in cells that carry no points (nbgrader scores only test cells, so "
                        "a failing assert in a lesson's own check would pass unseen):\n" + "\n".join(errors))


def reference_errors(report) -> list[str]:
    """Every cell of the reference's executed notebooks that ended in an error: '<notebook> cell N: Name: msg'."""
    import nbformat

    out = []
    folder = report.csv_path.parent / "autograded" / "reference" / report.day
    for nb_path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(str(nb_path), as_version=4)
        for i, cell in enumerate(nb.cells, 1):
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error":
                    out.append(f"{nb_path.stem} cell {i}/{len(nb.cells)}: {o.get('ename')}: {str(o.get('evalue'))[:200]}")
    return out


def assert_mutants_caught(source: Path, mutants_file: Path) -> None:
    rep = run_mutants(source, mutants_file, timeout=GRADE_TIMEOUT, threads=1)
    assert rep.results, f"no planted bugs for {source.name}"
    assert rep.ok, "\n" + format_reports([rep])
