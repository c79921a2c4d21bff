"""The interactive loops behind ``course quiz``, ``course drill`` and ``course review``.

All input comes through :class:`Console`, which reads lines from any stream, so every flow can be
scripted (``printf 'B\\n3\\n' | course review``) and tested. End of input ends a session cleanly: what
was answered is saved.
"""

from __future__ import annotations

import json
import random
import sys
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, TextIO

from . import history as H
from . import srs
from .grading import AnswerFormatError, Grade, grade, grade_key_points, parse_key_points, suggested_rating
from .loader import Bank
from .schema import LETTERS, Question, format_number
from .stats import latest_scores

SKIP = {"?", "skip", "idk", "pass"}
STARS = {1: "*", 2: "**", 3: "***"}


class EndOfInput(Exception):
    """The answer stream ended (Ctrl-D, the end of a scripted input, a closed stdin)."""


class Skipped(Exception):
    """The learner skipped the question ('?'): nothing is scored or scheduled."""


class Console:
    def __init__(self, inp: TextIO | None = None, out: TextIO | None = None, width: int = 96):
        self.inp = inp if inp is not None else sys.stdin       # None: stdin is closed (`course quiz <&-`)
        self.out = out or sys.stdout
        self.width = width

    def say(self, text: str = "", indent: str = "") -> None:
        for para in str(text).split("\n"):
            if not para.strip():
                print("", file=self.out)
                continue
            print(textwrap.fill(para, self.width, initial_indent=indent, subsequent_indent=indent + "  "
                                if para.lstrip().startswith(("-", "*", "1", "2", "3", "4", "5", "6", "7", "8", "9"))
                                else indent), file=self.out)

    def ask(self, prompt: str) -> str:
        if self.inp is None or getattr(self.inp, "closed", False):
            print(prompt, file=self.out)
            raise EndOfInput
        if self.inp is sys.stdin and sys.stdin.isatty():
            try:
                return input(prompt)
            except EOFError:
                raise EndOfInput from None
        self.out.write(prompt)
        self.out.flush()
        try:
            line = self.inp.readline()
        except (OSError, ValueError):                 # a closed or unreadable descriptor is an end of input
            line = ""
        if not line:
            print("", file=self.out)
            raise EndOfInput
        line = line.rstrip("\n")
        print(line, file=self.out)       # echo scripted answers, so a transcript reads like a session
        return line

    def ask_nonempty(self, prompt: str) -> str:
        """Ask until the answer is not blank (an empty Enter re-prompts; it is never graded)."""
        while True:
            ans = self.ask(prompt)
            if ans.strip():
                return ans
            self.say("  (empty answer: type one, or '?' to skip)")


@dataclass
class Answered:
    q: Question                   # as presented (choices in the order shown)
    grade: Grade
    seconds: float
    rating: int
    follow_ups: list[dict] = field(default_factory=list)
    perm: list[int] | None = None
    answer: str | None = None


# ---- presenting a question: choices shuffled per presentation -----------------------------------------------
def choice_order(qid: str, n: int, salt: str | int | None) -> list[int]:
    """The order the ``n`` choices of ``qid`` are shown in: ``perm[i]`` is the bank index of the i-th shown
    choice. A pure function of (salt, question id), so a presentation recorded with its ``perm`` can be
    replayed; a session draws a fresh random salt unless ``--seed`` fixes it."""
    perm = list(range(n))
    random.Random(f"{salt}|{qid}").shuffle(perm)
    return perm


def present(q: Question, perm: list[int]) -> Question:
    """``q`` with its choices in the order ``perm`` and the answer letters relabelled to match."""
    if not q.choices:
        return q
    inv = {orig: shown for shown, orig in enumerate(perm)}
    letters = sorted(LETTERS[inv[LETTERS.index(a)]] for a in q.answer_letters)
    answer = letters[0] if q.type == "mcq" else letters
    return q.model_copy(update={"choices": [q.choices[i] for i in perm], "answer": answer})


