# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 6 · 3 — Constitutional AI / RLAIF, small
#
# Human preference labels are slow and expensive. Constitutional AI (Bai et al., 2022) replaces them: a short
# written **constitution** of principles; an AI critic checks responses against it; revisions and rankings by the
# critic become **preference pairs at scale**; a preference optimiser (here DPO) trains on them. In miniature:
#
# 1. a chatty policy (SFT on answers that often carry pleasantries) — the behaviour to fix;
# 2. a constitution of three principles and **rule-based critics** for each;
# 3. the policy proposes 4 answers per training question; the critics rank them, and the critic's own revision
#    (cut to the first sentence) of a non-compliant answer is a second source of pairs — no human in the loop;
# 4. DPO (trl's `DPOTrainer`) on those pairs; principle compliance on held-out questions before and after, and the
#    held-out rule judge's score (correctness included, which the constitution never mentions).

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import copy
import random
import re
import time

import torch

from course.alignment import train_dpo
from course.generation import answer, chat_prompt, generate
from course.loading import load_base, load_tokenizer
from course.plotting import plot_bars, plt
from course.tinyworld import preferences as tw_prefs
from course.tinyworld import tasks
from course.training import train_sft

tokenizer = load_tokenizer(profile)
train_examples, heldout_examples = tasks.examples("train"), tasks.examples("heldout")

# %% [markdown]
# ## 1. A chatty policy
#
# To have something to fix, the starting policy is fine-tuned on answers of which about four in five end in a pleasantry
# from the tiny world's filler list ("I hope this helps." …) — the kind of habit a model picks up from web chat data.
# Fine-tuning is the course's `course.training.train_sft` (full fine-tune, notebook 1's settings).

# %%
rng = random.Random(0)
chatty_data = [tasks.Example(e.instruction, "", e.response + (" " + rng.choice(tw_prefs.FILLER) if rng.random() < 0.8 else ""),
                             e.category, e.key) for e in train_examples]
print("share of chatty training answers:", f"{sum(e.response != t.response for e, t in zip(chatty_data, train_examples)) / len(chatty_data):.1%}")
t0 = time.perf_counter()
torch.manual_seed(0)
policy, _ = train_sft(load_base(profile), tokenizer, chatty_data, lora=None, max_steps=50, learning_rate=1.2e-3,
                      batch_size=16, scheduler="linear", warmup_ratio=0.0, seed=0)
print(f"chatty SFT in {time.perf_counter() - t0:.1f} s")
for e, a in zip(heldout_examples[::60], answer(policy, tokenizer, heldout_examples[::60], max_new_tokens=32)):
    print(f"  {e.instruction!r:45} -> {a!r}")

# %% [markdown]
# ## 2. The constitution and its critics
#
# Three principles, written for people first; each has a critic that checks it by rule.

# %%
CONSTITUTION = {
    "one_sentence": "Answer in a single sentence: say what was asked and stop.",
    "complete_sentence": "Answer in a complete sentence that ends with a full stop, not a bare word.",
    "no_pleasantries": "Do not add pleasantries or chit-chat (hoping it helps, thanking, wishing a nice day).",
}
PLEASANTRIES = ("hope this helps", "let me know", "thanks for asking", "good question", "have a nice day",
                "that is what i think")
for k, v in CONSTITUTION.items():
    print(f"{k:18} {v}")

# %% [markdown]
# ### Exercise 1 — the critics
# `critique(response)` → `{principle: complies (bool)}` for the three principles:
# - `one_sentence`: at most one sentence — split on whitespace that follows `.`, `!` or `?`
#   (`re.split(r"(?<=[.!?])\s+", text.strip())`);
# - `complete_sentence`: at least 3 words and ends with `.`;
# - `no_pleasantries`: none of `PLEASANTRIES` occurs in the lower-cased response.

# %% nbgrader={"grade": false, "grade_id": "critique", "locked": false, "schema_version": 3, "solution": true, "task": false}
def critique(response):
    """str -> {"one_sentence": bool, "complete_sentence": bool, "no_pleasantries": bool} (True = complies)."""
    ### BEGIN SOLUTION
    text = response.strip()
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
    return {"one_sentence": len(sentences) <= 1,
            "complete_sentence": len(text.split()) >= 3 and text.endswith("."),
            "no_pleasantries": not any(p in text.lower() for p in PLEASANTRIES)}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "critique__flags_violations", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
