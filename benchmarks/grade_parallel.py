"""Grade 40 submissions of the sample assignment three ways — sandboxed --jobs 1, unsandboxed --jobs 1, sandboxed
--jobs 2 (in that order) — and print wall times, the sandbox's cost per student, the --jobs speed-up and whether the grade sheets
are identical.

    .venv/bin/python benchmarks/grade_parallel.py [--students 40] [--jobs 2]

The class is a deterministic mix: reference solutions, untouched lessons, and each planted bug of the sample
course (tests/fixtures/sample_course) applied to the reference. Each run starts from an empty gradebook.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "fixtures" / "sample_course"
DAY = "day0_sample"


def make_class(layout, out: Path, n: int) -> dict[str, str]:
    """``out/<student>/<notebook>.ipynb`` for n students; returns student → what they submitted."""
    from course.authoring.cells import dumps, grade_id, read_source
    from course.authoring.mutants import apply_mutant, load_mutants

    sources = {p.stem: read_source(p) for p in layout.sources(DAY)}
    variants: list[tuple[str, dict[str, str]]] = [("reference", {}), ("blank", {})]
    for stem in sources:
        mutants, _ = load_mutants(SAMPLE / "autograder" / "mutants" / DAY / f"{stem}.yaml")
        for m in mutants:
            variants.append((f"{stem}:{m.id}", {stem: m}))
    kinds = {}
    for i in range(n):
        kind, muts = variants[i % len(variants)]
        student = f"s{i:03d}"
        kinds[student] = kind
        (out / student).mkdir(parents=True)
        for stem, nb in sources.items():
            if kind == "blank":
                shutil.copyfile(layout.lessons / DAY / f"{stem}.ipynb", out / student / f"{stem}.ipynb")
                continue
            nb = read_source(layout.solutions / DAY / f"{stem}.py")
            if stem in muts:
                m = muts[stem]
                cell = next(c for c in nb.cells if grade_id(c) == m.exercise)
                cell.source = apply_mutant(cell.source, m)
            (out / student / f"{stem}.ipynb").write_text(dumps(nb), encoding="utf-8")
    return kinds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=2, help="the parallel run's --jobs (compared with --jobs 1)")
    args = ap.parse_args()

    from course.authoring import build
    from course.authoring.grade import grade_class
    from course.authoring.layout import Layout

    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="grade-bench-") as tmp:
        tmp = Path(tmp)
        base = Layout.under(tmp, solutions=SAMPLE / "solutions")
        build.build(base, [DAY], log=lambda *a: None)
        kinds = make_class(base, tmp / "class", args.students)
        sheets, times = {}, {}
        # the two --jobs 1 runs back to back: the sandbox's cost is read from them, so less load drift between
        runs = [("sandbox", 1), ("no-sandbox", 1), ("sandbox", args.jobs)]
        for mode, jobs in runs:
            layout = Layout(base.solutions, base.lessons, tmp / f"autograder-{mode}-j{jobs}", tmp / "ws")
            t0 = time.perf_counter()
            rep = grade_class(layout, DAY, tmp / "class", jobs=jobs, timeout=30, feedback=True, progress=True,
                              sandbox=mode == "sandbox")
            times[mode, jobs] = time.perf_counter() - t0
            loads.append(os.getloadavg()[0])
            sheets[mode, jobs] = rep.csv_path.read_text()
            graded = sum(s.status == "graded" for s in rep.students)
            full = sum(s.status == "graded" and s.score == s.max_score for s in rep.students)
            print(f"{mode} --jobs {jobs}: {times[mode, jobs]:.1f} s for {len(rep.students)} submissions "
                  f"({graded} graded, {full} full marks, feedback included); load average {loads[-1]:.1f}",
                  flush=True)
        refs = sum(k == "reference" for k in kinds.values())
        n = args.students
        sb1, sbj, ns1 = times["sandbox", 1], times["sandbox", args.jobs], times["no-sandbox", 1]
        same = len({sheets[r] for r in runs}) == 1
        print(f"machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
              f"load average (1 min) {min(loads):.1f}–{max(loads):.1f} during the runs; Python {sys.version.split()[0]}")
        print(f"class: {n} submissions of 2 notebooks ({refs} reference, the rest blank or with one planted bug)")
        print(f"per student, --jobs 1: sandboxed {sb1 / n:.2f} s, unsandboxed {ns1 / n:.2f} s: the sandbox adds "
              f"{100 * (sb1 / ns1 - 1):+.1f} %")
        print(f"sandboxed wall time --jobs 1 / --jobs {args.jobs} = {sb1:.1f} s / {sbj:.1f} s = {sb1 / sbj:.2f}x")
        print(f"grades identical (all three runs): {'yes' if same else 'NO'}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
