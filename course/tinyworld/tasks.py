"""The instruction-task suite of the tiny world: six task families, exact-match scorers, splits.

Each example is a Dolly-15k style record (``instruction``, ``context``, ``response``, ``category``)
so the Day 4 lab reads the tiny data and the real ``databricks/databricks-dolly-15k`` through one
function. ``category`` holds the task family.

The answer to every task is a fact that the pretraining corpus states (see ``corpus.py``): the base
model knows the facts but has never seen a chat template, so it cannot *answer*; fine-tuning teaches it.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from typing import Callable

from . import tables

SPLIT_SEED = 1234
HELDOUT_FRACTION = 0.25


@dataclass(frozen=True)
class TaskFamily:
    """One family of tasks: items (key → answer), how to ask, how to answer, how to score."""

    name: str
    items: dict[str, str]
    questions: tuple[str, ...]          # instruction templates, formatted with key=...
    answer: str                         # the response template, formatted with key=..., value=...
    corpus_forms: tuple[str, ...]       # ways the corpus states the fact (the first is ``answer``)
    pattern: str                        # regex with groups (key, value) that parses a response

    def response(self, key: str) -> str:
        return self.answer.format(key=key, value=self.items[key])

    def parse(self, text: str) -> tuple[str, str] | None:
        """Return (key, value) read from a generated response, or None if it does not parse."""
        m = re.fullmatch(self.pattern, normalize(text))
        return (m.group(1), m.group(2)) if m else None

    def score(self, key: str, text: str) -> bool:
        """Exact match: the generated text states this key's answer, in this family's answer form."""
        return normalize(text) == normalize(self.response(key))


def normalize(text: str) -> str:
    """Collapse whitespace and strip; the exact-match scorers compare normalized strings."""
    return " ".join(text.split())


def _addition_items() -> dict[str, str]:
    return {f"{a} plus {b}": str(a + b) for a in range(10) for b in range(10)}


def _unit_items() -> dict[str, str]:
    return {str(n): str(n * 1000) for n in range(1, 41)}


FAMILIES: dict[str, TaskFamily] = {
    f.name: f
    for f in [
        TaskFamily(
            "capital", tables.CAPITALS,
            ("What is the capital of {key}?", "Name the capital city of {key}.", "Which city is the capital of {key}?"),
            "The capital of {key} is {value}.",
            ("The capital of {key} is {value}.", "{value} is the capital of {key}.", "{key} has its capital in {value}."),
            r"The capital of (.+) is (.+)\.",
        ),
        TaskFamily(
            "antonym", tables.ANTONYMS,
            ("What is the opposite of {key}?", "Give the antonym of {key}.", "Which word means the opposite of {key}?"),
            "The opposite of {key} is {value}.",
            ("The opposite of {key} is {value}.", "{key} and {value} are opposites.", "If it is not {key}, it is {value}."),
            r"The opposite of (.+) is (.+)\.",
        ),
        TaskFamily(
            "plural", tables.PLURALS,
            ("What is the plural of {key}?", "Give the plural form of {key}.", "How do you say more than one {key}?"),
            "The plural of {key} is {value}.",
            ("The plural of {key} is {value}.", "One {key}, two {value}.", "I saw one {key} and then many {value}."),
            r"The plural of (.+) is (.+)\.",
        ),
        TaskFamily(
            "sound", tables.ANIMAL_SOUNDS,
            ("What sound does a {key} make?", "How does a {key} sound?", "Which noise does the {key} make?"),
            "The {key} says {value}.",
            ("The {key} says {value}.", "A {key} makes the sound {value}.", "Listen to the {key}: {value}, {value}."),
            r"The (.+) says (.+)\.",
        ),
        TaskFamily(
            "addition", _addition_items(),
            ("What is {key}?", "Compute {key}.", "Add them up: {key}."),
            "{key} is {value}.",
            ("{key} is {value}.", "If you add {key}, you get {value}.", "We know that {key} makes {value}."),
            r"(\d+ plus \d+) is (\d+)\.",
        ),
        TaskFamily(
            "units", _unit_items(),
            ("Convert {key} kilometers to meters.", "How many meters are in {key} kilometers?", "Express {key} kilometers in meters."),
            "{key} kilometers is {value} meters.",
            ("{key} kilometers is {value} meters.", "There are {value} meters in {key} kilometers.", "A walk of {key} kilometers is {value} meters long."),
            r"(\d+) kilometers is (\d+) meters\.",
        ),
    ]
}


@dataclass(frozen=True)
class Example:
    """A Dolly-15k style record, plus the family and key that the scorer needs."""

    instruction: str
    context: str
    response: str
    category: str
    key: str

    def to_dolly(self) -> dict[str, str]:
        """The four fields of databricks-dolly-15k (the key is recoverable from the category's parser)."""
        d = asdict(self)
        d.pop("key")
        return d


def split_keys(family: TaskFamily, seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """Deterministic train / held-out split of a family's items (held-out ≈ 25 %)."""
    keys = sorted(family.items)
    random.Random(f"{seed}-{family.name}").shuffle(keys)
    n_held = max(4, round(len(keys) * HELDOUT_FRACTION))
    return {"heldout": sorted(keys[:n_held]), "train": sorted(keys[n_held:])}


def examples(split: str = "train", families: list[str] | None = None, seed: int = SPLIT_SEED) -> list[Example]:
    """All instruction examples of a split: every item asked with every question template.

    Held-out examples ask about items the fine-tuning data never mentions (the corpus does).
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    out = []
    for name in families or list(FAMILIES):
        fam = FAMILIES[name]
        for key in split_keys(fam, seed)[split]:
            for q in fam.questions:
                out.append(Example(q.format(key=key), "", fam.response(key), fam.name, key))
    return out


def score(example: Example, generated: str) -> bool:
    """Exact match of a generated response against an example, using its family's scorer."""
    return FAMILIES[example.category].score(example.key, generated)


def exact_match(examples_: list[Example], generations: list[str]) -> float:
    """Fraction of generations that exactly match their example's answer."""
    if len(examples_) != len(generations):
        raise ValueError(f"{len(examples_)} examples but {len(generations)} generations")
    if not examples_:
        raise ValueError("no examples to score")
    return sum(score(e, g) for e, g in zip(examples_, generations)) / len(examples_)


def exact_match_by_family(examples_: list[Example], generations: list[str]) -> dict[str, float]:
    """Exact match per task family."""
    groups: dict[str, list[bool]] = {}
    for e, g in zip(examples_, generations, strict=True):
        groups.setdefault(e.category, []).append(score(e, g))
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


Scorer = Callable[[Example, str], bool]
