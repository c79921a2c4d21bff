"""The preference set of the tiny world: (prompt, chosen, rejected) triplets and the rule judge.

Chosen responses are correct, complete and concise. Each rejected response breaks exactly one of
these, named by ``kind``:

- ``wrong``: the same sentence with another item's answer (correctness);
- ``curt``: only the bare answer word, no sentence (format);
- ``rambling``: the right sentence followed by filler (concision).

``off_topic_preferences`` adds a fourth kind, ``off_topic``: the rejected response is a correct answer to a
*different* question (mostly another item of the same family) — the error a briefly fine-tuned policy makes most.

``judge`` checks all three properties by rule, so any preference can be verified by code.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .tasks import FAMILIES, SPLIT_SEED, Example, examples, normalize

KINDS = ("wrong", "curt", "rambling")
FILLER = (
    "I hope this helps.", "Let me know if you have more questions.", "That is what I think.",
    "It is a good question.", "Thanks for asking.", "Have a nice day.",
)


@dataclass(frozen=True)
class Preference:
    prompt: str
    chosen: str
    rejected: str
    kind: str
    category: str
    key: str

    def as_dict(self) -> dict[str, str]:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected, "kind": self.kind,
                "category": self.category, "key": self.key}


def rejected_response(example: Example, kind: str, rng: random.Random) -> str:
    fam = FAMILIES[example.category]
    value = fam.items[example.key]
    if kind == "wrong":
        others = sorted({v for v in fam.items.values() if v != value})
        return fam.answer.format(key=example.key, value=rng.choice(others))
    if kind == "curt":
        return value
    if kind == "rambling":
        return example.response + " " + " ".join(rng.sample(FILLER, k=3))
    raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")


def preferences(split: str = "train", seed: int = SPLIT_SEED) -> list[Preference]:
    """One preference pair per instruction example, the rejected kind cycling deterministically."""
    rng = random.Random(f"prefs-{split}-{seed}")
    out = []
    for i, ex in enumerate(examples(split, seed=seed)):
        kind = KINDS[i % len(KINDS)]
        out.append(Preference(ex.instruction, ex.response, rejected_response(ex, kind, rng), kind, ex.category, ex.key))
    return out


def off_topic_preferences(split: str = "train", seed: int = SPLIT_SEED, other_family: float = 0.3) -> list[Preference]:
    """One pair per instruction example whose rejected response answers another question: another item of the same
    family, or (with probability ``other_family``) an item of another family. Deterministic for a split and seed."""
    rng = random.Random(f"off-topic-{split}-{seed}")
    exs = examples(split, seed=seed)
    by_family: dict[str, list[Example]] = {}
    for ex in exs:
        by_family.setdefault(ex.category, []).append(ex)
    out = []
    for ex in exs:
        pool = exs if rng.random() < other_family else by_family[ex.category]
        other = rng.choice([o for o in pool if o.key != ex.key])
        out.append(Preference(ex.instruction, ex.response, other.response, "off_topic", ex.category, ex.key))
    return out


def judge(category: str, key: str, response: str) -> dict[str, bool]:
    """Rule judge: is the response correct (right answer), complete (a full sentence) and concise?"""
    fam = FAMILIES[category]
    text = normalize(response)
    first = text.split(". ")[0].rstrip(".") + "." if text else ""
    parsed = fam.parse(first)
    correct = parsed is not None and parsed == (key, fam.items[key]) or text == normalize(fam.items[key])
    concise = len(re.split(r"(?<=[.!?])\s+", text)) <= 1      # one sentence (or a bare word), nothing more
    return {"correct": bool(correct), "complete": parsed is not None, "concise": concise}


def judge_score(category: str, key: str, response: str) -> int:
    """0–3: how many of the judge's properties the response has."""
    return sum(judge(category, key, response).values())


def prefers(category: str, key: str, a: str, b: str) -> float:
    """1.0 if the judge prefers a to b, 0.0 if b to a, 0.5 on a tie."""
    sa, sb = judge_score(category, key, a), judge_score(category, key, b)
    return 1.0 if sa > sb else 0.0 if sa < sb else 0.5
