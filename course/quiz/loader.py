"""Load and validate the question bank (``quizzes/*.yaml``), with errors that name file, line and field.

Every numeric question's value is computed here, by calling the ``compute`` function it names (the
course's memory calculator, a small helper in ``course.quiz.calc``, or ``worked_examples.<name>``: a function
of ``quizzes/worked_examples.py``, kept outside the package because it is also a lesson's answer) — no answer
is typed by hand.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .. import paths
from .schema import ALLOWED_COMPUTE, Compute, Question, format_number


class QuizError(Exception):
    """One problem in the bank, located as ``file:line`` and field."""

    def __init__(self, file: Path | str, line: int | None, field: str | None, message: str, qid: str | None = None):
        self.file, self.line, self.field, self.message, self.qid = str(file), line, field, message, qid
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = []
        if self.qid:
            what.append(f"question {self.qid!r}")
        if self.field:
            what.append(f"field {self.field!r}")
        return f"{where}: {' '.join(what) + ': ' if what else ''}{self.message}"


class BankError(Exception):
    """Several :class:`QuizError` at once (validation reports them all, not just the first)."""

    def __init__(self, errors: list[QuizError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass
class Bank:
    questions: list[Question]
    by_id: dict[str, Question] = field(default_factory=dict)

    def __post_init__(self):
        self.by_id = {q.id: q for q in self.questions}

    @property
    def topics(self) -> list[str]:
        return sorted({q.topic for q in self.questions})

    def select(self, topics: list[str] | None = None, difficulty: list[int] | None = None,
               types: list[str] | None = None, tags: list[str] | None = None) -> list[Question]:
        out = self.questions
        if topics:
            unknown = set(topics) - set(self.topics)
            if unknown:
                raise KeyError(f"unknown topic(s) {', '.join(sorted(unknown))}; topics are: {', '.join(self.topics)}")
            out = [q for q in out if q.topic in topics]
        if difficulty:
            out = [q for q in out if q.difficulty in difficulty]
        if types:
            out = [q for q in out if q.type in types]
        if tags:
            out = [q for q in out if set(tags) & set(q.tags)]
        return out

    def __len__(self) -> int:
        return len(self.questions)


# ---- computing numeric answers ------------------------------------------------------------------------
WORKED_EXAMPLES = "worked_examples"


@functools.lru_cache(maxsize=None)
def _worked_examples(path: Path):
    """``quizzes/worked_examples.py`` loaded by file path (it is not part of the importable package)."""
    if not path.is_file():
        raise ValueError(f"cannot load {WORKED_EXAMPLES}: {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"_course_quiz_{WORKED_EXAMPLES}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _resolve(path: str):
    if path not in ALLOWED_COMPUTE:          # the schema already refused it; never resolve anything else
        raise ValueError(f"{path!r} is not an allowed calculator (course.quiz.schema.ALLOWED_COMPUTE)")
    mod_name, _, attr = path.rpartition(".")
    if mod_name == WORKED_EXAMPLES:
        mod = _worked_examples(paths.QUIZZES / f"{WORKED_EXAMPLES}.py")
        fn = getattr(mod, attr, None)
        # only the file's own public functions, not what it imports (e.g. worked_examples.math)
        if attr.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != mod.__name__:
            raise ValueError(f"{WORKED_EXAMPLES} ({mod.__file__}) has no function {attr!r}")
        return fn
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"cannot import {mod_name} ({e})") from None
    fn = getattr(mod, attr, None)
    if not inspect.isfunction(fn):
        raise ValueError(f"{mod_name} has no function {attr!r}")
    return fn


def _evaluate(x: Any) -> Any:
    if isinstance(x, dict) and "fn" in x:
        return evaluate_compute(Compute.model_validate(x), _raw=True)   # validated (allow-list) before the call
    if isinstance(x, dict):
        return {k: _evaluate(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_evaluate(v) for v in x]
    return x


def _literal(x: float | str, what: str) -> float:
    """A number, or arithmetic on number literals such as '2**30' or '70e9' (nothing else is evaluated)."""
    if isinstance(x, (int, float)):
        return x
    if not x.strip() or not all(ch in "0123456789.*/e+-()" for ch in x.replace(" ", "")):
        raise ValueError(f"{what} {x!r} must be a number or arithmetic on numbers (e.g. '2**30')")
    return eval(x, {"__builtins__": {}}, {})  # noqa: S307 (digits and operators only, checked above)


def evaluate_compute(c: Compute, _raw: bool = False) -> Any:
    """Call ``c.fn(*args, **kwargs)`` (nested computes first), pick a field, divide by a unit."""
    fn = _resolve(c.fn)
    result = fn(*_evaluate(c.args), **_evaluate(c.kwargs))
    if c.pick:
        for part in c.pick.split("."):
            if part.startswith("_"):
                raise ValueError(f"pick {c.pick!r}: private fields cannot be picked")
            result = result[part] if isinstance(result, dict) else getattr(result, part)
            if callable(result):
                raise ValueError(f"pick {c.pick!r} names a method or class; pick picks data, it never calls")
    if c.multiply is not None:
        result = result * _literal(c.multiply, "multiply")
    if c.divide is not None:
        result = result / _literal(c.divide, "divide")
    if _raw:
        return result
    value = float(result)
    if not math.isfinite(value):
        raise ValueError(f"computed a non-finite value {value}")
    return value


# ---- YAML with line numbers ---------------------------------------------------------------------------
def field_from_error(err: dict) -> str | None:
    loc = [str(p) for p in err.get("loc", ())]
    if loc:
        return ".".join(loc)
    msg = err.get("msg", "")
    body = msg.split(", ", 1)[-1]           # "Value error, choices: give 2 to 6 choices"
    head = body.split(":", 1)[0]
    return head if head.isidentifier() else None


def clean_message(err: dict) -> str:
    msg = err.get("msg", "")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        head, sep, rest = msg.partition(": ")
        if sep and head.isidentifier():
            msg = rest
    return msg


def _key_lines(node: yaml.MappingNode) -> dict[str, int]:
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def nested_line(node: yaml.MappingNode, loc: list[str]) -> int | None:
    """Line of a (possibly nested) field, e.g. ['compute', 'fn']; falls back to the nearest parent."""
    line = node.start_mark.line + 1
    cur = node
    for part in loc:
        if isinstance(cur, yaml.MappingNode):
            hit = [(k, v) for k, v in cur.value if isinstance(k, yaml.ScalarNode) and k.value == part]
            if not hit:
                return line
            line, cur = hit[0][0].start_mark.line + 1, hit[0][1]
        elif isinstance(cur, yaml.SequenceNode) and part.isdigit() and int(part) < len(cur.value):
            cur = cur.value[int(part)]
            line = cur.start_mark.line + 1
        else:
            return line
    return line


def load_file(path: Path, compute: bool = True) -> tuple[list[Question], list[QuizError]]:
    """Parse one topic file. Returns the valid questions and the errors found (never raises on content)."""
    path = Path(path)
    shown = shown_path(path)
    errors: list[QuizError] = []
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        return [], [QuizError(shown, line, None, f"malformed YAML: {e.problem or e}")]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return [], [QuizError(shown, None, None, f"cannot read: {e}")]
    if root is None:
        return [], [QuizError(shown, 1, None, "the file is empty; it should hold a list of questions")]
    if not isinstance(root, yaml.SequenceNode) or not isinstance(data, list):
        return [], [QuizError(shown, root.start_mark.line + 1, None,
                              "the file should be a YAML list of questions (each item starting with '- id: ...')")]
    out: list[Question] = []
    valid: list[tuple[Question, yaml.MappingNode]] = []   # phase 1: schema only, nothing called
    for node, item in zip(root.value, data):
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode) or not isinstance(item, dict):
            errors.append(QuizError(shown, line, None, "each item must be a mapping (id: ..., topic: ..., ...)"))
            continue
        qid = item.get("id") if isinstance(item.get("id"), str) else None
        typed = [k for k in ("value", "source") if k in item]
        if typed:
            errors.append(QuizError(shown, _key_lines(node).get(typed[0], line), typed[0],
                                    "is filled in by the loader; a numeric answer comes from 'compute', never typed",
                                    qid))
            continue
        try:
            q = Question.model_validate(item)
        except ValidationError as ve:
            for err in ve.errors():
                fld = field_from_error(err)
                fline = nested_line(node, fld.split(".")) if fld else line
                errors.append(QuizError(shown, fline, fld, clean_message(err), qid))
            continue
        if q.topic != path.stem:
            errors.append(QuizError(shown, _key_lines(node).get("topic", line), "topic",
                                    f"topic {q.topic!r} must match the file name {path.stem!r}", q.id))
            continue
        q.source = f"{shown}:{line}"
        valid.append((q, node))
    # Phase 2: only after the whole file validated (every compute on the allow-list) is anything called.
    for q, node in valid:
        if compute and q.compute is not None:
            try:
                q.value = evaluate_compute(q.compute)
                q.model_answer = q.model_answer.replace("{value}", format_number(q.value))
            except Exception as e:  # noqa: BLE001 (report any calculator failure as a located error)
                errors.append(QuizError(q.source.rsplit(":", 1)[0], nested_line(node, ["compute"]), "compute",
                                        f"{type(e).__name__}: {e}", q.id))
                continue
        out.append(q)
    return out, errors


def shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(paths.ROOT))
    except ValueError:
        return str(path)


def load_bank(directory: Path | str | None = None, compute: bool = True) -> Bank:
    """Load every ``*.yaml`` in ``directory`` (default ``quizzes/``); raise :class:`BankError` listing all
    problems (malformed YAML, schema violations, failed computations, duplicate ids)."""
    d = Path(directory) if directory else paths.QUIZZES
    files = sorted(d.glob("*.yaml"))
    if not files:
        raise BankError([QuizError(shown_path(d), None, None, "no *.yaml question files here")])
    questions, errors = [], []
    seen: dict[str, Question] = {}
    for f in files:
        qs, errs = load_file(f, compute=compute)
        errors += errs
        for q in qs:
            if q.id in seen:
                file, line = q.source.rsplit(":", 1)
                errors.append(QuizError(file, int(line), "id",
                                        f"duplicate id (first defined at {seen[q.id].source})", q.id))
                continue
            seen[q.id] = q
            questions.append(q)
    if errors:
        raise BankError(errors)
    return Bank(questions)
