"""The IPython kernel graded notebooks run in: each test cell runs with what student code may have changed put back,
and only a test that really ran to its end under that guard counts as passed.

    python -m course.authoring.guarded_kernel -f CONNECTION_FILE      (started by the sandbox executor)

How (issue #15; every bypass named here is a test in tests/test_grading_attacks.py):

- The executor sends each test cell wrapped in one ``if True:`` block ending in
  ``__import__("sys").audit("course.test_end", i)`` (:func:`wrap_test`), and gives this kernel, in a file it deletes
  at start-up, the wrapped sources and a per-run key. An **audit hook** (``sys.addaudithook``: Python code cannot
  remove it) holds the key, the compiled tests and the snapshot in its closure, reachable from no module, instance or
  handler table. Patching the kernel's dispatch, its handler table, this module's globals, ``hashlib`` or the
  snapshot therefore changes nothing the hook uses.
- When the interpreter is about to ``exec`` a code object equal to a test's own compiled code, the hook restores the
  snapshot taken before the first cell: input/AST transformers, event callbacks, the shell's and kernel's classes,
  ``builtins``, ``sys.modules`` entries, the dictionaries of the modules tests use (``torch``, ``numpy``, ``math``, ...,
  imported before student code when a test imports them), ``torch.Tensor``'s class, user-namespace names that shadow
  a builtin, ``sys.settrace``/``setprofile`` (and threading's), ``sys.excepthook/displayhook/stdout/stderr``, SIGINT.
- At ``course.test_end`` the hook checks that the caller's frame runs exactly that code object, in the notebook's own
  globals and builtins, with no tracer, builtins or ``sys.modules`` entry changed since the restore, and only then appends
  ``i:ok:HMAC`` to the evidence file. The executor (outside the kernel) turns every test cell without a valid line
  into a failure: a test whose code was altered (transformers, a rewritten request), skipped (a tracer), whose error
  was hidden (a patched ``showtraceback``, forged iopub or reply messages) or whose state was patched during the test
  gains nothing.
- The hook refuses ``sys.settrace``/``setprofile``, ``gc.get_objects/get_referrers/get_referents``,
  ``sys._current_frames``, reassigning a guard function's ``__code__``, and opening ``/proc/*/mem``.

Limits (also in the README): code in the kernel still runs with the kernel's own powers. ``ctypes`` can read and write
this process's memory (CPython raises no audit event for ``ctypes.cast`` or ``memmove``), so a student who writes a
memory-level exploit can find the key or rewrite the interpreter; the grader flags such submissions for review
(``suspicious_lines`` in :mod:`.grade`) and keeps the executed notebook. Look-alike return values (``__eq__`` always
True) are stopped only by tests that check exact types.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import os
import signal
import sys
import threading
from types import ModuleType

from ipykernel.iostream import OutStream
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp

_GUARD = frozenset(h for h in os.environ.pop("COURSE_GUARD", "").split(",") if h)
_OUTPUT_LIMIT = int(os.environ.pop("COURSE_OUTPUT_CHARS", "0") or 0)
_written = [0]
_write = OutStream.write
END_EVENT = "course.test_end"          # raised by the last line of every wrapped test (sandbox_executor.wrap_test)
# modules a test may use whose dictionaries are restored before it runs (imported before student code if it does)
GUARDED_DICTS = ("math", "cmath", "statistics", "random", "operator", "functools", "itertools", "collections", "copy",
                 "json", "re", "dataclasses", "numpy", "numpy.testing", "torch", "torch.nn", "torch.nn.functional",
                 "torch.testing")
TRUSTED_MODULES = ("math", "cmath", "statistics", "random", "re", "json", "itertools", "functools", "collections",
                   "operator", "copy", "dataclasses", "numpy", "torch")


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


ALIASES = {"torch": "torch", "np": "numpy", "numpy": "numpy", "math": "math", "F": "torch.nn.functional",
           "nn": "torch.nn"}


def _test_imports(sources: list[str]) -> list[str]:
    """Trusted modules the tests import or name (imported before student code, so their dictionaries can be
    snapshotted as they were)."""
    import re

    names: list[str] = []
    for src in sources:
        for alias, mod in ALIASES.items():
            if re.search(rf"\b{alias}\.", src) and mod not in names:
                names.append(mod)
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for n in ast.walk(tree):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else \
                [n.module] if isinstance(n, ast.ImportFrom) and n.module and not n.level else []
            for m in mods:
                if m.split(".")[0] in TRUSTED_MODULES and m not in names:
                    names.append(m)
    return names


def _snapshot(kernel) -> dict:
    """Everything restored before a test, as plain containers (no class of ours whose methods could be patched)."""
    from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult

    shell = kernel.shell
    objs = [kernel, shell, shell.displayhook, shell.display_pub, kernel.session, shell.events,
            shell.input_transformer_manager, shell.compile]
    metas = [m for o in objs for m in type(type(o)).__mro__ if m is not type and m is not object]
    classes = [(c, True) for c in dict.fromkeys(metas + _classes(*objs) + [ExecutionResult, ExecutionInfo, GuardedKernel])]
    torch = sys.modules.get("torch")
    if torch is not None:       # libraries may add methods to these later; a new dunder is dropped
        for name in ("Tensor", "nn.Parameter", "nn.Module"):
            obj = torch
            for part in name.split("."):
                obj = getattr(obj, part, None)
            if isinstance(obj, type):
                classes += [(c, False) for c in obj.__mro__ if c is not object and all(c is not d for d, _ in classes)]
    # the functions, classes and submodules tests call (torch.allclose, F.cross_entropy, math.isclose, ...); not
    # library state (a module-level set or cache is rebound legitimately), not deeper submodules
    mods = [(sys.modules[n], {k: v for k, v in vars(sys.modules[n]).items() if callable(v) or isinstance(v, ModuleType)})
            for n in GUARDED_DICTS if n in sys.modules]
    m = shell.input_transformer_manager
    return {
        "kernel": kernel, "shell": shell,
        "objs": [(o, set(vars(o)) if hasattr(o, "__dict__") else set()) for o in objs],
        "classes": [(c, dict(vars(c)), drop) for c, drop in classes],
        "aliases": [(a, m) for a, m in ALIASES.items() if m in sys.modules],
        "shell_attrs": {k: vars(shell)[k] for k in _PROTECTED if k in vars(shell)},
        "handlers": (kernel.shell_handlers, dict(kernel.shell_handlers)),
        "transforms": [(getattr(m, n), list(getattr(m, n))) for n in ("cleanup_transforms", "line_transforms",
                                                                       "token_transformers") if hasattr(m, n)],
        "post": (shell.input_transformers_post, list(shell.input_transformers_post)),
        "ast": (shell.ast_transformers, list(shell.ast_transformers)),
        "events": (shell.events.callbacks, {k: list(v) for k, v in shell.events.callbacks.items()}),
        "builtins": dict(vars(builtins)),
        "modules": {n: sys.modules[n] for n in GUARDED_DICTS if n in sys.modules}, "mod_dicts": mods,
        "ns": shell.user_ns, "global_ns": shell.user_global_ns, "ns_saved": dict(shell.user_ns),
        "sys": {k: getattr(sys, k) for k in ("excepthook", "displayhook", "stdout", "stderr", "stdin")},
        "sigint": signal.getsignal(signal.SIGINT),
    }


def _make_same(CodeType, SAFE):
    """→ (same, same_const): code-object equality over exact types only (no student ``__eq__`` ever runs). Built
    once for the hook at start-up (and for tests); later changes to this module do not reach the hook's copy."""

    def same_const(u, v) -> bool:      # exact types only, nested tuples/frozensets included
        if type(u) is not type(v):
            return False
        if type(u) is CodeType:
            return same(u, v)
        if type(u) is tuple:
            return len(u) == len(v) and all(same_const(p, q) for p, q in zip(u, v))
        if type(u) is frozenset:    # a frozenset of constants: compare as sorted reprs of exact-type members
            return len(u) == len(v) and all(type(p) in SAFE for p in u) and all(type(q) in SAFE for q in v) \
                and sorted(map(repr, u)) == sorted(map(repr, v))
        return type(u) in SAFE and u == v

    def same(a, b) -> bool:        # code equality over exact types only (no student __eq__ ever runs)
        if type(a) is not CodeType or type(b) is not CodeType or a.co_code != b.co_code:
            return False
        return all(same_const(x, y) for x, y in ((a.co_names, b.co_names), (a.co_varnames, b.co_varnames),
                                                 (a.co_consts, b.co_consts)))

    return same, same_const


