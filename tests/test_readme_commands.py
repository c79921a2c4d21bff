"""The README's and docs' commands work verbatim in a fresh clone's shell: the course command is written as
`.venv/bin/course` (nothing puts the venv on PATH), and every `make` target they name exists."""

import re

from course.paths import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SUB = r"(start|check|build|grade|days|quiz|drill|review|mutants|profiles|build-base|export|gradebook|memory|release|models)"


def code_lines(text):
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif in_code:
            yield line


def test_course_commands_are_written_with_the_venv_path():
    bad = []
    for f in DOCS:
        text = f.read_text()
        for line in code_lines(text):
            if re.match(rf"^\s*(\$ )?course {SUB}\b", line):
                bad.append(f"{f.name}: {line.strip()}")
        bad += [f"{f.name}: `{m.group(0)}" for m in re.finditer(rf"(?<![/\w])`course {SUB}\b[^`]*", text)]
    assert not bad, "write `.venv/bin/course ...` (a fresh shell has no `course` on PATH):\n" + "\n".join(bad)


def test_make_targets_named_in_the_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = set(re.findall(r"`make ([\w-]+)", (ROOT / "README.md").read_text()))
    named |= {m for line in code_lines((ROOT / "README.md").read_text()) for m in re.findall(r"^make ([\w-]+)", line)}
    assert named and named <= targets, sorted(named - targets)


def test_cli_messages_name_the_runnable_command():
    from course.cli import parser

    text = parser().format_help()
    for f in (ROOT / "course" / "commands").glob("*.py"):
        text += f.read_text()
    hits = re.findall(rf"(?<![`/\w.])`course {SUB}\b[^`]*`(?!`)", text)
    assert not hits, hits