def numeric_hint(q: Question) -> str:
    """What a numeric answer may look like, derived from the question's own tolerance (never another
    question's answer): exact answers need every digit; a tolerance of ±rel promises that any value rounded to
    :func:`sig_figs` significant figures is accepted."""
    tol = q.tolerance
    rel, abs_ = (tol.rel, tol.abs) if tol else (0.01, 0.0)
    if rel == 0 and abs_ == 0:
        return f"(answer in {q.unit}; exact: every digit, commas optional, e.g. 12,345 or 12345)"
    if rel == 0:
        return f"(answer in {q.unit}; within ±{abs_:g})"
    n = sig_figs(rel)
    return (f"(answer in {q.unit}; within ±{rel:.2%}".replace(".00%", "%") +
            f": {n} significant figures are enough, e.g. {_example(n)} for 12,345.678)")


def sig_figs(rel: float) -> int:
    """Fewest significant figures whose worst rounding error (0.5·10^(1−n) relative) is within ``rel``."""
    import math
    return max(1, math.ceil(1 + math.log10(0.5 / rel) - 1e-9))


def _example(n: int) -> str:
    x = float(f"{12345.678:.{n}g}")
    if n <= 3:
        return f"{x / 1e3:g}k or {x:.{n - 1}e}".replace("e+04", "e4")
    return f"{x:,.{max(0, n - 5)}f}"


def show_question(q: Question, con: Console, number: str = "") -> None:
    con.say(f"\n{number}[{q.topic} · difficulty {STARS[q.difficulty]} · {q.type} · day {q.day}]  {q.id}")
    con.say(q.prompt)
    if q.choices:
        con.say("(choose one)" if q.type == "mcq" else "(choose all that apply, e.g. A C)")
        for L, c in zip(LETTERS, q.choices):
            con.say(f"{L}) {c}", indent="  ")
    if q.type == "numeric":
        con.say(numeric_hint(q))


def self_score(key_points: list[str], con: Console, tries: int = 3) -> list[int]:
    for i, k in enumerate(key_points, 1):
        con.say(f"{i}. {k}", indent="  ")
    for _ in range(tries):
        try:
            raw = con.ask_nonempty("Which did you cover? (e.g. 1 3 4, all, none): ")
            return parse_key_points(raw, len(key_points))
        except AnswerFormatError as e:
            con.say(f"  {e}")
    return []


def ask_and_grade(q: Question, con: Console, tries: int = 3) -> tuple[Grade, str]:
    """Ask ``q``, read an answer, grade it (auto) or let the learner tick key points (open). Returns the grade
    and what was typed. Raises :class:`Skipped` on '?' and :class:`EndOfInput` at the end of input."""
    if q.type == "open":
        typed = con.ask("Your answer (say it aloud or type it; Enter when done, '?' to skip): ")
        if typed.strip().lower() in SKIP:
            con.say("skipped (not scored). Model answer:")
            con.say(q.model_answer, indent="  ")
            raise Skipped
        con.say("\nModel answer:")
        con.say(q.model_answer, indent="  ")
        con.say("Key points an interviewer listens for:")
        g = grade_key_points(q, self_score(q.key_points, con, tries))
        con.say(f"→ {g.score:.0%} of the key points")
        return g, typed
    ans = ""
    for _ in range(tries):
        ans = con.ask_nonempty("Answer: ")
        if ans.strip().lower() in SKIP:
            con.say(f"skipped (not scored); the answer is {q.answer_text()}")
            con.say("Why: " + q.model_answer, indent="  ")
            raise Skipped
        try:
            g = grade(q, ans)
            break
        except AnswerFormatError as e:
            con.say(f"  {e}")
    else:
        g = Grade(0.0, False, f"no readable answer; the answer is {q.answer_text()}")
    con.say(("✓ " if g.correct else "✗ ") + g.feedback)
    con.say("Why: " + q.model_answer, indent="  ")
    return g, ans


