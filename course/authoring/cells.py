"""Reading sources and telling nbgrader cells apart: solution cells, test cells, hidden-test regions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat

# ipykernel's own spec (`python -m ipykernel install` / the venv's default): a lesson whose metadata differs is
# rewritten, hence marked modified, the moment JupyterLab opens it. The Makefile installs the same display name.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
HIDDEN_RE = re.compile(r"^(?P<indent>[ \t]*)### BEGIN HIDDEN TESTS[^\n]*\n.*?^[ \t]*### END HIDDEN TESTS[^\n]*(\n|\Z)",
                       re.MULTILINE | re.DOTALL)
HIDDEN_NOTE = "# (hidden tests are not shown)\n"
_ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id(cell) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_solution(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_test(cell) -> bool:
    """A graded (autograder-test) code cell."""
    m = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(m.get("grade")) and not m.get("solution")


def exercise_of(test_id: str) -> str:
    """``lora_forward__shapes`` → ``lora_forward`` (test cells are named ``<exercise>__<check>``)."""
    return test_id.split("__", 1)[0]


def read_source(path: Path) -> nbformat.NotebookNode:
    """A jupytext percent ``.py`` source → a deterministic notebook (kernel ``python3``, stable cell ids,
    no jupytext bookkeeping), the same as ``jupytext --to ipynb --set-kernel python3`` minus the randomness."""
    import jupytext

    nb = jupytext.read(str(path), fmt="py:percent")
    return normalize(nb)


def read_any(path: Path) -> nbformat.NotebookNode:
    """An ``.ipynb`` or a percent ``.py`` source."""
    path = Path(path)
    if path.suffix == ".py":
        return read_source(path)
    return nbformat.read(str(path), as_version=4)


def normalize(nb: nbformat.NotebookNode, clear_outputs: bool = True) -> nbformat.NotebookNode:
    """Strip what varies between runs (random cell ids, jupytext metadata, outputs) so builds are byte-stable."""
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = nbformat.from_dict({"kernelspec": dict(KERNELSPEC),
                                      "language_info": {"name": "python"}})
    used: set[str] = set()
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("lines_to_next_cell", None)
        cell.metadata.pop("cell_marker", None)
        if clear_outputs and cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        gid = grade_id(cell)
        cid = gid if gid and _ID_OK.match(gid) and gid not in used else f"cell-{i:03d}"
        used.add(cid)
        cell.id = cid
    return nb


def dumps(nb: nbformat.NotebookNode) -> str:
    """nbformat's canonical JSON (sorted keys, indent 1) with a final newline."""
    return nbformat.writes(nb, version=4) + "\n"


def strip_hidden(source: str) -> str:
    """Remove every ``### BEGIN HIDDEN TESTS`` … ``### END HIDDEN TESTS`` region (keeps a one-line note)."""
    return HIDDEN_RE.sub(lambda m: m.group("indent") + HIDDEN_NOTE, source)


def has_hidden(source: str) -> bool:
    return bool(HIDDEN_RE.search(source))


def error_message(outputs) -> str | None:
    """The first error of a cell's outputs as ``Name: message`` (None when the cell did not fail)."""
    for out in outputs:
        if out.get("output_type") == "error":
            ename, evalue = out.get("ename", "Error"), str(out.get("evalue", "")).strip()
            return f"{ename}: {evalue}" if evalue else ename
    return None


def load_json_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a submitted file, raising ``ValueError`` with a message a student can act on."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError("not a notebook: the file is not UTF-8 text") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"not a notebook: invalid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or "nbformat" not in data:
        raise ValueError("not a notebook: JSON without the 'cells' and 'nbformat' fields of a Jupyter notebook")
    try:
        return nbformat.reads(raw, as_version=4)
    except Exception as e:  # nbformat raises several types for malformed notebooks
        raise ValueError(f"not a notebook: {type(e).__name__}: {e}") from None
