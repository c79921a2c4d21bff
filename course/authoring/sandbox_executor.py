"""The program that runs inside a student's sandbox: execute one notebook with nbclient, print the result.

    python -m course.authoring.sandbox_executor LIMITS_JSON WORKDIR  < {"notebook", "visible", "name", ...}

Order matters: read the payload; when root, become an unprivileged uid of this sandbox's own (no file outside is
writable, and ``RLIMIT_NPROC`` counts this student's processes only); make this process non-dumpable (the kernel, same user, cannot read its memory or its
file descriptors, so it cannot forge the result); set the resource limits; only then start the kernel
(:mod:`.guarded_kernel`, stdin/stdout/stderr to /dev/null). The executed notebook goes to the saved stdout as one
JSON line; nothing else is written there.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

NOBODY = 65534
# in-memory IPython history (parallel kernels would share one sqlite file) and no TCP-transport warning
KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]
TIMEOUT_ERROR = {"ename": "CellTimeoutError", "evalue": "the cell ran past the time limit and was interrupted",
                 "traceback": ["CellTimeoutError: the cell ran past the time limit and was interrupted"]}


def _drop_privileges(uid: int) -> None:
    """Root (no capabilities but these two) → a uid of this sandbox's own, so RLIMIT_NPROC counts only its
    processes (two students graded at once cannot starve each other) and no file outside is its own."""
    if os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.geteuid() == 0 or os.getuid() == 0:
        raise SystemExit("could not drop root")


def _not_dumpable() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)     # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def _set_limits(limits: dict, sandboxed: bool) -> None:
    def cap(which, value):
        value = int(value)
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_AS, limits["memory_mb"] * 2 ** 20)
    cap(resource.RLIMIT_CPU, limits["cpu_seconds"])
    cap(resource.RLIMIT_FSIZE, limits["file_mb"] * 2 ** 20)
    cap(resource.RLIMIT_NOFILE, limits["open_files"])
    cap(resource.RLIMIT_CORE, 0)
    if sandboxed:       # RLIMIT_NPROC counts the user's processes: meaningful for the sandbox's own user only
        cap(resource.RLIMIT_NPROC, limits["processes"])


def _client(nb, workdir: str, timeout: int, output_chars: int):
    from nbclient import NotebookClient
    from nbformat import NotebookNode

    class CappedClient(NotebookClient):
        """Text beyond ``output_chars`` per cell is dropped as it arrives (a 200 MB print costs nothing)."""

        def output(self, outs, msg, display_id, cell_index):
            kept = sum(len(o.get("text", "")) + sum(len(str(v)) for v in o.get("data", {}).values()) for o in outs)
            if kept > output_chars:
                cut = self.__dict__.setdefault("_cut_cells", set())
                if cell_index not in cut:
                    cut.add(cell_index)
                    outs.append(NotebookNode(output_type="stream", name="stdout",
                                             text=f"\n... output cut at {output_chars:,} characters ...\n"))
                return None
            return super().output(outs, msg, display_id, cell_index)

    def on_executed(cell, cell_index, execute_reply):
        # the reply's status, not only the outputs: an error whose output was suppressed or cleared still counts
        content = execute_reply.get("content", {})
        if content.get("status") == "error" and not any(o.get("output_type") == "error" for o in cell.outputs):
            cell.outputs.append(NotebookNode(output_type="error", ename=content.get("ename", "Error"),
                                             evalue=str(content.get("evalue", "")),
                                             traceback=[f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"]))

    return CappedClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
                        error_on_timeout=TIMEOUT_ERROR, raise_on_iopub_timeout=False, iopub_timeout=10,
                        extra_arguments=list(KERNEL_ARGS), resources={"metadata": {"path": workdir}},
                        record_timing=False, on_cell_executed=on_executed, coalesce_streams=False,
                        shutdown_kernel="immediate")    # every cell has run; the sandbox is torn down next


TEST_END = "course.test_end"            # the audit event guarded_kernel waits for


def wrap_test(source: str, index: int) -> str | None:
    """The test cell as sent to the kernel: one ``if True:`` block (IPython compiles it as one code object) ending in
    the ``course.test_end`` audit call; None when the source does not parse as plain Python."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body):
        return None
    end = ast.parse(f"__import__('sys').audit({TEST_END!r}, {int(index)})").body
    block = ast.If(test=ast.Constant(True), body=(tree.body or [ast.Pass()]) + end, orelse=[])
    return ast.unparse(ast.fix_missing_locations(ast.Module(body=[block], type_ignores=[]))) + "\n"