class SafeLog:
    """Appends reviews; if the history cannot be written mid-session (disk full, permissions changed), the
    records are kept and written to a fallback file at the end, with a message — never lost silently."""

    def __init__(self, log: H.JsonlLog, con: Console):
        self.log, self.con, self.pending = log, con, []

    def append(self, rec: dict) -> None:
        if not self.pending:
            try:
                self.log.append(rec)
                return
            except OSError as e:
                self.con.say(f"warning: cannot write {self.log.path} ({e.strerror or e}); keeping your answers "
                             f"and saving them elsewhere at the end")
        self.pending.append(rec)

    def flush(self) -> None:
        if not self.pending:
            return
        import tempfile
        fb = Path(tempfile.gettempdir()) / f"finetune-course-unsaved-{H.now().strftime('%Y%m%dT%H%M%S')}.jsonl"
        fb.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in self.pending))
        self.con.say(f"{len(self.pending)} answer(s) could not be added to {self.log.path}; they are saved in {fb} "
                     f"(append that file to your history once it is writable)")
        self.pending = []


def _record(log, a: Answered, mode: str) -> None:
    log.append(H.review_record(a.q.id, a.q.topic, mode, a.grade.score, a.rating, duration_s=a.seconds,
                               perm=a.perm, answer=a.answer))


def _session_salt(seed: int | None) -> str:
    return str(seed) if seed is not None else f"{random.SystemRandom().getrandbits(48):x}"


def _presented(q: Question, salt: str) -> tuple[Question, list[int] | None]:
    if not q.choices:
        return q, None
    perm = choice_order(q.id, len(q.choices), salt)
    return present(q, perm), perm


# ---- course quiz ------------------------------------------------------------------------------------
def practice(bank: Bank, questions: list[Question], con: Console, count: int = 10, seed: int | None = None,
             home=None) -> list[Answered]:
    rng = random.Random(seed)
    salt = _session_salt(seed)
    qs = list(questions)
    rng.shuffle(qs)
    qs = qs[:count]
    log = SafeLog(H.reviews_log(home), con)
    done: list[Answered] = []
    skipped = 0
    con.say(f"{len(qs)} question(s). Type '?' to skip (not scored); Ctrl-D to stop.")
    try:
        for i, q0 in enumerate(qs, 1):
            q, perm = _presented(q0, salt)
            show_question(q, con, f"Q{i}/{len(qs)} ")
            t0 = time.monotonic()
            try:
                g, typed = ask_and_grade(q, con)
            except Skipped:
                skipped += 1
                continue
            a = Answered(q, g, time.monotonic() - t0, suggested_rating(g.score), perm=perm, answer=typed)
            _record(log, a, "quiz")
            done.append(a)
    except (EndOfInput, KeyboardInterrupt):
        con.say("(stopped)")
    finally:
        log.flush()
    total = sum(a.grade.score for a in done)
    con.say(f"\nScore: {total:.1f} / {len(done)}" + (f"  ({total / len(done):.0%})" if done else "")
            + (f"; {skipped} skipped (not scored)" if skipped else ""))
    return done


