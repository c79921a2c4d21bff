# JupyterLab is started from the repository root (`make lab`), so nbgrader's formgrader reads this file:
# it points at the course root in autograder/ (see autograder/nbgrader_config.py).
from pathlib import Path

from course.authoring.nbgrader_setup import nbgrader_config

c = get_config()  # noqa: F821 (provided by nbgrader)
c.merge(nbgrader_config(Path(__file__).resolve().parent / "autograder"))
