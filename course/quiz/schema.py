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


# The only functions a ``compute:`` may call (nested ones included). Anything else — ``course.paths.Path``,
# ``os.system``, a class, a method — is a validation error, reported before any function is called. A new
# calculator is added here on purpose, in review, never reached by an arbitrary dotted path.
ALLOWED_COMPUTE: frozenset[str] = frozenset({
    # the memory calculator (course/memory.py)
    "course.memory.model_spec", "course.memory.count_params", "course.memory.projection_params",
    "course.memory.lora_params", "course.memory.nf4_bits_per_param", "course.memory.optimizer_bytes_per_param",
    "course.memory.weight_bytes", "course.memory.estimate", "course.memory.activation_elements_per_layer",
    # small quiz helpers (course/quiz/calc.py)
    "course.quiz.calc.ia3_params", "course.quiz.calc.scale_overhead_bits",
    "course.quiz.calc.double_quant_overhead_bits", "course.quiz.calc.double_quant_saving_bits",
    "course.quiz.calc.static_training_bytes", "course.quiz.calc.bits_to_gb",
    "course.quiz.calc.effective_batch_size", "course.quiz.calc.optimizer_steps", "course.quiz.calc.warmup_steps",
    "course.quiz.calc.best_of_n_kl", "course.quiz.calc.at_least_one",
    "course.quiz.calc.dora_magnitude_params", "course.quiz.calc.prompt_tuning_params",
    "course.quiz.calc.prefix_tuning_params", "course.quiz.calc.dare_rescale", "course.quiz.calc.kv_cache_bytes",
    "course.quiz.calc.adapter_bytes", "course.quiz.calc.adapters_that_fit", "course.quiz.calc.kv_tokens_that_fit",
    "course.quiz.calc.serving_budget_bytes", "course.quiz.calc.training_flops", "course.quiz.calc.gpu_hours",
    "course.quiz.calc.cost_usd", "course.quiz.calc.decode_tokens_per_s_bound",
    "course.quiz.calc.pass_at_k", "course.quiz.calc.simpo_margin",
    "course.quiz.calc.neg_log_sigmoid", "course.quiz.calc.kto_desirable_loss", "course.quiz.calc.rope_scale_factor",
    "course.quiz.calc.ntk_rope_base", "course.quiz.calc.rope_wavelength", "course.quiz.calc.padding_fraction",
    "course.quiz.calc.api_cost_usd", "course.quiz.calc.sample_size_for_margin", "course.quiz.calc.generation_tokens",
    # worked examples that are also lesson answers (quizzes/worked_examples.py, loaded by path)
    "worked_examples.full_matrix_params", "worked_examples.lora_matrix_params", "worked_examples.lora_compression",
    "worked_examples.lora_scaling", "worked_examples.lora_extra_flops_fraction", "worked_examples.sigmoid",
    "worked_examples.bradley_terry_prob", "worked_examples.bradley_terry_loss", "worked_examples.dpo_loss",
    "worked_examples.log_odds", "worked_examples.orpo_ratio_loss", "worked_examples.ppo_clipped_objective",
    "worked_examples.ipo_loss", "worked_examples.grpo_advantage",
})
PICK_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")


def _check_fn(v: str, where: str = "fn") -> str:
    if v not in ALLOWED_COMPUTE:
        raise ValueError(f"{where} {v!r} is not an allowed calculator; compute may only call the functions listed "
                         f"in course.quiz.schema.ALLOWED_COMPUTE (course.memory, course.quiz.calc, worked_examples)")
    return v


def _check_nested(x: Any, where: str) -> None:
    """Validate every nested ``{fn: ...}`` inside args/kwargs before anything is called."""
    if isinstance(x, dict) and "fn" in x:
        extra = set(x) - {"fn", "args", "kwargs", "pick", "multiply", "divide"}
        if extra:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))} in a nested compute")
        if not isinstance(x["fn"], str):
            raise ValueError(f"{where}.fn must be a string")
        _check_fn(x["fn"], f"{where}.fn")
        if x.get("pick") is not None:
            _check_pick(x["pick"], f"{where}.pick")
        for i, a in enumerate(x.get("args") or []):
            _check_nested(a, f"{where}.args.{i}")
        for k, a in (x.get("kwargs") or {}).items():
            _check_nested(a, f"{where}.kwargs.{k}")
    elif isinstance(x, dict):
        for k, a in x.items():
            _check_nested(a, f"{where}.{k}")
    elif isinstance(x, list):
        for i, a in enumerate(x):
            _check_nested(a, f"{where}.{i}")


def _check_pick(v: Any, where: str = "pick") -> str:
    if not isinstance(v, str) or not PICK_RE.fullmatch(v):
        raise ValueError(f"{where} {v!r} must be dotted public field names (e.g. components.weights)")
    return v


def check_references(refs: list[str]) -> list[str]:
    """Each reference names a paper (with its year) or a lesson / seed section; shared by questions and design cases."""
    for r in refs:
        if not (YEAR_RE.search(r) or r.startswith(REFERENCE_PREFIXES)):
            raise ValueError(f"reference {r!r} needs a year (a paper: 'Hu et al. 2021 (LoRA)') "
                             f"or to start with 'Lesson' or 'Seed'")
    return refs


class Compute(BaseModel):
    """How a numeric answer is computed: ``fn`` (one of :data:`ALLOWED_COMPUTE`: a function of
    ``course.memory``, ``course.quiz.calc`` or ``quizzes/worked_examples.py``), its ``args``/``kwargs``
    (a nested ``{fn: ..., args: ..., kwargs: ...}`` mapping is itself computed first, and checked against the
    same allow-list), then optionally ``pick`` (a field or key of the result, dotted; never a method),
    ``multiply`` (e.g. bytes per parameter, or a count) and ``divide`` (a unit conversion, e.g. '2**30'). Both
    may be arithmetic on number literals only."""

    model_config = ConfigDict(extra="forbid")

    fn: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    pick: str | None = None
    multiply: float | str | None = None
    divide: float | str | None = None

    @field_validator("fn")
    @classmethod
    def _allowed(cls, v: str) -> str:
        return _check_fn(v, "compute.fn")

    @field_validator("pick")
    @classmethod
    def _pick_form(cls, v: str | None) -> str | None:
        return None if v is None else _check_pick(v)

    @field_validator("args")
    @classmethod
    def _nested_args(cls, v: list[Any]) -> list[Any]:
        for i, a in enumerate(v):
            _check_nested(a, f"args.{i}")
        return v

    @field_validator("kwargs")
    @classmethod
    def _nested_kwargs(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k, a in v.items():
            _check_nested(a, f"kwargs.{k}")
        return v


class FollowUp(BaseModel):
    """A follow-up an interviewer may ask, with its own model answer and key points (shown after the learner's
    reply, which is then self-scored against them)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    ask: str = Field(min_length=10)
    answer: str = Field(min_length=20)
    key_points: list[str] = Field(min_length=1)


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
    follow_ups: list[FollowUp] = Field(default_factory=list)
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
        return check_references(v)

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
