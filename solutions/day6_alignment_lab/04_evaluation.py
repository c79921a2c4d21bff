# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 6 · 4 — Evaluating aligned models: preference accuracy, judges and their biases, contamination
#
# Notebooks 1–3 trained policies and scored them with the tiny world's rule judge. Real evaluation has no rule
# judge, and each stand-in has a failure you must measure before you trust a number. This notebook:
#
# 1. scores evaluators on **held-out preference pairs by category**, RewardBench style (Lambert et al. 2024): a
#    frozen-feature reward model, a DPO policy's **implicit reward**, plain likelihood, and a length baseline;
# 2. measures an **LLM-as-judge**'s position and length biases and corrects them — swap the order, then a
#    **length-controlled** win rate (Dubois et al. 2024). The judge is *simulated* here, with biases we plant, so
#    the corrections can be checked against the truth (a tiny model cannot judge; real judges show both biases,
#    Zheng et al. 2023);
# 3. shows **contamination**: test items leaked into training inflate a held-out score, and an n-gram detector
#    finds them.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import copy
import math
import random
import re

import torch

from course.alignment import fit_reward_model, train_dpo
from course.generation import answer
from course.loading import load_base, load_tokenizer
from course.notebook import progress
from course.tinyworld import preferences as prefs
from course.tinyworld import tasks
from course.training import train_sft

FAMILIES = ["capital", "antonym", "plural"]
tokenizer = load_tokenizer(profile)

# %% [markdown]
# ## 1. Preference accuracy by category
#
# A preference pair (prompt, chosen, rejected) is scored **correct** when the evaluator gives the chosen response
# the higher score. RewardBench reports the accuracy **per category** of pairs and averages the categories, so a
# category with many easy pairs cannot hide a category the evaluator fails. Our held-out pairs come in four
# categories, one per way the rejected response is worse (`course.tinyworld.preferences`): `wrong` (another item's
# answer: facts), `curt` (the bare word: format), `rambling` (filler appended: concision), `off_topic` (a correct
# answer to another question).
#
# ### Exercise 1
# `accuracy_by_category(chosen, rejected, categories)`: `chosen`, `rejected` are `(N,)` score tensors, `categories`
# N names. Return `{category: accuracy}` (keys sorted, values Python floats) where a pair counts 1 if
# `chosen > rejected`, **½ on an exact tie**, 0 otherwise — a NaN score counts 0 (it ranks nothing). Raise
# `ValueError` when the lengths differ or there are no pairs.

# %% nbgrader={"grade": false, "grade_id": "accuracy_by_category", "locked": false, "schema_version": 3, "solution": true, "task": false}
def accuracy_by_category(chosen: torch.Tensor, rejected: torch.Tensor, categories: list[str]) -> dict[str, float]:
    """(N,), (N,), N names -> {category: mean credit}; credit 1 if chosen > rejected, 0.5 if equal, else 0."""
    ### BEGIN SOLUTION
    if not (len(chosen) == len(rejected) == len(categories)):
        raise ValueError(f"{len(chosen)} chosen, {len(rejected)} rejected scores, {len(categories)} categories")
    if len(categories) == 0:
        raise ValueError("no pairs to score")
    credit = (chosen > rejected).double() + 0.5 * (chosen == rejected).double()
    out: dict[str, list[float]] = {}
    for c, x in zip(categories, credit.tolist()):
        out.setdefault(c, []).append(x)
    return {c: float(sum(v) / len(v)) for c, v in sorted(out.items())}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "accuracy_by_category__credit_and_ties", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_got = accuracy_by_category(torch.tensor([2.0, 1.0, 0.0, 5.0]), torch.tensor([1.0, 1.0, 3.0, 4.0]),
                            ["b", "a", "a", "b"])
