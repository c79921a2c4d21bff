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
from datetime import datetime
from typing import Callable, TextIO

from . import history as H
from . import srs
from .grading import AnswerFormatError, Grade, grade, grade_key_points, parse_key_points, suggested_rating
from .loader import Bank
from .schema import LETTERS, Question
from .stats import latest_scores

SKIP = {"?", "skip", "idk", "pass"}
STARS = {1: "*", 2: "**", 3: "***"}


class EndOfInput(Exception):
    """The answer stream ended (Ctrl-D, or the end of a scripted input)."""


class Console:
    def __init__(self, inp: TextIO | None = None, out: TextIO | None = None, width: int = 96):
        self.inp, self.out, self.width = inp or sys.stdin, out or sys.stdout, width

    def say(self, text: str = "", indent: str = "") -> None:
        for para in str(text).split("\n"):
            if not para.strip():
                print("", file=self.out)
                continue
            print(textwrap.fill(para, self.width, initial_indent=indent, subsequent_indent=indent + "  "
                                if para.lstrip().startswith(("-", "*", "1", "2", "3", "4", "5", "6", "7", "8", "9"))
                                else indent), file=self.out)

    def ask(self, prompt: str) -> str:
        if self.inp is sys.stdin and sys.stdin.isatty():
            try:
                return input(prompt)
            except EOFError:
                raise EndOfInput from None
        self.out.write(prompt)
        self.out.flush()
        line = self.inp.readline()
        if not line:
            print("", file=self.out)
            raise EndOfInput
        line = line.rstrip("\n")
        if not (self.inp is sys.stdin and sys.stdin.isatty()):
            print(line, file=self.out)       # echo scripted answers, so a transcript reads like a session
        return line


@dataclass
class Answered:
    q: Question
    grade: Grade
    seconds: float
    rating: int
    follow_ups: list[dict] = field(default_factory=list)


def show_question(q: Question, con: Console, number: str = "") -> None:
    con.say(f"\n{number}[{q.topic} · difficulty {STARS[q.difficulty]} · {q.type} · day {q.day}]  {q.id}")
    con.say(q.prompt)
    if q.choices:
        con.say("(choose one)" if q.type == "mcq" else "(choose all that apply, e.g. A C)")
        for L, c in zip(LETTERS, q.choices):
            con.say(f"{L}) {c}", indent="  ")
    if q.type == "numeric":
        con.say(f"(answer in {q.unit}; 41,943,040 / 41.9M / 4.19e7 all work)")


def ask_and_grade(q: Question, con: Console, tries: int = 3) -> Grade:
    """Ask ``q``, read an answer, grade it (auto) or let the learner tick key points (open)."""
    if q.type == "open":
        con.ask("Your answer (say it aloud or type it; Enter when done): ")
        con.say("\nModel answer:")
        con.say(q.model_answer, indent="  ")
        con.say("Key points an interviewer listens for:")
        for i, k in enumerate(q.key_points, 1):
            con.say(f"{i}. {k}", indent="  ")
        for _ in range(tries):
            try:
                covered = parse_key_points(con.ask("Which did you cover? (e.g. 1 3 4, all, none): "), len(q.key_points))
                g = grade_key_points(q, covered)
                con.say(f"→ {g.score:.0%} of the key points")
                return g
            except AnswerFormatError as e:
                con.say(f"  {e}")
        return grade_key_points(q, [])
    for _ in range(tries):
        ans = con.ask("Answer: ")
        if ans.strip().lower() in SKIP or not ans.strip():
            g = Grade(0.0, False, f"skipped; the answer is {q.answer_text()}")
            break
        try:
            g = grade(q, ans)
            break
        except AnswerFormatError as e:
            con.say(f"  {e}")
    else:
        g = Grade(0.0, False, f"no readable answer; the answer is {q.answer_text()}")
    con.say(("✓ " if g.correct else "✗ ") + g.feedback)
    con.say("Why: " + q.model_answer, indent="  ")
    return g


def _record(log: H.JsonlLog, a: Answered, mode: str) -> None:
    log.append(H.review_record(a.q.id, a.q.topic, mode, a.grade.score, a.rating, duration_s=a.seconds))


# ---- course quiz ------------------------------------------------------------------------------------
def practice(bank: Bank, questions: list[Question], con: Console, count: int = 10, seed: int | None = None,
             home=None) -> list[Answered]:
    rng = random.Random(seed)
    qs = list(questions)
    rng.shuffle(qs)
    qs = qs[:count]
    log = H.reviews_log(home)
    done: list[Answered] = []
    con.say(f"{len(qs)} question(s). Type '?' to skip; Ctrl-D to stop.")
    try:
        for i, q in enumerate(qs, 1):
            show_question(q, con, f"Q{i}/{len(qs)} ")
            t0 = time.monotonic()
            g = ask_and_grade(q, con)
            a = Answered(q, g, time.monotonic() - t0, suggested_rating(g.score))
            _record(log, a, "quiz")
            done.append(a)
    except EndOfInput:
        con.say("(stopped)")
    total = sum(a.grade.score for a in done)
    con.say(f"\nScore: {total:.1f} / {len(done)}" + (f"  ({total / len(done):.0%})" if done else ""))
    return done


