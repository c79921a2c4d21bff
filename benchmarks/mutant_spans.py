"""What the planted-bug run of a notebook costs, exercise by exercise, from one executed reference.

    python benchmarks/notebook_times.py day2_rlhf/01 --threads 1 --save /tmp/run
    python benchmarks/mutant_spans.py /tmp/run/day2_rlhf__01_reward_model.ipynb

`course mutants` runs the reference once (up to the last test cell), then for each planted bug re-runs the
exercise's solution cell, mutated, and every code cell after it up to the exercise's last test cell; after the last
planted bug of an exercise it restores the reference over the same span once. A slow given cell (a training run)
between an exercise and its last test is paid (number of its mutants + 1) times: this script prints each exercise's
span, its cost per planted bug and in total, and the slowest cells inside the span, read from the cell timings
nbclient records in the executed notebook.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.authoring.cells import grade_id  # noqa: E402
from course.authoring.mutants import ExerciseCells, load_mutants  # noqa: E402


def cell_seconds(cell) -> float:
    ex = cell.get("metadata", {}).get("execution", {})
    a, b = ex.get("iopub.execute_input") or ex.get("iopub.status.busy"), ex.get("shell.execute_reply")
    if not (a and b):
        return 0.0
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(b) - parse(a)).total_seconds()


def report(executed: Path) -> float:
    import nbformat

    day, stem = executed.stem.split("__", 1)
    nb = nbformat.read(str(executed), as_version=4)
    cells = nb.cells
    secs = [cell_seconds(c) if c.cell_type == "code" else 0.0 for c in cells]
    mutants, _ = load_mutants(ROOT / "autograder" / "mutants" / day / f"{stem}.yaml")
    ex_cells = ExerciseCells.of(cells)
    last_needed = ex_cells.last_needed
    total = sum(secs[:last_needed + 1])
    print(f"{day}/{stem}: reference run {sum(secs):.1f} s, of which the planted-bug run needs {total:.1f} s "
          f"(cells 1-{last_needed + 1}; the rest follow the last test cell)")
    for ex in ex_cells.graded:
        start, span = ex_cells.solutions[ex], ex_cells.span(ex)
        own_tests = set(ex_cells.tests[ex])
        cost = secs[start] + sum(secs[j] for j in span)
        n = sum(m.exercise == ex for m in mutants)
        runs = n + 1 if n else 0             # each planted bug, then the reference restored once
        total += runs * cost
        slow = sorted(((secs[j], j) for j in span if j not in own_tests), reverse=True)[:3]
        slow_txt = ", ".join(f"cell {j + 1} {grade_id(cells[j]) or ''} {s:.1f}s".replace("  ", " ") for s, j in slow if s >= 0.5)
        print(f"  {ex:<34} ({n:>2} bugs + 1) x {cost:6.1f} s = {runs * cost:7.1f} s  cells {start + 1}-{span[-1] + 1 if span else start + 1}"
              + (f"  (slowest given: {slow_txt})" if slow_txt else ""))
    print(f"  estimated planted-bug run: {total:.1f} s (cell time only, same machine)")
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("executed", nargs="+", type=Path, help="notebooks written by notebook_times.py --save")
    args = ap.parse_args()
    for p in args.executed:
        report(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