assert type(_got) is dict and list(_got) == ["a", "b"], "one entry per category, keys sorted"
assert all(type(v) is float for v in _got.values()), "values are Python floats"
assert _got == {"a": 0.25, "b": 1.0}, "an exact tie is worth ½: category a has a tie and a loss"
### BEGIN HIDDEN TESTS
_got = accuracy_by_category(torch.tensor([1e38, -1e38, 3.0]), torch.tensor([-1e38, 1e38, 3.0]), ["x", "x", "x"])
assert _got == {"x": 0.5}, "huge scores compare without overflow (no subtraction needed)"
_got = accuracy_by_category(torch.tensor([float("nan"), 1.0]), torch.tensor([0.0, float("nan")]), ["n", "n"])
assert _got == {"n": 0.0}, "a NaN score ranks nothing: credit 0"
_got = accuracy_by_category(torch.tensor([0.5]), torch.tensor([0.25]), ["only"])
assert _got == {"only": 1.0}, "one pair"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "accuracy_by_category__errors_and_many", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
try:
    accuracy_by_category(torch.tensor([1.0, 2.0]), torch.tensor([0.0]), ["a", "a"])
    raise AssertionError("different lengths must raise ValueError")
except ValueError:
    pass
### BEGIN HIDDEN TESTS
try:
    accuracy_by_category(torch.tensor([]), torch.tensor([]), [])
    raise AssertionError("no pairs must raise ValueError")
except ValueError:
    pass
torch.manual_seed(5)
_c, _r = torch.randint(0, 3, (500,)).float(), torch.randint(0, 3, (500,)).float()
_cats = [["p", "q", "r"][i % 3] for i in range(500)]
_got = accuracy_by_category(_c, _r, _cats)
for _k in "pqr":
    _idx = [i for i in range(500) if _cats[i] == _k]
    _want = sum(1.0 if _c[i] > _r[i] else 0.5 if _c[i] == _r[i] else 0.0 for i in _idx) / len(_idx)
    assert abs(_got[_k] - _want) < 1e-12, f"category {_k}"
### END HIDDEN TESTS

# %% [markdown]
# Four evaluators, all scoring the same held-out pairs (items no training pair mentions):
#
# - **length baseline**: the shorter response wins (a RewardBench sanity row: a benchmark a length rule passes
#   measures length);
# - **reward model**: `course.alignment`'s Bradley–Terry head on the frozen base's features, fitted on the
#   training pairs;
# - **DPO implicit reward** $\hat r(x, y) = \beta\,[\log\pi_\theta(y\mid x) - \log\pi_{\mathrm{ref}}(y\mid x)]$ of a
#   policy trained with DPO from an SFT reference (RewardBench scores DPO models this way);
# - **SFT likelihood** $\log\pi_{\mathrm{ref}}(y\mid x)$, the reference alone.

# %% nbgrader={"grade": false, "grade_id": "given_evaluators", "locked": true, "schema_version": 3, "solution": false, "task": false}
BETA = 0.1


def chat_ids(messages, add_generation_prompt=False):
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                         add_generation_prompt=add_generation_prompt)["input_ids"]


@torch.no_grad()
def response_logprobs(model, prompts, responses):
    """(N,) summed log-probs of each response given its prompt, both in the chat template."""
    out = []
    for prompt, response in zip(prompts, responses):
        user = [{"role": "user", "content": prompt}]
        n_prompt = len(chat_ids(user, add_generation_prompt=True))
        ids = torch.tensor([chat_ids(user + [{"role": "assistant", "content": response}])])
        logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None])[:, 0]
        out.append(logp[n_prompt - 1:].sum())
    return torch.stack(out)


def sft_model(examples, seed, steps=40):
    """A full fine-tune of the shipped base on these instruction examples (notebook 1's SFT settings)."""
    torch.manual_seed(seed)
    model, _ = train_sft(load_base(profile), tokenizer, examples, lora=None, max_steps=profile.steps(steps),
                         learning_rate=profile.lr(1.2e-3), batch_size=2 * profile.per_device_batch_size,
                         scheduler="linear", warmup_ratio=0.0, seed=seed)
    return model


