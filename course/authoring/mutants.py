"""Planted bugs: does each wrong version of an exercise make that exercise's tests fail?

A notebook's reference runs ONCE in a live kernel, up to the last test cell of its last exercise. Then for each mutant (``autograder/mutants/<day>/<nb>.yaml``,
see docs/AUTHORING.md) the exercise's solution cell is executed with the mutant's text replacements, followed by
the cells after it up to the exercise's last test cell (``<exercise>__*``); the failing tests are recorded. After
the last mutant of an exercise, the reference is restored by re-running the same span with the reference solution
(its tests must pass again).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .cells import error_message, exercise_of, grade_id, is_solution, is_test, read_source
from .execution import LiveKernel
from .layout import Layout

MIN_MUTANTS_PER_EXERCISE = 2


@dataclass
class Mutant:
    id: str
    exercise: str
    description: str
    replace: list[tuple[str, str]]


@dataclass
class MutantResult:
    notebook: str
    id: str
    exercise: str
    description: str
    caught_by: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def status(self) -> str:
        return "ERROR" if self.error else ("caught" if self.caught_by else "NOT CAUGHT")

    @property
    def ok(self) -> bool:
        return self.status == "caught"


@dataclass
class NotebookReport:
    notebook: str
    results: list[MutantResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.results)


def load_mutants(path: Path) -> tuple[list[Mutant], list[str]]:
    """Parse a planted-bugs YAML file; return the mutants and the problems found in the file itself."""
    problems: list[str] = []
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    except yaml.YAMLError as e:
        return [], [f"{path}: not valid YAML: {e}"]
    if not isinstance(data, list):
        return [], [f"{path}: expected a list of mutants (- id: ..., exercise: ..., replace: [...])"]
    out, seen = [], set()
    for i, m in enumerate(data):
        where = f"{path.name} item {i + 1}"
        if not isinstance(m, dict) or not {"id", "exercise", "replace"} <= set(m):
            problems.append(f"{where}: needs id, exercise, description and replace")
            continue
        if m["id"] in seen:
            problems.append(f"{where}: duplicate id {m['id']!r}")
        seen.add(m["id"])
        reps = m.get("replace") or []
        if not isinstance(reps, list) or not reps or not all(isinstance(r, dict) and "old" in r and "new" in r for r in reps):
            problems.append(f"{where} ({m['id']}): replace must be a non-empty list of {{old, new}}")
            continue
        out.append(Mutant(str(m["id"]), str(m["exercise"]), str(m.get("description", "")),
                          [(str(r["old"]), str(r["new"])) for r in reps]))
    return out, problems


def apply_mutant(source: str, mutant: Mutant) -> str:
    """Apply the replacements; each ``old`` must occur exactly once in the solution cell (else ``ValueError``)."""
    for old, new in mutant.replace:
        n = source.count(old)
        if n != 1:
            raise ValueError(f"replacement text {old!r} occurs {n} times in the solution cell "
                             f"{mutant.exercise!r} (must be exactly once)")
        source = source.replace(old, new)
    return source


@dataclass
class ExerciseCells:
    """Where each exercise of a notebook lives, as indices into its cells: the solution cell and the test cells
    (``<exercise>__<check>``). One reading, shared by the planted-bug runner and ``benchmarks/mutant_spans.py``."""
    cells: list
    solutions: dict[str, int]
    tests: dict[str, list[int]]

    @classmethod
    def of(cls, cells: list) -> "ExerciseCells":
        solutions = {grade_id(c): i for i, c in enumerate(cells) if is_solution(c) and c.cell_type == "code"}
        tests: dict[str, list[int]] = {}
        for i, c in enumerate(cells):
            if is_test(c):
                tests.setdefault(exercise_of(grade_id(c)), []).append(i)
        return cls(cells, solutions, tests)

    @property
    def graded(self) -> list[str]:
        """Exercises with both a solution cell and test cells, in notebook order."""
        return [ex for ex in self.solutions if ex in self.tests]

    @property
    def last_needed(self) -> int:
        """The last test cell of any exercise: the cells after it are in no exercise's span."""
        return max((max(t) for ex, t in self.tests.items() if ex in self.solutions), default=len(self.cells) - 1)

    def span(self, ex: str) -> list[int]:
        """The code cells a planted bug in ``ex`` re-runs after its solution cell, up to the exercise's last test."""
        start, end = self.solutions[ex], max(self.tests[ex])
        return [j for j in range(start + 1, end + 1) if self.cells[j].cell_type == "code"]


