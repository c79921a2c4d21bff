"""The instructor pipeline: sources → lessons → student checks → class grading, plus planted-bug coverage.

``solutions/<day>/*.py`` (jupytext percent with nbgrader metadata) is the single source of truth:

- :mod:`.build`    ``course build``    → ``lessons/<day>/*.ipynb`` via nbgrader ``generate_assignment``
- :mod:`.student`  ``course start`` / ``course check`` (visible tests, like ``otter check``)
- :mod:`.grade`    ``course grade``    real ``nbgrader autograde`` with hidden tests, feedback without them
- :mod:`.mutants`  ``course mutants``  planted bugs swapped into one live kernel per notebook

Every function takes a :class:`~.layout.Layout`, so the same code serves the course repository and the
small sample course under ``tests/fixtures``.
"""

from .layout import Layout  # noqa: F401
