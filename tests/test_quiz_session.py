"""The quiz runtime (#16 item 5): choices shuffled per presentation and recorded, skip is a skip, empty input
re-prompts, numeric hints that match their tolerance, follow-ups with model answers, an honest "Work on",
relative due times, and no answer lost on EOF, Ctrl-C, a closed stdin, a read-only or truncated history."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from course.quiz import history as H
from course.quiz.grading import grade
from course.quiz.loader import load_bank
from course.quiz.schema import LETTERS, format_number
from course.quiz.session import (Console, choice_order, drill, numeric_hint, practice, present, review, sig_figs)
from test_quiz_cli import BANK, OPEN, home, shown, small_bank  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[1]
COURSE = [sys.executable, "-m", "course.cli"]


@pytest.fixture(scope="module")
def bank():
    return load_bank()


def records(home):
    p = home / "reviews.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


# ---- shuffling -----------------------------------------------------------------------------------------------
def test_choices_shuffled_per_presentation_and_answer_follows(bank):
    mcqs = bank.select(types=["mcq", "multi"])
    for q in mcqs[:40]:
        perms = {tuple(choice_order(q.id, len(q.choices), salt)) for salt in range(12)}
        assert len(perms) > 1, q.id                                    # not always the same order
        for salt in range(3):
            perm = choice_order(q.id, len(q.choices), salt)
            p = present(q, perm)
            assert sorted(p.choices) == sorted(q.choices)
            right = {q.choices[LETTERS.index(a)] for a in q.answer_letters}
            assert {p.choices[LETTERS.index(a)] for a in p.answer_letters} == right
            assert grade(p, " ".join(p.answer_letters)).correct


def test_shown_answer_positions_are_uniform_across_presentations(bank):
    """After shuffling, the key's displayed position is spread evenly (chi-square-like bound per position)."""
    pos = Counter()
    n = 0
    for q in bank.select(types=["mcq"]):
        for salt in range(50):
            p = present(q, choice_order(q.id, len(q.choices), salt))
            pos[(len(q.choices), p.answer)] += 1
            n += 1
    for k in {k for k, _ in pos}:
        counts = [pos[(k, L)] for L in LETTERS[:k]]
        total = sum(counts)
        if total < 500:
            continue                                                  # too few presentations to judge
        assert max(counts) / total < 1 / k + 0.08, (k, counts)


def test_presentation_recorded_and_replayable(monkeypatch, home, small_bank):
    b = load_bank(small_bank)
    out = io.StringIO()
    practice(b, b.select(["basics"], types=["mcq", "multi"]), Console(io.StringIO(_answers_for(b, 7)), out),
             count=2, seed=7)
    recs = records(home)
    assert len(recs) == 2
    for r in recs:
        q = b.by_id[r["qid"]]
        assert sorted(r["perm"]) == list(range(len(q.choices)))
        assert r["perm"] == choice_order(q.id, len(q.choices), "7")
        replayed = grade(present(q, r["perm"]), r["answer"])          # the same presentation, graded again
        assert replayed.score == r["score"] == 1.0


def _answers_for(b, seed):
    """Right answers, as displayed, in the order `practice(seed=seed)` asks the mcq/multi questions."""
    import random
    qs = b.select(["basics"], types=["mcq", "multi"])
    random.Random(seed).shuffle(qs)
    lines = []
    for q in qs:
        p = present(q, choice_order(q.id, len(q.choices), str(seed)))
        lines.append(" ".join(p.answer_letters))
    return "\n".join(lines) + "\n"


# ---- skip, empty input ---------------------------------------------------------------------------------------
def test_skip_is_not_scored_nor_a_lapse(home, small_bank):
    b = load_bank(small_bank)
    out = io.StringIO()
    done = practice(b, b.select(["basics"], types=["numeric", "short"]), Console(io.StringIO("?\n?\n"), out),
                    count=2, seed=1)
    assert done == [] and records(home) == []                       # nothing scored, nothing for FSRS
    assert "Score: 0.0 / 0; 2 skipped (not scored)" in out.getvalue()
    out = io.StringIO()                                              # review: a skipped card stays due
    review(b, b.select(["basics"], types=["short"]), Console(io.StringIO("?\n"), out), seed=0)
    assert records(home) == [] and "Reviewed 0 card(s)" in out.getvalue()


def test_empty_input_reprompts_instead_of_grading(home, small_bank):
    b = load_bank(small_bank)
    out = io.StringIO()
    done = practice(b, b.select(["basics"], types=["short"]), Console(io.StringIO("\n   \n-100\n"), out), count=1)
    assert [a.grade.correct for a in done] == [True]
    assert out.getvalue().count("(empty answer") == 2