def default_mutants_file(source: Path) -> Path:
    """``<root>/solutions/<day>/<nb>.py`` → ``<root>/autograder/mutants/<day>/<nb>.yaml``."""
    source = Path(source).resolve()
    return source.parents[2] / "autograder" / "mutants" / source.parent.name / f"{source.stem}.yaml"


def run_mutants(notebook_source: Path, mutants_file: Path | None = None, timeout: int = 300,
                threads: int | None = 1, progress=None) -> NotebookReport:
    """Run every planted bug of one notebook source in one live kernel (see the module docstring)."""
    notebook_source = Path(notebook_source)
    mutants_file = Path(mutants_file) if mutants_file else default_mutants_file(notebook_source)
    report = NotebookReport(notebook_source.stem)
    nb = read_source(notebook_source)
    cells = nb.cells
    where_ = ExerciseCells.of(cells)
    solutions, tests, exercises = where_.solutions, where_.tests, where_.graded

    if not mutants_file.exists():
        report.problems.append(f"no planted bugs: {mutants_file} does not exist")
        mutants: list[Mutant] = []
    else:
        mutants, problems = load_mutants(mutants_file)
        report.problems += problems
    for ex in exercises:
        n = sum(m.exercise == ex for m in mutants)
        if n < MIN_MUTANTS_PER_EXERCISE:
            report.problems.append(f"exercise {ex!r} has {n} planted bug(s); at least {MIN_MUTANTS_PER_EXERCISE} needed")
    for ex in solutions:
        if ex not in tests:
            report.problems.append(f"solution cell {ex!r} has no test cells named {ex}__<check>")

    # Validate every mutant before starting a kernel.
    runnable: list[tuple[Mutant, str]] = []
    for m in mutants:
        r = MutantResult(report.notebook, m.id, m.exercise, m.description)
        if m.exercise not in solutions:
            r.error = f"no solution cell with grade_id {m.exercise!r} in {notebook_source.name}"
        elif m.exercise not in tests:
            r.error = f"exercise {m.exercise!r} has no test cells"
        else:
            try:
                runnable.append((m, apply_mutant(cells[solutions[m.exercise]].source, m)))
            except ValueError as e:
                r.error = str(e)
        report.results.append(r)
    by_id = {r.id: r for r in report.results}

    n_cells = len(cells)

    def where(j: int) -> str:
        """A cell as JupyterLab's status bar counts it, with its grade_id when it has one."""
        gid = grade_id(cells[j])
        return f"{gid} (cell {j + 1}/{n_cells})" if gid else f"cell {j + 1}/{n_cells}"

    with tempfile.TemporaryDirectory(prefix="course-mutants-") as cwd, LiveKernel(nb, Path(cwd), timeout, threads) as k:
        failed_ref: dict[str, str] = {}
        timed_out_ref = None
        # cells after the last test cell of any exercise are in no span: the planted bugs never need them (the day's
        # autograde test runs them, and fails if the reference raises there)
        for i, c in enumerate(cells[:where_.last_needed + 1]):
            if c.cell_type != "code":
                continue
            err = error_message(k.run(c, i))
            if timed_out(err):
                # the kernel was interrupted mid-cell: what follows would fail for that reason, not its own
                timed_out_ref = where(i)
                report.problems.append(f"the reference solution timed out in {timed_out_ref} after {timeout} s "
                                       "(a loaded machine? raise --timeout); its planted bugs were not run")
                break
            if err and (is_test(c) or is_solution(c) or not failed_ref):
                failed_ref[grade_id(c) or f"cell {i}"] = err
        if failed_ref:
            for cid, err in failed_ref.items():
                report.problems.append(f"the reference solution fails in {cid}: {err}")
        # Mutants of one exercise run back to back; the reference is restored (and its tests re-checked) once after
        # the last of them: each mutant re-runs the same span from its own solution cell, so what an earlier mutant
        # left behind is recomputed, and a span that keeps state between runs still fails the re-check at the end.
        order = {ex: i for i, ex in enumerate(solutions)}
        runnable.sort(key=lambda mm: order[mm[0].exercise])      # stable: the file's order within an exercise
        for n_run, (m, mutated) in enumerate(runnable):
            r = by_id[m.id]
            last_of_exercise = n_run + 1 == len(runnable) or runnable[n_run + 1][0].exercise != m.exercise
            if progress:
                progress(r)
            if timed_out_ref:
                r.error = f"skipped: the reference run timed out in {timed_out_ref}"
                continue
            if any(exercise_of(cid) == m.exercise or cid == m.exercise for cid in failed_ref):
                r.error = "skipped: the reference fails this exercise"
                continue
            start, span = solutions[m.exercise], where_.span(m.exercise)
            own_tests = set(tests[m.exercise])
            err = error_message(k.run(cells[start], start, source=mutated))
            if timed_out(err):
                r.error = f"the mutated solution cell itself timed out after {timeout} s ({where(start)})"
            elif err:
                r.error = f"the mutated solution cell itself fails ({err}); plant a bug that runs"
            else:
                for j in span:
                    err = error_message(k.run(cells[j], j))
                    if j in own_tests and err:
                        # an endless loop in the exercise's own check is caught: nbgrader scores it 0 too
                        r.caught_by.append(grade_id(cells[j]) + (" (timed out)" if timed_out(err) else ""))
                    if timed_out(err):
                        if j not in own_tests:
                            r.error = (f"timed out after {timeout} s in {where(j)}, before the exercise's checks "
                                       "ran (a loaded machine? raise --timeout)")
                            r.caught_by = []
                        break            # the interrupted kernel's later cells would fail for that reason
            interrupted = r.error is not None or any(c.endswith("(timed out)") for c in r.caught_by)
            if not (last_of_exercise or interrupted):
                continue
            # restore the reference and check that its tests pass again
            k.run(cells[start], start)
            still = []
            for j in span:
                err = error_message(k.run(cells[j], j))
                if timed_out(err):
                    report.problems.append(f"after {m.id}, re-running the reference timed out in {where(j)}")
                    break
                if err and j in own_tests:
                    still.append(grade_id(cells[j]))
            if still:
                report.problems.append(f"after {m.id} (the last planted bug of {m.exercise}), re-running the reference "
                                       f"left {still} failing: a cell keeps state between runs (make test cells "
                                       "self-contained)")
    return report


