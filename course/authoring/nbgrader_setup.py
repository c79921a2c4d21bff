"""One nbgrader configuration, used by ``course build`` / ``course grade`` and by ``autograder/nbgrader_config.py``
(so the plain ``nbgrader`` command and formgrader behave the same).

Choices, each answering a known nbgrader behaviour (see NOTES.md):
- ``OverwriteCells.add_missing_cells``: a deleted test cell is put back from the gradebook (and scored).
- ``IgnorePattern`` drops stderr output after execution: nbgrader scores any test cell that wrote to stderr 0,
  so a correct solution whose libraries warn would lose the points. Errors are ``error`` outputs, not stderr,
  so failing asserts still score 0.
- ``LimitOutput`` + :class:`LimitOutputSize`: huge outputs are cut (lines and characters) before saving.
- :class:`SandboxedExecute` replaces nbgrader's ``Execute``: the notebook (hidden tests restored) runs in a fresh
  bubblewrap sandbox per student (:mod:`.sandbox`), executor and kernel inside together; the outputs come back and
  nbgrader scores them here, outside. Per-cell timeout: a timed-out cell is interrupted and recorded as an error,
  so an infinite loop costs the exercise, not the class.
- :class:`OverwriteCellsInPlace`: a deleted test cell goes back just before the next cell that follows it in the
  source (nbgrader puts it right after the previous graded cell, before the given code it may need).
- :class:`StripHiddenTests` in ``GenerateFeedback``: feedback HTML shows no hidden-test code (nbgrader #917),
  and the tracebacks of test cells that hold hidden tests are reduced to ``Name: message``.
"""

from __future__ import annotations

import copy
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor, OverwriteCells
from traitlets import Bool, Integer, Unicode
from traitlets.config import Config

from . import sandbox as _sandbox
from .cells import has_hidden, is_test, strip_hidden
from .sandbox_executor import KERNEL_ARGS  # noqa: F401 (re-exported)

COURSE_ID = "finetune-course"
DEFAULT_TIMEOUT = 600           # seconds per cell when grading (training cells of the a100 profile are long)
MAX_OUTPUT_CHARS = 100_000      # per output, after grading