def preference_scores(seed):
    """Train the evaluators on this seed; {evaluator: (chosen scores, rejected scores)} on the held-out pairs."""
    train_pairs = [p for p in prefs.preferences("train") + prefs.off_topic_preferences("train")
                   if p.category in FAMILIES]
    train_pairs = profile.eval_items(train_pairs, scale=4, key=lambda p: p.kind)   # all on tiny; fewer on small
    bar = progress(total=4, desc="reward model · SFT · DPO · scoring")
    rm, _ = fit_reward_model(load_base(profile), tokenizer, train_pairs, seed=seed)
    bar.update()
    ref = sft_model(tasks.examples("train", FAMILIES), seed)
    bar.update()
    dpo, _ = train_dpo(copy.deepcopy(ref), copy.deepcopy(ref), tokenizer, train_pairs, beta=BETA,
                       learning_rate=profile.lr(5e-5), max_steps=profile.steps(30),
                       batch_size=profile.per_device_batch_size, seed=seed)
    bar.update()
    P = [p.prompt for p in HELD_PAIRS]
    out = {"length baseline": tuple(-torch.tensor([float(len(getattr(p, k).split())) for p in HELD_PAIRS])
                                    for k in ("chosen", "rejected"))}
    out["reward model"] = (rm.score(P, [p.chosen for p in HELD_PAIRS]), rm.score(P, [p.rejected for p in HELD_PAIRS]))
    ref_c, ref_r = (response_logprobs(ref, P, [getattr(p, k) for p in HELD_PAIRS]) for k in ("chosen", "rejected"))
    pol_c, pol_r = (response_logprobs(dpo, P, [getattr(p, k) for p in HELD_PAIRS]) for k in ("chosen", "rejected"))
    out["DPO implicit reward"] = (BETA * (pol_c - ref_c), BETA * (pol_r - ref_r))
    out["SFT likelihood"] = (ref_c, ref_r)
    bar.update()
    bar.close()
    return out


HELD_PAIRS = [p for p in prefs.preferences("heldout") + prefs.off_topic_preferences("heldout")
              if p.category in FAMILIES]
HELD_PAIRS = profile.eval_items(HELD_PAIRS, key=lambda p: p.kind)   # every kind kept

# %%
scores = preference_scores(0)
CATS = sorted({p.kind for p in HELD_PAIRS})
table = {name: accuracy_by_category(c, r, [p.kind for p in HELD_PAIRS]) for name, (c, r) in scores.items()}
print(f"{len(HELD_PAIRS)} held-out pairs\n{'evaluator':20}" + "".join(f"{c:>11}" for c in CATS) + "    average")
for name, row in table.items():
    print(f"{name:20}" + "".join(f"{row[c]:11.2f}" for c in CATS) + f"{sum(row.values()) / len(row):11.2f}")

# %% [markdown]
# Read it by column. The **length baseline** is perfect on `rambling`, hopeless on `curt` and at chance (ties) where
# lengths match — a benchmark must mix categories so style alone cannot pass it. The **reward model** on frozen
# features learned *format* (`curt`, `rambling`) far better than *facts* (`wrong`, `off_topic`): the frozen base's
# features barely separate Chile's capital from Peru's. The **DPO implicit reward** is below plain **SFT
# likelihood** on the fact categories: it measures what DPO *changed*, and the reference already ranked those pairs
# correctly. An implicit-reward accuracy is a statement about the update, not about the policy.

# %% [markdown]
# ## 2. An LLM-as-judge and its biases
#
# Pairwise judging (MT-Bench, AlpacaEval, Chatbot-Arena style): show a judge the prompt and two answers, ask which
# is better; a system's **win rate** against a baseline is the mean verdict. Two biases are well measured in real
# judges: **position** (the first-shown answer wins more often) and **length** (the longer answer wins more often).
#
# Our judge is simulated: its taste is the rule judge's *correct and complete*, and we plant a position bias and a
# length bias on top, $P(\text{first wins}) = \sigma\big(\kappa\,(q_1 - q_2) + b_{\text{pos}} +
# \varphi \tanh(\Delta\ell / 4)\big)$, $\Delta\ell$ the length difference in words; it samples its verdicts. The
# *unbiased* judge is the same with $b_{\text{pos}} = \varphi = 0$: that is the win rate each correction should
# recover. The two systems answer the held-out questions: `verbose` is right less often but pads with filler;
# `concise` is right more often, no filler.

# %% nbgrader={"grade": false, "grade_id": "given_judge", "locked": true, "schema_version": 3, "solution": false, "task": false}
KAPPA, POSITION_BIAS, LENGTH_BIAS = 2.0, 1.0, 1.5


