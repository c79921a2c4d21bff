"""Running a reference solution's cells outside its notebook, so tests and benchmarks check or time exactly the code a
lesson teaches (solutions/<day>/<NN>_<name>.py, percent format). Cells are picked by their nbgrader ``grade_id``."""

from __future__ import annotations

from pathlib import Path

from .cells import grade_id, nbgrader_meta, read_source


def code_cells(path: Path) -> list[tuple[dict, str]]:
    """``(nbgrader metadata, source)`` of every code cell of a notebook source, in order (``{}`` for plain cells)."""
    return [(dict(nbgrader_meta(c)), c.source) for c in read_source(Path(path)).cells if c.cell_type == "code"]


def cell_source(path: Path, cell_id: str) -> str:
    """The source of the code cell whose grade_id is ``cell_id``; KeyError naming the file when there is none."""
    for meta, source in code_cells(path):
        if meta.get("grade_id") == cell_id:
            return source
    raise KeyError(f"no cell with grade_id {cell_id!r} in {Path(path).name}")


def solution_namespace(path: Path, grade_ids, prelude: str = "", **names) -> dict:
    """Execute ``prelude`` and then the cells with these grade_ids (reference solutions, given code), in notebook
    order, into one namespace that starts with ``names``. KeyError naming the file if a grade_id has no cell."""
    cells = [c for c in read_source(Path(path)).cells if c.cell_type == "code"]
    missing = set(grade_ids) - {grade_id(c) for c in cells}
    if missing:
        raise KeyError(f"no cells {sorted(missing)} in {Path(path).name}")
    ns: dict = dict(names)
    exec(prelude, ns)
    for c in cells:
        if grade_id(c) in grade_ids:
            exec(c.source, ns)
    return ns
