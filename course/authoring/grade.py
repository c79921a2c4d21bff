"""``course grade``: a class's submissions → nbgrader autograde (hidden tests) → gradebook, grades.csv, feedback.

Pipeline, one concern per step:
1. regenerate the day's assignment into the gradebook from ``solutions/`` (hidden tests included), and warn if
   ``lessons/`` differs from what the students should have received;
2. collect submissions (nbgrader's ``submitted/<student>/<day>/``, a flat folder of ``<student>.ipynb``, or
   ``<student>/<notebook>.ipynb``) and reject files that are not notebooks with a per-student message;
3. stage them under ``autograder/submitted/`` and run nbgrader's ``autograde`` + ``generate_feedback`` per student —
   in this process (``--jobs 1``) or in N worker processes that share the one SQLite gradebook (nbgrader has no
   parallel autograde upstream, #174; per-student processes against one db are safe, with a retry on a locked db);
4. read every score back from the gradebook into ``grades.csv`` (per exercise = sum of its ``<ex>__*`` checks).

Bad submissions are handled by the nbgrader configuration in :mod:`.nbgrader_setup` (timeouts, restored and
re-added test cells, stderr, output size) or reported per student here; the rest of the class is graded normally.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .build import generate
from .cells import HIDDEN_RE, exercise_of, grade_id, is_test, load_json_notebook, read_source
from .layout import Layout

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")
_APIS: dict = {}


@dataclass
class StudentGrade:
    student: str
    status: str = "graded"                      # graded | error
    score: float = 0.0
    max_score: float = 0.0
    exercises: dict[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass
class GradeReport:
    day: str
    students: list[StudentGrade]
    csv_path: Path
    feedback_dir: Path | None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.status == "graded" for s in self.students)

    def by_student(self) -> dict[str, StudentGrade]:
        return {s.student: s for s in self.students}

    def format(self) -> str:
        lines = [f"{self.day}: {len(self.students)} submissions in {self.seconds:.1f} s"]
        lines += [f"warning: {w}" for w in self.warnings]
        for s in self.students:
            tail = f"  — {s.message}" if s.message else ""
            lines.append(f"  {s.student:<20} {s.score:>6g} / {s.max_score:g}  {s.status}{tail}")
        lines.append(f"grades: {self.csv_path}")
        if self.feedback_dir:
            lines.append(f"feedback: {self.feedback_dir}/<student>/{self.day}/*.html")
        return "\n".join(lines)


# ---------------------------------------------------------------- step 2: collect submissions
def _match_notebook(nb, notebooks: dict[str, set[str]]) -> str | None:
    ids = {grade_id(c) for c in nb.cells if grade_id(c)}
    best = max(notebooks, key=lambda k: len(ids & notebooks[k]))
    return best if ids & notebooks[best] else None


def collect(submissions: Path, day: str, notebooks: dict[str, set[str]]):
    """→ (``{student: {notebook: path}}``, ``{student: [problems]}``, ``[warnings]``). ``notebooks`` maps each of the
    day's notebook names to its grade_ids (used to recognise a flat ``<student>.ipynb`` on multi-notebook days)."""
    found: dict[str, dict[str, Path]] = {}
    problems: dict[str, list[str]] = {}
    warnings: list[str] = []
    names = sorted(notebooks)
    if not submissions.is_dir():
        raise FileNotFoundError(f"no such folder: {submissions}")
    for entry in sorted(submissions.iterdir()):
        if entry.name.startswith("."):
            continue
        student = entry.stem if entry.is_file() else entry.name
        if entry.is_file() and entry.suffix != ".ipynb":
            warnings.append(f"skipped {entry.name}: not an .ipynb file")
            continue
        if not STUDENT_ID.match(student):
            warnings.append(f"skipped {entry.name}: {student!r} is not a usable student id (letters, digits, ._@+-)")
            continue
        files: dict[str, Path] = {}
        if entry.is_file():
            if len(names) == 1:
                files[names[0]] = entry
            else:
                try:
                    which = _match_notebook(load_json_notebook(entry), notebooks)
                except ValueError as e:
                    which = None
                    problems.setdefault(student, []).append(f"{entry.name}: {e}")
                else:
                    if which is None:
                        problems.setdefault(student, []).append(
                            f"{entry.name}: matches none of {names}; submit <student>/<notebook>.ipynb")
                if which:
                    files[which] = entry
        else:
            inner = entry / day if (entry / day).is_dir() else entry
            ipynbs = sorted(p for p in inner.glob("*.ipynb") if not p.name.startswith("."))
            for p in ipynbs:
                if p.stem in notebooks:
                    files[p.stem] = p
                elif len(names) == 1 and len(ipynbs) == 1:
                    files[names[0]] = p
                else:
                    warnings.append(f"{student}: ignored {p.name} (the day's notebooks are {names})")
            if not ipynbs:
                problems.setdefault(student, []).append(f"no .ipynb files in {inner}")
        for nb_name, p in list(files.items()):
            try:
                load_json_notebook(p)
            except ValueError as e:
                problems.setdefault(student, []).append(f"{p.name}: {e}")
                del files[nb_name]
        if files or student in problems:
            found[student] = files
    return found, problems, warnings


