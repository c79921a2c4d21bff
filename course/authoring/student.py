"""The student side: ``course start dayN`` (a private copy) and ``course check <notebook>`` (visible tests)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .cells import error_message, exercise_of, grade_id, is_solution, is_test, load_json_notebook, read_any
from .execution import LiveKernel
from .layout import Layout


def start(layout: Layout, day: str, log=print) -> Path:
    """Copy ``lessons/<day>/`` into ``workspace/<day>/``; files the student already has are never overwritten."""
    src = layout.lessons / day
    if not src.is_dir() or not any(src.glob("*.ipynb")):
        raise FileNotFoundError(f"no lessons in {src}; run `.venv/bin/course build` first (instructors) or `git pull`")
    dest = layout.workspace / day
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        target = dest / f.name
        if target.exists():
            log(f"kept     {target}  (your work is never overwritten; delete it to start that notebook afresh)")
        elif f.suffix == ".ipynb":
            target.write_text(with_installed_kernel(f.read_text(encoding="utf-8")), encoding="utf-8")
            log(f"copied   {target}")
        else:
            shutil.copy2(f, target)
            log(f"copied   {target}")
    return dest


def installed_kernel_metadata() -> dict:
    """The ``kernelspec`` and ``language_info`` JupyterLab writes into a notebook when its kernel starts (the
    installed ``python3`` spec's display name, ipykernel's language_info for this interpreter). A notebook that
    already holds exactly these is not marked modified on open; lessons/ holds only ``{"name": "python"}``,
    which varies by Python patch version, so the learner's copy gets them here."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from ipykernel.ipkernel import IPythonKernel

    from .cells import KERNELSPEC

    spec = dict(KERNELSPEC)
    try:
        k = KernelSpecManager().get_kernel_spec("python3")
        spec.update(display_name=k.display_name, language=k.language)
    except NoSuchKernel:
        pass
    return {"kernelspec": spec, "language_info": dict(IPythonKernel.language_info)}


def with_installed_kernel(text: str) -> str:
    import nbformat

    from .cells import dumps

    nb = nbformat.reads(text, as_version=4)
    nb.metadata.update(installed_kernel_metadata())
    return dumps(nb)


@dataclass
class TestResult:
    test: str
    passed: bool
    message: str | None = None


@dataclass
class CheckResult:
    notebook: Path
    tests: list[TestResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)      # errors in given (non-test) cells, knock-ons grouped
    warnings: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)     # checks of the released lesson absent here
    fatal: str | None = None                             # the notebook could not be checked at all
    unsolved: dict[str, str] = field(default_factory=dict)   # exercise → where its solution cell failed

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def total(self) -> int:
        return len(self.tests) + len(self.missing)

    @property
    def ok(self) -> bool:
        return self.fatal is None and self.total > 0 and self.passed == self.total

    def by_exercise(self) -> dict[str, list[TestResult]]:
        out: dict[str, list[TestResult]] = {}
        for t in self.tests:
            out.setdefault(exercise_of(t.test), []).append(t)
        return out

    def format(self) -> str:
        if self.fatal:
            return f"{self.notebook.name}: {self.fatal}"
        lines = [f"{self.notebook.name}: {self.passed}/{self.total} checks pass"
                 + ("  (cells numbered as JupyterLab's status bar shows them: Cell N/M)"
                    if any("/" in e for e in self.errors) else "")]
        for ex, ts in self.by_exercise().items():
            ok = all(t.passed for t in ts)
            head = f"  {'✔' if ok else '✘'} {ex}  ({sum(t.passed for t in ts)}/{len(ts)})"
            if ex in self.unsolved:
                head += f"  — {self.unsolved[ex]}"
            lines.append(head)
            for t in ts:
                if not t.passed:
                    lines.append(f"      ✘ {t.test}: {t.message}")
        for e in self.errors:
            lines.append(f"  ! {e}")
        for w in self.warnings:
            lines.append(f"  ⚠ {w}")
        return "\n".join(lines)


