"""The student side: ``course start dayN`` (a private copy) and ``course check <notebook>`` (visible tests)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .cells import error_message, exercise_of, grade_id, is_test, read_any
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
    errors: list[str] = field(default_factory=list)      # errors in non-test cells (first few)

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def total(self) -> int:
        return len(self.tests)

    def by_exercise(self) -> dict[str, list[TestResult]]:
        out: dict[str, list[TestResult]] = {}
        for t in self.tests:
            out.setdefault(exercise_of(t.test), []).append(t)
        return out

    def format(self) -> str:
        lines = [f"{self.notebook.name}: {self.passed}/{self.total} checks pass"]
        for ex, ts in self.by_exercise().items():
            ok = all(t.passed for t in ts)
            lines.append(f"  {'✔' if ok else '✘'} {ex}  ({sum(t.passed for t in ts)}/{len(ts)})")
            for t in ts:
                if not t.passed:
                    lines.append(f"      ✘ {t.test}: {t.message}")
        for e in self.errors:
            lines.append(f"  ! {e}")
        return "\n".join(lines)


def check(notebook: Path, timeout: int = 600, threads: int | None = None) -> CheckResult:
    """Execute a notebook top to bottom in its own folder and report each test cell (only the tests it holds:
    a student copy has the visible ones; an instructor's ``.py`` source has the hidden ones too)."""
    notebook = Path(notebook).resolve()
    nb = read_any(notebook)
    result = CheckResult(notebook)
    with LiveKernel(nb, notebook.parent, timeout, threads) as k:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            err = error_message(k.run(cell, i))
            if is_test(cell):
                if err and (err.startswith("NameError") or err == "NotImplementedError"):
                    err = f"{err} (not done yet?)"
                result.tests.append(TestResult(grade_id(cell), err is None, err))
            elif err and len(result.errors) < 3:
                where = grade_id(cell) or f"cell {i + 1}"
                if err != "NotImplementedError":
                    result.errors.append(f"{where} raised {err}")
    return result


def progress_key(layout: Layout, notebook: Path) -> str | None:
    """The key ``course days`` reads: ``<day>/<notebook>.ipynb`` relative to the workspace."""
    notebook = Path(notebook).resolve()
    try:
        return str(notebook.relative_to(layout.workspace.resolve()))
    except ValueError:
        return None