# ---------------------------------------------------------------- step 3: autograde (per student, any process)
def _api(root: str, timeout: int | None):
    from .nbgrader_setup import api

    key = (root, timeout)
    if key not in _APIS:
        _APIS[key] = api(Path(root), timeout)
    return _APIS[key]


def _reason(result: dict) -> str:
    text = (result.get("log", "") + "\n" + result.get("error", ""))
    for pat, msg in [("DeadKernelError", "the kernel died while running the notebook (os._exit, a crash or out of memory)"),
                     ("Kernel died", "the kernel died while running the notebook (os._exit, a crash or out of memory)"),
                     ("UnresponsiveKernelError", "the kernel stopped responding"),
                     ("database", "the gradebook database was busy or failed")]:
        if pat in text:
            return msg
    errs = [ln.strip() for ln in text.splitlines() if ln.startswith("[ERROR]")]
    return (errs[0][8:] if errs else text.strip().splitlines()[-1] if text.strip() else "autograde failed")[:300]


def grade_one(root: str, day: str, student: str, timeout: int | None, feedback: bool) -> tuple[str, bool, str]:
    """nbgrader autograde (+ feedback) for one student; retried if the shared SQLite gradebook is locked."""
    a = _api(root, timeout)
    for attempt in range(6):
        res = a.autograde(day, student, force=True, create=True)
        if res.get("success") or "database" not in (res.get("log", "") + res.get("error", "")):
            break
        time.sleep(0.2 * 2 ** attempt)
    if not res.get("success"):
        return student, False, _reason(res)
    if feedback:
        fb = a.generate_feedback(day, student, force=True)
        if not fb.get("success"):
            return student, True, "feedback failed: " + _reason(fb)
    return student, True, ""


def _worker_init(env: dict[str, str]) -> None:
    import warnings

    from sqlalchemy.exc import SAWarning

    os.environ.update(env)
    warnings.filterwarnings("ignore", category=SAWarning)


def _run_all(root: Path, day: str, students: list[str], jobs: int, timeout: int | None, feedback: bool,
             progress: bool) -> dict[str, tuple[bool, str]]:
    from tqdm.auto import tqdm

    out: dict[str, tuple[bool, str]] = {}
    bar = tqdm(total=len(students), desc=f"grading {day}", unit="student", disable=not progress)
    if jobs <= 1 or len(students) <= 1:
        for s in students:
            _, ok, msg = grade_one(str(root), day, s, timeout, feedback)
            out[s] = (ok, msg)
            bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                                 initargs=(dict(os.environ),)) as pool:
            futs = [pool.submit(grade_one, str(root), day, s, timeout, feedback) for s in students]
            for f in as_completed(futs):
                s, ok, msg = f.result()
                out[s] = (ok, msg)
                bar.update()
    bar.close()
    return out


# ---------------------------------------------------------------- step 4: read the gradebook
def read_grades(root: Path, day: str, students: list[str], exercises: list[str]) -> dict[str, StudentGrade]:
    from nbgrader.api import Gradebook, MissingEntry

    from .nbgrader_setup import nbgrader_config

    url = nbgrader_config(root).CourseDirectory.db_url
    out: dict[str, StudentGrade] = {}
    with Gradebook(url) as gb:
        assignment = gb.find_assignment(day)
        max_score = float(assignment.max_score)
        for s in students:
            g = StudentGrade(s, max_score=max_score, exercises={ex: 0.0 for ex in exercises})
            try:
                sub = gb.find_submission(day, s)
            except MissingEntry:
                g.status, g.message = "error", "not in the gradebook"
                out[s] = g
                continue
            for nb in sub.notebooks:
                for gr in nb.grades:
                    pts = float(gr.score or 0.0)
                    g.exercises[exercise_of(gr.name)] = g.exercises.get(exercise_of(gr.name), 0.0) + pts
            g.score = float(sub.score or 0.0)
            out[s] = g
    return out


