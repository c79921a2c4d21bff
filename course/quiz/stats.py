"""Mastery per topic and reviews per day, computed from the history; a matplotlib PNG of both."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

from .history import parse_time
from .loader import Bank


def latest_scores(reviews: list[dict]) -> dict[str, float]:
    """The most recent score of each question."""
    out: dict[str, tuple] = {}
    for r in reviews:
        t = parse_time(r["ts"])
        if r["qid"] not in out or t >= out[r["qid"]][0]:
            out[r["qid"]] = (t, float(r["score"]))
    return {q: s for q, (_, s) in out.items()}


def mastery(bank: Bank, reviews: list[dict]) -> dict[str, dict]:
    """Per topic: questions, seen, and mastery = mean latest score over ALL its questions (unseen count 0),
    so mastery grows only by answering more of the topic well."""
    latest = latest_scores(reviews)
    out = {}
    by_topic = defaultdict(list)
    for q in bank.questions:
        by_topic[q.topic].append(q.id)
    for topic, ids in sorted(by_topic.items()):
        seen = [latest[i] for i in ids if i in latest]
        out[topic] = {"questions": len(ids), "seen": len(seen),
                      "mastery": sum(seen) / len(ids),
                      "accuracy_seen": (sum(seen) / len(seen)) if seen else None}
    return out


def reviews_per_day(reviews: list[dict], today: date, days: int = 30) -> list[tuple[date, int]]:
    c = Counter(parse_time(r["ts"]).date() for r in reviews)
    start = today - timedelta(days=days - 1)
    return [(start + timedelta(days=i), c[start + timedelta(days=i)]) for i in range(days)]


def table(m: dict[str, dict]) -> str:
    lines = [f"{'topic':<22} {'questions':>9} {'seen':>5} {'mastery':>8}  "]
    for topic, s in m.items():
        bar = "#" * round(s["mastery"] * 20)
        lines.append(f"{topic:<22} {s['questions']:>9} {s['seen']:>5} {s['mastery']:>8.0%}  {bar}")
    return "\n".join(lines)


def plot(m: dict[str, dict], per_day: list[tuple[date, int]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1.2, 1]})
    topics = list(m)
    a.barh(topics, [m[t]["mastery"] * 100 for t in topics], color="tab:blue")
    a.set_xlim(0, 100)
    a.set_xlabel("mastery (%): mean latest score over all questions of the topic")
    a.invert_yaxis()
    a.set_title("Mastery per topic")
    b.bar([d.strftime("%m-%d") for d, _ in per_day], [n for _, n in per_day], color="tab:green")
    b.set_title(f"Reviews per day (last {len(per_day)} days)")
    b.set_ylabel("answers graded")
    b.tick_params(axis="x", rotation=90, labelsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