def timed_out(err: str | None) -> bool:
    return bool(err) and err.startswith("CellTimeoutError")


def run_day(layout: Layout, day: str, timeout: int = 300, threads: int | None = 1, progress=None) -> list[NotebookReport]:
    return [run_mutants(src, layout.mutants_file(day, src.stem), timeout=timeout, threads=threads, progress=progress)
            for src in layout.sources(day)]


def format_reports(reports: list[NotebookReport]) -> str:
    rows = [("notebook", "planted bug", "exercise", "result")]
    for rep in reports:
        for r in rep.results:
            res = {"caught": "caught by " + ", ".join(r.caught_by), "NOT CAUGHT": "NOT CAUGHT",
                   "ERROR": f"ERROR: {r.error}"}[r.status]
            rows.append((rep.notebook, r.id, r.exercise, res))
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in rows]
    lines.insert(1, "-" * min(120, sum(w) + 6 + max(len(row[3]) for row in rows)))
    for rep in reports:
        lines += [f"PROBLEM {rep.notebook}: {p}" for p in rep.problems]
    n = sum(len(rep.results) for rep in reports)
    caught = sum(r.ok for rep in reports for r in rep.results)
    lines.append(f"{caught}/{n} planted bugs caught" + ("" if all(rep.ok for rep in reports) else "  — FAILED"))
    return "\n".join(lines)