# ---- course review ----------------------------------------------------------------------------------
def review(bank: Bank, questions: list[Question], con: Console, new_limit: int = 10, limit: int | None = None,
           home=None, at: Callable[[], datetime] = H.now) -> list[Answered]:
    log = H.reviews_log(home)
    reviews = log.read(out=con.out)
    cards = srs.replay(reviews)
    queue = srs.due_queue([q.id for q in questions], cards, at(), new_limit=new_limit)
    if limit:
        queue = queue[:limit]
    n_due = sum(1 for q in queue if q in cards)
    con.say(f"{n_due} card(s) due, {len(queue) - n_due} new. Rate each: 1 Again, 2 Hard, 3 Good, 4 Easy.")
    done: list[Answered] = []
    try:
        for i, qid in enumerate(queue, 1):
            q = bank.by_id[qid]
            show_question(q, con, f"R{i}/{len(queue)} ")
            t0 = time.monotonic()
            g = ask_and_grade(q, con)
            suggestion = suggested_rating(g.score)
            rating = None
            while rating is None:
                raw = con.ask(f"Rating 1-4 [Enter = {suggestion} {srs.RATING_NAMES[suggestion]}]: ").strip().lower()
                names = {v.lower(): k for k, v in srs.RATING_NAMES.items()}
                rating = suggestion if not raw else names.get(raw) or (int(raw) if raw in ("1", "2", "3", "4") else None)
                if rating is None:
                    con.say("  type 1, 2, 3, 4 (or again/hard/good/easy)")
            a = Answered(q, g, time.monotonic() - t0, rating)
            _record(log, a, "review")
            done.append(a)
            card = srs.replay([r for r in log.read(out=con.out) if r["qid"] == qid])[qid]
            con.say(f"  next review: {card.due.strftime('%Y-%m-%d %H:%M')} UTC")
    except EndOfInput:
        con.say("(stopped)")
    reviews = log.read(out=con.out)
    cards = srs.replay(reviews)
    now = at()
    con.say(f"\nReviewed {len(done)} card(s). Streak: {srs.streak(reviews, now.date())} day(s).")
    left = srs.due_queue([q.id for q in questions], cards, now, new_limit=0)
    con.say(f"Still due now: {len(left)}. Forecast (seen cards falling due):")
    con.say("  " + "  ".join(f"{d.strftime('%a %m-%d')}: {n}" for d, n in srs.forecast(cards, now)))
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
    """A mock interview: questions weighted to weak topics until time is up, follow-ups after each answer,
    a score report at the end (printed and appended to drills.jsonl)."""
    rng = random.Random(seed)
    rlog, dlog = H.reviews_log(home), H.drills_log(home)
    reviews = rlog.read(out=con.out)
    latest = latest_scores(reviews)
    topics = sorted({q.topic for q in pool})
    weights = topic_weights(bank, topics, reviews)
    budget = minutes * 60
    start = clock()
    started_at = H.now()
    done: list[Answered] = []
    asked: set[str] = set()
    con.say(f"Mock interview: {minutes:g} minute(s), topics: {', '.join(topics)}.")
    con.say("Answer as you would aloud; '?' skips. The interviewer may follow up.")
    ended = "time"
    try:
        while True:
            left = budget - (clock() - start)
            if left <= 0:
                con.say("\n⏱ Time's up.")
                break
            if max_questions is not None and len(done) >= max_questions:
                ended = "count"
                break
            q = pick_next(pool, weights, latest, asked, rng)
            if q is None:
                ended = "bank"
                con.say("\nNo more questions in these topics.")
                break
            asked.add(q.id)
            show_question(q, con, f"⏱ {fmt_clock(left)} left · Q{len(done) + 1} ")
            t0 = clock()
            g = ask_and_grade(q, con)
            fups = []
            if q.follow_ups:
                f = rng.choice(q.follow_ups)
                con.say(f"\nFollow-up: {f}")
                fups.append({"prompt": f, "answer": con.ask("Your answer: ")})
            a = Answered(q, g, clock() - t0, suggested_rating(g.score), fups)
            _record(rlog, a, "drill")
            done.append(a)
    except EndOfInput:
        ended = "input"
        con.say("(stopped)")
    report = drill_report(done, started_at, clock() - start, minutes, topics, ended)
    dlog.append(report)
    show_report(report, con)
    con.say(f"Saved to {dlog.path}")
    return report


def drill_report(done: list[Answered], started_at: datetime, elapsed: float, minutes: float, topics: list[str],
                 ended: str) -> dict:
    per_topic = defaultdict(list)
    for a in done:
        per_topic[a.q.topic].append(a.grade.score)
    total = sum(a.grade.score for a in done)
    return {
        "v": 1, "ts": H.iso(started_at), "minutes": minutes, "elapsed_s": round(elapsed, 1), "ended": ended,
        "topics": topics, "questions": len(done), "score": round(total, 3),
        "percent": round(100 * total / len(done), 1) if done else 0.0,
        "per_topic": {t: {"answered": len(s), "mean": round(sum(s) / len(s), 3)} for t, s in sorted(per_topic.items())},
        "answers": [{"qid": a.q.id, "topic": a.q.topic, "type": a.q.type, "difficulty": a.q.difficulty,
                     "score": round(a.grade.score, 3), "seconds": round(a.seconds, 1), "feedback": a.grade.feedback,
                     "follow_ups": a.follow_ups} for a in done],
        "weakest": sorted(per_topic, key=lambda t: sum(per_topic[t]) / len(per_topic[t]))[:3],
    }


def show_report(r: dict, con: Console) -> None:
    con.say("\n=== Score report ===")
    con.say(f"{r['questions']} question(s) in {fmt_clock(r['elapsed_s'])}: {r['score']:.1f} points ({r['percent']:.0f}%)")
    for t, s in r["per_topic"].items():
        con.say(f"{t:<22} {s['answered']:>2} answered  mean {s['mean']:.0%}", indent="  ")
    if r["weakest"]:
        con.say("Work on: " + ", ".join(r["weakest"]) + "  (course quiz --topic ... / course review)")


def report_json(r: dict) -> str:
    return json.dumps(r, indent=2, ensure_ascii=False)