def quality(example, response):
    """The judge's taste: 1 point for correct, 1 for complete (the rule judge's first two properties)."""
    j = prefs.judge(example.category, example.key, response)
    return float(j["correct"]) + float(j["complete"])


def judge_first_wins(example, first, second, gen, position_bias=POSITION_BIAS, length_bias=LENGTH_BIAS):
    """One sampled verdict: 1.0 if the simulated judge prefers the first-shown response, else 0.0."""
    dl = len(first.split()) - len(second.split())
    logit = KAPPA * (quality(example, first) - quality(example, second)) + position_bias
    logit += length_bias * math.tanh(dl / 4)
    return float(torch.rand((), generator=gen).item() < 1 / (1 + math.exp(-logit)))


def two_systems(examples, seed):
    """(verbose answers, concise answers) to the examples: verbose right 55 % and padded with 0-3 filler
    sentences; concise right 75 %, never padded."""
    rng = random.Random(seed)
    verbose, concise = [], []
    for e in examples:
        v = e.response if rng.random() < 0.55 else prefs.rejected_response(e, "wrong", rng)
        verbose.append(" ".join([v] + rng.sample(prefs.FILLER, k=rng.randint(0, 3))))
        concise.append(e.response if rng.random() < 0.75 else prefs.rejected_response(e, "wrong", rng))
    return verbose, concise


def judge_experiment(seed):
    """Both orders with the biased judge, and the unbiased judge's expected win rate of verbose over concise."""
    exs = tasks.examples("heldout", FAMILIES)[:profile.eval_count(90)]
    a, b = two_systems(exs, seed)
    gen = torch.Generator().manual_seed(seed)
    first_ab = torch.tensor([judge_first_wins(e, x, y, gen) for e, x, y in zip(exs, a, b)])
    first_ba = torch.tensor([judge_first_wins(e, y, x, gen) for e, x, y in zip(exs, a, b)])
    truth = sum(1 / (1 + math.exp(-KAPPA * (quality(e, x) - quality(e, y)))) for e, x, y in zip(exs, a, b)) / len(exs)
    len_diff = torch.tensor([float(len(x.split()) - len(y.split())) for x, y in zip(a, b)])
    return first_ab, first_ba, len_diff, truth


# %% [markdown]
# **Position.** Judge every pair twice, A first then B first. Without position bias the first-shown answer wins
# half the time over both orders; a judge that is consistent names the same winner in both orders.
#
# ### Exercise 2
# `swap_debias(first_ab, first_ba)`: `first_ab[i]` is the judge's verdict (1 first wins, ½ tie, 0 second wins, or a
# probability) with system A shown first, `first_ba[i]` with B shown first. Return a dict of Python floats:
# `"raw_a_first"` = mean of `first_ab` (A's win rate from one order only), `"win_rate_a"` = mean of
# $\tfrac12(\text{first\_ab} + 1 - \text{first\_ba})$, `"first_rate"` = mean of $\tfrac12(\text{first\_ab} +
# \text{first\_ba})$, and `"consistency"` = the fraction of prompts whose two orders name the same winner (A in
# both, B in both, or a tie in both). Raise `ValueError` on different lengths or no prompts.

# %% nbgrader={"grade": false, "grade_id": "swap_debias", "locked": false, "schema_version": 3, "solution": true, "task": false}
def swap_debias(first_ab: torch.Tensor, first_ba: torch.Tensor) -> dict[str, float]:
    """(N,), (N,) verdicts 'first shown wins' in the two orders -> raw, debiased, position rate, consistency."""
    ### BEGIN SOLUTION
    if len(first_ab) != len(first_ba):
        raise ValueError(f"{len(first_ab)} verdicts in one order, {len(first_ba)} in the other")
    if len(first_ab) == 0:
        raise ValueError("no verdicts")
    ab, ba = first_ab.double(), first_ba.double()
    a_wins = ((ab > 0.5) & (ba < 0.5)) | ((ab < 0.5) & (ba > 0.5)) | ((ab == 0.5) & (ba == 0.5))
    return {"raw_a_first": ab.mean().item(), "win_rate_a": (0.5 * (ab + 1 - ba)).mean().item(),
            "first_rate": (0.5 * (ab + ba)).mean().item(), "consistency": a_wins.double().mean().item()}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "swap_debias__rates", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_got = swap_debias(torch.tensor([1.0, 1.0, 0.0, 0.5]), torch.tensor([1.0, 0.0, 1.0, 0.5]))