UNPROVEN = {"ename": "GuardError", "evalue": "this test did not run to its end under the grader's guard (its code "
             "was changed or skipped, its state patched, or its result forged)",
             "traceback": ["GuardError: this test did not run to its end under the grader's guard"]}


def _guard_tests(nb, guard_cells: list[str], private: str) -> tuple[list[tuple[int, bool]], Path, bytes]:
    """Wrap each test cell (:func:`.guarded_kernel.wrap_test`) and write the kernel's guard file (deleted by the
    kernel at start-up): the wrapped sources and a fresh key. → [(cell index, proof required)], evidence file, key."""
    wanted = set(guard_cells)
    key = os.urandom(32)
    evidence = Path(private, "evidence")
    evidence.write_bytes(b"")
    tests, sources = [], []
    for idx, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.source in wanted:
            wrapped = wrap_test(cell.source, len(tests))
            if wrapped is not None:
                cell.source = wrapped
            tests.append((idx, wrapped is not None))
            sources.append(wrapped)
    if tests:
        Path(private, "guard.json").write_text(json.dumps({"key": key.hex(), "evidence": str(evidence),
                                                           "tests": sources}), encoding="utf-8")
    return tests, evidence, key


def _fail_unproven(nb, tests, evidence: Path, key: bytes) -> None:
    """A test cell that raised nothing but has no valid ``i:ok:HMAC`` line in the evidence file gets an error."""
    import hmac
    from nbformat import NotebookNode

    ok: set[int] = set()
    try:
        lines = evidence.read_bytes().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(b":")
        if len(parts) == 3 and parts[1] == b"ok" and parts[0].isdigit():
            want = hmac.new(key, parts[0] + b":ok", "sha256").hexdigest().encode()
            if hmac.compare_digest(want, parts[2]):
                ok.add(int(parts[0]))
    for i, (idx, required) in enumerate(tests):
        cell = nb.cells[idx]
        if required and i not in ok and not any(o.get("output_type") == "error" for o in cell.outputs):
            cell.outputs.append(NotebookNode(output_type="error", **UNPROVEN))


def main(argv: list[str]) -> int:
    limits, workdir = json.loads(argv[0]), argv[1]
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)                                   # anything printed from here on goes to stderr
    payload = json.loads(sys.stdin.buffer.read())
    sandboxed = os.environ.get("COURSE_SANDBOX") == "1"
    if sandboxed:
        _drop_privileges(int(payload.get("uid") or NOBODY))
    _not_dumpable()
    _set_limits(limits, sandboxed)

    import nbformat

    nb = nbformat.reads(payload["notebook"], as_version=4)
    Path(workdir, payload["name"]).write_text(payload["visible"], encoding="utf-8")
    private = tempfile.mkdtemp(prefix="course-exec-")
    spec = Path(private, "kernels", "kernels", "python3")
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "course.authoring.guarded_kernel", "-f", "{connection_file}"],
        "display_name": "Python 3 (graded)", "language": "python"}))
    tests, evidence, key = _guard_tests(nb, payload["guard_cells"], private)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    env.update(JUPYTER_PATH=str(spec.parents[1]), JUPYTER_RUNTIME_DIR=str(Path(private, "runtime")),
               IPYTHONDIR=str(Path(private, "ipython")), MPLCONFIGDIR=str(Path(private, "mpl")),
               COURSE_OUTPUT_CHARS=str(limits["output_chars"]),
               COURSE_GUARD=",".join(hashlib.sha256(nb.cells[i].source.encode()).hexdigest() for i, _ in tests),
               COURSE_GUARD_FILE=str(Path(private, "guard.json")) if tests else "")
    os.environ.update({k: env[k] for k in ("JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR")})
    client = _client(nb, workdir, int(payload["timeout"]), int(limits["output_chars"]))
    result = {"error": None, "dead_kernel": False}
    try:
        client.execute(env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except Exception as e:  # noqa: BLE001 — every failure is reported to the grader, which decides
        from nbclient.exceptions import DeadKernelError

        result["dead_kernel"] = isinstance(e, DeadKernelError)
        result["error"] = f"{type(e).__name__}: {e}"[:500]
    _fail_unproven(client.nb, tests, evidence, key)
    result["notebook"] = nbformat.writes(client.nb)
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
