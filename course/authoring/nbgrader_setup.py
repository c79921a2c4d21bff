"""One nbgrader configuration, used by ``course build`` / ``course grade`` and by ``autograder/nbgrader_config.py``
(so the plain ``nbgrader`` command and formgrader behave the same).

Choices, each answering a known nbgrader behaviour (see NOTES.md):
- ``OverwriteCells.add_missing_cells``: a deleted test cell is put back from the gradebook (and scored).
- ``IgnorePattern`` drops stderr output after execution: nbgrader scores any test cell that wrote to stderr 0,
  so a correct solution whose libraries warn would lose the points. Errors are ``error`` outputs, not stderr,
  so failing asserts still score 0.
- ``LimitOutput`` + :class:`LimitOutputSize`: huge outputs are cut (lines and characters) before saving.
- ``Execute.timeout``: per-cell timeout; a timed-out cell is interrupted and recorded as an error, so an
  infinite loop costs the exercise, not the class.
- :class:`StripHiddenTests` in ``GenerateFeedback``: feedback HTML shows no hidden-test code (nbgrader #917),
  and the tracebacks of test cells that hold hidden tests are reduced to ``Name: message``.
"""

from __future__ import annotations

from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer
from traitlets.config import Config

from .cells import has_hidden, strip_hidden

COURSE_ID = "finetune-course"
DEFAULT_TIMEOUT = 600           # seconds per cell when grading (training cells of the a100 profile are long)
MAX_OUTPUT_CHARS = 100_000      # per output, after grading
# in-memory IPython history (parallel kernels would share one sqlite file) and no TCP-transport warning
KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]


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


def nbgrader_config(root: Path, timeout: int | None = None, max_output_chars: int = MAX_OUTPUT_CHARS) -> Config:
    """The course's nbgrader configuration for a course root (``autograder/`` in the repository)."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, Execute, GetGrades, IgnorePattern,
                                        LimitOutput, SaveAutoGrades)

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
    c.Execute.timeout = int(timeout or DEFAULT_TIMEOUT)
    c.Execute.interrupt_on_timeout = True
    c.Execute.extra_arguments = KERNEL_ARGS
    c.OverwriteCells.add_missing_cells = True
    c.IgnorePattern.enabled = True
    c.IgnorePattern.pattern = r"[\s\S]"           # every non-empty stderr output
    c.LimitOutput.max_lines = 1000
    c.LimitOutputSize.max_chars = int(max_output_chars)
    c.Autograde.autograde_preprocessors = [Execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
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


def api(root: Path, timeout: int | None = None, db: bool = True):
    """An in-process ``NbGraderAPI`` on ``root`` (quiet: its log goes into each call's result). ``db=False``:
    ``generate_assignment`` leaves the gradebook alone (``--no-db``), as ``course build --check`` needs."""
    import logging

    ensure_tools_on_path()
    _cache_alembic_head()

    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = nbgrader_config(root, timeout)
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
