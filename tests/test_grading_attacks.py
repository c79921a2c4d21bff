"""Adversarial students (issue #15): one class of the sample course, graded once with the sandbox on, holding every
attack beside correct submissions. Each attack must gain nothing; classmates, the instructor's files and the
gradebook stay intact; nothing outlives the run; grades.csv lists every submission.

The hook attacks are also run once WITHOUT the guard (plain kernel, no restored state), to show that each one would
have disabled the tests it targets: the guard, not a broken attack, is what stops them.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course.authoring import build
from course.authoring import sandbox as sb
from course.authoring.cells import dumps, grade_id, is_test, read_source
from course.authoring.grade import GradeRefused, grade_class, hold_lock
from course.authoring.layout import Layout

SAMPLE = Path(__file__).parent / "fixtures" / "sample_course"
DAY = "day0_sample"
TIMEOUT = 30          # seconds per cell: generous, so a slow import under load is not mistaken for a defence
LIMITS = sb.Limits(memory_mb=3072, processes=64)
TOKEN = "course-daemon-" + hashlib.sha1(str(os.getpid()).encode()).hexdigest()[:10]
WRONG = "def lora_scale(alpha, r):\n    return 0\n\ndef masked_mean(values, mask):\n    return 0\n"

pytestmark = pytest.mark.slow        # never skipped: without bubblewrap grade_class refuses, naming the install

YES = ("class Yes(float):\n    def __eq__(self, other):\n        return True\n    __hash__ = float.__hash__\n"
       "def lora_scale(alpha, r):\n    return Yes(0)\n\ndef masked_mean(values, mask):\n    return Yes(0)\n")
# a tracer that, before every line of a cell, shadows `type` so that `type(s) is float` holds for a look-alike
TRACER = YES + '''import sys
def _inject(frame, event, arg):
    if event == "line" and frame.f_code.co_name == "<module>":
        frame.f_globals["type"] = lambda *a: float
    return _inject
'''

# attack → code replacing the solution cells (the first one holds it, the second is emptied)
HOOKS = {
    "m_cleanup": WRONG + "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])\n",
    "m_post": WRONG + "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])\n",
    "m_ast": WRONG + ("import ast\nclass _Empty(ast.NodeTransformer):\n    def visit_Module(self, node):\n"
                      "        node.body = [ast.Pass()]\n        return node\n"
                      "get_ipython().ast_transformers.append(_Empty())\n"),
    "m_trace": TRACER + "sys.settrace(_inject)\n",
    "m_events": TRACER + "get_ipython().events.register('pre_run_cell', lambda *a: sys.settrace(_inject))\n",
    "m_builtins": YES + "import builtins\nbuiltins.float = Yes\n",     # `type(s) is float` reads builtins.float
    "m_shadow": YES + "float = Yes\n",                                  # ... or the user namespace's float
    # the guard itself (each beat the first, in-kernel guard: 4/4 tests passed for a wrong answer)
    "m_handler": WRONG + (          # the kernel's handler table: later requests run 'pass' instead of their code
        "k = get_ipython().kernel\n_orig = k.shell_handlers['execute_request']\n"
        "async def _fake(*args):\n    msg = args[-1]\n    if 'assert' in msg['content']['code']:\n"
        "        msg['content']['code'] = 'pass'\n    return await _orig(*args)\n"
        "k.shell_handlers['execute_request'] = _fake\n"),
    "m_guard_globals": WRONG + (    # the guard's own globals: no test is recognised, then every test is emptied
        "g = type(get_ipython().kernel).execute_request.__globals__\ng['_GUARD'] = frozenset()\n"
        "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])\n"),
    "m_forge": WRONG + (            # forged messages: errors dropped, error replies rewritten to ok and re-signed
        "import json, hmac, hashlib, zmq\n_key = get_ipython().kernel.session.key\n_send = zmq.Socket.send_multipart\n"
        "def _forge(self, parts, *a, **kw):\n"
        "    parts = [p if isinstance(p, bytes) else bytes(p) for p in parts]\n"
        "    if b'<IDS|MSG>' in parts:\n"
        "        i = parts.index(b'<IDS|MSG>')\n"
        "        head, parent, meta, content = (json.loads(p) for p in parts[i + 2:i + 6])\n"
        "        if head.get('msg_type') == 'error':\n            return None\n"
        "        if content.get('status') == 'error':\n"
        "            content = {'status': 'ok', 'execution_count': content.get('execution_count'),"
        " 'user_expressions': {}, 'payload': []}\n"
        "            parts[i + 5] = json.dumps(content).encode()\n"
        "            h = hmac.new(_key, digestmod=hashlib.sha256)\n"
        "            for p in parts[i + 2:i + 6]:\n                h.update(p)\n"
        "            parts[i + 1] = h.hexdigest().encode()\n"
        "    return _send(self, parts, *a, **kw)\n"
        "zmq.Socket.send_multipart = _forge\n"),
}
# beside the handler-table attack: a second snapshot registered and the proof lines forged without the key; and
# ctypes, which the guard cannot stop (no audit event for cast/memmove) and the grader flags for review
FORGED_PROOF = HOOKS["m_handler"] + ("import os, sys\nsys.audit('course.register', {})\n"
                        "for fd in os.listdir('/proc/self/fd'):\n"
                        "    try:\n        target = os.readlink(f'/proc/self/fd/{fd}')\n    except OSError:\n"
                        "        continue\n"
                        "    if 'evidence' in target:\n"
                        "        with open(target, 'ab') as f:\n"
                        "            f.write(b''.join(b'%d:ok:%s\\n' % (i, b'0' * 64) for i in range(8)))\n")
CTYPES = WRONG + "import ctypes\nprint('peek', ctypes.string_at(id(0), 8))\n"


def _paths(tmp: Path) -> dict[str, str]:
    from course import paths

    return {"SAMPLE_SRC": str(SAMPLE / "solutions" / DAY / "01_basics.py"),
            "REPO_SRC": str(paths.SOLUTIONS), "ROOT": str(paths.ROOT),
            "AG": str(tmp / "autograder"), "LESSONS": str(tmp / "lessons")}


def attacks(tmp: Path) -> dict[str, str]:
    p = _paths(tmp)
    return {
        **HOOKS,
        "m_read_solutions": (
            "import glob, os\n"
            f"cands = [{p['SAMPLE_SRC']!r}] + glob.glob({p['REPO_SRC']!r} + '/*/*.py') + "
            f"glob.glob({p['AG']!r} + '/source/*/*.ipynb')\n"
            "for c in cands:\n"
            "    try:\n"
            "        src = open(c).read()\n"
            "    except OSError:\n        continue\n"
            "    print('LEAK', c)\n"
            "    exec(src, globals())\n" + "if 'lora_scale' not in globals():\n" +
            "\n".join("    " + ln for ln in WRONG.splitlines()) + "\n"),
        "m_solution_namespace": (
            "from course.authoring.reference import solution_namespace\n"
            "try:\n"
            f"    ns = solution_namespace({p['SAMPLE_SRC']!r}, {{'lora_scale', 'masked_mean'}})\n"
            "    globals().update(lora_scale=ns['lora_scale'], masked_mean=ns['masked_mean'])\n"
            "    print('LEAK solution_namespace')\n"
            "except Exception as e:\n"
            "    print('refused:', type(e).__name__)\n" + "\n".join("    " + ln for ln in WRONG.splitlines()) + "\n"),
        "m_gradebook": (
            WRONG + "for f in [" + repr(p["AG"] + "/gradebook.db") + ", " +
            repr(p["AG"] + f"/source/{DAY}/01_basics.ipynb") + "]:\n"
            "    try:\n        print('LEAK', open(f, 'rb').read()[:100000])\n    except OSError as e:\n"
            "        print('no', type(e).__name__)\n"),
        "m_eq": ("class Yes(float):\n    def __eq__(self, other):\n        return True\n    __hash__ = float.__hash__\n"
                 "def lora_scale(alpha, r):\n    return Yes(0)\n\ndef masked_mean(values, mask):\n    return Yes(0)\n"),
        "m_showtb": WRONG + "get_ipython().showtraceback = lambda *a, **k: None\n",
        "m_forged_proof": FORGED_PROOF,
        "m_ctypes": CTYPES,
        "m_sabotage": (
            WRONG + "import glob, os, sqlite3\nhits = []\n"
            f"for f in glob.glob({p['AG']!r} + '/submitted/*/*/*.ipynb'):\n"
            "    try:\n        open(f, 'w').write('{}'); hits.append(f)\n    except OSError:\n        pass\n"
            f"for d in [{p['REPO_SRC']!r}, {p['LESSONS']!r}, {p['AG']!r}, os.path.dirname({p['SAMPLE_SRC']!r})]:\n"
            "    try:\n        open(d + '/evil.txt', 'w').write('x'); hits.append(d)\n    except OSError:\n        pass\n"
            "try:\n"
            f"    db = sqlite3.connect({p['AG']!r} + '/gradebook.db'); db.execute('update grade set auto_score=0');"
            " db.commit(); hits.append('db')\n"
            "except Exception:\n    pass\n"
            "print('SABOTAGE', hits)\n"),
        "m_daemon": (
            WRONG + "import os, sys\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(300)', {TOKEN!r}])\n"
            "    os._exit(0)\n"),
        "m_killparent": WRONG + "import os\nos.kill(os.getppid(), 9)\n",
        "m_limits": (
            WRONG + "import os, resource, time\n"
            "try:\n    b = bytearray(4 * 2**30); print('ALLOCATED 4 GiB')\nexcept MemoryError:\n"
            "    print('MemoryError for 4 GiB')\n"
            "kids = 0\n"
            "for _ in range(200):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(30); os._exit(0)\n"
            "    kids += 1\n"
            "print('FORKED', kids, 'NPROC', resource.getrlimit(resource.RLIMIT_NPROC)[0])\n"),
        "m_probe": (
            WRONG + "import json, os, socket\nfound = {'uid': os.getuid(), 'cwd': sorted(os.listdir('.')),\n"
            f"  'root': sorted(os.listdir({p['ROOT']!r})) if os.path.isdir({p['ROOT']!r}) else None,\n"
            "  'home': sorted(os.listdir('/root')) if os.path.isdir('/root') else None,\n"
            "  'secret': os.environ.get('COURSE_TEST_SECRET'),\n"
            f"  'exists': [q for q in [{p['AG']!r}, {p['LESSONS']!r}, {p['REPO_SRC']!r}, {p['ROOT']!r} + '/.git',"
            f" {p['SAMPLE_SRC']!r}] if os.path.exists(q)]}}\n"
            "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2); found['net'] = True\n"
            "except OSError:\n    found['net'] = False\n"
            "try:\n    open('/usr/evil', 'w'); found['usr_writable'] = True\nexcept OSError:\n"
            "    found['usr_writable'] = False\n"
            "print('PROBE', json.dumps(found))\n"),
    }


def _replace_solutions(nb, code: str):
    nb = copy.deepcopy(nb)
    first = True
    for c in nb.cells:
        if grade_id(c) in ("lora_scale", "masked_mean"):
            c.source = code if first else "# (see above)\n"
            first = False
    return nb


def make_class(root: Path) -> Path:
    ref1 = read_source(SAMPLE / "solutions" / DAY / "01_basics.py")
    ref2 = read_source(SAMPLE / "solutions" / DAY / "02_softmax.py")
    out = root / "class"

    def put(rel: str, nb) -> None:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(dumps(nb), encoding="utf-8")

    for good in ("alice", "zed"):
        put(f"{good}/01_basics.ipynb", ref1)
        put(f"{good}/02_softmax.ipynb", ref2)
    for name, code in attacks(root).items():
        put(f"{name}/01_basics.ipynb", _replace_solutions(ref1, code))
    put("José García.ipynb", ref1)                              # flat file, non-ASCII name with a space
    put("ann lee/01_basics.ipynb", ref1)                        # folder with a space
    put("bob/01_basics.ipynb", ref1)                            # folder AND flat file of one student
    put("bob.ipynb", ref2)
    huge = copy.deepcopy(ref1)
    huge.cells.append(nbformat.v4.new_code_cell("print('x' * 200_000_000)"))
    put("p_huge/01_basics.ipynb", huge)
    # a correct solution that calls a helper defined in its own later cell, with every test cell deleted:
    # nbgrader re-adds the tests right after the solution cell (before the helper: NameError); ours after it
    helper = copy.deepcopy(ref1)
    i = next(i for i, c in enumerate(helper.cells) if grade_id(c) == "lora_scale")
    helper.cells[i].source = "def lora_scale(alpha, r):\n    return _scale(alpha, r)\n"
    helper.cells.insert(i + 1, nbformat.v4.new_code_cell("def _scale(alpha, r):\n    return float(alpha) / r\n"))
    helper.cells = [c for c in helper.cells if not is_test(c)]
    put("p_deleted/01_basics.ipynb", helper)
    renamed = copy.deepcopy(ref1)
    next(c for c in renamed.cells if grade_id(c) == "lora_scale__is_float").metadata.nbgrader["grade_id"] = "renamed"
    put("m_gradeid/01_basics.ipynb", renamed)
    (out / "m_symlink").mkdir()
    os.symlink(root / "autograder" / "source" / DAY / "01_basics.ipynb", out / "m_symlink" / "01_basics.ipynb")
    os.symlink(SAMPLE / "solutions" / DAY / "01_basics.py", out / "m_link2.ipynb")
    return out


def _tree_digest(*folders: Path) -> str:
    h = hashlib.sha256()
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _daemons() -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if TOKEN.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


_ONCE: dict = {}


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    if "run" not in _ONCE:
        tmp = tmp_path_factory.mktemp("attacks")
        layout = Layout.under(tmp, solutions=SAMPLE / "solutions")
        build.build(layout, log=lambda *a: None)
        klass = make_class(tmp)
        before = _tree_digest(SAMPLE, tmp / "lessons", tmp / "autograder" / "source")
        os.environ["COURSE_TEST_SECRET"] = "instructor-token"
        try:
            t0 = time.perf_counter()
            report = grade_class(layout, DAY, klass, jobs=2, timeout=TIMEOUT, progress=False, limits=LIMITS)
            seconds = time.perf_counter() - t0
        finally:
            os.environ.pop("COURSE_TEST_SECRET", None)
        time.sleep(1.0)
        rows = {r["student"]: r for r in csv.DictReader(report.csv_path.open(encoding="utf-8"))}
        after = _tree_digest(SAMPLE, tmp / "lessons", tmp / "autograder" / "source")
        _ONCE["run"] = dict(layout=layout, klass=klass, report=report, rows=rows, before=before, after=after,
                            daemons=_daemons(), seconds=seconds)
    return _ONCE["run"]


def _outputs(layout: Layout, student: str, nb: str = "01_basics") -> str:
    path = layout.autograder / "autograded" / student / DAY / f"{nb}.ipynb"
    if not path.exists():
        return ""
    book = nbformat.read(path, as_version=4)
    # a stream's text carries its own newlines, and one print can arrive as two stream outputs under load
    # ("FORKED" then " 46 NPROC 64\n", seen in CI): streams are concatenated as they are, other outputs on their own line
    return "".join(o["text"] if o.get("output_type") == "stream" else
                   "\n" + json.dumps(o.get("data", {})) + str(o.get("evalue", "")) + "\n"
                   for c in book.cells if c.cell_type == "code" and not is_test(c) for o in c.get("outputs", []))


def test_every_submission_is_listed_and_classmates_keep_their_grades(attacked):
    rows = attacked["rows"]
    expected = {"alice", "zed", "José García", "ann lee", "bob", "p_huge", "p_deleted", "m_gradeid", "m_symlink",
                "m_link2", *attacks(Path("/x"))}
    assert set(rows) == expected, set(rows) ^ expected
    assert (rows["alice"]["score"], rows["zed"]["score"], rows["bob"]["score"]) == ("7", "7", "7")
    assert rows["José García"]["score"] == "5" and "gradebook id" in rows["José García"]["message"]
    assert rows["ann lee"]["score"] == "5"
    assert rows["p_huge"]["score"] == "5"                       # 200 MB printed: cut, not fatal
    assert rows["p_deleted"]["score"] == "5", rows["p_deleted"]  # restored tests run after the helper cell
    text = _outputs(attacked["layout"], "p_huge")
    assert "output cut" in text or "output truncated" in text, text[-300:]


def test_attackers_gain_nothing(attacked):
    rows = attacked["rows"]
    for name in attacks(Path("/x")):
        assert rows[name]["score"] == "0", (name, rows[name])
    layout = attacked["layout"]
    for name in ("m_read_solutions", "m_solution_namespace", "m_gradebook"):
        text = _outputs(layout, name)
        assert "LEAK" not in text and "alpha=8, r=16" not in text, (name, text[:500])
    assert "refused: FileNotFoundError" in _outputs(layout, "m_solution_namespace")


def test_tampering_is_flagged_for_review_and_classmates_are_not(attacked):
    """What the guard cannot stop (ctypes) and what it stopped are both named in the row, for a human to look at."""
    rows = attacked["rows"]
    assert "review 01_basics.ipynb: uses ctypes" in rows["m_ctypes"]["message"], rows["m_ctypes"]
    for name in ("m_handler", "m_forge", "m_guard_globals"):
        assert "the kernel's internals" in rows[name]["message"], rows[name]
    for name in ("m_forged_proof", "m_handler", "m_forge", "m_guard_globals"):
        assert "without the guard's proof (GuardError)" in rows[name]["message"], rows[name]
    for name in ("alice", "zed", "bob", "ann lee", "p_deleted"):
        assert "review" not in rows[name]["message"], rows[name]


def test_symlinks_and_changed_grade_ids_are_reported(attacked):
    rows = attacked["rows"]
    for name in ("m_symlink", "m_link2"):
        assert rows[name]["status"] == "error" and "symbolic link" in rows[name]["message"]
    # a changed grade_id: nbgrader's own message reaches the report (not "the database was busy"), and the
    # student is graded with the original test restored (nbgrader alone fails with KeyError: 'grade_id')
    msg = rows["m_gradeid"]["message"]
    assert rows["m_gradeid"]["score"] == "5" and "Cell 'renamed' does not exist in the database" in msg, msg


def test_sandbox_hides_the_course_and_the_instructor(attacked):
    text = _outputs(attacked["layout"], "m_probe")
    found = json.loads(text.split("PROBE ", 1)[1].splitlines()[0])
    assert found["uid"] != 0 and found["net"] is False and found["usr_writable"] is False
    assert found["exists"] == [] and found["secret"] is None
    assert found["cwd"] == ["01_basics.ipynb"]
    assert found["root"] is None or set(found["root"]) <= {"course", "quizzes", ".venv", "venv"}, found["root"]
    assert found["home"] is None or set(found["home"]) <= {".pyenv", ".local", ".cache"}, found["home"]


def test_sabotage_changes_nothing_and_nothing_outlives_the_run(attacked):
    assert attacked["before"] == attacked["after"]
    assert "SABOTAGE []" in _outputs(attacked["layout"], "m_sabotage")
    assert attacked["daemons"] == [] and _daemons() == []
    for where in (SAMPLE, attacked["layout"].lessons, attacked["layout"].autograder):
        assert not list(Path(where).rglob("evil.txt"))


def test_a_killed_parent_or_exhausted_limits_cost_only_that_student(attacked):
    rows = attacked["rows"]
    assert rows["m_killparent"]["status"] == "error" and rows["m_killparent"]["score"] == "0"
    text = _outputs(attacked["layout"], "m_limits")
    assert "MemoryError for 4 GiB" in text, text[:500]
    kids = int(text.split("FORKED ", 1)[1].split()[0])
    assert kids < LIMITS.processes, text


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_each_hook_attack_works_without_the_guard(name, tmp_path):
    """The same notebook in an unguarded kernel: its test cells raise nothing, so nbgrader would give full marks. (Proof that the hook is real; the guarded run above scores it 0.)"""
    layout = Layout.under(tmp_path, solutions=SAMPLE / "solutions")
    nb = _replace_solutions(read_source(SAMPLE / "solutions" / DAY / "01_basics.py"), HOOKS[name])
    res = sb.execute(nbformat.writes(nb), nbformat.writes(nb), "01_basics.ipynb", TIMEOUT, LIMITS, sandbox=True,
                     guard_cells=[])
    done = nbformat.reads(res["notebook"], as_version=4)
    tests = [c for c in done.cells if is_test(c)]
    passed = [grade_id(c) for c in tests if not any(o.get("output_type") == "error" for o in c.outputs)]
    assert len(passed) == len(tests) == 4, (name, passed)
    del layout


def test_a_patched_module_function_is_put_back_before_each_test():
    """``math.isclose = lambda *a, **k: True`` in a student cell: unguarded the test passes for a wrong answer; the
    guard restores the module's functions before the test's code runs (torch.allclose, F.cross_entropy alike)."""
    student = "import math\nmath.isclose = lambda *a, **k: True\ndef answer():\n    return 0.0\n"
    test = "import math\nassert math.isclose(answer(), 1.0), 'the answer is 1'\n"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(student), nbformat.v4.new_code_cell(test)])
    outcome = {}
    for guarded in (False, True):
        res = sb.execute(nbformat.writes(nb), nbformat.writes(nb), "nb.ipynb", TIMEOUT, LIMITS, sandbox=True,
                         guard_cells=[test] if guarded else [])
        done = nbformat.reads(res["notebook"], as_version=4)
        outcome[guarded] = [o.get("ename") for o in done.cells[1].outputs if o.get("output_type") == "error"]
    assert outcome == {False: [], True: ["AssertionError"]}, outcome


def test_concurrent_runs_are_refused(tmp_path):
    layout = Layout.under(tmp_path, solutions=SAMPLE / "solutions")
    lock = hold_lock(layout.autograder)
    try:
        with pytest.raises(GradeRefused, match="another `course grade`"):
            grade_class(layout, DAY, tmp_path, progress=False)
    finally:
        lock.close()


def test_grade_refuses_without_bubblewrap_unless_no_sandbox(tmp_path, monkeypatch, capsys):
    from course import paths
    from course.cli import main

    monkeypatch.setattr(paths, "SOLUTIONS", SAMPLE / "solutions")
    monkeypatch.setattr(paths, "AUTOGRADER", tmp_path / "autograder")
    monkeypatch.setattr(sb, "bwrap_path", lambda: None)
    (tmp_path / "class").mkdir()
    assert main(["grade", "day0", str(tmp_path / "class")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install -y bubblewrap" in err and "--no-sandbox" in err
    assert not (tmp_path / "autograder" / "grades.csv").exists()


def test_killing_course_grade_leaves_no_process(tmp_path):
    """SIGKILL `course grade --jobs 2` while two sandboxes run: its workers and their sandboxes all go."""
    layout = Layout.under(tmp_path, solutions=SAMPLE / "solutions")
    build.build(layout, log=lambda *a: None)
    ref = read_source(SAMPLE / "solutions" / DAY / "02_softmax.py")
    slow = copy.deepcopy(ref)
    slow.cells.insert(2, nbformat.v4.new_code_cell("import time\ntime.sleep(60)"))
    for s in ("s1", "s2"):
        (tmp_path / "class" / s).mkdir(parents=True)
        (tmp_path / "class" / s / "02_softmax.ipynb").write_text(dumps(slow))
    code = ("import sys; from pathlib import Path; from course.authoring.grade import grade_class; "
            "from course.authoring.layout import Layout; "
            f"grade_class(Layout.under(Path({str(tmp_path)!r}), solutions=Path({str(SAMPLE / 'solutions')!r})), "
            f"{DAY!r}, Path({str(tmp_path / 'class')!r}), jobs=2, timeout=120, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)

    def tree(root: int) -> set[int]:
        kids: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                kids.setdefault(ppid, []).append(int(d.name))
        out, todo = set(), [root]
        while todo:
            p = todo.pop()
            for k in kids.get(p, []):
                if k not in out:
                    out.add(k)
                    todo.append(k)
        return out

    seen: set[int] = set()
    deadline = time.time() + 240
    while time.time() < deadline:
        seen |= tree(proc.pid)
        if sum(1 for p in seen if _comm(p) == "bwrap") >= 2:
            break
        time.sleep(0.5)
    assert sum(1 for p in seen if _comm(p) == "bwrap") >= 2, "the sandboxes never started"
    seen |= tree(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)
    alive = [p for p in seen if Path(f"/proc/{p}").exists() and _comm(p) != ""]
    assert alive == [], [(p, _comm(p)) for p in alive]


def _comm(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return ""
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_a_venv_under_tmp_runs_inside_the_sandbox():
    """The sandbox's private /tmp is mounted before the read-only binds: an environment that lives under /tmp (a
    clone in /tmp/..., as one fresh-clone CI run had) stays visible inside, instead of hidden under the tmpfs."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:      # /tmp itself, whatever TMPDIR or pytest's basetemp
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        argv = [shutil.which("bwrap"), *sb._mounts(extra_ro=(str(venv),)), str(venv / "bin" / "python"), "-c",
                "import sys; print(sys.prefix)"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(venv), out.stdout