def _install(conf: dict) -> None:
    """Install the audit hook. Everything it needs is captured here, once, before any student code runs; afterwards
    it is reachable only through the hook's closure."""
    import _hashlib
    import posix
    import types

    key = bytes.fromhex(conf["key"])
    fd = posix.open(conf["evidence"], posix.O_WRONLY | posix.O_APPEND)
    fd_id = (posix.fstat(fd).st_dev, posix.fstat(fd).st_ino)
    _getframe, _digest, _pwrite, _fstat = sys._getframe, _hashlib.hmac_digest, posix.write, posix.fstat
    _gettrace, _getprofile = sys.gettrace, sys.getprofile
    _settrace, _setprofile, _signal, _setattr, _delattr = (sys.settrace, sys.setprofile, signal.signal, setattr,
                                                          delattr)
    _sysdict, _thrdict, _bdict = vars(sys), vars(threading), vars(builtins)
    _modules = sys.modules
    _typedict = type.__dict__["__dict__"].__get__
    CodeType, FunctionType, ModuleType = types.CodeType, types.FunctionType, types.ModuleType
    SAFE = (str, bytes, int, float, complex, bool, type(None), type(Ellipsis))
    tests: dict[bytes, list] = {}
    for i, src in enumerate(conf["tests"]):
        if src is None:
            continue
        code = compile(src, "<test>", "exec", dont_inherit=True)
        tests.setdefault(code.co_code, []).append((i, code))
    def ns_of(s) -> dict:
        return s["ns"]

    state = {"snap": None, "current": None, "busy": False, "tampered": False, "keep": []}
    own_functions: list = []

    same, same_const = _make_same(CodeType, SAFE)

    def str_keys(d) -> list:
        ks = list(d)
        if any(type(k) is not str for k in ks):
            state["tampered"] = True          # a str-subclass key can shadow a name; libraries never make one
        return [k for k in ks if type(k) is str]

    def put_dict(d, saved: dict, drop_new: bool = True) -> None:
        """Make dict ``d`` hold ``saved`` again (and, with ``drop_new``, nothing else); replaced values are kept
        alive, so no student ``__del__`` runs inside the hook."""
        keep = state["keep"]
        for k in str_keys(d):
            if drop_new and k not in saved:
                keep.append(d[k])
                del d[k]
        for k, v in saved.items():
            if d.get(k, keep) is not v:
                keep.append(d.get(k))
                d[k] = v

    def restore() -> None:
        s = state["snap"]
        if s is None:
            return
        keep = state["keep"]
        _settrace(None)
        _setprofile(None)
        for k in ("_trace_hook", "_profile_hook"):
            if k in _thrdict:
                _thrdict[k] = None
        for k, v in s["sys"].items():
            keep.append(_sysdict.get(k))
            _sysdict[k] = v
        for cls, saved, drop in s["classes"]:
            d = _typedict(cls)
            for k in [k for k in str_keys(d) if k not in saved and (drop or k[:2] == k[-2:] == "__")]:
                keep.append(d[k])
                try:
                    _delattr(cls, k)
                except (AttributeError, TypeError):
                    pass
            for k, v in saved.items():
                if d.get(k, keep) is not v and k not in ("__dict__", "__weakref__"):
                    keep.append(d.get(k))
                    try:
                        _setattr(cls, k, v)
                    except (AttributeError, TypeError):
                        pass
        for obj, keys in s["objs"]:          # methods shadowed on an instance (``ip.showtraceback = ...``)
            d = obj.__dict__ if type(getattr(obj, "__dict__", None)) is dict else None
            if d is not None:
                for k in [k for k in str_keys(d) if k not in keys and callable(getattr(type(obj), k, None))]:
                    keep.append(d.pop(k))
        shell_dict = s["shell"].__dict__
        for k, v in s["shell_attrs"].items():
            keep.append(shell_dict.get(k))
            shell_dict[k] = v
        put_dict(*s["handlers"])
        for lst, saved in s["transforms"] + [s["post"], s["ast"]]:
            keep.extend(lst)
            lst[:] = saved
        callbacks, saved_events = s["events"]
        for k in str_keys(callbacks):
            keep.extend(callbacks[k])
            callbacks[k][:] = saved_events.get(k, [])
        put_dict(_bdict, s["builtins"], drop_new=False)    # IPython adds and hides builtins while a cell runs
        for name, mod in s["modules"].items():
            if _modules.get(name) is not mod:
                keep.append(_modules.get(name))
                _modules[name] = mod
        for mod, saved in s["mod_dicts"]:
            put_dict(mod.__dict__, saved, drop_new=False)      # submodules imported later stay attributes
        for alias, name in s["aliases"]:
            if alias in ns_of(s) and ns_of(s)[alias] is not _modules.get(name):
                keep.append(ns_of(s)[alias])
                ns_of(s)[alias] = _modules.get(name)
        ns, saved_ns = s["ns"], s["ns_saved"]
        keep.append(ns.get("__builtins__"))
        ns["__builtins__"] = builtins
        for k in [k for k in str_keys(ns) if k in _bdict and not k.startswith("_")]:
            if ns[k] is not saved_ns.get(k, keep):
                keep.append(ns.pop(k))
        _signal(signal.SIGINT, s["sigint"])

    def changed() -> bool:
        """Has the guarded state changed since the restore (student code called by the test patched it)?"""
        s = state["snap"]
        if s is None:
            return True
        from_trace = _gettrace() is not None or _getprofile() is not None
        if from_trace or state["tampered"]:
            return True
        # builtins only: libraries rebind module functions legitimately while a test runs (importing torch._dynamo
        # wraps torch.manual_seed), so a module patch made during the test by code it calls is not detected
        for k, v in s["builtins"].items():
            if _bdict.get(k, keep_marker) is not v:
                return True
        for name, mod in s["modules"].items():
            if _modules.get(name) is not mod:
                return True
        ns = s["ns"]
        if ns.get("__builtins__") is not builtins:
            return True
        return any(k in _bdict and not k.startswith("_") and ns[k] is not s["ns_saved"].get(k, keep_marker)
                   for k in str_keys(ns))

    keep_marker = object()

    def end(args) -> None:
        cur = state["current"]
        state["current"] = None
        if cur is None or type(args) is not tuple or len(args) != 1 or type(args[0]) is not int or args[0] != cur[0]:
            return
        frame = _getframe(2)          # 0: this function, 1: the hook, 2: the code that raised the event
        s = state["snap"]
        if frame.f_code is not cur[1] or s is None or frame.f_globals is not s["global_ns"] \
                or frame.f_builtins is not _bdict or changed():
            return
        st = _fstat(fd)
        if (st.st_dev, st.st_ino) != fd_id:
            return
        msg = f"{cur[0]}:ok".encode()
        _pwrite(fd, msg + b":" + _digest(key, msg, "sha256").hex().encode() + b"\n")

    def hook(event, args):
        if state["busy"] or type(event) is not str:
            return
        state["busy"] = True
        try:
            if event == "exec":
                code = args[0] if type(args) is tuple and args else None
                if type(code) is CodeType:
                    for i, ref in tests.get(code.co_code, ()):
                        if same(code, ref):
                            restore()
                            state["current"] = (i, code)
                            break
            elif event == END_EVENT:
                end(args)
            elif event == "course.restore":
                restore()
            elif event == "course.register":
                if state["snap"] is None and type(args) is tuple and len(args) == 1 and type(args[0]) is dict:
                    state["snap"] = args[0]
            elif state["snap"] is None:         # kernel start-up (debugpy sets a tracer): no student code yet
                return
            elif event in ("sys.settrace", "sys.setprofile", "gc.get_objects", "gc.get_referrers",
                           "gc.get_referents", "sys._current_frames"):
                raise PermissionError(f"{event} is not allowed while a notebook is graded")
            elif event == "object.__setattr__":
                if type(args) is tuple and len(args) >= 2 and any(args[0] is f for f in own_functions):
                    raise PermissionError("the grader's own functions cannot be changed")
            elif event == "open":
                path = args[0] if type(args) is tuple and args else None
                if type(path) is bytes:
                    path = path.decode("utf-8", "replace")
                if type(path) is str and _is_proc_mem(path):
                    raise PermissionError("process memory cannot be opened while a notebook is graded")
        finally:
            state["busy"] = False

    own_functions.extend([hook, end, restore, changed, put_dict, str_keys, same, same_const, _is_proc_mem])
    sys.addaudithook(hook)