class StripHiddenTests(NbGraderPreprocessor):
    """Feedback must not leak hidden tests: remove their regions and the code lines of their tracebacks."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and has_hidden(cell.source):
            cell.source = strip_hidden(cell.source)
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    msg = str(out.get("evalue", "")).strip() or "a check failed"
                    out["traceback"] = [f"{out.get('ename', 'Error')}: {msg}"]
        return cell, resources


class LimitOutputSize(NbGraderPreprocessor):
    """Cut any single text output longer than ``max_chars`` (LimitOutput only counts lines) and drop rich
    outputs (images, HTML) bigger than that, so a runaway print cannot bloat the gradebook or feedback."""

    max_chars = Integer(MAX_OUTPUT_CHARS, help="largest text output kept, in characters").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and len(out.get("text", "")) > self.max_chars:
                out["text"] = out["text"][: self.max_chars] + f"\n... output truncated ({len(out['text']):,} characters) ...\n"
            data = out.get("data")
            if data:
                for mime in list(data):
                    size = len(data[mime]) if isinstance(data[mime], str) else len(str(data[mime]))
                    if size > self.max_chars:
                        if mime == "text/plain":
                            data[mime] = data[mime][: self.max_chars] + "\n... output truncated ..."
                        else:
                            del data[mime]
                if not data:
                    data["text/plain"] = "... output removed: too large ..."
        return cell, resources


class SandboxedExecute(NbGraderPreprocessor):
    """Execute the notebook in a per-student sandbox and copy the outputs back (sources stay the ones nbgrader
    restored here). A run that ends without a result (kernel died, killed, out of time) fails this student only."""

    timeout = Integer(DEFAULT_TIMEOUT, help="seconds per cell").tag(config=True)
    sandbox = Bool(True, help="run inside bubblewrap (False: a plain subprocess, unprotected)").tag(config=True)
    memory_mb = Integer(_sandbox.Limits.memory_mb).tag(config=True)
    cpu_seconds = Integer(_sandbox.Limits.cpu_seconds).tag(config=True)
    processes = Integer(_sandbox.Limits.processes).tag(config=True)
    file_mb = Integer(_sandbox.Limits.file_mb).tag(config=True)
    output_chars = Integer(_sandbox.Limits.output_chars).tag(config=True)
    extra_ro = Unicode("", help="more read-only folders inside the sandbox, separated by ':'").tag(config=True)

    def limits(self) -> "_sandbox.Limits":
        extra = tuple(p for p in self.extra_ro.split(":") if p) + _sandbox.default_extra_ro()
        return _sandbox.Limits(self.memory_mb, self.cpu_seconds, self.processes, self.file_mb,
                               output_chars=self.output_chars, extra_ro=extra)

    def preprocess(self, nb, resources):
        import nbformat
        from nbclient.exceptions import DeadKernelError

        visible = copy.deepcopy(nb)
        for c in visible.cells:
            if c.cell_type == "code":
                c.source, c.outputs, c.execution_count = strip_hidden(c.source), [], None
        name = f"{resources.get('unique_key') or 'notebook'}.ipynb"
        result = _sandbox.execute(nbformat.writes(nb), nbformat.writes(visible), name, self.timeout, self.limits(),
                                  sandbox=self.sandbox, guard_cells=[c.source for c in nb.cells if is_test(c)])
        if result.get("dead_kernel"):
            raise DeadKernelError("Kernel died while running the notebook (os._exit, a crash, a signal or out of "
                                  "memory)")
        executed = nbformat.reads(result["notebook"], as_version=4)
        if len(executed.cells) != len(nb.cells):
            raise RuntimeError("the sandbox returned a notebook with a different number of cells")
        if result.get("error"):
            raise RuntimeError(f"executing the notebook failed: {result['error']}")
        for cell, done in zip(nb.cells, executed.cells):
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = done.outputs, done.get("execution_count")
        return nb, resources


class OverwriteCellsInPlace(OverwriteCells):
    """nbgrader's OverwriteCells, but a missing graded cell is re-added just before the next cell (in source order)
    that the submission still has, so it runs after every cell it may depend on; and a cell whose grade_id the
    student changed becomes a plain cell (nbgrader drops only its grade_id, then fails with ``KeyError:
    'grade_id'``), so the student is graded with the original test restored."""

    def preprocess_cell(self, cell, resources, index):
        cell, resources = super().preprocess_cell(cell, resources, index)
        meta = cell.get("metadata", {})
        if "nbgrader" in meta and "grade_id" not in meta["nbgrader"]:
            del meta["nbgrader"]
        return cell, resources

    def add_missing_grade_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_cells = list(source_nb.source_cells)
        order = [c.name for c in source_cells]
        grade_cells = {c.name: c for c in source_nb.grade_cells}
        solution_ids = {c.name for c in source_nb.solution_cells}
        for i, gid in enumerate(order):
            if gid not in grade_cells:
                continue
            where = {c["metadata"]["nbgrader"]["grade_id"]: j for j, c in enumerate(nb.cells)
                     if "grade_id" in c.get("metadata", {}).get("nbgrader", {})}
            if gid in where:
                continue
            self.log.warning(f"Missing grade cell {gid} encountered, adding to notebook")
            cell = self.missing_cell_transform(source_cells[i], grade_cells[gid].max_score,
                                               is_solution=gid in solution_ids)
            cell.setdefault("id", gid)
            later = [where[n] for n in order[i + 1:] if n in where]
            earlier = [where[n] for n in order[:i] if n in where]
            at = min(later) if later else (max(earlier) + 1 if earlier else len(nb.cells))
            nb.cells.insert(at, cell)
        return nb, resources


def nbgrader_config(root: Path, timeout: int | None = None, max_output_chars: int = MAX_OUTPUT_CHARS,
                    sandbox: bool = True, limits: "_sandbox.Limits | None" = None) -> Config:
    """The course's nbgrader configuration for a course root (``autograder/`` in the repository)."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                        GetGrades, IgnorePattern, LimitOutput, OverwriteKernelspec, SaveAutoGrades)

    root = Path(root).resolve()
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.source_directory = "source"
    c.CourseDirectory.release_directory = "release"
    c.CourseDirectory.submitted_directory = "submitted"
    c.CourseDirectory.autograded_directory = "autograded"
    c.CourseDirectory.feedback_directory = "feedback"
    c.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]
    c.CourseDirectory.course_id = COURSE_ID     # formgrader's release / collect need one
    c.Exchange.root = str(root / "exchange")      # git-ignored; `course gradebook` creates it (formgrader warns without)
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.SandboxedExecute.timeout = int(timeout or DEFAULT_TIMEOUT)
    c.SandboxedExecute.sandbox = bool(sandbox)
    lim = limits or _sandbox.Limits()
    for k in ("memory_mb", "cpu_seconds", "processes", "file_mb", "output_chars"):
        setattr(c.SandboxedExecute, k, int(getattr(lim, k)))
    c.SandboxedExecute.extra_ro = ":".join(lim.extra_ro)
    c.OverwriteCells.add_missing_cells = True
    c.OverwriteCellsInPlace.add_missing_cells = True
    c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCellsInPlace,
                                          CheckCellMetadata]
    c.IgnorePattern.enabled = True
    c.IgnorePattern.pattern = r"[\s\S]"           # every non-empty stderr output
    c.LimitOutput.max_lines = 1000
    c.LimitOutputSize.max_chars = int(max_output_chars)
    c.Autograde.autograde_preprocessors = [SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                           LimitOutputSize, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    c.GenerateFeedback.preprocessors = [GetGrades, StripHiddenTests, CSSHTMLHeaderPreprocessor]
    return c


def ensure_tools_on_path() -> None:
    """nbgrader runs ``alembic`` (creating a gradebook) from PATH: make the interpreter's ``bin/`` visible."""
    import os
    import sys

    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _cache_alembic_head() -> None:
    """nbgrader asks a fresh ``alembic`` subprocess for the schema head each time it creates a gradebook (seconds
    on a busy machine); the answer is fixed for the installed nbgrader, so ask once per process."""
    import functools

    import nbgrader.api as nbapi

    if not hasattr(nbapi.get_alembic_version, "cache_info"):
        nbapi.get_alembic_version = functools.lru_cache(maxsize=1)(nbapi.get_alembic_version)


def api(root: Path, timeout: int | None = None, db: bool = True, sandbox: bool = True,
        limits: "_sandbox.Limits | None" = None):
    """An in-process ``NbGraderAPI`` on ``root`` (quiet: its log goes into each call's result). ``db=False``:
    ``generate_assignment`` leaves the gradebook alone (``--no-db``), as ``course build --check`` needs."""
    import logging

    ensure_tools_on_path()
    _cache_alembic_head()

    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = nbgrader_config(root, timeout, sandbox=sandbox, limits=limits)
    if not db:
        from nbgrader.converters import GenerateAssignment
        from nbgrader.preprocessors import SaveCells

        config.GenerateAssignment.no_database = True
        config.GenerateAssignment.preprocessors = [
            p for p in GenerateAssignment().preprocessors if p is not SaveCells]
    coursedir = CourseDirectory(config=config)
    a = NbGraderAPI(coursedir=coursedir, config=config)
    a.log.setLevel(logging.WARNING)
    a.log.propagate = False
    return a