assert critique("The capital of Peru is Lima.") == {"one_sentence": True, "complete_sentence": True, "no_pleasantries": True}, \
    "a clean answer complies with every principle"
_c = critique("The capital of Peru is Lima. I hope this helps.")
assert not _c["one_sentence"] and not _c["no_pleasantries"] and _c["complete_sentence"], \
    f"two sentences, one of them a pleasantry: {_c}"
assert not critique("Lima")["complete_sentence"], "a bare word is not a complete sentence"
### BEGIN HIDDEN TESTS
assert not critique("The capital of Peru is Lima")["complete_sentence"], "no full stop"
assert not critique("Thanks for asking, the capital of Peru is Lima.")["no_pleasantries"], "case-insensitive"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "critique__agrees_with_the_data", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_prefs = tw_prefs.preferences("heldout")[:90]
assert all(all(critique(p.chosen).values()) for p in _prefs), "every chosen answer of the preference set complies"
_rambling = [p for p in _prefs if p.kind == "rambling"]
assert all(not critique(p.rejected)["one_sentence"] and not critique(p.rejected)["no_pleasantries"] for p in _rambling), \
    "every rambling answer (answer + three filler sentences) breaks one_sentence and no_pleasantries"
### BEGIN HIDDEN TESTS
assert all(not critique(p.rejected)["complete_sentence"] for p in _prefs if p.kind == "curt")
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 — label a pair
# `label_pair(candidates)`: a list of responses to one prompt → `(chosen, rejected)`: the candidate complying with
# the **most** principles and the one with the **fewest** (the first one on ties), or `None` when they all comply
# with as many — a tie carries no preference and must not become a training pair.

# %% nbgrader={"grade": false, "grade_id": "label_pair", "locked": false, "schema_version": 3, "solution": true, "task": false}
def label_pair(candidates):
    """[str] -> (chosen, rejected) by number of principles complied with, or None if no candidate is better."""
    ### BEGIN SOLUTION
    scores = [sum(critique(c).values()) for c in candidates]
    best = max(range(len(candidates)), key=lambda i: (scores[i], -i))
    worst = min(range(len(candidates)), key=lambda i: (scores[i], i))
    if scores[best] == scores[worst]:
        return None
    return candidates[best], candidates[worst]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "label_pair__order", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_good, _chatty, _curt = "The cow says moo.", "The cow says moo. Have a nice day.", "moo"
assert label_pair([_chatty, _good]) == (_good, _chatty), "chosen = the most compliant, rejected = the least"
assert label_pair([_good, _curt, _chatty]) == (_good, _chatty), \
    "curt breaks one principle, chatty two: chatty is the rejected one"
### BEGIN HIDDEN TESTS
assert label_pair([_curt, _good]) == (_good, _curt)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "label_pair__ties_dropped", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert label_pair([_good, "The dog says woof."]) is None, "both fully compliant: no preference, no pair"
assert label_pair([_chatty, "The dog says woof. I hope this helps."]) is None, "equally non-compliant: no pair"
### BEGIN HIDDEN TESTS
assert label_pair([_good]) is None
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Preference pairs at scale, labelled by the critics
#
# The policy proposes 4 answers (temperature 1) to each of 240 training questions; `label_pair` ranks them. A
# second source: the critic's **revision** of a non-compliant answer — its first sentence, which the policy would
# rarely have produced on its own — is preferred to the original (kept only if the revision complies fully).

# %% nbgrader={"grade": false, "grade_id": "given_revise", "locked": true, "schema_version": 3, "solution": false, "task": false}
def revise(response):
    """The critic's revision: keep the first sentence (drops run-ons and pleasantries)."""
    return re.split(r"(?<=[.!?])\s+", response.strip())[0]


# %%
N_PROPOSALS = 4
questions = train_examples[::2][:240]
t0 = time.perf_counter()
torch.manual_seed(0)
flat = generate(policy, tokenizer, [chat_prompt(tokenizer, e.instruction) for e in questions for _ in range(N_PROPOSALS)],
                max_new_tokens=32, batch_size=128, do_sample=True, temperature=1.0)
