"""Grade 40 submissions of the sample assignment with --jobs 1 and --jobs 2; print wall times, their ratio and
whether the two grade sheets are identical.

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

    with tempfile.TemporaryDirectory(prefix="grade-bench-") as tmp:
        tmp = Path(tmp)
        base = Layout.under(tmp, solutions=SAMPLE / "solutions")
        build.build(base, [DAY], log=lambda *a: None)
        kinds = make_class(base, tmp / "class", args.students)
        sheets, times = {}, {}
        for jobs in (1, args.jobs):
            layout = Layout(base.solutions, base.lessons, tmp / f"autograder-j{jobs}", tmp / "ws")
            t0 = time.perf_counter()
            rep = grade_class(layout, DAY, tmp / "class", jobs=jobs, timeout=30, feedback=True, progress=True)
            times[jobs] = time.perf_counter() - t0
            sheets[jobs] = rep.csv_path.read_text()
            graded = sum(s.status == "graded" for s in rep.students)
            full = sum(s.status == "graded" and s.score == s.max_score for s in rep.students)
            print(f"--jobs {jobs}: {times[jobs]:.1f} s for {len(rep.students)} submissions "
                  f"({graded} graded, {full} full marks, feedback included)", flush=True)
        refs = sum(k == "reference" for k in kinds.values())
        ratio = times[1] / times[args.jobs]
        same = sheets[1] == sheets[args.jobs]
        print(f"machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
              f"load average {os.getloadavg()[0]:.1f} at the end; Python {sys.version.split()[0]}")
        print(f"class: {args.students} submissions ({refs} reference, the rest blank or with one planted bug)")
        print(f"wall time --jobs 1 / --jobs {args.jobs} = {times[1]:.1f} s / {times[args.jobs]:.1f} s = {ratio:.2f}x")
        print(f"grades identical: {'yes' if same else 'NO'}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
