"""``course/`` is importable infrastructure: it must never define a function a lesson asks the student to write.

The solution cells (nbgrader ``"solution": true``) of ``solutions/day*/*.py`` name the functions and classes a
student writes; none of those names may be defined anywhere in ``course/**/*.py``, or ``from course... import``
would hand over the answer. Scalar worked examples the interview bank needs live in ``quizzes/worked_examples.py``
instead (loaded by file path, outside the package).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from course import paths

SOLUTIONS = paths.ROOT / "solutions"
COURSE = paths.ROOT / "course"
CELL_RE = re.compile(r"^(?=# %%)", re.M)

# Names a solution cell defines that the library may define too, because an issue requires them in ``course``.
# name -> (module allowed to define it, why). Currently empty: ``course.memory`` (required by the Day 1 issue:
# the memory calculator behind ``course memory``) computes the same quantities as Day 1's exercises
# (lora_params ~ model_lora_params, nf4_bits_per_param ~ bits_per_param, estimate ~ memory_breakdown,
# activation_elements_per_layer ~ activation_bytes) under different names, so nothing collides.
ALLOWED: dict[str, tuple[str, str]] = {}


def solution_names(root: Path = SOLUTIONS) -> dict[str, list[str]]:
    """Top-level functions and classes defined in the solution cells of ``root/day*/*.py`` -> files."""
    names: dict[str, list[str]] = {}
    for f in sorted(root.glob("day*/*.py")):
        for cell in CELL_RE.split(f.read_text()):
            header = cell.split("\n", 1)[0]
            if not header.startswith("# %%") or '"solution": true' not in header:
                continue
            for node in ast.parse(cell, filename=str(f)).body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.setdefault(node.name, []).append(str(f.relative_to(root)))
    return names


def definitions(root: Path) -> list[tuple[str, int, str]]:
    """(file, line, name) of every function and class defined anywhere (nested too) in ``root/**/*.py``."""
    out = []
    for f in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.append((str(f.relative_to(root.parent)), node.lineno, node.name))
    return out


def violations(course_root: Path, answers: dict[str, list[str]]) -> list[str]:
    bad = []
    for file, line, name in definitions(course_root):
        if name not in answers:
            continue
        allowed = ALLOWED.get(name)
        if allowed and file == allowed[0]:
            continue
        bad.append(f"{file}:{line} defines {name!r}, the answer of {', '.join(answers[name])}")
    return bad


def test_solution_names_are_found():
    names = solution_names()
    # one known exercise per written day, so an empty scan (a changed cell header) cannot pass silently
    for expected in ("lora_param_count", "lora_delta", "dpo_loss", "log_odds"):
        assert expected in names, f"solution cell defining {expected!r} not found under {SOLUTIONS}"
    assert "setup" not in names                      # a non-solution cell's import is not counted


def test_course_defines_no_lesson_answer():
    bad = violations(COURSE, solution_names())
    assert not bad, "course/ must not hold a lesson's answer (move it out, e.g. to quizzes/worked_examples.py):\n" \
        + "\n".join(bad)


def test_allowed_names_are_real_solution_names():
    names = solution_names()
    for name, (module, why) in ALLOWED.items():
        assert name in names and (paths.ROOT / module).is_file() and why, name


def test_checker_catches_a_planted_answer(tmp_path):
    pkg = tmp_path / "course"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "sub" / "helpers.py").write_text("class Box:\n    def dpo_loss(self):\n        return 0\n")
    (pkg / "ok.py").write_text("def fine():\n    pass\n")
    (bad,) = violations(pkg, {"dpo_loss": ["day3_dpo_orpo/02_dpo_loss.py"], "fine_tune": ["x.py"]})
    assert "course/sub/helpers.py:2" in bad and "dpo_loss" in bad
