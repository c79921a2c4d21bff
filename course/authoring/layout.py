"""Where the pipeline reads and writes: one object, so tests can point it at a sample course."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import paths

JUPYTEXT_HEADER = "format_name: percent"


@dataclass(frozen=True)
class Layout:
    """A course tree: ``solutions/`` (sources), ``lessons/`` (student notebooks), ``autograder/`` (nbgrader root:
    config, gradebook, build products, planted bugs) and the students' ``workspace/``."""

    solutions: Path
    lessons: Path
    autograder: Path
    workspace: Path

    @classmethod
    def default(cls) -> "Layout":
        return cls(paths.SOLUTIONS, paths.LESSONS, paths.AUTOGRADER, paths.WORKSPACE)

    @classmethod
    def under(cls, root: Path, *, solutions: Path | None = None) -> "Layout":
        """A layout rooted at ``root`` (``root/solutions``, ``root/lessons``, ...); ``solutions`` may live elsewhere."""
        root = Path(root)
        return cls(Path(solutions) if solutions else root / "solutions", root / "lessons", root / "autograder",
                   root / "workspace")

    @property
    def mutants(self) -> Path:
        return self.autograder / "mutants"

    def days(self) -> list[str]:
        """Day folders under ``solutions/`` that hold at least one notebook source, sorted."""
        if not self.solutions.is_dir():
            return []
        return sorted(d.name for d in self.solutions.iterdir() if d.is_dir() and self.sources(d.name))

    def sources(self, day: str) -> list[Path]:
        """The percent-format notebook sources of a day (``<NN>_<name>.py`` with a jupytext header), sorted."""
        folder = self.solutions / day
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("*.py") if is_notebook_source(p))

    def resolve_day(self, spec: str) -> str:
        """'day1', '1', 'day1_lora_qlora' → the folder name, among the days with sources (or the 7-day plan)."""
        days = self.days()
        s = str(spec).strip().rstrip("/").split("/")[-1]
        if s in days:
            return s
        num = s.lower().removeprefix("day").split("_")[0]
        hits = [d for d in days if re.fullmatch(rf"day0*{re.escape(num)}(_.*)?", d)]
        if len(hits) == 1:
            return hits[0]
        try:
            from ..days import get_day

            folder = get_day(s).folder
        except KeyError:
            folder = None
        if folder:
            return folder
        raise KeyError(f"no day {spec!r}; days with sources under {self.solutions}: {', '.join(days) or 'none'}")

    def mutants_file(self, day: str, notebook: str) -> Path:
        return self.mutants / day / f"{notebook}.yaml"


def is_notebook_source(path: Path) -> bool:
    try:
        head = Path(path).read_text(encoding="utf-8")[:600]
    except (OSError, UnicodeDecodeError):
        return False
    return head.startswith("# ---") and JUPYTEXT_HEADER in head