def write_csv(path: Path, grades: list[StudentGrade], exercises: list[str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "status", "score", "max_score", *exercises, "message"])
    for g in grades:
        w.writerow([g.student, g.status, f"{g.score:g}", f"{g.max_score:g}",
                    *(f"{g.exercises.get(ex, 0.0):g}" for ex in exercises), g.message])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue(), encoding="utf-8")


def hidden_lines(layout: Layout, day: str) -> list[str]:
    """The code lines of every hidden-test region of a day (what feedback must never show)."""
    out = []
    for src in layout.sources(day):
        for cell in read_source(src).cells:
            for m in HIDDEN_RE.finditer(cell.source if cell.cell_type == "code" else ""):
                out += [ln.strip() for ln in m.group(0).splitlines()[1:-1] if ln.strip() and not ln.strip().startswith("#")]
    return out


def html_text(path: Path) -> str:
    """The visible text of an HTML file (tags removed, entities decoded), for leak checks."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    raw = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", raw, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


# ---------------------------------------------------------------- the whole class
def grade_class(layout: Layout, day: str, submissions: Path, jobs: int = 1, timeout: int | None = None,
                feedback: bool = True, csv_path: Path | None = None, progress: bool = True) -> GradeReport:
    t0 = time.perf_counter()
    root = layout.autograder.resolve()
    from .nbgrader_setup import ensure_tools_on_path

    ensure_tools_on_path()
    import warnings as _w

    from sqlalchemy.exc import SAWarning

    _w.filterwarnings("ignore", category=SAWarning)     # nbgrader's own session warnings, harmless
    # Kernels: one thread each (identical results for any --jobs), offline, no warnings.
    for k in ("COURSE_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(k, "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")

    lessons = generate(layout, day, root=root)                                  # step 1
    warnings: list[str] = []
    stale = [n for n, text in lessons.items()
             if not (layout.lessons / day / n).exists() or (layout.lessons / day / n).read_text(encoding="utf-8") != text]
    if stale:
        warnings.append(f"lessons/{day} differs from solutions/ for {stale}: run `course build` (students may hold "
                        "an older version)")
    sources = {p.stem: read_source(p) for p in layout.sources(day)}
    notebooks = {name: {grade_id(c) for c in nb.cells if grade_id(c)} for name, nb in sources.items()}
    exercises: list[str] = []
    for nb in sources.values():
        for c in nb.cells:
            if is_test(c) and exercise_of(grade_id(c)) not in exercises:
                exercises.append(exercise_of(grade_id(c)))

    found, problems, warn = collect(Path(submissions), day, notebooks)        # step 2
    warnings += warn
    staged = root / "submitted"
    in_place = Path(submissions).resolve() == staged.resolve()
    to_grade = sorted(s for s, files in found.items() if files)
    for s in to_grade:                                                          # step 3
        dest = staged / s / day
        if not in_place:
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for nb_name, p in found[s].items():
                shutil.copyfile(p, dest / f"{nb_name}.ipynb")
    results = _run_all(root, day, to_grade, jobs, timeout, feedback, progress)

    leaks = hidden_lines(layout, day) if feedback else []
    grades = read_grades(root, day, to_grade, exercises) if to_grade else {}    # step 4
    max_score = sum(float(c.metadata.nbgrader.get("points", 0)) for nb in sources.values() for c in nb.cells if is_test(c))
    report_rows: list[StudentGrade] = []
    for s in sorted(found):
        g = grades.get(s) or StudentGrade(s, status="error", max_score=max_score,
                                          exercises={ex: 0.0 for ex in exercises})
        msgs = list(problems.get(s, []))
        ok, msg = results.get(s, (False, ""))
        if s in results and not ok:
            g.status, g.score = "error", 0.0
            g.exercises = {ex: 0.0 for ex in exercises}
        if msg:
            msgs.append(msg)
        if s not in results:
            g.status = "error"
        if feedback and ok:
            for f in sorted((root / "feedback" / s / day).glob("*.html")):
                text = html_text(f)
                leaked = [ln for ln in leaks if ln in text]
                if leaked:
                    f.unlink()
                    msgs.append(f"feedback {f.name} withheld: it showed hidden-test code")
        g.message = "; ".join(msgs)
        report_rows.append(g)
    csv_path = Path(csv_path) if csv_path else root / "grades.csv"
    write_csv(csv_path, report_rows, exercises)
    return GradeReport(day, report_rows, csv_path, root / "feedback" if feedback else None, warnings,
                       time.perf_counter() - t0)
