"""``course grade``: a class's submissions → nbgrader autograde (hidden tests) → gradebook, grades.csv, feedback.

Pipeline, one concern per step:
1. regenerate the day's assignment into the gradebook from ``solutions/`` (hidden tests included), and warn if
   ``lessons/`` differs from what the students should have received;
2. collect submissions (nbgrader's ``submitted/<student>/<day>/``, a flat folder of ``<student>.ipynb``, or
   ``<student>/<notebook>.ipynb``) and reject files that are not notebooks with a per-student message;
3. stage them under ``autograder/submitted/`` and run nbgrader's ``autograde`` + ``generate_feedback`` per student —
   in this process (``--jobs 1``) or in N worker processes that share the one SQLite gradebook (nbgrader has no
   parallel autograde upstream, #174; per-student processes against one db are safe, with a retry on a locked db).
   Each notebook executes in its own bubblewrap sandbox (:mod:`.sandbox`); nbgrader scores the outputs here;
4. read every score back from the gradebook into ``grades.csv`` (per exercise = sum of its ``<ex>__*`` checks).

One run at a time per gradebook (a lock file beside it); every submission found is graded or listed with its reason.

Bad submissions are handled by the nbgrader configuration in :mod:`.nbgrader_setup` (timeouts, restored and
re-added test cells, stderr, output size) or reported per student here; the rest of the class is graded normally.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import html
import io
import os
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .build import generate
from .cells import HIDDEN_RE, exercise_of, grade_id, is_test, load_json_notebook, read_source
from .layout import Layout

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")
_APIS: dict = {}
NO_SANDBOX_WARNING = ("--no-sandbox: students' code ran with your permissions, able to read solutions/ and the "
                      "gradebook and to change files; grade untrusted submissions only in the sandbox")


class GradeRefused(RuntimeError):
    """``course grade`` cannot start (no sandbox, another run holds the gradebook): the message says what to do."""


def student_id(name: str) -> str:
    """A name as submitted (``José García``) → an id nbgrader can use (``Jose_Garcia-1a2b3c``); usable ids unchanged."""
    if STUDENT_ID.match(name):
        return name
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._@+-]+", "_", ascii_).strip("._-@+") or "student"
    return f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


@dataclass
class StudentGrade:
    student: str                                # the id in the gradebook
    status: str = "graded"                      # graded | error
    score: float = 0.0
    max_score: float = 0.0
    exercises: dict[str, float] = field(default_factory=dict)
    message: str = ""
    name: str = ""                              # as submitted, when it differs from the id


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
            lines.append(f"  {s.name or s.student:<20} {s.score:>6g} / {s.max_score:g}  {s.status}{tail}")
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
    """→ (``{student: {notebook: path}}``, ``{student: [problems]}``, ``[warnings]``, ``{student: name}``).
    ``notebooks`` maps each of the day's notebook names to its grade_ids (used to recognise a flat
    ``<student>.ipynb`` on multi-notebook days). Every entry that could be a student's submission ends up either
    with files to grade or with a problem (a row in grades.csv): symlinks are refused (they could point at the
    instructor's files), names nbgrader cannot use get an id derived from them, and a student who sent both
    ``alice.ipynb`` and ``alice/`` gets both merged (the folder wins for a notebook sent twice, said so)."""
    found: dict[str, dict[str, Path]] = {}
    problems: dict[str, list[str]] = {}
    warnings: list[str] = []
    names_of: dict[str, str] = {}
    names = sorted(notebooks)
    if not submissions.is_dir():
        raise FileNotFoundError(f"no such folder: {submissions}")

    def problem(student, msg):
        problems.setdefault(student, []).append(msg)
        found.setdefault(student, {})

    entries = sorted(submissions.iterdir(), key=lambda e: (e.is_file() or e.is_symlink(), e.name))  # folders first
    for entry in entries:
        if entry.name.startswith("."):
            continue
        is_file = entry.is_symlink() or entry.is_file()
        if is_file and entry.suffix != ".ipynb":
            warnings.append(f"skipped {entry.name}: not an .ipynb file")
            continue
        name = entry.stem if is_file else entry.name
        student = student_id(name)
        if student != name:
            names_of[student] = name
        if entry.is_symlink():
            problem(student, f"{entry.name}: a symbolic link, refused (submit the notebook file itself)")
            continue
        files: dict[str, Path] = {}
        if is_file:
            if len(names) == 1:
                files[names[0]] = entry
            else:
                try:
                    which = _match_notebook(load_json_notebook(entry), notebooks)
                except ValueError as e:
                    which = None
                    problem(student, f"{entry.name}: {e}")
                else:
                    if which is None:
                        problem(student, f"{entry.name}: matches none of {names}; submit <student>/<notebook>.ipynb")
                if which:
                    files[which] = entry
        else:
            inner = entry / day if (entry / day).is_dir() and not (entry / day).is_symlink() else entry
            ipynbs = sorted(p for p in inner.iterdir() if p.suffix == ".ipynb" and not p.name.startswith("."))
            for p in ipynbs:
                if p.is_symlink():
                    problem(student, f"{p.name}: a symbolic link, refused (submit the notebook file itself)")
                elif p.stem in notebooks:
                    files[p.stem] = p
                elif len(names) == 1 and len(ipynbs) == 1:
                    files[names[0]] = p
                else:
                    warnings.append(f"{name}: ignored {p.name} (the day's notebooks are {names})")
            if not ipynbs:
                problem(student, f"no .ipynb files in {inner}")
        for nb_name, p in list(files.items()):
            if not p.is_file() or p.is_symlink():
                continue
            try:
                load_json_notebook(p)
            except ValueError as e:
                problem(student, f"{p.name}: {e}")
                del files[nb_name]
        have = found.setdefault(student, {})
        for nb_name, p in files.items():
            if nb_name in have:
                problem(student, f"{p.name} ignored: {have[nb_name].relative_to(submissions)} is also {nb_name}")
            else:
                have[nb_name] = p
    return found, problems, warnings, names_of


# ---------------------------------------------------------------- step 3: autograde (per student, any process)
def _api(root: str, timeout: int | None, sandbox: bool = True, limits=None):
    from .nbgrader_setup import api

    key = (root, timeout, sandbox, limits)
    if key not in _APIS:
        _APIS[key] = api(Path(root), timeout, sandbox=sandbox, limits=limits)
    return _APIS[key]


_LOCKED = ("database is locked", "database table is locked")


def _reason(result: dict) -> str:
    """The instructor-facing cause of a failed nbgrader call: its own ``[ERROR]`` lines, not a guess."""
    text = (result.get("log", "") + "\n" + result.get("error", ""))
    for pat, msg in [("DeadKernelError", "the kernel died while running the notebook (os._exit, a crash, a signal "
                                         "or out of memory)"),
                     ("Kernel died", "the kernel died while running the notebook (os._exit, a crash, a signal or "
                                     "out of memory)"),
                     ("UnresponsiveKernelError", "the kernel stopped responding"),
                     ("SandboxError", None), ("grading sandbox", None)]:
        if pat in text:
            if msg:
                return msg
            m = re.search(r"SandboxError: ([^\n]*)", text)
            return (m.group(1) if m else "the grading sandbox failed")[:300]
    if any(p in text for p in _LOCKED):
        return "the gradebook database stayed locked (another process kept it busy)"
    generic = ("There was an error processing", "Please see the", "Traceback")
    errs = [ln.strip()[8:].strip() for ln in text.splitlines() if ln.startswith("[ERROR]")]
    errs = [e for e in errs if e and not e.startswith(generic)]
    exc = re.findall(r"^\s*((?:[\w.]+(?:Error|Exception|Exit)): .+)$", text, re.M)
    errs += [e for e in exc if "NbGraderException" not in e][:1]
    if errs:
        return "nbgrader: " + " | ".join(dict.fromkeys(errs))[:400]
    tail = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (tail[-1] if tail else "autograde failed")[:300]


def grade_one(root: str, day: str, student: str, timeout: int | None, feedback: bool, sandbox: bool = True,
              limits=None) -> tuple[str, bool, str]:
    """nbgrader autograde (+ feedback) for one student; retried if the shared SQLite gradebook is locked."""
    a = _api(root, timeout, sandbox, limits)
    for attempt in range(6):
        res = a.autograde(day, student, force=True, create=True)
        if res.get("success") or not any(p in res.get("log", "") + res.get("error", "") for p in _LOCKED):
            break
        time.sleep(0.2 * 2 ** attempt)
    if not res.get("success"):
        return student, False, _reason(res)
    notes = [ln.split("]", 1)[1].strip() for ln in res.get("log", "").splitlines()
             if ln.startswith("[WARNING]") and "does not exist in the database" in ln]
    if notes:    # a changed grade_id: nbgrader ignores that cell and restores the original test
        return_msg = "nbgrader: " + "; ".join(dict.fromkeys(notes)) + " (a changed grade_id: the original restored)"
    else:
        return_msg = ""
    if feedback:
        fb = a.generate_feedback(day, student, force=True)
        if not fb.get("success"):
            return student, True, "; ".join(filter(None, [return_msg, "feedback failed: " + _reason(fb)]))
        _offline_math(Path(root) / "feedback" / student / day)
    return student, True, return_msg


def _offline_math(folder: Path) -> None:
    """Feedback pages render their math offline (the course's MathJax, no CDN)."""
    try:
        from ..mathjax import offline_math_tree
    except ImportError:          # an older course package without course.mathjax
        return
    offline_math_tree(folder)


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the process that started it dies (a killed `course grade` leaves no
    workers; their sandboxes die with them through bwrap's --die-with-parent)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _worker_init(env: dict[str, str], parent: int) -> None:
    import warnings

    from sqlalchemy.exc import SAWarning

    _die_with_parent()
    if os.getppid() != parent:       # the parent died before prctl took effect
        os._exit(1)
    os.environ.update(env)
    warnings.filterwarnings("ignore", category=SAWarning)


def _run_all(root: Path, day: str, students: list[str], jobs: int, timeout: int | None, feedback: bool,
             progress: bool, sandbox: bool = True, limits=None) -> dict[str, tuple[bool, str]]:
    """Grade every student. Sandboxed, ``--jobs 1`` grades in this process (no student code can reach it);
    otherwise in worker processes. A worker that dies (possible only with --no-sandbox: a notebook that kills its
    parent) costs only its students: each is graded again alone, and the one that kills its worker again gets an
    error row."""
    from tqdm.auto import tqdm

    out: dict[str, tuple[bool, str]] = {}
    bar = tqdm(total=len(students), desc=f"grading {day}", unit="student", disable=not progress)
    if sandbox and (jobs <= 1 or len(students) <= 1):
        for s in students:
            _, ok, msg = grade_one(str(root), day, s, timeout, feedback, sandbox, limits)
            out[s] = (ok, msg)
            bar.update()
        bar.close()
        return out

    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    def pool_run(batch: list[str], width: int) -> list[str]:
        broken = []
        with ProcessPoolExecutor(max_workers=width, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                 initargs=(dict(os.environ), os.getpid())) as pool:
            futs = {pool.submit(grade_one, str(root), day, s, timeout, feedback, sandbox, limits): s for s in batch}
            for f in as_completed(futs):
                s = futs[f]
                try:
                    _, ok, msg = f.result()
                except BrokenProcessPool:
                    broken.append(s)
                    continue
                except Exception as e:  # noqa: BLE001 — one student's failure is that student's row
                    ok, msg = False, f"grading failed: {type(e).__name__}: {e}"[:300]
                out[s] = (ok, msg)
                bar.update()
        return broken

    for s in sorted(pool_run(list(students), max(1, min(jobs, len(students))))):
        if pool_run([s], 1):
            out[s] = (False, "the grading process was killed while running this notebook (a signal sent by the "
                             "notebook?)")
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
        w.writerow([g.name or g.student, g.status, f"{g.score:g}", f"{g.max_score:g}",
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


def leak_lines(layout: Layout, day: str, released: dict[str, str] | None = None) -> list[str]:
    """The hidden-test lines a feedback page must not show: :func:`hidden_lines` minus any line that also appears in
    the released (student) notebooks — ``with torch.no_grad():`` in a hidden test is not a secret when the lesson
    itself has it. ``released``: notebook name → its JSON text (as :func:`.build.generate` returns)."""
    import json

    if released is None:
        released = {p.name: p.read_text(encoding="utf-8") for p in sorted((layout.lessons / day).glob("*.ipynb"))}
    public: set[str] = set()
    for text in released.values():
        for cell in json.loads(text).get("cells", []):
            src = cell.get("source", "")
            public.update(ln.strip() for ln in ("".join(src) if isinstance(src, list) else src).splitlines())
    return [ln for ln in dict.fromkeys(hidden_lines(layout, day)) if ln not in public]


def shown_lines(text: str, lines) -> list[str]:
    """Which of ``lines`` a page's text shows as a whole line (alone, or after a traceback's line number) — a
    hidden ``assert x == 0.0`` is not shown by a visible ``assert x == 0.0, "message"``."""
    page = {t.strip() for t in text.splitlines() if t.strip()}
    tails = {t.split(None, 1)[1] for t in page if " " in t and t.split(None, 1)[0].strip("->").isdigit()}
    tails |= {t.split(None, 2)[2] for t in page if t.startswith("---->") and len(t.split(None, 2)) == 3}
    return [ln for ln in lines if ln in page or ln in tails]


def own_lines(submitted: Path) -> set[str]:
    """The stripped lines a student wrote themselves (every cell but the test cells): their own code showing in
    their feedback is not a leak, even where a hidden test happens to contain the same line."""
    try:
        nb = load_json_notebook(submitted)
    except (ValueError, OSError):
        return set()
    return {ln.strip() for c in nb.cells if not is_test(c) for ln in c.source.splitlines()}


# code a graded notebook has no reason to contain, and that the in-kernel guard cannot stop (ctypes reads and
# writes the kernel's memory) or that tampers with the kernel: flagged for the instructor's review, never scored
SUSPICIOUS = {
    "ctypes": r"\bctypes\b|\bcffi\b|pythonapi", "process memory": r"/proc/(self|\d+|thread-self)/(mem|maps)",
    "the kernel's internals": r"\.kernel\b|shell_handlers|iopub|\bzmq\b|session\.key|guarded_kernel",
    "IPython hooks": r"input_transformers|ast_transformers|events\.register|showtraceback",
    "tracing / frames / gc": r"settrace|setprofile|_getframe|\bf_back\b|\bf_globals\b|\bgc\.get_|__closure__|__globals__",
    "audit hooks": r"\bsys\.audit\b|addaudithook",
    "dynamic code": r"(?<![.\w])(exec|eval|compile)\s*\(|__import__|importlib|base64|marshal",
}


def suspicious(submitted: Path, autograded: Path | None = None) -> str:
    """``review: …`` naming what the student's own cells use from :data:`SUSPICIOUS`, and whether tests failed the
    guard's proof (GuardError: a test changed, skipped or forged); empty when nothing is found."""
    found: list[str] = []
    try:
        nb = load_json_notebook(submitted)
        own = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and not is_test(c))
    except (ValueError, OSError):
        own = ""
    found = [what for what, pat in SUSPICIOUS.items() if re.search(pat, own)]
    if autograded is not None and autograded.exists():
        try:
            book = load_json_notebook(autograded)
            n = sum(1 for c in book.cells if c.cell_type == "code" and is_test(c)
                    and any(o.get("ename") == "GuardError" for o in c.get("outputs", [])))
        except (ValueError, OSError):
            n = 0
        if n:
            found.append(f"{n} test(s) without the guard's proof (GuardError)")
    return f"review {submitted.name}: uses " + ", ".join(found) if found else ""


def html_text(path: Path) -> str:
    """The visible text of an HTML file (tags removed, entities decoded), for leak checks."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    raw = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", raw, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


# ---------------------------------------------------------------- the whole class
def hold_lock(root: Path):
    """An exclusive lock on ``root/.grade.lock`` for this run (:class:`GradeRefused` if another run holds it)."""
    root.mkdir(parents=True, exist_ok=True)
    f = open(root / ".grade.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        other = f.read().strip() or "?"
        f.close()
        raise GradeRefused(f"another `course grade` (pid {other}) is grading with {root / 'gradebook.db'}; wait for it "
                           "to finish (two runs at once would mix their students in one gradebook)") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def grade_class(layout: Layout, day: str, submissions: Path, jobs: int = 1, timeout: int | None = None,
                feedback: bool = True, csv_path: Path | None = None, progress: bool = True, sandbox: bool = True,
                limits=None) -> GradeReport:
    """Grade a class. ``sandbox=False`` runs students' code unprotected (a warning in the report);
    ``limits``: a :class:`.sandbox.Limits`. Raises :class:`GradeRefused` before touching anything when bubblewrap
    is missing (and ``sandbox`` is on) or another run holds this gradebook."""
    from . import sandbox as _sandbox

    if sandbox:
        try:
            _sandbox.check_available()
        except _sandbox.SandboxUnavailable as e:
            raise GradeRefused(str(e)) from None
    lock = hold_lock(layout.autograder.resolve())
    try:
        return _grade_class(layout, day, submissions, jobs, timeout, feedback, csv_path, progress, sandbox, limits)
    finally:
        lock.close()


def _grade_class(layout, day, submissions, jobs, timeout, feedback, csv_path, progress, sandbox, limits):
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
    warnings: list[str] = [] if sandbox else [NO_SANDBOX_WARNING]
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

    found, problems, warn, names_of = collect(Path(submissions), day, notebooks)   # step 2
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
    results = _run_all(root, day, to_grade, jobs, timeout, feedback, progress, sandbox, limits)

    leaks = leak_lines(layout, day, lessons) if feedback else []
    grades = read_grades(root, day, to_grade, exercises) if to_grade else {}    # step 4
    if to_grade:                                    # formgrader lists them by name, not as "None, None"
        from .formgrader import name_students

        name_students(layout, names_of)
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
                own = own_lines(staged / s / day / f"{f.stem}.ipynb")
                leaked = [ln for ln in shown_lines(text, leaks) if ln not in own]
                if leaked:
                    f.unlink()
                    msgs.append(f"feedback {f.name} withheld: it showed hidden-test code")
        for nb_name in sorted(found.get(s, {})):
            flag = suspicious(staged / s / day / f"{nb_name}.ipynb", root / "autograded" / s / day / f"{nb_name}.ipynb")
            if flag:
                msgs.append(flag)
        if s in names_of:
            g.name = names_of[s]
            msgs.insert(0, f"gradebook id {s}")
        g.message = "; ".join(msgs)
        report_rows.append(g)
    csv_path = Path(csv_path) if csv_path else root / "grades.csv"
    write_csv(csv_path, report_rows, exercises)
    return GradeReport(day, report_rows, csv_path, root / "feedback" if feedback else None, warnings,
                       time.perf_counter() - t0)
