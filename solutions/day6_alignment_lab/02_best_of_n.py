# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 6 · 2 — Rejection sampling (best-of-n) with a reward model
#
# The cheapest way to use a reward model: sample n answers per prompt from the policy, keep the one the reward model
# likes best. No gradient, no RL — just n times the generation cost (and n reward-model passes). This notebook
#
# 1. samples 16 answers per held-out question from an SFT policy (temperature 1);
# 2. keeps the reward model's best of the first n = 1, 4, 16 and measures what that buys — mean reward, the rule
#    judge's score and win-rate against plain sampling (n = 1), exact match — and what it costs in forward passes;
# 3. runs **one round of rejection-sampling fine-tuning**: best-of-16 answers to *training* questions become new
#    SFT data, and we measure the policy before and after (against the same round on unselected samples).
#
# The reward model is notebook 1's (a linear Bradley–Terry head on frozen base features); the rule judge is a
# held-out judge that neither the policy nor the selection ever sees.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import copy
import time

import torch

from course.alignment import fit_reward_model
from course.generation import answer, chat_prompt, generate
from course.loading import load_base, load_tokenizer
from course.plotting import plot_curves, plt
from course.tinyworld import preferences as tw_prefs
from course.tinyworld import tasks
from course.training import train_sft

tokenizer = load_tokenizer(profile)
train_examples, heldout_examples = tasks.examples("train"), tasks.examples("heldout")
train_prefs = tw_prefs.preferences("train")

# %% [markdown]
# Given code, as in notebook 1: the reward model (`course.alignment.FrozenFeatureRewardModel`, a linear
# Bradley–Terry head on the frozen base's features, fitted to the training pairs; notebook 1 measured its held-out
# accuracy) and an SFT policy from `course.training.train_sft` (full fine-tune, notebook 1's settings).

# %% nbgrader={"grade": false, "grade_id": "given_reward_model", "locked": true, "schema_version": 3, "solution": false, "task": false}
t0 = time.perf_counter()
reward_model, rm_loss = fit_reward_model(load_base(profile), tokenizer, train_prefs)
print(f"reward model: final Bradley–Terry loss {rm_loss:.3f} ({time.perf_counter() - t0:.1f} s)")

# %%
SFT_STEPS, SFT_LR = 50, 1.2e-3
t0 = time.perf_counter()
torch.manual_seed(0)
policy, sft_losses = train_sft(load_base(profile), tokenizer, train_examples, lora=None, max_steps=SFT_STEPS,
                               learning_rate=SFT_LR, batch_size=16, scheduler="linear", warmup_ratio=0.0, seed=0)
print(f"SFT policy: {SFT_STEPS} steps, loss {sft_losses[0]:.3f} -> {sft_losses[-1]:.3f} ({time.perf_counter() - t0:.1f} s)")

# %% [markdown]
# ## 1. Sixteen samples per question
#
# One batched call samples every question 16 times (`course.generation.generate` with `do_sample=True`); the
# reward model scores all of them. `samples[p][k]` is the k-th sample for question p, `rewards` is `(P, 16)`.

# %%
N_MAX, TEMPERATURE = 16, 1.0
questions = heldout_examples[::4]                                    # every fourth held-out question (count printed)


def sample_and_score(model, examples, n, seed=0):
    """n samples per example -> (samples [P][n], rewards (P, n), generated-token counts (P, n))."""
    torch.manual_seed(seed)
    prompts = [chat_prompt(tokenizer, e.instruction) for e in examples for _ in range(n)]
    flat = generate(model, tokenizer, prompts, max_new_tokens=24, batch_size=128, do_sample=True, temperature=TEMPERATURE)
    samples = [flat[i * n:(i + 1) * n] for i in range(len(examples))]
    rewards = reward_model.score([e.instruction for e in examples for _ in range(n)], flat).view(len(examples), n)
    lengths = torch.tensor([len(tokenizer(s, add_special_tokens=False)["input_ids"]) + 1 for s in flat]).view(len(examples), n)
    return samples, rewards, lengths


t0 = time.perf_counter()
samples, rewards, lengths = sample_and_score(policy, questions, N_MAX)
print(f"{len(questions)} questions × {N_MAX} samples in {time.perf_counter() - t0:.1f} s; rewards {tuple(rewards.shape)}")
for k in range(4):
    e = questions[0]
    print(f"  reward {rewards[0, k]:6.2f} judge {tw_prefs.judge_score(e.category, e.key, samples[0][k])}  {samples[0][k]!r}")

# %% [markdown]
# ### Exercise 1 — keep the best of the first n
# `best_of_n(rewards, n)`: rewards `(P, N)` of N samples per prompt (N ≥ n) → the index `(P,)` of the highest
# reward among the **first n** samples of each prompt (so n = 1, 4, 16 reuse one set of samples, nested).

