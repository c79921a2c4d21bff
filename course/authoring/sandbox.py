"""The jail a student's notebook runs in while it is graded: bubblewrap (``bwrap``), no network, no view of the course.

One concern: turn a notebook (hidden tests already restored, by nbgrader, outside) into an executed notebook, running
the executor and the kernel together inside a fresh sandbox per student (a kernel in an unshared network namespace
cannot talk to a client outside). Scoring happens outside, with nbgrader's own machinery, from the outputs returned.

What the sandbox sees (everything else does not exist inside it):
- read-only: the system's ``/usr`` ``/etc`` ``/lib*`` ``/bin`` ``/sbin``, the Python installation (``sys.base_prefix``)
  and environment (``sys.prefix``), the ``course`` package folder alone (not the repository around it: no
  ``solutions/``, ``autograder/``, ``lessons/``, ``.git``), and any extra read-only folders (model caches);
- writable: a private work folder (``/home/student``, the kernel's cwd and home, a size-limited tmpfs holding only
  the student's notebook without its hidden tests) and a private ``/tmp``;
- its own PID, network, IPC and UTS namespaces; a new session; no capabilities; as root, the executor drops to
  an unprivileged uid of its own before any student code runs (so ``RLIMIT_NPROC`` counts that student only).
Limits (per process, set inside before the kernel starts): address space, CPU seconds, processes, file size, open
files; plus a wall-clock limit for the whole run and a cap on each cell's output. When the run ends, bwrap's PID 1
exits and the kernel kills every process left in the namespace (double-forked daemons included); ``--die-with-parent``
does the same if the grader itself is killed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

INSTALL = "sudo apt-get install -y bubblewrap"          # Debian/Ubuntu; Fedora: sudo dnf install -y bubblewrap
INSIDE_WORK = "/home/student"
# environment passed into the sandbox (everything else is dropped: no tokens, no instructor paths)
PASS_ENV = ("COURSE_PROFILE", "COURSE_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HF_HUB_OFFLINE",
            "HF_DATASETS_OFFLINE", "TRANSFORMERS_NO_ADVISORY_WARNINGS", "TRL_EXPERIMENTAL_SILENCE", "PYTHONWARNINGS",
            "TOKENIZERS_PARALLELISM", "LANG", "LC_ALL", "TZ")


class SandboxError(RuntimeError):
    """The sandbox could not run, or the run ended without a result (killed, out of time, out of memory)."""


class SandboxUnavailable(SandboxError):
    """No working bubblewrap on this machine."""


@dataclass(frozen=True)
class Limits:
    """Per-student limits. Defaults fit a 24 GB, 2-core machine grading with ``--jobs 2`` (two kernels of at most
    6 GiB address space each, plus their executors)."""

    memory_mb: int = 6144            # RLIMIT_AS of every process in the sandbox (torch on CPU maps ~1.5 GiB)
    cpu_seconds: int = 3600          # RLIMIT_CPU of every process
    processes: int = 256             # RLIMIT_NPROC: threads and processes of the sandbox's user
    file_mb: int = 512               # RLIMIT_FSIZE, and the size of the writable work folder
    open_files: int = 1024           # RLIMIT_NOFILE
    output_chars: int = 1_000_000    # text kept per cell while executing (the rest is dropped as it arrives)
    extra_ro: tuple[str, ...] = field(default_factory=tuple)   # more read-only folders (e.g. a model cache)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "extra_ro"}


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


_PROBED: dict[str, str] = {}


def check_available() -> str:
    """The bwrap executable, after one trial run; :class:`SandboxUnavailable` naming the fix otherwise."""
    exe = bwrap_path()
    if not exe:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: install it with `{INSTALL}` "
                                 "(Fedora: `sudo dnf install -y bubblewrap`), or grade with --no-sandbox")
    if exe not in _PROBED:
        res = subprocess.run([exe, *_mounts(), *_unshare(), "--die-with-parent", "--", sys.executable, "-c",
                              "print('ok')"], capture_output=True, text=True, timeout=60)
        if res.returncode != 0 or res.stdout.strip() != "ok":
            raise SandboxUnavailable(f"bubblewrap is installed but cannot create a sandbox here: "
                                     f"{(res.stderr or res.stdout).strip()[:300]} (it needs user namespaces, or root)")
        _PROBED[exe] = "ok"
    return exe


def _unshare() -> list[str]:
    """Own PID, network, IPC, UTS (and cgroup) namespaces. As root no user namespace: the executor then drops to
    an unprivileged uid (a real uid, so RLIMIT_NPROC counts); otherwise bwrap needs one (unprivileged user namespaces)."""
    args = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    return args if os.geteuid() == 0 else ["--unshare-user", *args]


def course_package() -> Path:
    import course

    return Path(course.__file__).resolve().parent


def _ro_roots() -> list[str]:
    """The read-only folders: system, Python installation and environment, the ``course`` package alone."""
    roots = ["/usr", "/etc", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/opt"]
    for p in (sys.base_prefix, sys.prefix, sys.exec_prefix):
        roots.append(str(Path(p).resolve()))
    return roots


def _mounts(extra_ro: tuple[str, ...] = (), tmp_mb: int = 512) -> list[str]:
    pkg = str(course_package())
    targets = list(dict.fromkeys(_ro_roots() + [str(Path(x).resolve()) for x in extra_ro]))
    # the private /tmp first: a venv or package that lives under /tmp (a clone in /tmp/...) is bound on top of it
    # below, where a tmpfs mounted last would hide it (bwrap: execvp .../python: No such file or directory)
    args: list[str] = ["--perms", "1777", "--size", str(tmp_mb * 2 ** 20), "--tmpfs", "/tmp"]
    parents: list[str] = []
    for t in targets + [pkg, INSIDE_WORK]:      # bwrap would create missing parents 0700 (unusable once unprivileged)
        for a in reversed(Path(t).parents[:-1]):
            if str(a) not in parents and str(a) != "/tmp":      # /tmp is the tmpfs above: not re-created 0755
                parents.append(str(a))
    for a in parents:
        args += ["--perms", "0755", "--dir", a]
    for p in targets:
        args += ["--ro-bind-try", p, p]
    # the package at the path the editable install points to; its parent (the repository) is not mounted, so
    # solutions/, autograder/, lessons/ and .git do not exist inside. A venv inside the repository is mounted
    # above at its own path only.
    args += ["--ro-bind", pkg, pkg]
    args += ["--proc", "/proc", "--dev", "/dev"]
    return args


def command(workdir: Path, limits: Limits, sandbox: bool = True) -> list[str]:
    """The argv that runs the executor on a notebook read from stdin (inside bwrap unless ``sandbox=False``)."""
    inner = [sys.executable, "-I", "-m", "course.authoring.sandbox_executor", json.dumps(limits.to_json())]
    if not sandbox:
        return [sys.executable, "-m", "course.authoring.sandbox_executor", json.dumps(limits.to_json()),
                str(workdir)]
    exe = check_available()
    args = [exe, *_mounts(limits.extra_ro, limits.file_mb),
            "--perms", "1777", "--size", str(limits.file_mb * 2 ** 20), "--tmpfs", INSIDE_WORK, "--chdir", INSIDE_WORK,
            *_unshare(), "--new-session", "--die-with-parent", "--clearenv",
            "--setenv", "HOME", INSIDE_WORK, "--setenv", "PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "--setenv", "TMPDIR", "/tmp", "--setenv", "COURSE_SANDBOX", "1"]
    if os.geteuid() == 0:       # privileged bwrap: keep only what the executor needs to drop root
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    for k in PASS_ENV:
        if k in os.environ:
            args += ["--setenv", k, os.environ[k]]
    cache = model_cache()
    if cache and str(cache.resolve()) in limits.extra_ro:     # HOME differs inside: name the cache explicitly
        args += ["--setenv", "COURSE_MODEL_CACHE", str(cache.resolve())]
    return args + ["--", *inner, INSIDE_WORK]


def model_cache() -> Path | None:
    """The converted-model cache the ``small`` profile loads from (:mod:`course.models`), if there is one."""
    try:
        from ..models import cache_root
    except ImportError:
        return None
    root = cache_root()
    return root if root.is_dir() else None


def default_extra_ro() -> tuple[str, ...]:
    """Read-only extras every sandbox gets: the model cache (so the ``small`` profile works offline inside) and the
    interview bank ``quizzes/`` (Day 7's lesson drills it; students receive it anyway, see ``course release``)."""
    from ..paths import QUIZZES

    cache = model_cache()
    extras = [cache] if cache else []
    if QUIZZES.is_dir():
        extras.append(QUIZZES)
    return tuple(str(p.resolve()) for p in extras)


def execute(nb_json: str, visible_json: str, name: str, timeout: int, limits: Limits = Limits(),
            sandbox: bool = True, guard_cells: list[str] | None = None) -> dict:
    """Run a notebook (JSON text) in a fresh sandbox; → the executor's result ``{"notebook", "error", ...}``.

    ``visible_json`` is what the student's work folder holds (their notebook without hidden tests), named
    ``name``; ``guard_cells`` are the sources of the test cells (the kernel restores its hooks before each).
    Raises :class:`SandboxError` when the run ends without a result."""
    n_cells = max(1, sum(1 for c in json.loads(nb_json).get("cells", []) if c.get("cell_type") == "code"))
    wall = timeout * n_cells + 120
    with tempfile.TemporaryDirectory(prefix="course-sandbox-") as tmp:
        work = Path(tmp) / "work"           # the work folder when unsandboxed (inside: a private tmpfs)
        work.mkdir()
        payload = json.dumps({"uid": secrets.randbelow(2 ** 30) + 100_000, "notebook": nb_json, "visible": visible_json, "name": name, "timeout": timeout,
                              "guard_cells": guard_cells or []})
        argv = command(work, limits, sandbox)
        try:
            res = subprocess.run(argv, input=payload.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 timeout=wall, cwd=tmp, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"the notebook ran past the grading time limit ({wall} s) and was stopped") from None
        out = res.stdout.decode("utf-8", errors="replace").strip()
        try:
            result = json.loads(out.splitlines()[-1]) if out else None
        except json.JSONDecodeError:
            result = None
        if not isinstance(result, dict) or "notebook" not in result:
            tail = res.stderr.decode("utf-8", errors="replace").strip().splitlines()[-3:]
            why = f"exit status {res.returncode}" + (f" ({'; '.join(tail)[:300]})" if tail else "")
            if res.returncode in (-9, 137):
                why = "it was killed (out of memory, CPU time, or a signal from the notebook)"
            raise SandboxError(f"the grading sandbox ended without a result: {why}")
        return result