assert type(_got) is dict and all(type(v) is float for v in _got.values()), "a dict of Python floats"
assert _got["raw_a_first"] == 0.625, "A's win rate when A is always shown first"
assert _got["win_rate_a"] == 0.5, "per prompt ½(first_ab + 1 − first_ba): 0.5, 1, 0, 0.5"
assert _got["first_rate"] == 0.625, "per prompt ½(first_ab + first_ba): 1, 0.5, 0.5, 0.5"
### BEGIN HIDDEN TESTS
_got = swap_debias(torch.tensor([0.9, 0.2]), torch.tensor([0.3, 0.6]))
assert abs(_got["win_rate_a"] - 0.55) < 1e-6 and abs(_got["first_rate"] - 0.5) < 1e-6, "probabilities work too"
_got = swap_debias(torch.ones(7), torch.ones(7))
assert _got["first_rate"] == 1.0 and _got["win_rate_a"] == 0.5 and _got["raw_a_first"] == 1.0, \
    "a judge that always picks the first answer: all position, no preference"
_got = swap_debias(torch.tensor([1], dtype=torch.long), torch.tensor([0], dtype=torch.long))
assert _got["win_rate_a"] == 1.0, "integer verdicts"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "swap_debias__consistency_and_errors", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_got = swap_debias(torch.tensor([1.0, 1.0, 0.0, 0.5]), torch.tensor([1.0, 0.0, 1.0, 0.5]))
assert _got["consistency"] == 0.75, "prompt 1 flips with the order; prompt 2 (A), 3 (B) and 4 (tie) agree"
### BEGIN HIDDEN TESTS
_got = swap_debias(torch.tensor([0.5, 0.5, 1.0]), torch.tensor([1.0, 0.0, 0.5]))
assert _got["consistency"] == 0.0, "a tie in one order only is not the same verdict"
assert swap_debias(torch.tensor([0.8]), torch.tensor([0.1]))["consistency"] == 1.0, "probabilities: A in both orders"
for _a, _b in [(torch.ones(2), torch.ones(3)), (torch.tensor([]), torch.tensor([]))]:
    try:
        swap_debias(_a, _b)
        raise AssertionError("different lengths or no prompts must raise ValueError")
    except ValueError:
        pass
### END HIDDEN TESTS

# %% [markdown]
# **Length.** Swapping cancels position, not length: the verbose system is longer in both orders. AlpacaEval's
# length-controlled win rate fits a logistic model of the verdicts with a length term and reports the win rate
# with the length term set to zero.
#
# ### Exercise 3
# `length_controlled_win_rate(wins, len_diff, ridge=1e-3)`: `wins` `(N,)` are position-debiased verdicts of A
# against B in [0, 1], `len_diff` `(N,)` = A's length − B's. With $z_i = \tanh(\Delta\ell_i / s)$, $s$ the
# standard deviation of `len_diff` (`torch.std`, unbiased; $z = 0$ when $s = 0$), find $\theta, \varphi$ minimising
# $\frac1N\sum_i \mathrm{BCE}\big(\sigma(\theta + \varphi z_i), w_i\big) + \frac{\text{ridge}}{2}(\theta^2 +
# \varphi^2)$ — a convex problem; Newton's method converges in a few steps — and return $\sigma(\theta)$ as a float.
# Work in float64 and stay finite when every verdict is a win.

