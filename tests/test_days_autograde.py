"""Every day in solutions/ — with REAL nbgrader autograde and the live-kernel planted-bug runner:

- lessons/<day> is what `course build` produces (the committed student version is current);
- the reference solution submitted as a student gets full marks, the untouched lesson gets 0
  (both graded in one nbgrader call);
- every planted bug in autograder/mutants/<day>/ fails a test of its own exercise.

Days appear as their engineers add solutions/<day>/; until then these tests are skipped (the sample course
in tests/test_authoring.py exercises the same harness).
"""

from __future__ import annotations

import pytest

from autograde_harness import (assert_mutants_caught, assert_reference_full_blank_zero, check_lessons_current,
                               reference_and_blank, scratch_layout)
from course.authoring.layout import Layout

LAYOUT = Layout.default()
DAYS = LAYOUT.days()
NOTEBOOKS = [(day, src) for day in DAYS for src in LAYOUT.sources(day)]

no_days = pytest.mark.skipif(not DAYS, reason="no solutions/<day>/ yet")


@pytest.mark.slow
@no_days
@pytest.mark.parametrize("day", DAYS)
def test_reference_full_marks_and_blank_zero(day, tmp_path):
    layout = scratch_layout(LAYOUT, tmp_path)
    check_lessons_current(layout, day)
    report = reference_and_blank(layout, day, tmp_path)
    assert_reference_full_blank_zero(report)


@pytest.mark.slow
@no_days
@pytest.mark.parametrize("day,source", NOTEBOOKS, ids=[f"{d}/{s.stem}" for d, s in NOTEBOOKS])
def test_planted_bugs_caught(day, source):
    assert_mutants_caught(source, LAYOUT.mutants_file(day, source.stem))
