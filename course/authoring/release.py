"""``course release OUT``: what the students of a graded class receive, instead of the full repository.

A graded class must not clone this repository: ``solutions/`` holds every reference solution and hidden test,
``autograder/mutants/`` the planted bugs. The release holds only what a student needs to work:

- ``lessons/`` (the student notebooks, built by ``course build``: no solutions, no hidden tests);
- the ``course`` package (infrastructure only — a test keeps answers out of it; without ``solutions/`` beside it,
  ``course.authoring.reference`` has nothing to read) and ``pyproject.toml`` to install it;
- the interview bank ``quizzes/*.yaml`` (without ``worked_examples.py``, whose functions answer lesson exercises);
- ``configs/`` and a student README.

Then every file written is checked: no ``solutions/``, ``autograder/``, ``scripts/`` or ``tests/`` folder, no
nbgrader solution or hidden-test marker, no hidden-test line of any day, no planted bug. A failed check deletes
nothing and raises, naming the files.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .layout import Layout

FOLDERS = ("lessons", "course", "quizzes", "configs")
FILES = ("pyproject.toml", "environment.yml", "LICENSE")
LEAVE_OUT = ("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info", "worked_examples.py", ".pytest_cache")
FORBIDDEN_DIRS = ("solutions", "autograder", "scripts", "tests", "workspace", "benchmarks", ".git")
MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")

STUDENT_README = """# LLM fine-tuning course — student copy

This folder is your course: the lesson notebooks (`lessons/`), the `course` package they import, and the
interview bank (`quizzes/`). Your instructor grades your notebooks with hidden tests; this copy does not hold the
solutions or those tests.

## Set up (once)
```
python3.11 -m venv .venv
.venv/bin/pip install -e .
.venv/bin/python -m ipykernel install --sys-prefix --name python3
```

## Work
```
.venv/bin/course start day1          # copies lessons/day1_* into workspace/ (your work; never overwritten)
.venv/bin/jupyter lab workspace/
.venv/bin/course check workspace/<day>/<notebook>.ipynb    # the visible tests, per exercise
.venv/bin/course quiz                # interview drills from the bank
```
Submit the notebooks from `workspace/<day>/` as your instructor asks. The visible tests are a minimum: the hidden
ones check the same exercises at other values, at extreme inputs and on degenerate cases, and they check exact
types (return a `float` when the spec says float, not a look-alike).