# %% nbgrader={"grade": false, "grade_id": "length_controlled_win_rate", "locked": false, "schema_version": 3, "solution": true, "task": false}
def length_controlled_win_rate(wins: torch.Tensor, len_diff: torch.Tensor, ridge: float = 1e-3) -> float:
    """(N,) verdicts in [0, 1], (N,) length differences -> σ(θ) of the ridge-regularised logistic fit."""
    ### BEGIN SOLUTION
    w = wins.double()
    d = len_diff.double()
    s = d.std() if len(d) > 1 else torch.tensor(0.0, dtype=torch.float64)
    z = torch.tanh(d / s) if s > 0 else torch.zeros_like(d)
    X = torch.stack([torch.ones_like(z), z], dim=1)                  # (N, 2)
    beta = torch.zeros(2, dtype=torch.float64)
    n = len(w)
    for _ in range(100):
        p = torch.sigmoid(X @ beta)
        grad = X.T @ (p - w) / n + ridge * beta
        hess = (X.T * (p * (1 - p))) @ X / n + ridge * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.pinv(hess) @ grad                    # pinv: z may be all zero
        beta = beta - step
        if step.abs().max() < 1e-12:
            break
    return float(torch.sigmoid(beta[0]))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "length_controlled_win_rate__recovers_planted", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_g = torch.Generator().manual_seed(0)
_d = torch.randint(-8, 9, (20000,), generator=_g).double()
_z = torch.tanh(_d / _d.std())
_w = (torch.rand(20000, generator=_g, dtype=torch.float64) < torch.sigmoid(-0.4 + 1.2 * _z)).double()
_got = length_controlled_win_rate(_w, _d)
assert type(_got) is float, "a Python float"
assert abs(_got - 1 / (1 + math.exp(0.4))) < 0.015, f"planted θ = −0.4 → σ(θ) ≈ 0.401, got {_got:.4f}"
### BEGIN HIDDEN TESTS
_d2 = torch.zeros(50)
_w2 = torch.tensor([1.0] * 30 + [0.0] * 20)
assert abs(length_controlled_win_rate(_w2, _d2, ridge=0.0) - 0.6) < 1e-9, \
    "equal lengths, no ridge: the plain win rate"
_d3 = torch.tensor([2.0, -1.0, 4.0, 0.0, -3.0, 1.0])
_w3 = torch.tensor([1.0, 0.0, 1.0, 0.5, 0.0, 1.0])
import scipy.optimize as _so
import numpy as _np


def _ref(w, d, ridge):
    z = _np.tanh(d / d.std(ddof=1))

    def f(b):
        p = 1 / (1 + _np.exp(-(b[0] + b[1] * z)))
        p = _np.clip(p, 1e-300, 1 - 1e-16)
        return -_np.mean(w * _np.log(p) + (1 - w) * _np.log(1 - p)) + ridge / 2 * (b ** 2).sum()
    b = _so.minimize(f, _np.zeros(2), method="BFGS", options={"gtol": 1e-12}).x
    return 1 / (1 + _np.exp(-b[0]))


for _r in (1e-3, 0.3):
    _want = _ref(_w3.numpy().astype(float), _d3.numpy().astype(float), _r)
    assert abs(length_controlled_win_rate(_w3, _d3, ridge=_r) - _want) < 1e-5, f"ridge={_r}: σ(θ) of the stated objective"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "length_controlled_win_rate__degenerate", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_got = length_controlled_win_rate(torch.ones(40), torch.arange(40.0) - 20)
assert math.isfinite(_got) and 0.9 < _got < 1.0, "every verdict a win: the ridge keeps θ finite, σ(θ) below 1"
### BEGIN HIDDEN TESTS
_got = length_controlled_win_rate(torch.zeros(40), torch.arange(40.0))
assert math.isfinite(_got) and 0.0 < _got < 0.1, "every verdict a loss"
_got = length_controlled_win_rate(torch.tensor([1.0]), torch.tensor([5.0]))
assert math.isfinite(_got) and _got > 0.5, "one verdict (no spread of lengths: z = 0)"
_g = torch.Generator().manual_seed(1)
_d = 1e6 * torch.randint(-8, 9, (5000,), generator=_g).float()
_w = (torch.rand(5000, generator=_g) < torch.sigmoid(0.5 + torch.tanh(_d / _d.std()))).float()
_got = length_controlled_win_rate(_w, _d)
assert abs(_got - 1 / (1 + math.exp(-0.5))) < 0.03, "length differences of any scale: z is standardised"
_got2 = length_controlled_win_rate(_w, _d, ridge=5.0)
assert abs(_got2 - 0.5) < abs(_got - 0.5), "a large ridge shrinks θ towards 0 (σ towards ½): the option is used"
### END HIDDEN TESTS