# ---------------------------------------------------------------- which names a cell defines / uses
def _code(source: str) -> str:
    """Cell source with IPython magics and shell escapes blanked (so ``ast`` can parse it)."""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())


def defined_names(source: str) -> set[str]:
    import ast

    try:
        tree = ast.parse(_code(source))
    except SyntaxError:
        return set()
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.For, ast.With)):
            tgt = node.target if isinstance(node, ast.For) else None
            if tgt is not None:
                out |= {n.id for n in ast.walk(tgt) if isinstance(n, ast.Name)}
    return out


def used_names(source: str) -> list[str]:
    import ast

    try:
        tree = ast.parse(_code(source))
    except SyntaxError:
        return []
    seen: dict[str, None] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            seen.setdefault(n.id, None)
    return list(seen)


def _first_line(source: str, width: int = 48) -> str:
    line = next((ln.strip() for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    return line if len(line) <= width else line[: width - 1] + "…"


def _missing_name(err: str) -> str | None:
    import re

    m = re.match(r"NameError: name '([^']+)' is not defined", err or "")
    return m.group(1) if m else None


# ---------------------------------------------------------------- reading the notebook
def released_lesson(layout: Layout, notebook: Path) -> Path | None:
    """``workspace/<day>/<nb>.ipynb`` (or any ``<day>/<nb>.ipynb``) → ``lessons/<day>/<nb>.ipynb`` if it exists."""
    cand = layout.lessons / notebook.parent.name / notebook.name
    return cand if cand.is_file() and cand.resolve() != notebook.resolve() else None


def _read(notebook: Path):
    """The notebook, or a one-sentence reason it cannot be checked (``ValueError``)."""
    if notebook.suffix == ".py":
        try:
            return read_any(notebook)
        except Exception as e:
            raise ValueError(f"cannot be read as a jupytext percent notebook ({type(e).__name__}: {e})") from None
    try:
        return load_json_notebook(notebook)
    except ValueError as e:
        raise ValueError(f"cannot be checked: it is {e}. If you broke your copy, `.venv/bin/course start` "
                         "puts a fresh one back once you delete or rename it.") from None


def check(notebook: Path, timeout: int = 600, threads: int | None = None, layout: Layout | None = None) -> CheckResult:
    """Execute a notebook top to bottom in its own folder and report each test cell (only the tests it holds:
    a student copy has the visible ones; an instructor's ``.py`` source has the hidden ones too).

    Every failure is tied to an exercise: a test or given cell that fails because an earlier exercise is not
    solved (it uses a name that exercise defines, or a name a cell that failed for that reason defines) reads
    "needs exercise X first". Cells are named as JupyterLab shows them: the exercise (grade_id) or the cell's
    position, ``cell 12/40`` as in JupyterLab's status bar. Checks present in the released lesson but missing here
    (a deleted test cell) are reported and counted as failing: the grader restores them."""
    layout = layout or Layout.default()
    notebook = Path(notebook).resolve()
    result = CheckResult(notebook)
    try:
        nb = _read(notebook)
    except ValueError as e:
        result.fatal = str(e)
        return result
    cells = nb.cells
    if not any(is_test(c) or is_solution(c) for c in cells):
        result.fatal = ("is not a course lesson: it has no exercises or checks (nbgrader cells), so there is "
                        "nothing to check. Check the copy that `.venv/bin/course start <day>` made in workspace/.")
        return result
    released = released_lesson(layout, notebook)
    if released is not None:
        try:
            ref = load_json_notebook(released)
            ref_tests = {grade_id(c): c.source for c in ref.cells if is_test(c)}
            mine = {grade_id(c): c.source for c in cells if is_test(c)}
            result.missing = [g for g in ref_tests if g not in mine]
            edited = [g for g in ref_tests if g in mine and mine[g].strip() != ref_tests[g].strip()]
            if result.missing:
                result.warnings.append(
                    f"{len(result.missing)} check(s) of the released lesson are missing from this notebook "
                    f"({', '.join(result.missing)}): a deleted test cell? They count as failing here, and the "
                    f"grader puts them back (copy them from {released.relative_to(layout.lessons.parent)}).")
            if edited:
                result.warnings.append(f"test cell(s) {', '.join(edited)} differ from the released lesson: the "
                                       "grader uses the original checks, not your edited ones.")
        except (ValueError, OSError):
            pass

    n = len(cells)
    defined_by: dict[str, str] = {}         # name → the exercise whose solution cell defines it
    for c in cells:
        if c.cell_type == "code" and is_solution(c) and grade_id(c):
            for name in defined_names(c.source):
                defined_by.setdefault(name, exercise_of(grade_id(c)))
    broken: dict[str, str] = {}             # name → the unsolved exercise a failed cell that defines it waited for
    failing: set[str] = set()               # exercises whose solution cell raised or whose checks failed
    knock_on: dict[str, list[str]] = {}     # exercise → given cells that failed because of it
    other_errors: list[str] = []

    def needs(source: str, err: str, own: str | None = None) -> str | None:
        missing = _missing_name(err)
        if missing:
            ex = broken.get(missing) or defined_by.get(missing)
            if ex and ex != own:
                return ex
        used = used_names(source)
        for name in used:
            ex = broken.get(name)
            if ex and ex != own:
                return ex
        for name in used:
            ex = defined_by.get(name)
            if ex and ex != own and (ex in failing or err.startswith(("NotImplementedError", "NameError"))):
                return ex
        return None

    with LiveKernel(nb, notebook.parent, timeout, threads) as k:
        for i, cell in enumerate(cells):
            if cell.cell_type != "code":
                continue
            pos = f"{i + 1}/{n}"
            where = f"cell {pos}"
            err = error_message(k.run(cell, i))
            gid = grade_id(cell)
            if err and err.startswith("CellTimeoutError"):
                err = f"{err} ({where})"
            if is_solution(cell):
                ex = exercise_of(gid) if gid else where
                if err:
                    failing.add(ex)
                    root = needs(cell.source, err, ex)
                    result.unsolved[ex] = (f"needs exercise {root} first ({err})" if root else
                                           f"not done yet: its cell ({where}) raises NotImplementedError"
                                           if err.startswith("NotImplementedError") else f"its cell ({where}) raised {err}")
                    for name in defined_names(cell.source):
                        broken.setdefault(name, root or ex)
                continue
            if is_test(cell):
                own = exercise_of(gid)
                msg = err
                if err:
                    failing.add(own)
                    root = needs(cell.source, err, own)
                    if root:
                        msg = f"needs exercise {root} first ({err})"
                    elif err.startswith("NotImplementedError"):
                        msg = f"exercise {own} is not done yet (NotImplementedError)"
                    elif err.startswith("NameError"):
                        msg = f"{err} (exercise {own} not done yet, or a cell above not run?)"
                result.tests.append(TestResult(gid, err is None, msg))
                continue
            if err:
                label = gid or f"{where} ({_first_line(cell.source)})"
                root = needs(cell.source, err)
                if root:
                    knock_on.setdefault(root, []).append(pos)
                    for name in defined_names(cell.source):
                        broken.setdefault(name, root)
                else:
                    other_errors.append(f"given {label} raised {err}")
    for ex, wheres in knock_on.items():
        s = "s" if len(wheres) > 1 else ""
        result.errors.append(f"given cell{s} {', '.join(wheres)} need{'' if s else 's'} exercise {ex} first")
    result.errors += other_errors[:5]
    if len(other_errors) > 5:
        result.errors.append(f"... and {len(other_errors) - 5} more given cells failed")
    return result


def progress_key(layout: Layout, notebook: Path) -> str | None:
    """The key ``course days`` reads: ``<day>/<notebook>.ipynb`` relative to the workspace."""
    notebook = Path(notebook).resolve()
    try:
        return str(notebook.relative_to(layout.workspace.resolve()))
    except ValueError:
        return None