Full-size runs (the `a100` profile, `scripts/qlora_lab.py` in the lessons' text) come with the full repository,
which your instructor can share after grading.
"""


class ReleaseError(RuntimeError):
    pass


@dataclass
class ReleaseReport:
    out: Path
    files: int
    problems: list[str] = field(default_factory=list)


def release(layout: Layout, out: Path, force: bool = False) -> ReleaseReport:
    """Write the student distribution to ``out`` (refuses a non-empty folder unless ``force``) and check it."""
    out = Path(out)
    root = layout.lessons.parent
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ReleaseError(f"{out} is not empty (pass --force to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns(*LEAVE_OUT)
    for name in FOLDERS:
        src = layout.lessons if name == "lessons" else root / name
        if src.is_dir():
            shutil.copytree(src, out / name, ignore=ignore, symlinks=False)
    for name in FILES:
        if (root / name).is_file():
            shutil.copyfile(root / name, out / name)
    (out / "README.md").write_text(STUDENT_README, encoding="utf-8")
    problems = check(layout, out)
    files = sum(1 for p in out.rglob("*") if p.is_file())
    if problems:
        raise ReleaseError("the release would leak:\n" + "\n".join(f"  {p}" for p in problems[:20]))
    return ReleaseReport(out, files, problems)


# A control-flow line such as `except ValueError:` reveals nothing and occurs in any Python code: never a secret.
BARE_STATEMENT = re.compile(r"^(try|else|finally|pass|break|continue|return|except(\s+[\w.]+(\s+as\s+\w+)?)?)\s*:?$")

SOLUTION_RE = re.compile(r"^[ \t]*### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION", re.M | re.S)


def _lines(text: str) -> set[str]:
    return {ln.strip() for ln in text.splitlines() if ln.strip()}


def _file_lines(path: Path) -> set[str] | None:
    """The stripped lines of a text file; of a notebook, the lines of its cells' sources and outputs."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None
    if path.suffix == ".ipynb":
        try:
            nb = json.loads(text)
        except json.JSONDecodeError:
            return _lines(text)
        out: set[str] = set()
        for c in nb.get("cells", []):
            src = c.get("source", "")
            out |= _lines("".join(src) if isinstance(src, list) else src)
            for o in c.get("outputs", []):
                t = o.get("text", "")
                out |= _lines("".join(t) if isinstance(t, list) else str(t))
        return out
    return _lines(text)


def secrets(layout: Layout) -> tuple[dict[str, set[str]], set[str], set[str]]:
    """(per day: its hidden-test lines that its own lessons do not show; everywhere: hidden-test lines no lesson
    shows and the planted bugs' ids and descriptions; outside the package: also solution lines no lesson shows —
    the package itself is kept free of answers by tests/test_course_has_no_answers.py)."""
    import yaml

    from .cells import HIDDEN_RE

    public: set[str] = set()
    for nb in layout.lessons.glob("*/*.ipynb"):
        public |= _file_lines(nb) or set()
    per_day: dict[str, set[str]] = {}
    anywhere: set[str] = set()
    solution: set[str] = set()
    for day in layout.days():
        day_public: set[str] = set()
        for nb in (layout.lessons / day).glob("*.ipynb"):
            day_public |= _file_lines(nb) or set()
        hidden: set[str] = set()
        for src in layout.sources(day):
            text = src.read_text(encoding="utf-8")
            for m in HIDDEN_RE.finditer(text):
                hidden |= {ln for ln in _lines(m.group(0)) if not ln.startswith("#")}
            for m in SOLUTION_RE.finditer(text):
                solution |= {ln for ln in _lines(m.group(1)) if len(ln) > 30 and not ln.startswith("#")}
        per_day[day] = hidden - day_public
        anywhere |= hidden
    for f in sorted(layout.mutants.glob("*/*.yaml")) if layout.mutants.is_dir() else []:
        for m in yaml.safe_load(f.read_text(encoding="utf-8")) or []:
            if isinstance(m, dict):
                anywhere |= {str(m.get("id", "")), str(m.get("description", ""))}
    keep = lambda lines: {ln for ln in lines - public if len(ln) > 12 and not BARE_STATEMENT.match(ln)}  # noqa: E731
    return per_day, keep(anywhere), keep(solution)


def check(layout: Layout, out: Path) -> list[str]:
    """Problems of a release folder: forbidden folders, nbgrader markers, secret lines (see :func:`secrets`)."""
    out = Path(out)
    problems = [f"{d}/ is present" for d in FORBIDDEN_DIRS if (out / d).exists()]
    per_day, anywhere, solution = secrets(layout)
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.stat().st_size > 5_000_000:
            continue
        lines = _file_lines(p)
        if lines is None:
            continue
        rel = p.relative_to(out)
        text = p.read_text(encoding="utf-8")
        in_package = rel.parts[0] == "course"
        if not in_package:        # (the package's own tooling names the markers it strips)
            problems += [f"{rel}: {m}" for m in MARKERS if m in text]
        day = rel.parts[1] if rel.parts[0] == "lessons" and len(rel.parts) > 2 else None
        secret = anywhere | (per_day.get(day, set()) if day else set()) | (set() if in_package else solution)
        hits = sorted(lines & secret)
        if hits:
            problems.append(f"{rel}: hidden-test, solution or planted-bug line {hits[0]!r}")
    return problems
