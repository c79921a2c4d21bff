# nbgrader configuration of this course (this folder is the nbgrader course root).
# The settings live in course/authoring/nbgrader_setup.py so that `course build` / `course grade` and the plain
# `nbgrader` command (or formgrader, started from this folder) behave the same.
from pathlib import Path

from course.authoring.nbgrader_setup import nbgrader_config

c = get_config()  # noqa: F821 (provided by nbgrader)
c.merge(nbgrader_config(Path(__file__).resolve().parent))
