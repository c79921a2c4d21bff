"""``course build``: ``solutions/<day>/*.py`` → ``.ipynb`` → nbgrader ``generate_assignment`` → ``lessons/<day>/``.

The steps, each one concern (like nbgrader's own preprocessors):
1. :func:`~.cells.read_source` turns each percent ``.py`` into a notebook with stable cell ids, kernel ``python3``;
2. those go to ``<root>/source/<day>/`` and nbgrader ``generate_assignment --create --force`` stores the cells
   (hidden tests included) in ``<root>/gradebook.db`` and writes the student version to ``<root>/release/<day>/``;
3. the release is normalised (outputs cleared, canonical JSON) and copied to ``lessons/<day>/``.

``<root>`` is ``autograder/`` (git-ignored products); ``--check`` builds into a temporary root and compares.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .cells import dumps, normalize, read_source
from .layout import Layout
from .nbgrader_setup import api

LEAK_MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


class BuildError(RuntimeError):
    pass


@dataclass
class CheckReport:
    stale: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.stale or self.missing or self.extra)


def generate(layout: Layout, day: str, root: Path | None = None, db: bool = True) -> dict[str, str]:
    """Run steps 1–2 for one day into the nbgrader root; return the lesson files ``{name: text}`` (step 3's input).
    ``db=False`` leaves the gradebook out (nbgrader's ``--no-db``): same student version, no database."""
    root = Path(root or layout.autograder)
    sources = layout.sources(day)
    if not sources:
        raise BuildError(f"no notebook sources in {layout.solutions / day}")
    src_dir = root / "source" / day
    if src_dir.exists():
        shutil.rmtree(src_dir)
    src_dir.mkdir(parents=True)
    for p in sources:
        try:
            nb = read_source(p)
        except Exception as e:
            raise BuildError(f"{p}: cannot read as a jupytext percent notebook: {e}") from e
        (src_dir / f"{p.stem}.ipynb").write_text(dumps(nb), encoding="utf-8")
    result = api(root, db=db).generate_assignment(day, force=True, create=True)
    if not result.get("success"):
        raise BuildError(f"nbgrader generate_assignment failed for {day}:\n{result.get('log', '')}\n{result.get('error', '')}")
    out: dict[str, str] = {}
    for p in sources:
        released = root / "release" / day / f"{p.stem}.ipynb"
        nb = normalize(nbformat.read(str(released), as_version=4))
        text = dumps(nb)
        leaked = [m for m in LEAK_MARKERS if m in text]
        if leaked:
            raise BuildError(f"{released}: the student version still contains {leaked} (check the cell's nbgrader "
                             f"metadata: solution regions need \"solution\": true, hidden tests a grade cell)")
        out[f"{p.stem}.ipynb"] = text
    return out


def build(layout: Layout | None = None, days: list[str] | None = None, log=print) -> dict[str, list[str]]:
    """Write ``lessons/<day>/`` for the given days (default: every day with sources). Returns written files."""
    layout = layout or Layout.default()
    days = days or layout.days()
    written: dict[str, list[str]] = {}
    for day in days:
        files = generate(layout, day)
        dest = layout.lessons / day
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.glob("*.ipynb"):
            if old.name not in files:
                old.unlink()
                log(f"removed  {old.relative_to(layout.lessons.parent)}")
        for name, text in files.items():
            target = dest / name
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                target.write_text(text, encoding="utf-8")
                log(f"wrote    {target.relative_to(layout.lessons.parent)}")
            else:
                log(f"current  {target.relative_to(layout.lessons.parent)}")
        written[day] = sorted(files)
    return written


def check(layout: Layout | None = None, days: list[str] | None = None) -> CheckReport:
    """Build into a temporary nbgrader root and compare with ``lessons/`` (nothing under the repo is written)."""
    layout = layout or Layout.default()
    all_days = days is None
    days = days or layout.days()
    report = CheckReport()
    rel = lambda p: str(p.relative_to(layout.lessons.parent))  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="course-build-check-") as tmp:
        for day in days:
            files = generate(layout, day, root=Path(tmp), db=False)
            dest = layout.lessons / day
            for name, text in files.items():
                target = dest / name
                if not target.exists():
                    report.missing.append(rel(target))
                elif target.read_text(encoding="utf-8") != text:
                    report.stale.append(rel(target))
            if dest.is_dir():
                report.extra += [rel(p) for p in sorted(dest.glob("*.ipynb")) if p.name not in files]
    if all_days and layout.lessons.is_dir():
        report.extra += [rel(d) for d in sorted(layout.lessons.iterdir())
                         if d.is_dir() and d.name not in days and any(d.glob("*.ipynb"))]
    return report