# %%
first_ab, first_ba, len_diff, truth = judge_experiment(0)
swap = swap_debias(first_ab, first_ba)
lc = length_controlled_win_rate(0.5 * (first_ab + 1 - first_ba), len_diff)
print(f"{len(first_ab)} prompts; verbose is longer by {len_diff.mean():.1f} words on average")
print(f"share of verdicts for the first-shown answer: {swap['first_rate']:.2f} (0.50 without position bias); "
      f"same winner in both orders: {swap['consistency']:.2f}")
for name, value in [("raw (verbose always first)", swap["raw_a_first"]), ("swap-debiased", swap["win_rate_a"]),
                    ("swap + length-controlled", lc), ("unbiased judge (truth)", truth)]:
    print(f"  win rate of verbose over concise, {name:28} {value:.3f}   error {value - truth:+.3f}")

# %% [markdown]
# The raw single-order rate flatters whichever system is shown first; swapping removes that, and the
# length-controlled rate removes most of the length reward, landing near what the unbiased judge says (the slow
# test checks the order of the errors on three seeds). Two cautions carry over to real judges. Consistency across
# orders is a cheap health check of a judge — report it. And length control models *a* length effect: it cannot
# tell padding from a genuinely more complete long answer, which is why AlpacaEval also reports the raw rate.

# %% [markdown]
# ## 3. Contamination
#
# A held-out score means something only if the test items were not in the training data. Here we leak them on
# purpose: half of the held-out items (questions with their answers) are added to the SFT data. The model is then
# scored on the whole held-out set — the number a contaminated report would publish — and on each half.
#
# The detector, as in GPT-3 and Llama-2's contamination analyses, looks for long shared word n-grams between each
# test item and the training data.
#
# ### Exercise 4
# `ngram_contamination(test_texts, train_texts, n=8)`: words are `re.findall(r"[a-z0-9]+", text.lower())`. A test
# text is flagged when any of its word n-grams occurs in some training text; a test text with fewer than n words
# (but at least one) is flagged when its whole word sequence occurs contiguously in some training text. Return
# `(rate, flags)`: the fraction flagged (a float) and one bool per test text. Raise `ValueError` on no test texts.

# %% nbgrader={"grade": false, "grade_id": "ngram_contamination", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ngram_contamination(test_texts: list[str], train_texts: list[str], n: int = 8) -> tuple[float, list[bool]]:
    """Flag test texts sharing a word n-gram (or, if shorter, their whole text) with the training texts."""
    ### BEGIN SOLUTION
    if not test_texts:
        raise ValueError("no test texts")

    def words(t):
        return re.findall(r"[a-z0-9]+", t.lower())

    train_words = [words(t) for t in train_texts]
    test_words = [words(t) for t in test_texts]
    sizes = {min(n, len(w)) for w in test_words if w}
    grams = {k: {tuple(w[i:i + k]) for w in train_words for i in range(len(w) - k + 1)} for k in sizes}
    flags = []
    for w in test_words:
        k = min(n, len(w))
        flags.append(bool(w) and any(tuple(w[i:i + k]) in grams[k] for i in range(len(w) - k + 1)))
    return sum(flags) / len(flags), flags
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ngram_contamination__flags", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_train = ["The quick brown fox jumps over the lazy dog today.", "An unrelated sentence about rivers and hills."]
_test = ["Yesterday the QUICK brown fox jumps over the LAZY dog!", "A brown fox naps.", "rivers and hills"]
_rate, _flags = ngram_contamination(_test, _train, n=8)
assert type(_rate) is float and type(_flags) is list and all(type(f) is bool for f in _flags)
assert _flags == [True, False, True], "case and punctuation ignored; a 3-word text is compared whole"
assert abs(_rate - 2 / 3) < 1e-12
### BEGIN HIDDEN TESTS
assert ngram_contamination(["the quick brown fox jumps"], _train, n=3)[1] == [True], "n is honoured (n=3)"
assert ngram_contamination(["quick brown dog"], _train, n=3)[1] == [False], "a 3-gram not in training"
assert ngram_contamination(["fox jumps over the lazy cat"], _train, n=5)[1] == [True], "n=5: 'fox jumps over the lazy'"
assert ngram_contamination(["fox jumps over the lazy cat"], _train, n=6)[1] == [False], "n=6: no 6-gram shared"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "ngram_contamination__edges", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
try:
    ngram_contamination([], ["x"])
    raise AssertionError("no test texts must raise ValueError")