# ---- numeric hints -------------------------------------------------------------------------------------------
def test_numeric_hints_match_their_tolerance_and_quote_no_answer(bank):
    import re

    from course.quiz.grading import parse_number

    numeric = bank.select(types=["numeric"])
    assert all(not math.isclose(q.value, 12345.678, rel_tol=0.05) for q in numeric)   # the example is no answer
    for q in numeric:
        hint = numeric_hint(q)
        rel = q.tolerance.rel if q.tolerance else 0.01
        # every number in the hint is the tolerance, the figure count, or the generic example 12,345.678
        for tok in re.findall(r"\d[\d,.]*(?:e\d+)?k?%?", hint):
            if tok.endswith("%"):
                assert math.isclose(float(tok[:-1]), rel * 100), (q.id, hint)
                continue
            x = parse_number(tok.rstrip(".,"))
            assert (rel and x == sig_figs(rel)) or math.isclose(x, 12345.678, rel_tol=0.05), (q.id, tok, hint)
        if rel == 0 and not (q.tolerance and q.tolerance.abs):
            assert "exact" in hint
            assert grade(q, f"{q.value:,.0f}" if float(q.value).is_integer() else repr(q.value)).correct
            continue
        n = sig_figs(rel)
        assert f"{n} significant figures" in hint, hint
        rounded = float(f"{q.value:.{n}g}")                         # the rounded form the hint promises
        assert grade(q, repr(rounded)).correct, (q.id, q.value, rounded, hint)
        for example in re.findall(r"e\.g\. (\S+) or (\S+) for", hint)[0] if n <= 3 else []:
            assert math.isclose(parse_number(example), 12345.678, rel_tol=rel), (example, hint)


def test_sig_figs_bound():
    for rel in (0.05, 0.01, 0.005, 0.001, 1e-4):
        n = sig_figs(rel)
        assert 0.5 * 10 ** (1 - n) <= rel < 0.5 * 10 ** (2 - n) or n == 1


# ---- drill: follow-ups, report, "Work on" ----------------------------------------------------------------------
def test_follow_up_shows_model_answer_and_key_points(home, small_bank):
    b = load_bank(small_bank)
    out = io.StringIO()
    rep = drill(b, b.select(["talk"]), Console(io.StringIO("my answer\nall\nmy follow-up\n2\n"), out),
                minutes=10, max_questions=1, seed=0)
    text = out.getvalue()
    assert "Follow-up: And what about follow-up" in text and "The model answer of follow-up number" in text
    assert "2. follow-up point b" in text and "50% of the follow-up's key points" in text
    (a,) = rep["answers"]
    assert a["follow_ups"][0]["answer"] == "my follow-up" and a["follow_ups"][0]["score"] == 0.5


def test_work_on_says_its_basis_and_skips_strong_topics(home, small_bank):
    b = load_bank(small_bank)
    out = io.StringIO()
    # talk answered fully (100%): it must not be named as a weak topic
    drill(b, b.select(["talk"]), Console(io.StringIO("a\nall\nb\nall\n" * 2), out), minutes=10, max_questions=2, seed=0)
    assert "Work on: nothing from this drill" in out.getvalue()
    out = io.StringIO()
    rep = drill(b, b.select(["talk"]), Console(io.StringIO("a\nnone\nb\nall\n"), out), minutes=10, max_questions=1,
                seed=0)
    assert rep["weakest"] == ["talk"] and "Work on (this drill's topics below 75%" in out.getvalue()
    assert "this drill" in rep["weakest_basis"]


def test_review_shows_relative_due_times(home, small_bank):
    b = load_bank(small_bank)
    out = io.StringIO()
    review(b, b.select(["basics"], types=["short"]), Console(io.StringIO("-100\n3\n"), out), seed=0)
    assert "next review in 10 minutes" in out.getvalue()
    assert "Forecast" in out.getvalue() and "today:" in out.getvalue()


# ---- nothing lost -------------------------------------------------------------------------------------------
def _run(args, stdin, home, **kw):
    env = {**os.environ, H.ENV: str(home), "PYTHONUNBUFFERED": "1", "COURSE_THREADS": "1"}
    return subprocess.run(COURSE + args, input=stdin, capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120, **kw)


