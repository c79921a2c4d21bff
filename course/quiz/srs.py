"""Spaced repetition with FSRS (the ``fsrs`` package): card states are rebuilt by replaying the append-only
review history, so the history is the single source of truth and nothing is stored twice.

Each question is one card, whose id is a stable hash of the question id. Fuzzing is off, so the same
history always gives the same schedule.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import date, datetime, timedelta, timezone

from fsrs import Card, Rating, Scheduler

from .history import parse_time

RATINGS = {1: Rating.Again, 2: Rating.Hard, 3: Rating.Good, 4: Rating.Easy}
RATING_NAMES = {1: "Again", 2: "Hard", 3: "Good", 4: "Easy"}


def card_id(qid: str) -> int:
    return int.from_bytes(hashlib.sha1(qid.encode()).digest()[:6], "big")


def scheduler() -> Scheduler:
    return Scheduler(enable_fuzzing=False)


def replay(reviews: list[dict], sched: Scheduler | None = None) -> dict[str, Card]:
    """Card state of every reviewed question after applying its reviews in time order."""
    sched = sched or scheduler()
    cards: dict[str, Card] = {}
    for r in sorted(reviews, key=lambda r: parse_time(r["ts"])):     # sorted() is stable: file order on ties
        qid = r["qid"]
        card = cards.get(qid)
        if card is None:
            card = Card(card_id=card_id(qid), due=parse_time(r["ts"]))
        t = parse_time(r["ts"])
        if card.last_review is not None and t < card.last_review:
            t = card.last_review
        cards[qid], _ = sched.review_card(card, RATINGS[int(r["rating"])], review_datetime=t)
    return cards


def due_queue(qids: list[str], cards: dict[str, Card], at: datetime, new_limit: int = 10) -> list[str]:
    """Questions to review now: every seen card that is due (most overdue first), then up to ``new_limit``
    never-seen questions in bank order."""
    due = sorted((cards[q].due, q) for q in qids if q in cards and cards[q].due <= at)
    new = [q for q in qids if q not in cards][:new_limit]
    return [q for _, q in due] + new


def forecast(cards: dict[str, Card], start: datetime, days: int = 7) -> list[tuple[date, int]]:
    """How many seen cards fall due on each of the next ``days`` days (overdue ones count today)."""
    c = Counter()
    first = start.date()
    for card in cards.values():
        d = max(card.due.astimezone(timezone.utc).date(), first)
        if (d - first).days < days:
            c[d] += 1
    return [(first + timedelta(days=i), c[first + timedelta(days=i)]) for i in range(days)]


def streak(reviews: list[dict], today: date) -> int:
    """Consecutive days with at least one review, ending today (or yesterday, if today has none yet)."""
    days = {parse_time(r["ts"]).date() for r in reviews}
    d = today if today in days else today - timedelta(days=1)
    n = 0
    while d in days:
        n += 1
        d -= timedelta(days=1)
    return n