except ValueError:
    pass
### BEGIN HIDDEN TESTS
assert ngram_contamination(["", "..."], ["anything at all"], n=2) == (0.0, [False, False]), "a text with no words"
assert ngram_contamination(["hills rivers"], _train, n=8)[1] == [False], "short texts must match in order"
assert ngram_contamination(["hills"], _train, n=8)[1] == [True], "a one-word text that occurs"
assert ngram_contamination(["a b c"], [], n=2) == (0.0, [False]), "no training texts: nothing flagged"
assert ngram_contamination(["the lazy dog today and more"], ["lazy dog", "today and"], n=3)[1] == [False], \
    "an n-gram must occur inside one training text, not across two"
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "given_contamination", "locked": true, "schema_version": 3, "solution": false, "task": false}
def item_text(e):
    return f"{e.instruction} {e.response}"


def contamination_experiment(seed):
    """SFT on the training examples plus half of the held-out keys' examples (leaked); exact match per half,
    and the detector's flags on the held-out items."""
    held = tasks.examples("heldout", FAMILIES)
    held = profile.eval_items(held)      # all on tiny; the profile's evaluation budget elsewhere
    keys = sorted({(e.category, e.key) for e in held})
    leaked_keys = set(random.Random(seed).sample(keys, len(keys) // 2))
    leaked = [e for e in held if (e.category, e.key) in leaked_keys]
    train = tasks.examples("train", FAMILIES)
    bar = progress(total=2, desc="SFT on leaked data · exact match")
    model = sft_model(train + leaked, seed)
    bar.update()
    correct = [tasks.score(e, g) for e, g in zip(held, answer(model, tokenizer, held, progress=False))]
    bar.update()
    bar.close()
    is_leaked = [(e.category, e.key) in leaked_keys for e in held]
    em = {"reported (all held-out)": sum(correct) / len(held),
          "leaked half": sum(c for c, k in zip(correct, is_leaked) if k) / sum(is_leaked),
          "clean half": sum(c for c, k in zip(correct, is_leaked) if not k) / (len(held) - sum(is_leaked))}
    return held, is_leaked, correct, em, [item_text(e) for e in train + leaked]


# %%
held, is_leaked, correct, em, train_texts = contamination_experiment(0)
for name, value in em.items():
    print(f"exact match, {name:24} {value:.2f}")
for n in (3, 8):
    rate, flags = ngram_contamination([item_text(e) for e in held], train_texts, n=n)
    hits = sum(f and k for f, k in zip(flags, is_leaked))
    print(f"n={n}: {rate:.2f} of held-out items flagged; {hits}/{sum(is_leaked)} leaked found, "
          f"{sum(f and not k for f, k in zip(flags, is_leaked))} clean items flagged")
rate, flags = ngram_contamination([item_text(e) for e in held], train_texts, n=8)
kept = [c for c, f in zip(correct, flags) if not f]
print(f"decontaminated score (unflagged items only, n=8): {sum(kept) / len(kept):.2f} on {len(kept)} items")

# %% [markdown]
# The leaked half scores far above the clean half, so the reported number overstates the model. The detector at
# n = 8 finds exactly the leaked items here; at n = 3 it flags nearly everything, because every tiny-world item
# shares its question template ("What is the capital of") with the training data — too small an n measures the
# template, not the leak. Dropping the flagged items recovers the clean score.
#
# On real data the detector is weaker than here: a **rephrased** test item shares no long n-gram and still
# inflates the score (Yang et al. 2023), and a model trained on the benchmark's web copies leaks without any
# exact string in your own training data. Keep a test set that was never public, or built after the training
# data's cut-off.