def _is_proc_mem(path: str) -> bool:
    """``/proc/<anything>/mem`` (self, a pid, a task), after resolving ``..``, ``.`` and symbolic links (resolved
    only for a path that names ``proc`` or ``mem`` or is itself a link: one ``lstat`` per ordinary open)."""
    if "proc" not in path and "mem" not in path:
        try:
            if not _S_ISLNK(_LSTAT(path).st_mode):
                return False
        except (OSError, ValueError):
            return False
    try:
        real = _REALPATH(path)
    except (OSError, ValueError):
        return True
    parts = [p for p in real.split("/") if p]
    return len(parts) >= 2 and parts[0] == "proc" and parts[-1] == "mem"


_REALPATH, _LSTAT = os.path.realpath, os.lstat
from stat import S_ISLNK as _S_ISLNK  # noqa: E402


def _load_conf() -> dict | None:
    path = os.environ.pop("COURSE_GUARD_FILE", "")
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        conf = json.load(f)
    os.unlink(path)
    return conf


def _install_private(conf: dict) -> None:
    """Run :func:`_install` with a private copy of this module's globals and of ``builtins``: the hook's functions
    look names up there, so patching ``builtins.all`` or this module's globals later cannot run student code
    inside the hook (where its frame, and the key, would be in reach)."""
    import types

    g = dict(globals())
    g["__builtins__"] = dict(vars(builtins))
    for name in ("_make_same", "_is_proc_mem", "_install"):
        fn = g[name]
        g[name] = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    g["_install"](conf)


_CONF = _load_conf()
_PREIMPORT = _test_imports([s for s in (_CONF or {}).get("tests", []) if s])
if _CONF is not None:
    _install_private(_CONF)
del _CONF


class GuardedKernel(IPythonKernel):
    _registered = False

    async def execute_request(self, stream, ident, parent):
        if not GuardedKernel._registered:          # the first request: no student code has run yet
            GuardedKernel._registered = True
            import importlib

            for name in _PREIMPORT:
                try:
                    importlib.import_module(name)
                except Exception:  # noqa: BLE001 — the test itself will report the failed import
                    pass
            sys.audit("course.register", _snapshot(self))
        _written[0] = 0
        code = (parent.get("content") or {}).get("code", "")
        if hashlib.sha256(code.encode()).hexdigest() in _GUARD:
            sys.audit("course.restore")
        await super().execute_request(stream, ident, parent)


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=GuardedKernel)