def test_eof_at_drill_follow_up_keeps_the_answer(home, small_bank):
    r = _run(["drill", "--bank", str(small_bank), "--topics", "talk", "--seed", "0"], "my answer\nall\n", home)
    assert r.returncode == 0, r.stderr
    assert "1 question(s)" in r.stdout
    (rep,) = [json.loads(x) for x in (home / "drills.jsonl").read_text().splitlines()]
    assert rep["questions"] == 1 and rep["ended"] == "input" and rep["answers"][0]["follow_ups"][0]["answer"] is None
    assert len(records(home)) == 1


def test_eof_at_review_rating_keeps_the_answer(home, small_bank):
    r = _run(["review", "--bank", str(small_bank), "--topic", "basics", "--type", "short"], "-100\n", home)
    assert r.returncode == 0, r.stderr
    (rec,) = records(home)
    assert rec["qid"] == "f-short" and rec["score"] == 1.0 and rec["rating"] == 3
    assert "saved with the suggested rating 3 Good" in r.stdout


def test_closed_stdin_is_one_clear_sentence(home, small_bank):
    r = _run(["quiz", "--bank", str(small_bank), "-n", "2"], "", home)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "(stopped)" in r.stdout   # an empty input
    p = subprocess.run(["bash", "-c", f'{" ".join(COURSE)} quiz --bank {small_bank} -n 2 <&-'], capture_output=True,
                       text=True, cwd=REPO, env={**os.environ, H.ENV: str(home)}, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "stdin is closed" in p.stderr, p.stderr


def test_sigint_mid_drill_still_writes_the_report(home, small_bank):
    env = {**os.environ, H.ENV: str(home), "PYTHONUNBUFFERED": "1"}
    # SIGINT at its default in the drill, as in a terminal: a suite started as a background job without job control
    # (`(make test &)`, nohup) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    p = subprocess.Popen(COURSE + ["drill", "--bank", str(small_bank), "--topics", "talk", "--seed", "0"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=REPO, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    p.stdin.write("my answer\nall\nfollow\nall\n")
    p.stdin.flush()
    seen = ""
    deadline = time.monotonic() + 90
    while "Q2" not in seen and time.monotonic() < deadline:           # wait until question 2 is on screen
        seen += os.read(p.stdout.fileno(), 4096).decode()
    p.send_signal(signal.SIGINT)
    # stdin stays open until the drill has exited, as a terminal's does (communicate() would close it at once, and a
    # drill that had not yet handled the signal would read an end of input: ended="input")
    p.wait(timeout=60)
    rest, err = p.communicate(timeout=60)
    assert "Traceback" not in err, err
    (rep,) = [json.loads(x) for x in (home / "drills.jsonl").read_text().splitlines()]
    assert rep["ended"] == "interrupted" and rep["questions"] == 1
    assert "=== Score report ===" in seen + rest


def test_read_only_history_refuses_before_asking(monkeypatch, capsys, home, small_bank):
    from course.cli import main

    real_open = os.open

    def deny(path, flags, *a):
        if str(path).startswith(str(home)) and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *a)

    monkeypatch.setattr(H.os, "open", deny)
    monkeypatch.setattr("sys.stdin", io.StringIO("-100\n"))
    with pytest.raises(SystemExit) as e:
        main(["quiz", "--bank", str(small_bank), "--topic", "basics", "--type", "short", "-n", "1"])
    out = capsys.readouterr()
    assert e.value.code == 1 and "cannot write your history file" in out.err and "Q1" not in out.out


def test_history_failing_mid_session_keeps_answers(monkeypatch, home, small_bank, tmp_path):
    b = load_bank(small_bank)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def fail(self, *records):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(H.JsonlLog, "append", fail)
    out = io.StringIO()
    practice(b, b.select(["basics"], types=["short"]), Console(io.StringIO("-100\n"), out, width=10_000), count=1)
    (fb,) = tmp_path.glob("finetune-course-unsaved-*.jsonl")
    (rec,) = [json.loads(x) for x in fb.read_text().splitlines()]
    assert rec["qid"] == "f-short" and str(fb) in out.getvalue()


def test_truncated_last_record_is_not_glued_to_the_next(home):
    log = H.reviews_log()
    log.append(H.review_record("a", "lora", "quiz", 1.0, 3))
    with open(log.path, "ab") as f:
        f.write(b'{"qid": "cut-off", "ts": "2026-')                     # a write cut mid-record, no newline
    log.append(H.review_record("b", "lora", "quiz", 1.0, 3))
    got = log.read(out=io.StringIO())
    assert [r["qid"] for r in got] == ["a", "b"]                        # "b" survives the repair
    assert len(list(home.glob("reviews.corrupt-*.jsonl"))) == 1
