"""Every notebook source in solutions/<day>/ (all days): each exercise is split into at least two graded checks worth
points, grade_ids are unique, no test cell carries a solution or looks at timings, and each exercise has at least two
planted bugs in autograder/mutants/<day>/ whose replaced text occurs exactly once in the reference solution.
Per-day checks (notebook names, reference solutions on other inputs) stay in tests/test_dayN.py."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from course.authoring.layout import Layout
from course.authoring.reference import code_cells

LAYOUT = Layout.default()
NOTEBOOKS = [(day, src) for day in LAYOUT.days() for src in LAYOUT.sources(day)]


def test_every_day_is_checked():
    assert len(LAYOUT.days()) >= 7 and all(LAYOUT.sources(d) for d in LAYOUT.days())


@pytest.mark.parametrize("day,src", NOTEBOOKS, ids=[f"{d}/{s.stem}" for d, s in NOTEBOOKS])
def test_exercises_have_split_tests_and_two_planted_bugs(day, src):
    cs = code_cells(src)
    exercises = [m["grade_id"] for m, _ in cs if m.get("solution") and not m.get("grade")]
    assert exercises, "every notebook has at least one exercise"
    tests = Counter(m["grade_id"].split("__")[0] for m, _ in cs if m.get("grade"))
    for ex in exercises:
        assert tests[ex] >= 2, f"{ex}: split into at least two graded checks (partial credit)"
    ids = [m["grade_id"] for m, _ in cs if "grade_id" in m]
    assert len(ids) == len(set(ids)), "grade_ids are unique"
    for m, s in cs:
        if m.get("grade"):
            gid = m["grade_id"]
            assert m.get("points", 0) >= 1 and "### BEGIN SOLUTION" not in s, f"{gid}: points ≥ 1, no solution"
            assert "perf_counter" not in s and "latency" not in s, f"{gid}: graded tests never look at timings"
    mutants = yaml.safe_load(LAYOUT.mutants_file(day, src.stem).read_text())
    per_ex = Counter(m["exercise"] for m in mutants)
    solutions = {m["grade_id"]: s for m, s in cs if m.get("grade_id") in exercises}
    for ex in exercises:
        assert per_ex[ex] >= 2, f"{ex}: at least two planted bugs"
    for m in mutants:
        for r in m["replace"]:
            assert solutions[m["exercise"]].count(r["old"]) == 1, f"{m['id']}: {r['old']!r} must occur once"
