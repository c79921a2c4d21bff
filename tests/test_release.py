"""``course release``: the students of a graded class get lessons, the package and the bank — no solutions, hidden
tests or planted bugs (checked by grepping every file written), and the check itself catches a planted leak."""

from __future__ import annotations

import subprocess

import pytest

from course.authoring.layout import Layout
from course.authoring.release import ReleaseError, check, release, secrets


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "class"
    return release(Layout.default(), out)


def test_release_holds_what_students_need_and_nothing_else(released):
    out = released.out
    assert (out / "lessons").is_dir() and (out / "course" / "cli.py").is_file() and (out / "quizzes").is_dir()
    assert "student copy" in (out / "README.md").read_text()
    assert sorted((out / "lessons").glob("*/*.ipynb")) and (out / "pyproject.toml").is_file()
    for gone in ("solutions", "autograder", "scripts", "tests", ".git", "quizzes/worked_examples.py"):
        assert not (out / gone).exists(), gone
    # grep the whole output: no nbgrader markers outside the package's own tooling, no hidden-test line
    res = subprocess.run(["grep", "-rlE", "BEGIN (HIDDEN TESTS|SOLUTION)", str(out), "--exclude-dir=course"],
                         capture_output=True, text=True)
    assert res.stdout == "", res.stdout
    per_day, anywhere, _ = secrets(Layout.default())
    assert len(per_day) >= 7 and sum(map(len, per_day.values())) > 100 and anywhere
    text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in out.rglob("*")
                     if p.is_file() and p.suffix in (".ipynb", ".py", ".yaml", ".md"))
    lines = {ln.strip() for ln in text.replace("\\n", "\n").splitlines()}
    assert not (lines & anywhere)


def test_the_check_catches_a_planted_leak(released, tmp_path):
    layout = Layout.default()
    per_day, anywhere, _ = secrets(layout)
    day, lines = next((d, s) for d, s in sorted(per_day.items()) if s)
    leak = released.out / "quizzes" / "leak.yaml"
    leak.write_text(f"q: |\n  {sorted(lines)[0]}\n")
    try:
        problems = check(layout, released.out)
    finally:
        leak.unlink()
    assert any("leak.yaml" in p for p in problems), problems
    (released.out / "solutions").mkdir()
    try:
        assert any("solutions/ is present" in p for p in check(layout, released.out))
    finally:
        (released.out / "solutions").rmdir()


def test_release_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(ReleaseError, match="not empty"):
        release(Layout.default(), tmp_path)
    assert (tmp_path / "x.txt").read_text() == "keep me"
