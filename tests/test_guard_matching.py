"""Every test cell of every notebook, wrapped as the sandbox executor sends it, compiles in IPython to one code
object that the guard's matcher recognises (else the guard would fail a correct student's test with GuardError).
No kernel: IPython's own transform and compile steps, in process (a few seconds)."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from course.authoring.cells import is_test, read_source
from course.authoring.guarded_kernel import _make_same
from course.authoring.sandbox_executor import wrap_test

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("solutions/*/*.py")) + sorted(ROOT.glob("tests/fixtures/sample_course/solutions/*/*.py"))
SAFE = (str, bytes, int, float, complex, bool, type(None), type(Ellipsis))


@pytest.fixture(scope="module")
def shell():
    return InteractiveShell.instance()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_wrapped_test_cell_is_recognised(path, shell):
    same, _ = _make_same(types.CodeType, SAFE)
    tests = [c.source for c in read_source(path).cells if is_test(c)]
    assert tests, path
    for i, src in enumerate(tests):
        wrapped = wrap_test(src, i)
        assert wrapped is not None, (path.name, i, "not plain Python: its result could not be proven")
        cell = shell.transform_cell(wrapped)
        tree = shell.compile.ast_parse(cell)
        assert len(tree.body) == 1, (path.name, i)     # IPython runs each top-level node as its own code object
        ipython_code = shell.compile(ast.Module(tree.body, []), "<cell>", "exec")
        assert same(ipython_code, compile(wrapped, "<test>", "exec", dont_inherit=True)), (path.name, i)
        assert not same(ipython_code, compile(wrapped.replace("audit(", "audit( ", 1) + "x = 1\n", "<t>", "exec",
                                             dont_inherit=True)), "a changed test must not match"
