"""A cell that times out is reported as a timeout naming the cell, never as a later cell's error (issue: a planted
bug's run hit the cell timeout and then reported `KeyError: 0.5` from the next cell)."""

from pathlib import Path

import yaml

from course.authoring.mutants import run_mutants

SOURCE = '''# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% nbgrader={"grade": false, "grade_id": "delay", "locked": false, "schema_version": 3, "solution": true, "task": false}
def delay(n):
    ### BEGIN SOLUTION
    return n
    ### END SOLUTION

# %%
import time
RESULTS = {}
time.sleep(delay(0))
RESULTS[0.5] = delay(1)

# %% nbgrader={"grade": true, "grade_id": "delay__values", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert RESULTS[0.5] == 1 and delay(2) == 2
'''
MUTANTS = [
    {"id": "sleeps_in_given_cell", "exercise": "delay", "description": "a huge delay: the given cell times out",
     "replace": [{"old": "return n", "new": "return n + 600"}]},
    {"id": "loops_in_the_check", "exercise": "delay", "description": "loops forever for n > 1",
     "replace": [{"old": "return n", "new": "while n > 1:\n        pass\n    return n"}]},
]


def test_timeouts_name_their_cell(tmp_path: Path):
    src = tmp_path / "01_delay.py"
    src.write_text(SOURCE)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(MUTANTS))
    rep = run_mutants(src, tmp_path / "m.yaml", timeout=4, threads=1)
    r = {x.id: x for x in rep.results}
    given = r["sleeps_in_given_cell"]
    assert given.status == "ERROR" and "timed out after 4 s in cell 2/3" in given.error, given
    assert "KeyError" not in str(given.error) and not given.caught_by
    assert r["loops_in_the_check"].caught_by == ["delay__values (timed out)"]
    assert not [p for p in rep.problems if "timed out" in p or "left" in p], rep.problems


STATEFUL = SOURCE.replace("RESULTS = {}\n", "RESULTS = globals().get('RESULTS', {})\nRUNS = globals().get('RUNS', 0) + 1\n")\
    .replace("assert RESULTS[0.5] == 1 and delay(2) == 2", "assert RESULTS[0.5] == 1 and delay(2) == 2 and RUNS == 1")
WRONG = [{"id": f"off_by_{k}", "exercise": "delay", "description": "wrong value",
          "replace": [{"old": "return n", "new": f"return n + {k}"}]} for k in (1, 2, 3)]


def test_a_span_that_keeps_state_is_reported_after_the_exercises_last_planted_bug(tmp_path: Path):
    """The reference is restored once after the last planted bug of an exercise (not after each): a given cell that
    accumulates state across runs (RUNS grows) still makes the re-check fail, and the run says so."""
    src = tmp_path / "01_delay.py"
    src.write_text(STATEFUL)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(WRONG))
    rep = run_mutants(src, tmp_path / "m.yaml", timeout=30, threads=1)
    assert all(r.caught_by == ["delay__values"] for r in rep.results), rep.results
    left = [p for p in rep.problems if "keeps state between runs" in p]
    assert len(left) == 1 and "off_by_3 (the last planted bug of delay)" in left[0], rep.problems


def test_grouped_restore_leaves_a_clean_span_clean(tmp_path: Path):
    src = tmp_path / "01_delay.py"
    src.write_text(SOURCE)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(WRONG))
    rep = run_mutants(src, tmp_path / "m.yaml", timeout=30, threads=1)
    assert rep.ok and [r.caught_by for r in rep.results] == [["delay__values"]] * 3, (rep.results, rep.problems)