gen_s = time.perf_counter() - t0
t0 = time.perf_counter()
pairs, sources = [], {"ranked samples": 0, "revisions": 0}
for i, e in enumerate(questions):
    cands = flat[i * N_PROPOSALS:(i + 1) * N_PROPOSALS]
    pair = label_pair(cands)
    if pair:
        pairs.append({"prompt": e.instruction, "chosen": pair[0], "rejected": pair[1]})
        sources["ranked samples"] += 1
    for c in cands[:1]:
        r = revise(c)
        if not all(critique(c).values()) and all(critique(r).values()):
            pairs.append({"prompt": e.instruction, "chosen": r, "rejected": c})
            sources["revisions"] += 1
label_s = time.perf_counter() - t0
print(f"{len(flat)} proposals in {gen_s:.1f} s; critics labelled {len(pairs)} pairs in {label_s * 1000:.0f} ms "
      f"({len(pairs) / max(label_s, 1e-9):,.0f} pairs/s): {sources}")
print("example pair:", pairs[0])
flags = [critique(c) for c in flat]
print("proposals complying, per principle:", {k: f"{sum(f[k] for f in flags) / len(flags):.1%}" for k in CONSTITUTION})

# %% [markdown]
# ## 4. DPO on the AI-labelled pairs, and compliance before and after
#
# trl's `DPOTrainer` (notebook 1 showed it equals our loop) through `course.alignment.train_dpo`, reference = a
# frozen copy of the chatty policy.

# %%
def compliance(model):
    """Greedy answers to the 219 held-out questions -> per-principle compliance, rule-judge score, exact match."""
    a = answer(model, tokenizer, heldout_examples, max_new_tokens=32)
    f = [critique(x) for x in a]
    out = {k: sum(x[k] for x in f) / len(f) for k in CONSTITUTION}
    out["all_principles"] = sum(all(x.values()) for x in f) / len(f)
    out["judge"] = sum(tw_prefs.judge_score(e.category, e.key, x) for e, x in zip(heldout_examples, a)) / len(a)
    out["exact_match"] = tasks.exact_match(heldout_examples, a)
    return out


before = compliance(policy)
t0 = time.perf_counter()
CAI_DPO_STEPS = 20
aligned, _ = train_dpo(copy.deepcopy(policy), copy.deepcopy(policy), tokenizer, pairs, beta=0.5, learning_rate=5e-5,
                       max_steps=CAI_DPO_STEPS, batch_size=8, seed=0)
dpo_s = time.perf_counter() - t0
after = compliance(aligned)
print(f"DPO: {CAI_DPO_STEPS} steps in {dpo_s:.1f} s\n{'held-out (219)':18}{'before':>9}{'after':>9}")
for k in before:
    print(f"{k:18}{before[k]:>9.3f}{after[k]:>9.3f}")

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.6))
keys = list(CONSTITUTION) + ["all_principles"]
x = torch.arange(len(keys)).float()
ax.bar(x - 0.2, [before[k] for k in keys], 0.4, label="chatty SFT")
ax.bar(x + 0.2, [after[k] for k in keys], 0.4, label="after DPO on critic-labelled pairs")
ax.set_xticks(x.tolist(), keys)
ax.set(ylabel="held-out compliance", title="constitution compliance before / after")
ax.legend()
fig.tight_layout()
plt.show()

# %%
gain = after["all_principles"] - before["all_principles"]
print(f"Here {len(pairs)} preference pairs were labelled by {len(CONSTITUTION)} rule critics in {label_s * 1000:.0f} ms, "
      f"with {len(flat)} policy proposals in {gen_s:.1f} s; full compliance on held-out questions went from "
      f"{before['all_principles']:.1%} to {after['all_principles']:.1%} ({gain:+.1%}), and the held-out judge score "
      f"from {before['judge']:.3f} to {after['judge']:.3f} (exact match {before['exact_match']:.3f} -> {after['exact_match']:.3f}).")

# %% [markdown]
# **Why this scales where human labels do not** (the interview question; the sentence printed above gives this run's
# numbers). A human comparison costs seconds to minutes of a trained person's time, and the cost is paid again for
# every pair, every new policy (on-policy data goes stale as the model changes) and every change of guidelines. Here
# the guidelines *are* the constitution: the critics label the policy's own proposals at machine speed, labelling is
# re-run for free after each round, and changing a principle changes every label consistently. The labels are only
# as good as the critics — a principle the critics cannot check is not enforced, and one they check wrongly is
# optimised wrongly (notebook 2's reward model showed the same failure) — so the human effort moves from labelling
# pairs to writing and auditing the constitution and its critics. Check the `judge` and `exact_match` rows too: the
# constitution says nothing about correctness, so any change there is a side effect, not a goal.
