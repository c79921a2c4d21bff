"""Running notebook cells in one live kernel (nbclient): the engine of ``course check`` and ``course mutants``."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat

from .sandbox_executor import KERNEL_ARGS, TIMEOUT_ERROR


def kernel_env(threads: int | None = None) -> dict[str, str]:
    """The kernel's environment: offline, quiet, and (when given) a fixed number of torch/BLAS threads."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("PYTHONWARNINGS", "ignore")
    if threads:
        for k in ("COURSE_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
    return env


class LiveKernel:
    """A kernel kept alive across many cell executions.

    >>> with LiveKernel(nb, cwd) as k:
    ...     outputs = k.run(nb.cells[3])      # a copy of the cell is executed; its outputs are returned
    """

    def __init__(self, nb: nbformat.NotebookNode, cwd: Path, timeout: int = 300, threads: int | None = None):
        from nbclient import NotebookClient

        self.nb = nb
        self.client = NotebookClient(
            copy.deepcopy(nb), timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
            error_on_timeout=TIMEOUT_ERROR, extra_arguments=list(KERNEL_ARGS), resources={"metadata": {"path": str(cwd)}}, record_timing=False,
            shutdown_kernel="immediate")   # the graceful default waits ~3 s per kernel; nothing is left to flush
        self.env = kernel_env(threads)
        self._ctx = None
        self.timeout = timeout
        self.timed_out = False
        handle = self.client._async_handle_timeout

        async def on_timeout(t, cell=None):          # nbclient only puts the timeout in the execute reply
            self.timed_out = True
            return await handle(t, cell)

        self.client._async_handle_timeout = on_timeout

    def __enter__(self) -> "LiveKernel":
        self._ctx = self.client.setup_kernel(env=self.env)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)

    def run(self, cell: nbformat.NotebookNode, index: int = 0, source: str | None = None) -> list:
        """Execute a copy of ``cell`` (optionally with another ``source``); return its outputs."""
        c = copy.deepcopy(cell)
        if source is not None:
            c.source = source
        c.outputs = []
        self.timed_out = False
        self.client.execute_cell(c, index)
        if self.timed_out:
            # the interrupted cell's outputs may hold a KeyboardInterrupt (or nothing): report the timeout itself
            msg = f"the cell ran past the time limit ({self.timeout} s) and was interrupted"
            c.outputs = [o for o in c.outputs if o.get("output_type") != "error"] + [nbformat.v4.new_output(
                "error", ename="CellTimeoutError", evalue=msg, traceback=[f"CellTimeoutError: {msg}"])]
        return c.outputs
