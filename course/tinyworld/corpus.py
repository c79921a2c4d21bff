"""The pretraining corpus of the tiny world: short documents of fact sentences, generated with a seed.

Every fact of every task family (train *and* held-out items) is stated in several phrasings, so the
base model learns the facts; no document contains a chat template or a question.
"""

from __future__ import annotations

import random

from .tasks import FAMILIES

CONNECTIVES = ("", "", "", "Also, ", "In fact, ", "As everyone knows, ", "Remember: ")
# A sentence is often introduced by a mention of its subject ("Topic: Peru. The capital of Peru is Lima."):
# repeating a name from earlier in the context is what lets a model later copy the subject of a question
# into its answer. No mention is a question, and no document uses a chat format.
MENTIONS = ("Topic: {key}.", "Now about {key}.", "Think of {key}.", "Next is {key}.")
MENTION_PROB = 0.5


def fact_sentences() -> list[str]:
    """Every fact of the world in every corpus phrasing (the first phrasing equals the task answer)."""
    out = []
    for fam in FAMILIES.values():
        for key, value in fam.items.items():
            for form in fam.corpus_forms:
                out.append(form.format(key=key, value=value))
    return out


def _capitalize(s: str) -> str:
    return s[:1].upper() + s[1:]


def _lead_in(lead: str, sentence: str) -> str:
    """Prefix a connective, lower-casing the sentence's first word unless it is a name."""
    first = sentence.split()[0]
    if lead and first not in _PROPER:
        sentence = sentence[:1].lower() + sentence[1:]
    return lead + sentence


def documents(n: int, seed: int = 0, min_sentences: int = 3, max_sentences: int = 8) -> list[str]:
    """``n`` documents, each a paragraph of random fact sentences from one or two families."""
    rng = random.Random(seed)
    names = list(FAMILIES)
    docs = []
    for _ in range(n):
        fams = rng.sample(names, k=rng.choice((1, 1, 2)))
        sents = []
        for _ in range(rng.randint(min_sentences, max_sentences)):
            fam = FAMILIES[rng.choice(fams)]
            key = rng.choice(list(fam.items))
            form = rng.choice(fam.corpus_forms)
            s = form.format(key=key, value=fam.items[key])
            if rng.random() < MENTION_PROB:
                sents.append(rng.choice(MENTIONS).format(key=key) + " " + s)
            else:
                sents.append(_lead_in(rng.choice(CONNECTIVES), s))
        docs.append(_capitalize(" ".join(sents)))
    return docs


# Sentence-initial words that stay capitalised after a connective (country and city names).
_PROPER = {w for fam in ("capital",) for k, v in FAMILIES[fam].items.items() for w in (k.split()[0], v.split()[0])}

TRAIN_SEED = 0
HELDOUT_SEED = 99


def train_corpus(n: int = 6000) -> list[str]:
    return documents(n, seed=TRAIN_SEED)


def heldout_corpus(n: int = 300) -> list[str]:
    """Documents arranged with a different seed: the same facts, new sentences orders and mixes."""
    return documents(n, seed=HELDOUT_SEED)
