"""One clear line instead of a wall of traceback when a cell fails because an exercise is not written yet.

A blank lesson's given cells call the student's functions: each one used to print a full traceback ending in the
stub's ``NotImplementedError`` (or a ``NameError`` for a value an earlier failed cell never made) — 13 tracebacks
before any output in Day 2's first notebook. :func:`install` (called by ``course.notebook.setup``) registers an
IPython handler for exactly those two cases:

- ``NotImplementedError`` raised *by notebook code* (the ``# YOUR CODE HERE`` stub) →
  ``NotImplementedError: `lora_forward` is not written yet — solve its exercise (the cell that says YOUR CODE
  HERE), then run this cell again``;
- ``NameError`` → ``NameError: name 'MiB' is not defined — a cell above has not run or failed: run the cells
  above (one may need an exercise solved first)``.

A plotting cell that fails that way shows no empty axes (its unfinished figures are closed).
The cell still fails (an ``error`` output with the same name and message), so nbgrader and ``course check`` score
it exactly as before; only the printed traceback is shorter. A ``NotImplementedError`` raised inside a library
(torch's missing operators, say) keeps its full traceback.
"""

from __future__ import annotations

import os
import tempfile


def _is_cell(filename: str) -> bool:
    """Code typed in a notebook cell (ipykernel ≥ 6 compiles cells to <tmp>/ipykernel_<pid>/<hash>.py)."""
    return filename.startswith("<ipython-input") or (
        os.path.basename(os.path.dirname(filename)).startswith("ipykernel_")
        and os.path.dirname(os.path.dirname(filename)) == tempfile.gettempdir().rstrip("/"))


def message(etype, value, tb) -> str | None:
    """The one-line message for an exception, or None to keep IPython's full traceback."""
    if issubclass(etype, NotImplementedError):
        last = None
        while tb is not None:
            last, tb = tb, tb.tb_next
        if last is None or not _is_cell(last.tb_frame.f_code.co_filename):
            return None                          # a library's NotImplementedError: the full story helps
        frame = last.tb_frame
        fn = frame.f_code.co_name
        owner = frame.f_locals.get("self")
        if owner is not None and fn not in ("<module>", "<lambda>"):
            fn = f"{type(owner).__name__}.{fn}"
        what = f"`{fn}` is" if fn not in ("<module>", "<lambda>") else "this exercise is"
        detail = f" ({value})" if str(value) else ""
        return (f"NotImplementedError{detail}: {what} not written yet — solve its exercise (the cell that says "
                "YOUR CODE HERE), then run this cell again")
    if issubclass(etype, NameError):
        return (f"NameError: {value} — a cell above has not run or failed: run the cells above "
                "(one may need an exercise solved first)")
    return None


def _drop_unfinished_figures() -> None:
    """A plotting cell that failed half-way would still show its empty axes (the inline backend draws every open
    figure after the cell): close the figures this cell opened (earlier cells' were shown and closed already)."""
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")


def _handler(shell, etype, value, tb, tb_offset=None):
    line = message(etype, value, tb)
    if line is None:
        stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    else:
        stb = [line]
        _drop_unfinished_figures()
    shell._showtraceback(etype, value, stb)      # ipykernel: the cell's `error` output (IPython shows nothing else)
    return stb


def install() -> bool:
    """Register the handler in the running IPython kernel (a no-op outside IPython). Returns whether it did."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((NotImplementedError, NameError), _handler)
    return True
