"""Day 6 · 4 (evaluation): the reference metrics on inputs the notebook does not use, checked against independent
computations (loops, scipy's optimiser, brute-force n-gram search); the judge corrections on three seeds (fast: the
judge is simulated); the preference-accuracy and contamination claims on three seeds (slow).
Full autograde + mutants: tests/test_days_autograde.py (`course mutants day6 --notebook 04_evaluation`)."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch

from course.authoring.reference import solution_namespace
from course.paths import SOLUTIONS

SRC = SOLUTIONS / "day6_alignment_lab" / "04_evaluation.py"
EXERCISES = {"accuracy_by_category", "swap_debias", "length_controlled_win_rate", "ngram_contamination"}
GIVEN = {"given_evaluators", "given_judge", "given_contamination"}
PRELUDE = ("import copy, math, random, re\nimport torch\n"
           "from course.alignment import fit_reward_model, train_dpo\nfrom course.generation import answer\n"
           "from course.loading import load_base, load_tokenizer\nfrom course.notebook import progress\n"
           "from course.tinyworld import preferences as prefs\n"
           "from course.tinyworld import tasks\nfrom course.training import train_sft\n"
           "from course.profiles import get_profile\nprofile = get_profile('tiny')\n"
           "FAMILIES = ['capital', 'antonym', 'plural']\ntokenizer = load_tokenizer(profile)\n")


@pytest.fixture(scope="module")
def ns():
    warnings.filterwarnings("ignore")
    return solution_namespace(SRC, EXERCISES | GIVEN, PRELUDE)


def test_accuracy_by_category_equals_a_loop(ns):
    rng = random.Random(7)
    cats = [rng.choice("uvwxyz") for _ in range(300)]
    c = torch.tensor([rng.choice([0.0, 1.0, 2.0, float("nan")]) for _ in cats])
    r = torch.tensor([rng.choice([0.0, 1.0, 2.0]) for _ in cats])
    got = ns["accuracy_by_category"](c, r, cats)
    for k in sorted(set(cats)):
        idx = [i for i, x in enumerate(cats) if x == k]
        want = sum(1.0 if c[i] > r[i] else 0.5 if c[i] == r[i] else 0.0 for i in idx) / len(idx)
        assert got[k] == pytest.approx(want, abs=1e-12)
    assert list(got) == sorted(set(cats))


def test_swap_debias_on_random_verdicts(ns):
    g = torch.Generator().manual_seed(3)
    ab = torch.randint(0, 3, (400,), generator=g).double() / 2
    ba = torch.randint(0, 3, (400,), generator=g).double() / 2
    got = ns["swap_debias"](ab, ba)
    assert got["win_rate_a"] == pytest.approx(((ab + 1 - ba) / 2).mean().item())
    assert got["first_rate"] == pytest.approx(((ab + ba) / 2).mean().item())
    same = [(a > .5 and b < .5) or (a < .5 and b > .5) or (a == b == .5) for a, b in zip(ab.tolist(), ba.tolist())]
    assert got["consistency"] == pytest.approx(sum(same) / len(same))


@pytest.mark.parametrize("seed,ridge", [(11, 1e-3), (12, 0.05), (13, 2.0)])
def test_length_controlled_equals_scipy(ns, seed, ridge):
    from scipy.optimize import minimize

    g = torch.Generator().manual_seed(seed)
    d = torch.randint(-30, 31, (300,), generator=g).double()
    w = (torch.rand(300, generator=g, dtype=torch.float64) < 0.6).double() * 0.5 + 0.25 * (seed % 2)
    z = np.tanh(d.numpy() / d.numpy().std(ddof=1))
    wn = w.numpy()

    def f(b):
        logit = b[0] + b[1] * z
        return np.mean(np.logaddexp(0, logit) - wn * logit) + ridge / 2 * (b ** 2).sum()

    b = minimize(f, np.zeros(2), method="BFGS", options={"gtol": 1e-12}).x
    assert ns["length_controlled_win_rate"](w, d, ridge=ridge) == pytest.approx(1 / (1 + np.exp(-b[0])), abs=1e-6)


def test_ngram_contamination_equals_brute_force(ns):
    rng = random.Random(5)
    vocab = "a b c d e f".split()
    train = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12))) for _ in range(15)]
    test = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 9))) for _ in range(60)]
    for n in (1, 3, 5):
        rate, flags = ns["ngram_contamination"](test, train, n=n)
        for t, f in zip(test, flags):
            w = t.split()
            k = min(n, len(w))
            want = bool(w) and any(" " + " ".join(w[i:i + k]) + " " in " " + s + " " for s in train
                                   for i in range(len(w) - k + 1))
            assert f == want, (n, t)
        assert rate == pytest.approx(sum(flags) / len(flags))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_judge_corrections_on_each_seed(ns, seed):
    """The simulated judge favours the first position; swapping cuts the error of the raw rate, and length control
    cuts the error of the swapped rate, on every seed."""
    first_ab, first_ba, len_diff, truth = ns["judge_experiment"](seed)
    swap = ns["swap_debias"](first_ab, first_ba)
    lc = ns["length_controlled_win_rate"](0.5 * (first_ab + 1 - first_ba), len_diff)
    assert swap["first_rate"] > 0.6
    assert abs(swap["raw_a_first"] - truth) > abs(swap["win_rate_a"] - truth) > abs(lc - truth), (swap, lc, truth)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_preference_accuracy_claims_on_each_seed(ns, seed):
    """The lesson's reading of the RewardBench-style table: the frozen-feature reward model is better on format
    (curt, rambling) than on facts (wrong, off_topic); the DPO implicit reward is below SFT likelihood on facts;
    the length baseline passes rambling and fails curt."""
    torch.set_num_threads(1)
    scores = ns["preference_scores"](seed)
    kinds = [p.kind for p in ns["HELD_PAIRS"]]
    t = {name: ns["accuracy_by_category"](c, r, kinds) for name, (c, r) in scores.items()}
    rm = t["reward model"]
    assert min(rm["curt"], rm["rambling"]) > max(rm["wrong"], rm["off_topic"]), rm
    for fact in ("wrong", "off_topic"):
        assert t["DPO implicit reward"][fact] < t["SFT likelihood"][fact], t
    assert t["length baseline"]["rambling"] == 1.0 and t["length baseline"]["curt"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contamination_claims_on_each_seed(ns, seed):
    """Leaked items score above clean ones; the 8-gram detector flags exactly the leaked items, the 3-gram one
    flags clean items too; the unflagged items' score is the clean half's."""
    torch.set_num_threads(1)
    held, is_leaked, correct, em, train_texts = ns["contamination_experiment"](seed)
    assert em["leaked half"] > em["clean half"], em
    texts = [ns["item_text"](e) for e in held]
    _, flags8 = ns["ngram_contamination"](texts, train_texts, n=8)
    assert flags8 == is_leaked
    _, flags3 = ns["ngram_contamination"](texts, train_texts, n=3)
    assert sum(f and not k for f, k in zip(flags3, is_leaked)) > 0
