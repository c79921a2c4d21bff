"""The schema of one interview question (``quizzes/<topic>.yaml`` holds a list of them).

A question is one of five types:

- ``mcq``      one right choice: ``choices`` (2–6 strings) and ``answer`` (a letter, ``"B"``);
- ``multi``    several right choices: ``choices`` and ``answer`` (a list of letters, ``["A", "C"]``);
- ``numeric``  a number computed by the course's own calculators: ``compute`` (never a typed value),
               ``unit``, ``tolerance`` (relative, default 1%); ``{value}`` in its model answer is replaced by the
               computed value, so the answer is never typed;
- ``short``    a word or phrase: ``accept`` (accepted answers, compared case- and punctuation-blind);
- ``open``     explained aloud or in prose, self-graded against ``key_points``.

Every question carries ``model_answer`` and ``key_points`` (what an interviewer listens for), the
``day`` whose lesson teaches it and ``references`` (a paper with its year, or a lesson / the seed).
"""

from __future__ import annotations

import re
import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TYPES = ("mcq", "multi", "numeric", "short", "open")
LETTERS = string.ascii_uppercase
ID_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
YEAR_RE = re.compile(r"\b(19|20)\d{2}\b")
REFERENCE_PREFIXES = ("Lesson", "Seed")


class Compute(BaseModel):
    """How a numeric answer is computed: ``fn`` (a dotted path inside ``course``, or ``worked_examples.<name>``
    for a function of ``quizzes/worked_examples.py``), its ``args``/``kwargs``
    (a nested ``{fn: ..., args: ..., kwargs: ...}`` mapping is itself computed first), then optionally
    ``pick`` (an attribute or key of the result, dotted), ``multiply`` (e.g. bytes per parameter, or a count)
    and ``divide`` (a unit conversion, e.g. '2**30'). Both may be arithmetic on number literals only."""

    model_config = ConfigDict(extra="forbid")

    fn: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    pick: str | None = None
    multiply: float | str | None = None
    divide: float | str | None = None

    @field_validator("fn")
    @classmethod
    def _inside_course(cls, v: str) -> str:
        if not (re.fullmatch(r"course(\.[A-Za-z_][A-Za-z0-9_]*)+", v)
                or re.fullmatch(r"worked_examples\.[A-Za-z][A-Za-z0-9_]*", v)):
            raise ValueError("compute.fn must be a dotted path inside the course package or "
                             f"worked_examples.<name> (quizzes/worked_examples.py), got {v!r}")
        return v


class Tolerance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rel: float = Field(0.01, ge=0, le=0.5)
    abs: float = Field(0.0, ge=0)


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str
    topic: str
    tags: list[str] = Field(default_factory=list)
    difficulty: int = Field(ge=1, le=3)
    type: Literal["mcq", "multi", "numeric", "short", "open"]
    prompt: str = Field(min_length=10)
    choices: list[str] | None = None
    answer: str | list[str] | None = None
    compute: Compute | None = None
    unit: str | None = None
    tolerance: Tolerance | None = None
    accept: list[str] | None = None
    model_answer: str = Field(min_length=20)
    key_points: list[str] = Field(min_length=1)
    follow_ups: list[str] = Field(default_factory=list)
    references: list[str] = Field(min_length=1)
    day: int = Field(ge=1, le=7)

    # Filled by the loader, not written in YAML.
    value: float | None = Field(default=None, exclude=True)
    source: str | None = Field(default=None, exclude=True)     # "quizzes/lora.yaml:12"

    @field_validator("id")
    @classmethod
    def _id_form(cls, v: str) -> str:
        if not ID_RE.fullmatch(v):
            raise ValueError(f"id {v!r} must be lowercase letters/digits joined by '-' or '_'")
        return v

    @field_validator("tags")
    @classmethod
    def _tags_form(cls, v: list[str]) -> list[str]:
        for t in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", t):
                raise ValueError(f"tag {t!r} must be lowercase, without spaces (letters, digits, '-', '_')")
        return v

    @field_validator("references")
    @classmethod
    def _reference_form(cls, v: list[str]) -> list[str]:
        for r in v:
            if not (YEAR_RE.search(r) or r.startswith(REFERENCE_PREFIXES)):
                raise ValueError(f"reference {r!r} needs a year (a paper: 'Hu et al. 2021 (LoRA)') "
                                 f"or to start with 'Lesson' or 'Seed'")
        return v

    @model_validator(mode="after")
    def _fields_of_type(self) -> "Question":
        t = self.type
        needs = {"mcq": {"choices", "answer"}, "multi": {"choices", "answer"}, "numeric": {"compute", "unit"},
                 "short": {"accept"}, "open": set()}[t]
        allowed = needs | ({"tolerance"} if t == "numeric" else set())
        for f in ("choices", "answer", "compute", "unit", "tolerance", "accept"):
            present = getattr(self, f) is not None
            if f in needs and not present:
                raise ValueError(f"{f}: a {t} question needs '{f}'")
            if present and f not in allowed:
                raise ValueError(f"{f}: a {t} question has no '{f}'")
        if t in ("mcq", "multi"):
            if not 2 <= len(self.choices) <= 6:
                raise ValueError("choices: give 2 to 6 choices")
            if len(set(self.choices)) != len(self.choices):
                raise ValueError("choices: two choices are identical")
            valid = LETTERS[: len(self.choices)]
            if t == "mcq":
                if not isinstance(self.answer, str) or self.answer not in valid:
                    raise ValueError(f"answer: an mcq answer is one letter among {', '.join(valid)}")
            else:
                if (not isinstance(self.answer, list) or not self.answer
                        or any(a not in valid for a in self.answer) or len(set(self.answer)) != len(self.answer)):
                    raise ValueError(f"answer: a multi answer is a list of distinct letters among {', '.join(valid)}")
        if t == "short" and not self.accept:
            raise ValueError("accept: list at least one accepted answer")
        return self

    # ---- conveniences -------------------------------------------------------------------------------
    @property
    def answer_letters(self) -> list[str]:
        if self.type == "mcq":
            return [self.answer]
        if self.type == "multi":
            return list(self.answer)
        return []

    def answer_text(self) -> str:
        """The expected answer in one line (what a grader shows after a wrong answer)."""
        if self.type in ("mcq", "multi"):
            return "; ".join(f"{a}) {self.choices[LETTERS.index(a)]}" for a in self.answer_letters)
        if self.type == "numeric":
            return f"{format_number(self.value)} {self.unit}".strip()
        if self.type == "short":
            return self.accept[0]
        return self.model_answer


def format_number(x: float | None) -> str:
    if x is None:
        return "?"
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.1f}"
    return f"{x:.4g}"
