"""``course build``, ``course start``, ``course check``, ``course mutants``, ``course grade``, ``course release``."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("build", help="solutions/ → lessons/ with nbgrader (or --check that lessons/ is current)",
                       description="Convert solutions/<day>/*.py (jupytext percent) to notebooks, run nbgrader "
                                   "generate_assignment (gradebook under autograder/) and write the student versions "
                                   "to lessons/<day>/ (no solutions, no hidden tests, outputs cleared).")
    p.add_argument("days", nargs="*", help="days to build (e.g. day1); default: every day in solutions/")
    p.add_argument("--check", action="store_true",
                   help="build into a temporary folder and fail, naming the files, if lessons/ is out of date")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("gradebook", help="register every day in autograder/gradebook.db (formgrader lists them)",
                       description="Register each day's assignment in the nbgrader gradebook (generate_assignment "
                                   "from solutions/, hidden tests included; lessons/ untouched), create the exchange "
                                   "folder autograder/exchange/ and name nameless students. Skips days whose sources "
                                   "did not change. `make lab` runs it.")
    p.add_argument("days", nargs="*", help="days (default: every day in solutions/)")
    p.set_defaults(func=cmd_gradebook)

    p = sub.add_parser("start", help="copy a day's lessons into your workspace (never overwrites your work)",
                       description="Copy lessons/<day>/ into workspace/<day>/ (git-ignored, so `git pull` never "
                                   "conflicts with your work). Notebooks you already have are kept as they are.")
    p.add_argument("day", help="e.g. day1")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("check", help="run a notebook and report each exercise's checks (visible tests)",
                       description="Execute a notebook top to bottom and print, per exercise, which checks pass and "
                                   "the message of each failing one. Your progress shows in `.venv/bin/course days`.")
    p.add_argument("notebook", help="e.g. workspace/day1_lora_qlora/01_lora_math.ipynb")
    p.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("mutants", help="planted bugs: does each one fail a test of its own exercise?",
                       description="Run each notebook's reference once in a live kernel, swap in every planted bug "
                                   "from autograder/mutants/<day>/<notebook>.yaml, re-run that exercise's tests, and "
                                   "report which test caught it. Fails if any bug survives or is malformed.")
    p.add_argument("days", nargs="*", help="days (default: every day in solutions/)")
    p.add_argument("--notebook", help="only this notebook (its file stem, e.g. 01_lora_math)")
    p.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell (default 300)")
    p.set_defaults(func=cmd_mutants)

    p = sub.add_parser("grade", help="autograde a class with nbgrader (hidden tests), grades.csv and feedback",
                       description="Grade submissions with nbgrader autograde (hidden tests restored from the "
                                   "gradebook). SUBMISSIONS is nbgrader's submitted/<student>/<day>/ layout, or a "
                                   "folder of <student>.ipynb, or of <student>/<notebook>.ipynb. Writes "
                                   "autograder/gradebook.db, autograder/grades.csv and "
                                   "autograder/feedback/<student>/<day>/*.html.")
    p.add_argument("day", help="e.g. day1")
    p.add_argument("submissions", help="folder of submissions")
    p.add_argument("--jobs", "-j", type=int, default=1, help="students graded in parallel (default 1)")
    p.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell (default 600)")
    p.add_argument("--no-feedback", action="store_true", help="skip the feedback HTML")
    p.add_argument("--csv", default=None, help="where to write grades.csv (default autograder/grades.csv)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run students' code WITHOUT the bubblewrap sandbox, with your permissions (unsafe: only for "
                        "code you trust; a warning is printed on every run)")
    p.add_argument("--memory", type=int, default=None, metavar="MB",
                   help="address-space limit per process in the sandbox (default 6144)")
    p.add_argument("--cpu-time", type=int, default=None, metavar="S", help="CPU seconds per process (default 3600)")
    p.add_argument("--processes", type=int, default=None, help="processes and threads per sandbox (default 256)")
    p.add_argument("--output-limit", type=int, default=None, metavar="CHARS",
                   help="characters of output kept per cell while executing (default 1000000)")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("release", help="write what a graded class's students receive (no solutions, no hidden tests)",
                       description="Write OUT: lessons/, the course package, the quiz bank (without worked "
                                   "examples), configs/ and a student README — not solutions/, autograder/ (hidden "
                                   "tests, planted bugs) or scripts/. Every file is checked for hidden-test lines and "
                                   "nbgrader markers before it is reported done.")
    p.add_argument("out", help="an empty (or new) folder")
    p.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    p.set_defaults(func=cmd_release)


def _layout():
    from ..authoring.layout import Layout

    return Layout.default()


def _days(layout, specs):
    try:
        return [layout.resolve_day(s) for s in specs] if specs else layout.days()
    except KeyError as e:
        raise SystemExit(f"course: {e.args[0]}") from None


def cmd_build(args) -> int:
    from ..authoring import build

    layout = _layout()
    days = _days(layout, args.days)
    if not days:
        print(f"no days with sources under {layout.solutions}")
        return 0 if not args.check else (1 if layout.lessons.is_dir() and any(layout.lessons.glob("*/*.ipynb")) else 0)
    try:
        if args.check:
            rep = build.check(layout, days if args.days else None)
            for kind in ("stale", "missing", "extra"):
                for f in getattr(rep, kind):
                    print(f"{kind:<8} {f}")
            if rep.ok:
                print(f"lessons/ is up to date ({', '.join(days)})")
                return 0
            print("lessons/ is out of date: run `.venv/bin/course build` and commit lessons/", file=sys.stderr)
            return 1
        build.build(layout, days)
    except build.BuildError as e:
        print(f"course build: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_gradebook(args) -> int:
    from ..authoring import build
    from ..authoring.formgrader import register

    layout = _layout()
    try:
        register(layout, _days(layout, args.days))
    except build.BuildError as e:
        print(f"course gradebook: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_start(args) -> int:
    from pathlib import Path

    from ..authoring.student import start

    layout = _layout()
    day = _days(layout, [args.day])[0]
    try:
        dest = start(layout, day)
    except FileNotFoundError as e:
        print(f"course start: {e}", file=sys.stderr)
        return 1
    shown = dest.relative_to(Path.cwd()) if dest.is_relative_to(Path.cwd()) else dest
    print(f"\nOpen {shown}/ in JupyterLab (`make lab`); check a notebook with "
          f"`.venv/bin/course check {shown}/<notebook>.ipynb`.")
    return 0


def cmd_check(args) -> int:
    from pathlib import Path

    from ..authoring.student import check, progress_key
    from ..progress import record_check

    nb = Path(args.notebook)
    if not nb.exists():
        print(f"course check: no such file {nb}", file=sys.stderr)
        return 1
    print(f"running {nb} ...", flush=True)
    layout = _layout()
    res = check(nb, timeout=args.timeout, layout=layout)
    print(res.format())
    if res.fatal:
        return 2
    key = progress_key(layout, nb)
    if key:
        record_check(key, res.passed, res.total)
    return 0 if res.ok else 1


def cmd_mutants(args) -> int:
    from ..authoring.mutants import format_reports, run_mutants

    layout = _layout()
    reports = []
    for day in _days(layout, args.days):
        for src in layout.sources(day):
            if args.notebook and src.stem != args.notebook:
                continue
            print(f"{day}/{src.stem}: running the reference and its planted bugs ...", flush=True)
            reports.append(run_mutants(src, layout.mutants_file(day, src.stem), timeout=args.timeout))
    if not reports:
        print("no notebooks matched")
        return 1
    print(format_reports(reports))
    return 0 if all(r.ok for r in reports) else 1


def cmd_grade(args) -> int:
    from pathlib import Path

    import dataclasses

    from ..authoring.grade import NO_SANDBOX_WARNING, GradeRefused, grade_class
    from ..authoring.sandbox import Limits

    layout = _layout()
    day = _days(layout, [args.day])[0]
    given = {"memory_mb": args.memory, "cpu_seconds": args.cpu_time, "processes": args.processes,
             "output_chars": args.output_limit}
    limits = dataclasses.replace(Limits(), **{k: v for k, v in given.items() if v is not None})
    if args.no_sandbox:
        print(f"course grade: WARNING {NO_SANDBOX_WARNING}", file=sys.stderr)
    try:
        report = grade_class(layout, day, Path(args.submissions), jobs=args.jobs, timeout=args.timeout,
                             feedback=not args.no_feedback, csv_path=Path(args.csv) if args.csv else None,
                             sandbox=not args.no_sandbox, limits=limits)
    except GradeRefused as e:
        print(f"course grade: {e}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1


def cmd_release(args) -> int:
    from pathlib import Path

    from ..authoring.release import ReleaseError, release

    try:
        rep = release(_layout(), Path(args.out), force=args.force)
    except ReleaseError as e:
        print(f"course release: {e}", file=sys.stderr)
        return 1
    print(f"wrote {rep.files} files to {rep.out}: lessons/, the course package, the quiz bank and a student README "
          "(checked: no solutions, hidden tests or planted bugs). Give the students this folder, not the repository.")
    return 0
