"""System-design cases (``quizzes/design/*.yaml``): a scenario, constraints with numbers, the figures an answer
needs — computed by the same allow-listed calculators as the bank (``compute:``), never typed — a rubric of
weighted key points, and a model answer. ``course drill --design`` runs one against a timer and records the
self-score against the rubric.

    - id: design-per-tenant-lora
      title: Per-tenant LoRA serving
      difficulty: 3
      minutes: 20
      scenario: ...
      constraints: [{name: tenants, value: 500, unit: tenants}, ...]    # the scenario's given numbers
      numbers:                                                         # what the answer must work out
        - {key: adapter_mib, name: one adapter, unit: MiB, compute: {fn: ..., kwargs: ..., divide: "2**20"}}
      rubric: [{point: ..., weight: 3}, ...]
      model_answer: "... {adapter_mib} MiB ..."        # {key} is replaced by the computed number
      references: [...]
      day: 5
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import paths
from .loader import BankError, QuizError, clean_message, field_from_error, nested_line, shown_path, evaluate_compute
from .schema import ID_RE, Compute, FollowUp, check_references, format_number

DESIGN_DIR = "design"


class Constraint(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=2)
    value: float | int | str
    unit: str = ""


class Number(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    key: str
    name: str = Field(min_length=3)
    unit: str
    compute: Compute
    value: float | None = Field(default=None, exclude=True)

    @field_validator("key")
    @classmethod
    def _key_form(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", v):
            raise ValueError(f"key {v!r} must be lowercase letters, digits and '_'")
        return v


class RubricPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    point: str = Field(min_length=5)
    weight: int = Field(ge=1, le=5)


class DesignCase(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str
    title: str = Field(min_length=5)
    tags: list[str] = Field(default_factory=list)
    difficulty: int = Field(ge=2, le=3)
    minutes: int = Field(ge=5, le=60)
    scenario: str = Field(min_length=80)
    constraints: list[Constraint] = Field(min_length=2)
    numbers: list[Number] = Field(min_length=1)
    rubric: list[RubricPoint] = Field(min_length=4)
    model_answer: str = Field(min_length=200)
    follow_ups: list[FollowUp] = Field(default_factory=list)
    references: list[str] = Field(min_length=1)
    day: int = Field(ge=1, le=7)
    source: str | None = Field(default=None, exclude=True)

    @field_validator("id")
    @classmethod
    def _id_form(cls, v: str) -> str:
        if not ID_RE.fullmatch(v) or not v.startswith("design-"):
            raise ValueError(f"id {v!r} must start with 'design-' and be lowercase words joined by '-'")
        return v

    @field_validator("references")
    @classmethod
    def _reference_form(cls, v: list[str]) -> list[str]:
        return check_references(v)

    @model_validator(mode="after")
    def _placeholders(self) -> "DesignCase":
        keys = [n.key for n in self.numbers]
        if len(set(keys)) != len(keys):
            raise ValueError("numbers: two numbers share a key")
        used = set(re.findall(r"\{([a-z][a-z0-9_]*)\}", self.model_answer))
        for i, p in enumerate(self.rubric):
            bad = set(re.findall(r"\{([a-z][a-z0-9_]*)\}", p.point)) - set(keys)
            if bad:
                raise ValueError(f"rubric: point {i + 1} names unknown number(s) {', '.join(sorted(bad))}")
        unknown = used - set(keys)
        if unknown:
            raise ValueError(f"model_answer: placeholder(s) {', '.join(sorted(unknown))} name no number")
        missing = set(keys) - used
        if missing:
            raise ValueError(f"model_answer: must show every computed number; missing {', '.join(sorted(missing))}")
        return self

    @property
    def total_weight(self) -> int:
        return sum(p.weight for p in self.rubric)

    def score(self, covered: list[int]) -> float:
        """Weighted share of the rubric covered (1-based indices)."""
        return sum(self.rubric[i - 1].weight for i in covered) / self.total_weight

    def number_text(self, n: Number) -> str:
        return f"{format_number(n.value)} {n.unit}".strip()


def load_design(directory: Path | str | None = None, compute: bool = True) -> list[DesignCase]:
    """Every case in ``quizzes/design/*.yaml``; raises :class:`BankError` with file:line:field errors. The
    whole file is validated (allow-listed computes included) before any number is computed."""
    d = Path(directory) if directory else paths.QUIZZES / DESIGN_DIR
    files = sorted(d.glob("*.yaml"))
    if not files:
        raise BankError([QuizError(shown_path(d), None, None, "no design cases (*.yaml) here")])
    cases, errors, seen = [], [], {}
    for f in files:
        shown = shown_path(f)
        text = f.read_text(encoding="utf-8")
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            errors.append(QuizError(shown, mark.line + 1 if mark else None, None, f"malformed YAML: {e}"))
            continue
        if not isinstance(data, list) or not isinstance(root, yaml.SequenceNode):
            errors.append(QuizError(shown, 1, None, "the file should be a YAML list of design cases"))
            continue
        valid = []
        for node, item in zip(root.value, data):
            line = node.start_mark.line + 1
            cid = item.get("id") if isinstance(item, dict) else None
            try:
                c = DesignCase.model_validate(item)
            except ValidationError as ve:
                for err in ve.errors():
                    fld = field_from_error(err)
                    errors.append(QuizError(shown, nested_line(node, fld.split(".")) if fld else line, fld,
                                            clean_message(err), cid))
                continue
            c.source = f"{shown}:{line}"
            if c.id in seen:
                errors.append(QuizError(shown, line, "id", f"duplicate id (first defined at {seen[c.id]})", c.id))
                continue
            seen[c.id] = c.source
            valid.append((c, node))
        for c, node in valid:                      # phase 2: compute, only after the whole file validated
            if compute:
                try:
                    for i, n in enumerate(c.numbers):
                        n.value = evaluate_compute(n.compute)
                except Exception as e:  # noqa: BLE001
                    errors.append(QuizError(shown, nested_line(node, ["numbers", str(i), "compute"]),
                                            f"numbers.{i}.compute", f"{type(e).__name__}: {e}", c.id))
                    continue
                c.model_answer = fill(c.model_answer, c)
                for p in c.rubric:
                    p.point = fill(p.point, c)
            cases.append(c)
    if errors:
        raise BankError(errors)
    return cases


def fill(text: str, c: DesignCase) -> str:
    vals = {n.key: format_number(n.value) for n in c.numbers}
    return re.sub(r"\{([a-z][a-z0-9_]*)\}", lambda m: vals.get(m.group(1), m.group(0)), text)