# ---- course review ----------------------------------------------------------------------------------
def fmt_relative(delta: timedelta) -> str:
    """'now', 'in 10 minutes', 'in 3 hours', 'in 4 days', 'in 2 months' (rounded)."""
    s = delta.total_seconds()
    if s < 60:
        return "now" if s < 30 else "in 1 minute"
    for unit, size in (("month", 30 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size * (1 if unit == "minute" else 1.5 if unit != "month" else 1):
            n = round(s / size)
            return f"in {n} {unit}{'s' if n != 1 else ''}"
    return f"in {round(s / 60)} minutes"


def review(bank: Bank, questions: list[Question], con: Console, new_limit: int = 10, limit: int | None = None,
           home=None, at: Callable[[], datetime] = H.now, seed: int | None = None) -> list[Answered]:
    raw_log = H.reviews_log(home)
    log = SafeLog(raw_log, con)
    salt = _session_salt(seed)
    reviews = [r for r in raw_log.read(out=con.out) if r["qid"] in bank.by_id]     # design cases are not cards here
    cards = srs.replay(reviews)
    queue = srs.due_queue([q.id for q in questions], cards, at(), new_limit=new_limit)
    if limit:
        queue = queue[:limit]
    n_due = sum(1 for q in queue if q in cards)
    con.say(f"{n_due} card(s) due, {len(queue) - n_due} new. Rate each: 1 Again, 2 Hard, 3 Good, 4 Easy. "
            f"'?' skips a card (it stays due).")
    done: list[Answered] = []
    try:
        for i, qid in enumerate(queue, 1):
            q, perm = _presented(bank.by_id[qid], salt)
            show_question(q, con, f"R{i}/{len(queue)} ")
            t0 = time.monotonic()
            try:
                g, typed = ask_and_grade(q, con)
            except Skipped:
                continue
            suggestion = suggested_rating(g.score)
            rating = None
            a = Answered(q, g, time.monotonic() - t0, suggestion, perm=perm, answer=typed)
            try:
                while rating is None:
                    raw = con.ask(f"Rating 1-4 [Enter = {suggestion} {srs.RATING_NAMES[suggestion]}]: ").strip().lower()
                    names = {v.lower(): k for k, v in srs.RATING_NAMES.items()}
                    rating = suggestion if not raw else names.get(raw) or (int(raw) if raw in ("1", "2", "3", "4") else None)
                    if rating is None:
                        con.say("  type 1, 2, 3, 4 (or again/hard/good/easy)")
            except (EndOfInput, KeyboardInterrupt):
                # the answer was given: keep it, with the rating its score suggests
                _record(log, a, "review")
                done.append(a)
                con.say(f"  (saved with the suggested rating {suggestion} {srs.RATING_NAMES[suggestion]})")
                raise
            a.rating = rating
            _record(log, a, "review")
            done.append(a)
            now = at()
            card = srs.replay([r for r in raw_log.read(out=con.out) if r["qid"] == qid])[qid] if not log.pending \
                else srs.replay([H.review_record(qid, q.topic, "review", g.score, rating, at=now)])[qid]
            con.say(f"  next review {fmt_relative(card.due - now)} ({card.due.strftime('%a %d %b %H:%M')} UTC)")
    except (EndOfInput, KeyboardInterrupt):
        con.say("(stopped)")
    finally:
        log.flush()
    reviews = [r for r in raw_log.read(out=con.out) if r["qid"] in bank.by_id]
    cards = srs.replay(reviews)
    now = at()
    con.say(f"\nReviewed {len(done)} card(s). Streak: {srs.streak(reviews, now.date())} day(s).")
    left = srs.due_queue([q.id for q in questions], cards, now, new_limit=0)
    con.say(f"Still due now: {len(left)}. Forecast (seen cards falling due):")
    labels = ["today", "tomorrow"] + [f"in {i} days" for i in range(2, 7)]
    con.say("  " + "  ".join(f"{labels[i] if i < len(labels) else d}: {n}"
                             for i, (d, n) in enumerate(srs.forecast(cards, now))))
    return done


# ---- course drill -----------------------------------------------------------------------------------
def topic_weights(bank: Bank, topics: list[str], reviews: list[dict]) -> dict[str, float]:
    """Weak topics weigh more: weight = 0.2 + (1 − mean latest score of the topic's seen questions);
    a topic never practised counts as 0.5 (weight 0.7)."""
    latest = latest_scores(reviews)
    by_topic = defaultdict(list)
    for q in bank.questions:
        if q.topic in topics and q.id in latest:
            by_topic[q.topic].append(latest[q.id])
    return {t: 0.2 + (1 - (sum(by_topic[t]) / len(by_topic[t]) if by_topic[t] else 0.5)) for t in topics}


def pick_next(pool: list[Question], weights: dict[str, float], latest: dict[str, float], asked: set[str],
              rng: random.Random) -> Question | None:
    left = [q for q in pool if q.id not in asked]
    if not left:
        return None
    topics = sorted({q.topic for q in left})
    topic = rng.choices(topics, weights=[weights.get(t, 0.7) for t in topics])[0]
    cands = [q for q in left if q.topic == topic]
    # within a topic, prefer unseen and badly answered questions
    w = [1.0 + (1.0 - latest.get(q.id, 0.5)) * 2 for q in cands]
    return rng.choices(cands, weights=w)[0]


def fmt_clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 60:02d}:{s % 60:02d}"


def drill(bank: Bank, pool: list[Question], con: Console, minutes: float = 20, max_questions: int | None = None,
          seed: int | None = None, home=None, clock: Callable[[], float] = time.monotonic) -> dict:
    """A mock interview: questions weighted to weak topics until time is up, a follow-up after each answer
    (with its model answer and key points, self-scored), a score report at the end (printed and appended to
    drills.jsonl) — also after Ctrl-C or the end of input."""
    rng = random.Random(seed)
    salt = _session_salt(seed)
    rlog, dlog = H.reviews_log(home), H.drills_log(home)
    log = SafeLog(rlog, con)
    reviews = rlog.read(out=con.out)
    latest = latest_scores(reviews)
    topics = sorted({q.topic for q in pool})
    weights = topic_weights(bank, topics, reviews)
    budget = minutes * 60
    start = clock()
    started_at = H.now()
    done: list[Answered] = []
    skipped: list[str] = []
    asked: set[str] = set()
    con.say(f"Mock interview: {minutes:g} minute(s), topics: {', '.join(topics)}.")
    con.say("Answer as you would aloud; '?' skips (not scored). The interviewer may follow up.")
    ended = "time"
    try:
        while True:
            left = budget - (clock() - start)
            if left <= 0:
                con.say("\n⏱ Time's up.")
                break
            if max_questions is not None and len(done) + len(skipped) >= max_questions:
                ended = "count"
                break
            q0 = pick_next(pool, weights, latest, asked, rng)
            if q0 is None:
                ended = "bank"
                con.say("\nNo more questions in these topics.")
                break
            asked.add(q0.id)
            q, perm = _presented(q0, salt)
            show_question(q, con, f"⏱ {fmt_clock(left)} left · Q{len(done) + len(skipped) + 1} ")
            t0 = clock()
            try:
                g, typed = ask_and_grade(q, con)
            except Skipped:
                skipped.append(q.id)
                continue
            a = Answered(q, g, clock() - t0, suggested_rating(g.score), perm=perm, answer=typed)
            _record(log, a, "drill")             # saved before the follow-up: an end of input there loses nothing
            done.append(a)
            if q.follow_ups:
                f = rng.choice(q.follow_ups)
                con.say(f"\nFollow-up: {f.ask}")
                fu = {"prompt": f.ask, "answer": None, "score": None}
                a.follow_ups.append(fu)
                fu["answer"] = con.ask("Your answer: ")
                con.say("Model answer:")
                con.say(f.answer, indent="  ")
                con.say("Key points:")
                covered = self_score(f.key_points, con)
                fu["score"] = round(len(covered) / len(f.key_points), 3)
                con.say(f"→ {fu['score']:.0%} of the follow-up's key points")
    except EndOfInput:
        ended = "input"
        con.say("(stopped)")
    except KeyboardInterrupt:
        ended = "interrupted"
        con.say("\n(interrupted)")
    finally:
        log.flush()
    report = drill_report(done, started_at, clock() - start, minutes, topics, ended, skipped)
    try:
        dlog.append(report)
        where = f"Saved to {dlog.path}"
    except OSError as e:
        import tempfile
        fb = Path(tempfile.gettempdir()) / f"finetune-course-drill-{H.now().strftime('%Y%m%dT%H%M%S')}.json"
        fb.write_text(report_json(report))
        where = f"cannot write {dlog.path} ({e.strerror or e}); the report is saved in {fb}"
    show_report(report, con)
    con.say(where)
    return report


WEAK = 0.75          # a topic whose mean score in this drill is below this is named under "Work on"


def drill_report(done: list[Answered], started_at: datetime, elapsed: float, minutes: float, topics: list[str],
                 ended: str, skipped: list[str] | None = None) -> dict:
    per_topic = defaultdict(list)
    for a in done:
        per_topic[a.q.topic].append(a.grade.score)
    total = sum(a.grade.score for a in done)
    means = {t: sum(s) / len(s) for t, s in per_topic.items()}
    return {
        "v": 1, "ts": H.iso(started_at), "minutes": minutes, "elapsed_s": round(elapsed, 1), "ended": ended,
        "topics": topics, "questions": len(done), "score": round(total, 3),
        "percent": round(100 * total / len(done), 1) if done else 0.0,
        "skipped": list(skipped or []),
        "per_topic": {t: {"answered": len(s), "mean": round(sum(s) / len(s), 3)} for t, s in sorted(per_topic.items())},
        "answers": [{"qid": a.q.id, "topic": a.q.topic, "type": a.q.type, "difficulty": a.q.difficulty,
                     "score": round(a.grade.score, 3), "seconds": round(a.seconds, 1), "feedback": a.grade.feedback,
                     "perm": a.perm, "answer": a.answer, "follow_ups": a.follow_ups} for a in done],
        "weakest": sorted((t for t in means if means[t] < WEAK), key=lambda t: means[t])[:3],
        "weakest_basis": f"topics of this drill whose mean score is below {WEAK:.0%}, lowest first",
    }


def show_report(r: dict, con: Console) -> None:
    con.say("\n=== Score report ===")
    con.say(f"{r['questions']} question(s) in {fmt_clock(r['elapsed_s'])}: {r['score']:.1f} points ({r['percent']:.0f}%)"
            + (f"; {len(r['skipped'])} skipped (not scored)" if r.get("skipped") else ""))
    for t, s in r["per_topic"].items():
        con.say(f"{t:<22} {s['answered']:>2} answered  mean {s['mean']:.0%}", indent="  ")
    fus = [f for a in r["answers"] for f in a["follow_ups"] if f.get("score") is not None]
    if fus:
        con.say(f"follow-ups: {len(fus)} answered, mean {sum(f['score'] for f in fus) / len(fus):.0%} of key points",
                indent="  ")
    if r["weakest"]:
        con.say("Work on (this drill's topics below 75%, lowest first): " + ", ".join(r["weakest"])
                + "  (course quiz --topic ... / course review)")
    elif r["questions"]:
        con.say("Work on: nothing from this drill — every topic scored 75% or more (course quiz stats shows all "
                "your history).")


def report_json(r: dict) -> str:
    return json.dumps(r, indent=2, ensure_ascii=False)


# ---- course drill --design ---------------------------------------------------------------------------
def read_answer(con: Console, prompt: str) -> str:
    """A multi-line answer, ended by an empty line or '.' (an end of input ends it too, keeping what was typed)."""
    lines: list[str] = []
    first = True
    while True:
        try:
            line = con.ask(prompt if first else "")
        except (EndOfInput, KeyboardInterrupt):
            if lines:
                return "\n".join(lines)
            raise
        first = False
        if line.strip() in ("", "."):
            if lines or line.strip() == ".":
                return "\n".join(lines)
            con.say("  (empty answer: type your design, or '.' to reveal the rubric without one)")
            first = True
            continue
        lines.append(line)


def design_drill(cases: list, con: Console, case_id: str | None = None, minutes: float | None = None,
                 seed: int | None = None, home=None, clock: Callable[[], float] = time.monotonic) -> dict | None:
    """One system-design case against a timer: scenario and constraints, a typed (or spoken) answer, then the
    computed numbers, the model answer and the weighted rubric; the learner ticks the rubric points covered.
    The weighted score goes to reviews.jsonl (mode 'design') and the full report to drills.jsonl."""
    rlog, dlog = H.reviews_log(home), H.drills_log(home)
    by_id = {c.id: c for c in cases}
    if case_id:
        if case_id not in by_id:
            raise KeyError(f"no design case {case_id!r}; cases: {', '.join(sorted(by_id))}")
        case = by_id[case_id]
    else:
        latest = latest_scores(rlog.read(out=con.out))
        rng = random.Random(seed)
        case = rng.choices(cases, weights=[1.0 + (1.0 - latest.get(c.id, 0.5)) * 2 for c in cases])[0]
    budget = (minutes or case.minutes) * 60
    con.say(f"\n=== System design · {case.title} ===  [{case.id} · difficulty {STARS[case.difficulty]} · day {case.day}]")
    con.say(case.scenario)
    con.say("Constraints:")
    for k in case.constraints:
        con.say(f"- {k.name}: {format_number(k.value) if isinstance(k.value, (int, float)) else k.value} {k.unit}".rstrip(),
                indent="  ")
    con.say(f"\n⏱ You have {fmt_clock(budget)}. Work out the numbers, then type your design (or say it aloud and type "
            f"a summary). End with an empty line or '.'.")
    start, started_at = clock(), H.now()
    answer, ended = "", "answered"
    try:
        answer = read_answer(con, "> ")
    except EndOfInput:
        ended = "input"
    except KeyboardInterrupt:
        ended = "interrupted"
    elapsed = clock() - start
    con.say(f"\n⏱ {fmt_clock(elapsed)} of {fmt_clock(budget)}" + ("  (over time)" if elapsed > budget else ""))
    con.say("The numbers (computed by the course's calculators):")
    for n in case.numbers:
        con.say(f"- {n.name}: {case.number_text(n)}", indent="  ")
    con.say("\nModel answer:")
    con.say(case.model_answer, indent="  ")
    con.say(f"\nRubric (weights, total {case.total_weight}):")
    points = [f"[{p.weight}] {p.point}" for p in case.rubric]
    covered: list[int] = []
    if ended == "answered":
        try:
            covered = self_score(points, con)
        except (EndOfInput, KeyboardInterrupt):
            ended = "input"
    else:
        for i, p in enumerate(points, 1):
            con.say(f"{i}. {p}", indent="  ")
    score = case.score(covered)
    report = {"v": 1, "kind": "design", "ts": H.iso(started_at), "case": case.id, "title": case.title,
              "minutes": budget / 60, "elapsed_s": round(elapsed, 1), "over_time": elapsed > budget, "ended": ended,
              "answer": answer, "covered": covered, "score": round(score, 3),
              "rubric": [{"point": p.point, "weight": p.weight, "covered": i in covered}
                         for i, p in enumerate(case.rubric, 1)],
              "answers": []}
    if ended == "answered" or answer:
        SafeLog(rlog, con).append(H.review_record(case.id, "system_design", "design", score,
                                                  suggested_rating(score), duration_s=elapsed, answer=answer))
    try:
        dlog.append(report)
        where = f"Saved to {dlog.path}"
    except OSError as e:
        where = f"cannot write {dlog.path} ({e.strerror or e})"
    con.say(f"\nScore: {score:.0%} of the rubric's weight" + (" (not scored: no answer)" if not covered and ended != "answered" else ""))
    missed = [p.point for i, p in enumerate(case.rubric, 1) if i not in covered]
    if missed and covered:
        con.say("Missed (heaviest first): " + "; ".join(
            p.point for p in sorted((p for i, p in enumerate(case.rubric, 1) if i not in covered),
                                    key=lambda p: -p.weight)[:3]))
    con.say(where)
    return report
