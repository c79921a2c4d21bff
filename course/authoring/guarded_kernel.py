"""The IPython kernel graded notebooks run in: before each test cell it puts back what student code may have changed.

    python -m course.authoring.guarded_kernel -f CONNECTION_FILE      (started by the sandbox executor)

The executor passes the SHA-256 of every test cell's source in ``COURSE_GUARD``. At the first request, before any
student code runs, the kernel records the state that decides how a cell runs and how its result is reported:
IPython's input transformers (cleanup, line, token, post), AST transformers, event callbacks, the shell's and the
kernel's methods (on the instances and on every class they are built from), ``builtins``, names in the user namespace
that shadow a builtin (``abs = lambda x: 0``), ``sys.settrace``/``setprofile`` (and threading's), ``sys.excepthook``,
``sys.displayhook``, ``sys.stdout``/``stderr`` and the SIGINT handler. Before a test cell runs, all of it is restored,
so ``get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])``, a tracer that skips asserts, a
patched ``showtraceback`` or ``isinstance``, or a ``pre_run_cell`` hook cannot disable or fake a test.

Limits (documented in the README): code in the kernel runs with the kernel's own powers, so a student who targets
this guard itself (patching it, ctypes, forging kernel messages) is not stopped here; the sandbox still keeps such
code away from solutions, the gradebook and classmates, and the executed notebook is kept for review.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import signal
import sys
import threading

from ipykernel.iostream import OutStream
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp

_GUARD = frozenset(h for h in os.environ.pop("COURSE_GUARD", "").split(",") if h)
_OUTPUT_LIMIT = int(os.environ.pop("COURSE_OUTPUT_CHARS", "0") or 0)
_written = [0]
_write = OutStream.write


def _capped_write(self, string):
    """stdout/stderr text beyond the limit (per cell) is dropped here, before it is serialised and sent: a 200 MB
    print costs the kernel nothing and cannot time the executor out."""
    if _OUTPUT_LIMIT and isinstance(string, str):
        room = _OUTPUT_LIMIT - _written[0]
        if room <= 0:
            return len(string)
        n = len(string)
        if n > room:
            string = string[:room] + f"\n... output cut at {_OUTPUT_LIMIT:,} characters ...\n"
        _written[0] += n
        _write(self, string)
        return n
    return _write(self, string)


OutStream.write = _capped_write
_PROTECTED = ("compile", "InteractiveTB", "SyntaxTB", "displayhook", "display_pub", "display_trap", "builtin_trap",
              "events", "input_transformer_manager", "user_ns", "user_global_ns", "excepthook")


def _classes(*objs) -> list[type]:
    out: list[type] = []
    for o in objs:
        for cls in type(o).__mro__:
            if cls is not object and cls not in out:
                out.append(cls)
    return out


class _Snapshot:
    def __init__(self, kernel: "GuardedKernel"):
        from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult

        shell = kernel.shell
        self.kernel, self.shell = kernel, shell
        objs = [kernel, shell, shell.displayhook, shell.display_pub, kernel.session, shell.events,
                shell.input_transformer_manager, shell.compile]
        self.objs = [(o, set(vars(o)) if hasattr(o, "__dict__") else set()) for o in objs]
        self.classes = [(c, dict(vars(c))) for c in _classes(*objs) + [ExecutionResult, ExecutionInfo, type(self)]]
        self.shell_attrs = {k: vars(shell)[k] for k in _PROTECTED if k in vars(shell)}
        self.kernel_handlers = dict(kernel.shell_handlers)
        m = shell.input_transformer_manager
        self.transforms = {name: list(getattr(m, name)) for name in ("cleanup_transforms", "line_transforms",
                                                                     "token_transformers") if hasattr(m, name)}
        self.post = list(shell.input_transformers_post)
        self.ast = list(shell.ast_transformers)
        self.events = {k: list(v) for k, v in shell.events.callbacks.items()}
        self.builtins = dict(vars(builtins))
        self.ns = dict(shell.user_ns)
        self.sys = {k: getattr(sys, k) for k in ("excepthook", "displayhook", "stdout", "stderr", "stdin")}
        self.sigint = signal.getsignal(signal.SIGINT)

    def restore(self) -> None:
        sys.settrace(None)
        sys.setprofile(None)
        threading.settrace(None)            # type: ignore[arg-type]
        threading.setprofile(None)          # type: ignore[arg-type]
        for k, v in self.sys.items():
            setattr(sys, k, v)
        for cls, saved in self.classes:
            for k in [k for k in vars(cls) if k not in saved]:
                try:
                    delattr(cls, k)
                except (AttributeError, TypeError):
                    pass
            for k, v in saved.items():
                if vars(cls).get(k, _MISSING) is not v and k not in ("__dict__", "__weakref__"):
                    try:
                        setattr(cls, k, v)
                    except (AttributeError, TypeError):
                        pass
        for obj, keys in self.objs:         # methods shadowed on an instance (``ip.showtraceback = ...``)
            if hasattr(obj, "__dict__"):
                for k in [k for k in vars(obj) if k not in keys and callable(getattr(type(obj), k, None))]:
                    delattr(obj, k)
        shell = self.shell
        vars(shell).update(self.shell_attrs)
        self.kernel.shell_handlers.clear()
        self.kernel.shell_handlers.update(self.kernel_handlers)
        m = shell.input_transformer_manager
        for name, saved in self.transforms.items():
            getattr(m, name)[:] = saved
        shell.input_transformers_post[:] = self.post
        shell.ast_transformers[:] = self.ast
        for k in list(shell.events.callbacks):
            shell.events.callbacks[k][:] = self.events.get(k, [])
        b = vars(builtins)
        for k in [k for k in b if k not in self.builtins]:
            del b[k]
        b.update(self.builtins)
        ns = shell.user_ns
        ns["__builtins__"] = builtins
        for k in [k for k in ns if k in self.builtins and not k.startswith("_")]:
            if k not in self.ns or ns[k] is not self.ns[k]:
                del ns[k]
        signal.signal(signal.SIGINT, self.sigint)


_MISSING = object()


class GuardedKernel(IPythonKernel):
    _snapshot: _Snapshot | None = None

    async def execute_request(self, stream, ident, parent):
        if self._snapshot is None:
            self._snapshot = _Snapshot(self)
        _written[0] = 0
        code = (parent.get("content") or {}).get("code", "")
        if hashlib.sha256(code.encode()).hexdigest() in _GUARD:
            self._snapshot.restore()
        await super().execute_request(stream, ident, parent)


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=GuardedKernel)