# %% nbgrader={"grade": false, "grade_id": "best_of_n", "locked": false, "schema_version": 3, "solution": true, "task": false}
def best_of_n(rewards, n):
    """rewards: (P, N), N >= n -> (P,) long: index of the best of samples 0..n-1 of each prompt."""
    ### BEGIN SOLUTION
    return rewards[:, :n].argmax(dim=1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "best_of_n__picks_the_best", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_r = torch.tensor([[0.1, 0.9, -1.0, 0.3], [2.0, 0.0, 1.0, 5.0], [0.0, -1.0, 3.0, 1.0]])
assert best_of_n(_r, 4).tolist() == [1, 3, 2], "the index of each row's highest reward (not the lowest)"
assert best_of_n(_r, 4).shape == (3,), "one index per prompt: reduce over the samples, dim 1"
### BEGIN HIDDEN TESTS
assert best_of_n(torch.tensor([[1.0, 2.0], [3.0, 4.0], [9.0, 0.0]]), 2).tolist() == [1, 1, 0]
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "best_of_n__first_n_only", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert best_of_n(_r, 1).tolist() == [0, 0, 0], "n = 1 is plain sampling: the first sample, whatever its reward"
assert best_of_n(_r, 2).tolist() == [1, 0, 0], "only samples 0..n-1 compete"
### BEGIN HIDDEN TESTS
assert best_of_n(_r, 3).tolist() == [1, 0, 2]
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 — what it costs
# `forward_passes(lengths, n)`: with a KV cache, generating a sample costs one forward pass per generated token
# (the prompt's prefill counted as one more), and scoring it costs one reward-model pass. From the `(P, N)` generated
# token counts return `{"policy": ..., "reward_model": ...}` — the totals (ints) for the first n samples of every
# prompt.

# %% nbgrader={"grade": false, "grade_id": "forward_passes", "locked": false, "schema_version": 3, "solution": true, "task": false}
def forward_passes(lengths, n):
    """lengths: (P, N) generated tokens per sample -> {"policy": int, "reward_model": int} for the first n samples."""
    ### BEGIN SOLUTION
    used = lengths[:, :n]
    return {"policy": int((used + 1).sum()), "reward_model": int(used.numel())}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "forward_passes__small_example", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_len = torch.tensor([[3, 5, 2], [4, 4, 1]])
assert forward_passes(_len, 1) == {"policy": (3 + 1) + (4 + 1), "reward_model": 2}, \
    "n = 1: each prompt's first sample — its tokens plus one prefill pass — and one reward-model pass each"
assert forward_passes(_len, 3) == {"policy": 25, "reward_model": 6}, "n = 3: all six samples, 19 tokens + 6 prefills"

# %% nbgrader={"grade": true, "grade_id": "forward_passes__grows_with_n", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_c = {n: forward_passes(lengths, n) for n in (1, 4, 16)}
assert _c[4]["reward_model"] == 4 * _c[1]["reward_model"] and _c[16]["reward_model"] == 16 * _c[1]["reward_model"], \
    "the reward model scores every sample: n passes per prompt"
assert _c[1]["policy"] < _c[4]["policy"] < _c[16]["policy"], "more samples, more generation passes"
### BEGIN HIDDEN TESTS
assert _c[16]["policy"] == int(lengths.sum()) + lengths.numel()
### END HIDDEN TESTS

# %% [markdown]
# ## 2. What best-of-n buys
#
# For n = 1, 4, 16: the kept sample's reward, the rule judge's 0–3 score, the judge's win-rate against plain
# sampling (n = 1; ties count ½), exact match, and the cost relative to n = 1. Greedy decoding is printed for scale.

# %%
def judge_scores(examples, responses):
    return torch.tensor([tw_prefs.judge_score(e.category, e.key, r) for e, r in zip(examples, responses)], dtype=torch.float)


def win_rate(a, b):
    return ((a > b).float() + 0.5 * (a == b).float()).mean().item()


plain = None
bon = {}
for n in (1, 4, 16):
    idx = best_of_n(rewards, n)
    kept = [samples[p][i] for p, i in enumerate(idx.tolist())]
    js = judge_scores(questions, kept)
    plain = js if n == 1 else plain
    cost = forward_passes(lengths, n)
    bon[n] = {"reward": rewards[torch.arange(len(idx)), idx].mean().item(), "judge": js.mean().item(),
              "win_vs_n1": win_rate(js, plain), "exact_match": tasks.exact_match(questions, kept),
              "policy_passes": cost["policy"], "rm_passes": cost["reward_model"]}
greedy = answer(policy, tokenizer, questions)
print(f"{'':8}{'reward':>8}{'judge':>8}{'win vs n=1':>12}{'exact':>8}{'policy passes':>15}{'RM passes':>11}")
for n, r in bon.items():
    print(f"n = {n:<4}{r['reward']:>8.3f}{r['judge']:>8.3f}{r['win_vs_n1']:>12.3f}{r['exact_match']:>8.3f}"
          f"{r['policy_passes']:>15,}{r['rm_passes']:>11,}")
gj = judge_scores(questions, greedy)
print(f"{'greedy':8}{reward_model.score([e.instruction for e in questions], greedy).mean():>8.3f}{gj.mean():>8.3f}"
      f"{win_rate(gj, plain):>12.3f}{tasks.exact_match(questions, greedy):>8.3f}")
print(f"cost of n = 16 over n = 1: {bon[16]['policy_passes'] / bon[1]['policy_passes']:.1f}× policy passes, "
      f"{bon[16]['rm_passes'] // bon[1]['rm_passes']}× reward-model passes")

# %%
ns = list(bon)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
plot_curves({"reward model (kept sample)": (ns, [bon[n]["reward"] for n in ns])}, ax=axes[0], xlabel="n",
            ylabel="reward", title="best-of-n: the selection score")
plot_curves({"rule judge score": (ns, [bon[n]["judge"] for n in ns]),
             "exact match × 3": (ns, [3 * bon[n]["exact_match"] for n in ns])}, ax=axes[1], xlabel="n",
            ylabel="held-out judge", title="best-of-n: judges it never saw")
for ax in axes:
    ax.set_xscale("log", base=2)
plt.show()

# %% [markdown]
# The reward of the kept sample rises with n by construction (a max over more draws). Whether the *held-out*
# judge agrees is the real question — compare the `reward` and `judge` columns. When the reward climbs while the
# judge's score and win-rate fall, the selection is exploiting the reward model's blind spot: this one is strong on
# format and weak on facts (notebook 1 printed its accuracy on `wrong` pairs), so the more samples it chooses
# from, the more likely it finds a fluent *wrong* answer it scores above a right one. That is reward
# over-optimisation (Goodhart) in miniature, and the reason best-of-n is reported against an independent judge.
# The cost grows linearly in n at inference time, for every query — the motivation for distilling the selection
# back into the weights:
#
# ## 3. One round of rejection-sampling fine-tuning
#
# Best-of-16 answers to 48 *training* questions become SFT data; the policy trains on them for 20 steps. Control:
# the same round on the first (unselected) sample of each question, so that any gain can be credited to the
# selection rather than to the extra steps. Measured on all 219 held-out questions, greedy.

# %%
ROUND_QUESTIONS, ROUND_STEPS, ROUND_LR = train_examples[::10][:48], 20, 3e-4
t0 = time.perf_counter()
r_samples, r_rewards, _ = sample_and_score(policy, ROUND_QUESTIONS, N_MAX, seed=1)
best_idx = best_of_n(r_rewards, N_MAX)


def as_examples(responses):
    return [tasks.Example(e.instruction, "", r, e.category, e.key) for e, r in zip(ROUND_QUESTIONS, responses)]


datasets_ = {"best-of-16": as_examples([r_samples[p][i] for p, i in enumerate(best_idx.tolist())]),
             "first sample": as_examples([s[0] for s in r_samples])}


def heldout_report(model):
    a = answer(model, tokenizer, heldout_examples)
    return {"exact_match": tasks.exact_match(heldout_examples, a),
            "judge": judge_scores(heldout_examples, a).mean().item(),
            "reward": reward_model.score([e.instruction for e in heldout_examples], a).mean().item()}


round_results = {"before": heldout_report(policy)}
for name, data in datasets_.items():
    print(f"{name:13} data: judge {judge_scores(ROUND_QUESTIONS, [d.response for d in data]).mean():.3f}, "
          f"exact {tasks.exact_match(ROUND_QUESTIONS, [d.response for d in data]):.3f}")
    m, _ = train_sft(copy.deepcopy(policy), tokenizer, data, lora=None, max_steps=ROUND_STEPS, learning_rate=ROUND_LR,
                     batch_size=16, scheduler="linear", warmup_ratio=0.0, seed=0)
    round_results["after " + name] = heldout_report(m)
print(f"(round: {time.perf_counter() - t0:.1f} s)\n{'held-out, greedy':22}{'exact':>8}{'judge':>8}{'reward':>8}")
for k, r in round_results.items():
    print(f"{k:22}{r['exact_match']:>8.3f}{r['judge']:>8.3f}{r['reward']:>8.3f}")
gain = {k: round_results["after " + k]["judge"] - round_results["before"]["judge"] for k in datasets_}
print(f"judge change: best-of-16 data {gain['best-of-16']:+.3f}, unselected data {gain['first sample']:+.3f} -> "
      f"selection {'helped' if gain['best-of-16'] > gain['first sample'] else 'did not help'} in this run")

# %% [markdown]
# **Interview answers this notebook backs with numbers**
# - *What does best-of-n cost?* n generations and n reward-model passes per query, every time (table above);
#   the gain in the reward model's score is guaranteed, the gain by an independent judge is not.
# - *Rejection sampling vs RL?* One round of "sample, keep the best, fine-tune" (expert iteration, as in Llama 2's
#   RLHF) moves the policy toward what the selection prefers with plain SFT machinery; compare the two rows above
#   to see how much the *selection* contributed beyond more training steps.
