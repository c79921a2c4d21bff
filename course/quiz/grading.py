"""Grading one answer: mcq / multi / numeric / short automatically, open questions against key points.

A grade is a score in [0, 1] plus a one-line verdict; :func:`suggested_rating` maps it to an FSRS rating
(1 Again, 2 Hard, 3 Good, 4 Easy).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

from .schema import LETTERS, Question, format_number


@dataclass
class Grade:
    score: float          # 0..1
    correct: bool
    feedback: str


class AnswerFormatError(ValueError):
    """The answer cannot be read (e.g. 'abc' for a numeric question); the user may try again."""


_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def parse_number(text: str) -> float:
    """'41,943,040', '41_943_040', '4.19e7', '41.9M', '0.127', '1/8' → float."""
    s = text.strip().replace(",", "").replace("_", "").replace(" ", "")
    if not s:
        raise AnswerFormatError("empty answer")
    m = re.fullmatch(r"([-+]?\d+)/(\d+)", s)
    if m:
        return int(m.group(1)) / int(m.group(2))
    mult = 1.0
    if s[-1] in _SUFFIX and len(s) > 1 and (s[-2].isdigit() or s[-2] == "."):
        mult, s = _SUFFIX[s[-1]], s[:-1]
    try:
        return float(s) * mult
    except ValueError:
        raise AnswerFormatError(f"{text!r} is not a number (write e.g. 41943040, 41,943,040, 41.9M or 4.19e7)") from None


def normalize(text: str) -> str:
    """Case-, accent-, punctuation- and whitespace-blind form used to compare short answers."""
    t = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    t = re.sub(r"[^a-z0-9]+", " ", t)
    return " ".join(t.split())


def parse_letters(text: str, n_choices: int) -> list[str]:
    """'b', 'A C', 'a,c', 'AC' → sorted distinct letters; raises on anything but letters of the choices."""
    valid = LETTERS[:n_choices]
    joined = "".join(re.split(r"[\s,;/+&]+|\band\b", text.strip().upper()))
    if not joined or any(c not in valid for c in joined):
        raise AnswerFormatError(f"answer with the letter(s) of your choice among {', '.join(valid)} (e.g. B or A C)")
    return sorted(set(joined))


def grade(q: Question, answer: str) -> Grade:
    """Grade an auto-gradable answer (raises :class:`AnswerFormatError` on unreadable input)."""
    if q.type == "mcq":
        got = parse_letters(answer, len(q.choices))
        if len(got) != 1:
            raise AnswerFormatError("choose exactly one letter")
        ok = got == q.answer_letters
        return Grade(float(ok), ok, "correct" if ok else f"the answer is {q.answer_text()}")
    if q.type == "multi":
        got, want = set(parse_letters(answer, len(q.choices))), set(q.answer_letters)
        ok = got == want
        # partial credit: right picks minus wrong picks, over the number of right choices (floored at 0)
        score = 1.0 if ok else max(0.0, (len(got & want) - len(got - want)) / len(want))
        fb = "correct" if ok else f"the answer is {', '.join(sorted(want))}: {q.answer_text()}"
        return Grade(score, ok, fb)
    if q.type == "numeric":
        got = parse_number(answer)
        want = q.value
        tol = q.tolerance
        rel, abs_ = (tol.rel, tol.abs) if tol else (0.01, 0.0)
        ok = math.isclose(got, want, rel_tol=rel, abs_tol=abs_)
        fb = "correct" if ok else f"expected {format_number(want)} {q.unit or ''} (±{rel:.0%}), got {format_number(got)}"
        return Grade(float(ok), ok, fb.strip())
    if q.type == "short":
        if not answer.strip():
            raise AnswerFormatError("empty answer")
        ok = normalize(answer) in {normalize(a) for a in q.accept}
        return Grade(float(ok), ok, "correct" if ok else f"expected: {q.accept[0]}")
    raise ValueError("open questions are self-graded: use grade_key_points")


def parse_key_points(text: str, n: int) -> list[int]:
    """'1 3 4', '1,3', 'all', '' (none) → sorted 1-based indices of the key points the answer covered."""
    s = text.strip().lower()
    if s in ("", "none", "0", "-"):
        return []
    if s in ("all", "a", "*"):
        return list(range(1, n + 1))
    try:
        idx = sorted({int(x) for x in re.split(r"[\s,;]+", s) if x})
    except ValueError:
        raise AnswerFormatError("list the numbers of the key points you covered, e.g. 1 3 4, or 'all' / 'none'") from None
    bad = [i for i in idx if not 1 <= i <= n]
    if bad:
        raise AnswerFormatError(f"key point numbers run from 1 to {n}")
    return idx


def grade_key_points(q: Question, covered: list[int]) -> Grade:
    n = len(q.key_points)
    score = len(covered) / n
    missed = [q.key_points[i - 1] for i in range(1, n + 1) if i not in covered]
    fb = "all key points covered" if not missed else "missed: " + "; ".join(missed)
    return Grade(score, score >= 0.75, fb)


def suggested_rating(score: float) -> int:
    """Score → FSRS rating: below 0.5 Again (1), below 0.75 Hard (2), else Good (3). Easy (4) stretches the
    interval a lot, so it is only ever the learner's own choice in ``course review``."""
    if score < 0.5:
        return 1
    if score < 0.75:
        return 2
    return 3
