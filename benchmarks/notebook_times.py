"""Execute every reference notebook (solutions/<day>/*.py) on a profile (default tiny); print wall and CPU time.

    python benchmarks/notebook_times.py [day1 day3 day2_rlhf/01 ...] [--threads 1] [--profile small] [--cells N] [--blank]

``--profile`` sets ``COURSE_PROFILE`` in each kernel, which overrides the notebook's parameters cell (the small
profile needs its model in the cache first: ``course models fetch small``).

Each notebook runs top to bottom in a fresh kernel (nbclient), as a student's `Run All` would; the table
is what the README's "measured times on CPU" quotes. Wall times depend on the machine and its load: the
script prints both, so a figure is never quoted without them. The kernel's CPU seconds (user + sys of the kernel
process, read when it has exited) barely depend on the load: on a shared machine they are the figure to compare.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.authoring.cells import read_source  # noqa: E402
from course.authoring.execution import kernel_env  # noqa: E402


def run(path: Path, threads: int, timeout: int, profile: str | None = None, cells: int = 0,
        save: Path | None = None, blank: bool = False) -> tuple[float, float, str]:
    """Wall seconds, the kernel's CPU seconds (user + sys, from the reaped kernel process) and a status.
    ``blank``: run the untouched student lesson (lessons/<day>/<nb>.ipynb) instead, every cell even after errors, as
    the autograder does with a blank submission."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    if blank:
        nb = nbformat.read(str(ROOT / "lessons" / path.parent.name / f"{path.stem}.ipynb"), as_version=4)
    else:
        nb = read_source(path)
    if cells:                                   # a start check: only the first `cells` code cells
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        if len(code) > cells:
            nb.cells = nb.cells[:code[cells - 1] + 1]
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=blank,
                            resources={"metadata": {"path": str(path.parent)}})
    env = kernel_env(threads)
    if profile:
        env["COURSE_PROFILE"] = profile
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        client.execute(env=env)
        raised = sum(any(o.get("output_type") == "error" for o in c.get("outputs", [])) for c in nb.cells
                     if c.cell_type == "code")
        status = f"ok (blank: {raised} cells raised)" if blank else "ok"
    except CellExecutionError as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))            # the traceback's colours
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        first = next((ln for ln in lines if ln.startswith("Cell In[") or ln.startswith("Input In[")), "")
        status = "error: " + lines[-1][:160] + (f" ({first.strip()[:60]})" if first else "")
    except Exception as e:                      # a cell timeout, a dead kernel: record it, go on to the next
        status = f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0][:80]
    wall = time.perf_counter() - t0
    if save:                                    # the executed notebook, outputs included (read what it printed)
        save.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save / f"{path.parent.name}__{path.stem}.ipynb")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)          # the kernel is a child, waited for at shutdown
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("days", nargs="*", help="day folders or prefixes, or notebook paths under solutions/ such as "
                    "day2_rlhf/01 (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--profile", default=None, help="run every notebook on this profile (COURSE_PROFILE)")
    ap.add_argument("--cells", type=int, default=0, help="a start check: run only the first N code cells")
    ap.add_argument("--save", type=Path, default=None, help="write each executed notebook (with outputs) here")
    ap.add_argument("--blank", action="store_true", help="run the untouched student lessons (every cell, errors "
                    "allowed), as the autograder runs a blank submission")
    args = ap.parse_args()
    if args.profile:
        from course.profiles import get_profile

        p = get_profile(args.profile)
        if p.source:
            from course.models import require

            require(p.source)                   # one clear error if the model is not fetched yet
    sources = sorted(p for p in (ROOT / "solutions").glob("day*/*.py")
                     if not args.days or any(p.parent.name.startswith(d) or
                                             str(p.relative_to(ROOT / "solutions")).startswith(d) for d in args.days))
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at start; "
          f"{args.threads} torch thread(s) per kernel; profile {args.profile or 'as each notebook says (tiny)'}\n")
    print(f"{'notebook':<52} {'seconds':>8} {'cpu s':>8} {'load':>5}  status")
    total = total_cpu = 0.0
    for p in sources:
        secs, cpu, status = run(p, args.threads, args.timeout, args.profile, args.cells, args.save, args.blank)
        total += secs
        total_cpu += cpu
        print(f"{str(p.relative_to(ROOT / 'solutions')):<52} {secs:>8.1f} {cpu:>8.1f} {os.getloadavg()[0]:>5.1f}  {status}",
              flush=True)
    print(f"{'total':<52} {total:>8.1f} {total_cpu:>8.1f}")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
