# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 6 · 1 — A DPO training loop from scratch, and SFT vs SFT+DPO vs ORPO on one base
#
# Day 3 wrote the DPO loss and checked it against trl on one batch. Today it trains a model:
#
# 1. **the DPO loop from scratch** (plain PyTorch, no trl) on the tiny preference set, and trl's `DPOTrainer` on the
#    same data in the same order — the two loss curves overlaid;
# 2. a **reward model** (a linear head on frozen base features, Bradley–Terry loss): a second judge the policies
#    never train against;
# 3. **the comparison** on the same tiny base: (a) SFT, (b) SFT then DPO, (c) ORPO in one stage from the base
#    (`trl.experimental.orpo`), over 3 seeds, scored on held-out exact match and on preference win-rate by the
#    held-out rule judge and by the reward model; a table of means and spreads, and whether the ranking holds;
# 4. where MT-Bench / AlpacaEval plug in on the `a100` profile (wired, not run here).
#
# Everything runs on one CPU thread in under a minute, so the step counts are small; every number is computed.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import copy
import time

import torch
import torch.nn.functional as F

from course.alignment import fit_reward_model, train_dpo, train_orpo
from course.generation import answer
from course.loading import load_base, load_tokenizer
from course.plotting import plot_bars, plot_curves, plt
from course.tinyworld import preferences as tw_prefs
from course.tinyworld import tasks
from course.training import train_sft

tokenizer = load_tokenizer(profile)
train_examples, heldout_examples = tasks.examples("train"), tasks.examples("heldout")
train_prefs, heldout_prefs = tw_prefs.preferences("train"), tw_prefs.preferences("heldout")
print(f"instruction examples: {len(train_examples)} train / {len(heldout_examples)} held-out")
print(f"preference pairs:     {len(train_prefs)} train / {len(heldout_prefs)} held-out")
print("held-out prompts are the same questions in both sets:",
      [p.prompt for p in heldout_prefs] == [e.instruction for e in heldout_examples])

# %% [markdown]
# ## 0. Day 3's pieces, given
#
# Read-only: the tokenisation (prompt with the generation prompt, then prompt + response; `-100` on prompt and
# padding), summed sequence log-probabilities and the DPO loss exactly as Day 3 built and checked them against trl.
# Supervised fine-tuning is the course's `course.training.train_sft` (trl's `SFTTrainer`, loss on the response
# tokens only; here a full fine-tune, no LoRA).

# %% nbgrader={"grade": false, "grade_id": "given_day3_pieces", "locked": true, "schema_version": 3, "solution": false, "task": false}
def chat_ids(messages, add_generation_prompt=False):
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                         add_generation_prompt=add_generation_prompt)["input_ids"]


def encode(prompt, response):
    """(token ids of prompt+response in ChatML, number of prompt tokens)."""
    p = chat_ids([{"role": "user", "content": prompt}], add_generation_prompt=True)
    full = chat_ids([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}])
    assert full[:len(p)] == p, "the prompt's tokens must be a prefix of prompt+response"
    return full, len(p)


def collate(encoded):
    """[(ids, prompt_len)] -> input_ids, attention_mask, labels (N, T): right-padded, -100 on prompt and padding."""
    T = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), T), tokenizer.pad_token_id)
    attention_mask = torch.zeros((len(encoded), T), dtype=torch.long)
    labels = torch.full((len(encoded), T), -100)
    for i, (ids, n_prompt) in enumerate(encoded):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention_mask[i, :len(ids)] = 1
        labels[i, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pair_batch(pairs):
    """B preference pairs -> a (2B, T) batch, the B chosen sequences first, then the B rejected."""
    return collate([encode(p.prompt, p.chosen) for p in pairs] + [encode(p.prompt, p.rejected) for p in pairs])


def sequence_logprobs(logits, labels):
    """(N, T, V), (N, T) -> (N,): summed log-probs of the scored (label != -100) tokens, shifted by one."""
    labels = labels[:, 1:]
    mask = labels != -100
    per_token = torch.gather(logits[:, :-1].log_softmax(-1), 2, labels.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)
    return (per_token * mask).sum(-1)


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    """All (B,) -> (losses (B,), chosen_rewards (B,), rejected_rewards (B,)); rewards detached, as trl logs them."""
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


b = pair_batch(train_prefs[:2])
print({k: tuple(v.shape) for k, v in b.items()}, "· scored tokens per row:", (b["labels"] != -100).sum(-1).tolist())

# %% [markdown]
# The SFT model every DPO run starts from (seed 0; §3 trains one per seed). Its outputs are judged by the
# rule judge of the tiny world: **correct**, **complete** (a full sentence) and **concise** (nothing after it).

# %%
SFT_STEPS, SFT_LR = 50, 1.2e-3


def sft(seed):
    """The shipped base fine-tuned on the training examples (full fine-tune, linear decay) with this seed."""
    torch.manual_seed(seed)
    model, losses = train_sft(load_base(profile), tokenizer, train_examples, lora=None, max_steps=SFT_STEPS,
                              learning_rate=SFT_LR, batch_size=16, scheduler="linear", warmup_ratio=0.0, seed=seed)
    return model, losses


t0 = time.perf_counter()
sft_model, sft_losses = sft(0)
print(f"SFT: {SFT_STEPS} steps in {time.perf_counter() - t0:.1f} s, loss {sft_losses[0]:.3f} -> {sft_losses[-1]:.3f}")
gens = answer(sft_model, tokenizer, heldout_examples[::40])
for e, g in zip(heldout_examples[::40], gens):
    print(f"{e.instruction!r:48} -> {g!r}  {tw_prefs.judge(e.category, e.key, g)}")

# %% [markdown]
# ## 1. The DPO loop from scratch
#
# ### Exercise 1 — one DPO step
# `dpo_step(policy, ref_model, batch, optimizer, beta)`: run the policy on the `(2B, T)` batch, run the **frozen**
# reference under `torch.no_grad()` (no graph, no gradient into it), take summed log-probs, split chosen (first
# half) from rejected, average `dpo_loss` over the batch, then the optimiser update — clear old gradients, backward,
# step. Return the loss (a Python float, the loss *before* this update) and the reward accuracy (fraction of pairs
# whose chosen implicit reward is strictly higher).

# %% nbgrader={"grade": false, "grade_id": "dpo_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def dpo_step(policy, ref_model, batch, optimizer, beta):
    """batch: input_ids, attention_mask, labels (2B, T), chosen rows first -> (loss: float, accuracy: float)."""
    ### BEGIN SOLUTION
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    policy_logps = sequence_logprobs(policy(**inputs).logits, batch["labels"])
    with torch.no_grad():
        ref_logps = sequence_logprobs(ref_model(**inputs).logits, batch["labels"])
    losses, chosen_rewards, rejected_rewards = dpo_loss(*policy_logps.chunk(2), *ref_logps.chunk(2), beta)
    loss = losses.mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item(), (chosen_rewards > rejected_rewards).float().mean().item()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "dpo_step__reference_frozen", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_pol, _ref = copy.deepcopy(sft_model), copy.deepcopy(sft_model)
_ref_before = [p.detach().clone() for p in _ref.parameters()]
_loss, _acc = dpo_step(_pol, _ref, pair_batch(train_prefs[:4]), torch.optim.SGD(_pol.parameters(), lr=0.1), 0.1)
assert isinstance(_loss, float) and isinstance(_acc, float), "return Python floats (.item())"
assert abs(_loss - torch.log(torch.tensor(2.0)).item()) < 1e-5, \
    f"policy = reference before the first update, so the loss is log 2 ≈ 0.6931; got {_loss:.4f}"
assert all(p.grad is None for p in _ref.parameters()), \
    "gradients reached the reference model: run it under torch.no_grad() (it is frozen)"
assert all(torch.equal(a, p) for a, p in zip(_ref_before, _ref.parameters())), "the reference must not change"
assert _acc == 0.0, "at the start every implicit reward is 0: ties are not wins, accuracy 0"

# %% nbgrader={"grade": true, "grade_id": "dpo_step__update_direction", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_rows = train_prefs[:4]
_batch = pair_batch(_rows)
_pol, _ref = copy.deepcopy(sft_model), copy.deepcopy(sft_model)
_opt = torch.optim.SGD(_pol.parameters(), lr=0.005)
for _ in range(3):
    _loss, _acc = dpo_step(_pol, _ref, _batch, _opt, 0.1)
with torch.no_grad():
    _lp = sequence_logprobs(_pol(input_ids=_batch["input_ids"], attention_mask=_batch["attention_mask"]).logits, _batch["labels"])
    _rl = sequence_logprobs(_ref(input_ids=_batch["input_ids"], attention_mask=_batch["attention_mask"]).logits, _batch["labels"])
_margin = ((_lp - _rl).chunk(2)[0] - (_lp - _rl).chunk(2)[1]).mean().item()
assert _margin > 0, f"after 3 steps the chosen log-ratio must exceed the rejected one (margin {_margin:.4f} ≤ 0)"
assert _loss < torch.log(torch.tensor(2.0)).item(), "the loss of the third step must be below log 2"
### BEGIN HIDDEN TESTS
assert _acc > 0, "after two updates some pairs have a positive implicit margin"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "dpo_step__fresh_gradients", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_batch = pair_batch(train_prefs[4:8])
_pol, _ref = copy.deepcopy(sft_model), copy.deepcopy(sft_model)
_opt = torch.optim.SGD(_pol.parameters(), lr=0.0)          # lr 0: the weights stay, only the gradients matter
dpo_step(_pol, _ref, _batch, _opt, 0.5)
_g1 = [p.grad.clone() for p in _pol.parameters()]
dpo_step(_pol, _ref, _batch, _opt, 0.5)
_g2 = [p.grad for p in _pol.parameters()]
assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(_g1, _g2)), \
    "the same batch at the same weights must give the same gradient: clear old gradients (zero_grad) each step"
### BEGIN HIDDEN TESTS
assert any(a.abs().sum() > 0 for a in _g1), "the policy must receive gradients"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 — the loop
# `dpo_train(policy, pairs, steps, beta, lr, batch_size, seed)`: the reference is a **frozen copy of the policy
# as it starts** (`copy.deepcopy`, then `requires_grad_(False)`); each step draws `batch_size` pairs with
# `torch.randint(len(pairs), (batch_size,), generator=g)` from a generator seeded with `seed` (so the order depends
# on the seed and nothing else); AdamW with `weight_decay=0.0`. Return the per-step losses and accuracies.

# %% nbgrader={"grade": false, "grade_id": "dpo_train", "locked": false, "schema_version": 3, "solution": true, "task": false}
def dpo_train(policy, pairs, steps, beta=0.1, lr=5e-5, batch_size=8, seed=0):
    """Train `policy` in place with DPO on `pairs`; return {"loss": [...], "accuracy": [...]} per step."""
    ### BEGIN SOLUTION
    ref_model = copy.deepcopy(policy).eval()
    ref_model.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    policy.train()
    history = {"loss": [], "accuracy": []}
    for _ in range(steps):
        idx = torch.randint(len(pairs), (batch_size,), generator=g).tolist()
        loss, acc = dpo_step(policy, ref_model, pair_batch([pairs[i] for i in idx]), optimizer, beta)
        history["loss"].append(loss)
        history["accuracy"].append(acc)
    policy.eval()
    return history
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "dpo_train__reference_is_a_copy", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_pol = copy.deepcopy(sft_model)
_h = dpo_train(_pol, train_prefs[:16], steps=3, beta=0.1, lr=1e-3, batch_size=4, seed=0)
assert set(_h) == {"loss", "accuracy"} and len(_h["loss"]) == 3, "one loss and one accuracy per step"
assert abs(_h["loss"][0] - torch.log(torch.tensor(2.0)).item()) < 1e-5, "step 1: policy = reference, loss = log 2"
assert _h["loss"][2] < _h["loss"][0] - 1e-3, \
    "the loss must fall: the reference is a frozen COPY — if it is the policy itself the loss stays log 2"
assert any(not torch.equal(a, b) for a, b in zip(_pol.parameters(), sft_model.parameters())), "train in place"

# %% nbgrader={"grade": true, "grade_id": "dpo_train__seeded_order", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_runs = {s: dpo_train(copy.deepcopy(sft_model), train_prefs[:64], steps=2, lr=1e-3, batch_size=2, seed=s)["loss"]
         for s in (0, 0, 1)}
_again = dpo_train(copy.deepcopy(sft_model), train_prefs[:64], steps=2, lr=1e-3, batch_size=2, seed=0)["loss"]
assert all(abs(a - b) < 1e-6 for a, b in zip(_runs[0], _again)), "the same seed must give the same run"
assert abs(_runs[0][1] - _runs[1][1]) > 1e-6, "a different seed must draw different batches (seed the generator)"
### BEGIN HIDDEN TESTS
_run2 = dpo_train(copy.deepcopy(sft_model), train_prefs[:64], steps=2, lr=1e-3, batch_size=2, seed=2)["loss"]
assert abs(_run2[1] - _runs[0][1]) > 1e-6 and abs(_run2[1] - _runs[1][1]) > 1e-6
### END HIDDEN TESTS

# %% [markdown]
# ### From scratch vs trl, same data, same order
#
# trl's `DPOTrainer` on exactly the batches our loop drew: the pairs are laid out in the order our generator picks
# them and trl reads them sequentially (`train_sampling_strategy="sequential"`); constant learning rate, AdamW
# without weight decay, no gradient clipping, float32, `ref_model=` a frozen copy (Day 3: trl cannot rebuild a
# reference from an in-memory model). `course.alignment.train_dpo` is a thin wrapper: `DPOTrainer` with CPU settings
# (float32 for a float32 model, no gradient checkpointing, no checkpoints saved) and the log history returned.

# %%
DPO_STEPS, BETA, DPO_LR, DPO_BS = 12, 0.1, 5e-5, 8

scratch_policy = copy.deepcopy(sft_model)
t0 = time.perf_counter()
scratch = dpo_train(scratch_policy, train_prefs, DPO_STEPS, beta=BETA, lr=DPO_LR, batch_size=DPO_BS, seed=0)
scratch_s = time.perf_counter() - t0

_g = torch.Generator().manual_seed(0)
order = [i for _ in range(DPO_STEPS) for i in torch.randint(len(train_prefs), (DPO_BS,), generator=_g).tolist()]
t0 = time.perf_counter()
trl_policy, trl_log = train_dpo(copy.deepcopy(sft_model), copy.deepcopy(sft_model), tokenizer,
                                [train_prefs[i] for i in order], beta=BETA, learning_rate=DPO_LR, max_steps=DPO_STEPS,
                                batch_size=DPO_BS, lr_scheduler_type="constant", max_grad_norm=0.0,
                                train_sampling_strategy="sequential")
trl_s = time.perf_counter() - t0
trl_losses = [h["loss"] for h in trl_log if "loss" in h]
trl_acc = [h["rewards/accuracies"] for h in trl_log if "rewards/accuracies" in h]
gap = max(abs(a - b) for a, b in zip(scratch["loss"], trl_losses))
print(f"from scratch: {DPO_STEPS} steps in {scratch_s:.1f} s · trl: {len(trl_losses)} steps in {trl_s:.1f} s")
print(f"loss step 1: {scratch['loss'][0]:.4f} vs {trl_losses[0]:.4f} · last: {scratch['loss'][-1]:.4f} vs {trl_losses[-1]:.4f}")
print(f"largest per-step |loss difference| over {DPO_STEPS} steps: {gap:.2e}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
plot_curves({"from scratch": scratch["loss"], "trl DPOTrainer": trl_losses}, ax=axes[0], title="DPO loss, same batches")
plot_curves({"from scratch": scratch["accuracy"], "trl DPOTrainer": trl_acc}, ax=axes[1],
            title="reward accuracy", ylabel="accuracy")
axes[0].lines[1].set_linestyle("--")
axes[1].lines[1].set_linestyle("--")
plt.show()

# %% [markdown]
# The curves lie on top of each other: the loop above *is* what `DPOTrainer` does for `loss_type="sigmoid"` (trl
# logs the same batch loss before each update). The small differences come from float summation order.
#
# ## 2. A reward model: a judge the policies never train against
#
# The rule judge (`course.tinyworld.preferences.judge`) is one held-out judge. The second is learned: the shipped
# *base* model's final hidden state at the last token of prompt + response (what `AutoModelForSequenceClassification`
# reads) and the mean over the response tokens, frozen, and a linear head on top trained with the Bradley–Terry loss
# $-\log\sigma(r(x,y_w) - r(x,y_l))$ on the training pairs (Day 2 trains a full reward model; this one costs one
# forward pass per sequence). Given code (`course.alignment.FrozenFeatureRewardModel`); its held-out accuracy, by
# kind of rejected response, is printed below.

# %% nbgrader={"grade": false, "grade_id": "given_reward_model", "locked": true, "schema_version": 3, "solution": false, "task": false}
t0 = time.perf_counter()
reward_model, rm_loss = fit_reward_model(load_base(profile), tokenizer, train_prefs)
rm_margin = (reward_model.score([p.prompt for p in heldout_prefs], [p.chosen for p in heldout_prefs])
             - reward_model.score([p.prompt for p in heldout_prefs], [p.rejected for p in heldout_prefs]))
print(f"reward model trained in {time.perf_counter() - t0:.1f} s, final BT loss {rm_loss:.3f}")
print(f"held-out pairs ranked right: {(rm_margin > 0).float().mean():.1%}")
for kind in tw_prefs.KINDS:
    idx = torch.tensor([p.kind == kind for p in heldout_prefs])
    print(f"  rejected = {kind:9}: {(rm_margin[idx] > 0).float().mean():.1%}")

# %% [markdown]
# ## 3. The comparison: SFT, SFT → DPO, ORPO from the base, 3 seeds
#
# Same base, same data, same budget of optimiser steps per stage; each method is trained with seed 0, 1 and 2
# (the seed sets the data order and torch's RNG). On a fixed half of the held-out questions (every second one:
# items the fine-tuning data never mentions; the count is printed) we measure:
# - **exact match** against the reference answer;
# - **judge score**: the rule judge's 0–3 (correct + complete + concise);
# - **win-rate vs SFT** of the same seed, by the rule judge and by the reward model: the fraction of questions where
#   the method's answer is preferred to the SFT model's, ties counting ½ (SFT against itself is ½ by definition).
#
# ### Exercise 3 — win-rate
# `win_rate(scores_a, scores_b)`: two `(N,)` tensors of scores of answers a and b to the same N questions →
# the fraction of questions where a scores strictly higher, plus half the fraction of ties (a Python float).

# %% nbgrader={"grade": false, "grade_id": "win_rate", "locked": false, "schema_version": 3, "solution": true, "task": false}
def win_rate(scores_a, scores_b):
    """(N,), (N,) -> float: P(a > b) + ½ P(a = b)."""
    ### BEGIN SOLUTION
    scores_a, scores_b = torch.as_tensor(scores_a, dtype=torch.float), torch.as_tensor(scores_b, dtype=torch.float)
    return ((scores_a > scores_b).float() + 0.5 * (scores_a == scores_b).float()).mean().item()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "win_rate__values", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert win_rate(torch.tensor([3.0, 2.0, 1.0, 0.0]), torch.tensor([1.0, 2.0, 3.0, 3.0])) == 0.375, \
    "1 win, 1 tie, 2 losses of 4: (1 + ½) / 4 = 0.375"
assert isinstance(win_rate(torch.ones(2), torch.zeros(2)), float), "return a Python float"
### BEGIN HIDDEN TESTS
assert win_rate(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 2.0])) == 0.5
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "win_rate__symmetry", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_g = torch.Generator().manual_seed(3)
_a, _b = torch.randint(0, 4, (50,), generator=_g), torch.randint(0, 4, (50,), generator=_g)
assert abs(win_rate(_a, _b) + win_rate(_b, _a) - 1.0) < 1e-6, "win_rate(a, b) + win_rate(b, a) = 1 (ties split)"
assert win_rate(_a, _a) == 0.5, "an answer set against itself: all ties, 0.5"

# %% [markdown]
# The three methods, given. ORPO runs on trl's `ORPOTrainer` through `course.alignment.train_orpo` (λ is trl's
# `beta`), from the **base** model, with the SFT run's learning rate and as many steps; to keep the notebook
# inside its time budget each ORPO step sees 4 pairs = 8 sequences, half of an SFT step's 16 (so ORPO gets the
# smaller budget: read its row with that in mind). Sequences are cut at 48 tokens: that shortens only the rambling rejections,
# which still run well past the chosen answer they start with.

# %% nbgrader={"grade": false, "grade_id": "given_methods", "locked": true, "schema_version": 3, "solution": false, "task": false}
ORPO_LAMBDA, ORPO_STEPS, ORPO_BS, ORPO_MAX_LENGTH = 0.1, SFT_STEPS, 4, 48
EVAL = heldout_examples[::2]                    # a fixed half of the held-out questions, the same for every model


def train_seed(seed):
    """The three methods with this seed -> {method: model (eval mode)}. SFT is trained once per seed and SFT+DPO
    starts from a copy of it; ORPO starts from the shipped base. Seed 0 reuses the models of §0 and §1."""
    sft_m = sft_model if seed == 0 else sft(seed)[0]
    if seed == 0:
        dpo_m = scratch_policy
    else:
        dpo_m = copy.deepcopy(sft_m)
        dpo_train(dpo_m, train_prefs, DPO_STEPS, beta=BETA, lr=DPO_LR, batch_size=DPO_BS, seed=seed)
    torch.manual_seed(seed)
    orpo_m, _ = train_orpo(load_base(profile), tokenizer, train_prefs, lam=ORPO_LAMBDA, learning_rate=SFT_LR,
                           max_steps=ORPO_STEPS, batch_size=ORPO_BS, seed=seed, max_length=ORPO_MAX_LENGTH)
    return {"sft": sft_m, "sft+dpo": dpo_m.eval(), "orpo": orpo_m}


def evaluate(model):
    """Greedy answers to the evaluation questions and their scores (rule judge 0–3, reward model, exact match)."""
    answers = answer(model, tokenizer, EVAL)
    judge = torch.tensor([tw_prefs.judge_score(e.category, e.key, a) for e, a in zip(EVAL, answers)])
    reward = reward_model.score([e.instruction for e in EVAL], answers)
    return {"answers": answers, "judge": judge, "reward": reward, "exact_match": tasks.exact_match(EVAL, answers)}


# %%
METHODS, SEEDS = ("sft", "sft+dpo", "orpo"), (0, 1, 2)
runs, results = {}, {}
t0 = time.perf_counter()
for seed in SEEDS:
    for method, model in train_seed(seed).items():
        runs[method, seed] = evaluate(model)
    base = runs["sft", seed]
    for method in METHODS:
        r = runs[method, seed]
        results[method, seed] = {"exact_match": r["exact_match"], "judge_score": r["judge"].float().mean().item(),
                                 "judge_win_vs_sft": win_rate(r["judge"], base["judge"]),
                                 "rm_win_vs_sft": win_rate(r["reward"], base["reward"]),
                                 "reward": r["reward"].mean().item()}
    print(f"seed {seed}: " + " · ".join(f"{m} EM {results[m, seed]['exact_match']:.3f}" for m in METHODS)
          + f"   ({time.perf_counter() - t0:.0f} s so far)")
print(f"{len(EVAL)} evaluation questions per model")

# %% [markdown]
# ### Exercise 4 — means, spreads and whether the ranking holds
# `summarize(results, methods, seeds, metric)` → `{method: (mean, std)}` over the seeds, with the **sample**
# standard deviation (`ddof=1`; `torch.std`'s default). `ranking(results, methods, seed, metric)` → the methods
# sorted best first by that metric at one seed; `ranking_holds(...)` → True iff every seed gives the same ranking.

# %% nbgrader={"grade": false, "grade_id": "summarize", "locked": false, "schema_version": 3, "solution": true, "task": false}
def summarize(results, methods, seeds, metric):
    """results[(method, seed)][metric] -> {method: (mean over seeds, sample std over seeds)} as floats."""
    ### BEGIN SOLUTION
    out = {}
    for m in methods:
        v = torch.tensor([results[m, s][metric] for s in seeds], dtype=torch.float64)
        out[m] = (v.mean().item(), v.std().item())
    return out
    ### END SOLUTION


def ranking(results, methods, seed, metric):
    """Methods sorted by results[(method, seed)][metric], best (highest) first."""
    ### BEGIN SOLUTION
    return sorted(methods, key=lambda m: results[m, seed][metric], reverse=True)
    ### END SOLUTION


def ranking_holds(results, methods, seeds, metric):
    """True iff every seed ranks the methods in the same order."""
    ### BEGIN SOLUTION
    return len({tuple(ranking(results, methods, s, metric)) for s in seeds}) == 1
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "summarize__mean_std", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_res = {("a", 0): {"m": 1.0}, ("a", 1): {"m": 2.0}, ("a", 2): {"m": 3.0},
        ("b", 0): {"m": 0.5}, ("b", 1): {"m": 0.5}, ("b", 2): {"m": 0.5}}
_s = summarize(_res, ("a", "b"), (0, 1, 2), "m")
assert set(_s) == {"a", "b"}, "one entry per method"
assert abs(_s["a"][0] - 2.0) < 1e-9 and abs(_s["b"][0] - 0.5) < 1e-9, "the mean over the seeds, per method"
assert abs(_s["a"][1] - 1.0) < 1e-9, "sample std (ddof=1) of 1, 2, 3 is 1.0 (population std would be 0.816)"
assert _s["b"][1] == 0.0, "no spread when every seed agrees"

# %% nbgrader={"grade": true, "grade_id": "summarize__ranking", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_res = {("a", 0): {"m": 0.9}, ("b", 0): {"m": 0.2}, ("c", 0): {"m": 0.5},
        ("a", 1): {"m": 0.8}, ("b", 1): {"m": 0.1}, ("c", 1): {"m": 0.6},
        ("a", 2): {"m": 0.4}, ("b", 2): {"m": 0.3}, ("c", 2): {"m": 0.7}}
assert ranking(_res, ("a", "b", "c"), 0, "m") == ["a", "c", "b"], "best (highest) first"
assert ranking_holds(_res, ("a", "b", "c"), (0, 1), "m"), "seeds 0 and 1 agree: a > c > b"
assert not ranking_holds(_res, ("a", "b", "c"), (0, 1, 2), "m"), "seed 2 ranks c first: the ranking does not hold"
### BEGIN HIDDEN TESTS
assert not ranking_holds(_res, ("a", "b", "c"), (2, 0), "m"), "every seed counts, not only the first"
assert ranking(_res, ("a", "b", "c"), 2, "m") == ["c", "a", "b"]
### END HIDDEN TESTS

# %% [markdown]
# ### The table

# %%
METRICS = ("exact_match", "judge_score", "judge_win_vs_sft", "rm_win_vs_sft", "reward")
table = {metric: summarize(results, METHODS, SEEDS, metric) for metric in METRICS}
print(f"{'method':10}" + "".join(f"{m:>22}" for m in METRICS))
for method in METHODS:
    print(f"{method:10}" + "".join(f"{table[m][method][0]:>13.3f} ± {table[m][method][1]:<6.3f}" for m in METRICS))
print("\nranking per seed and whether it holds across the 3 seeds:")
for metric in METRICS:
    if metric in ("judge_win_vs_sft", "rm_win_vs_sft"):
        continue                                                     # SFT is ½ by definition there
    per_seed = [" > ".join(ranking(results, METHODS, s, metric)) for s in SEEDS]
    print(f"  {metric:12} holds: {str(ranking_holds(results, METHODS, SEEDS, metric)):5}  " + " | ".join(per_seed))

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for ax, metric in zip(axes, ("exact_match", "judge_score", "rm_win_vs_sft")):
    plot_bars({m: table[metric][m][0] for m in METHODS}, errors={m: table[metric][m][1] for m in METHODS}, ax=ax,
              title=f"{metric} (mean ± std, 3 seeds)")
plt.show()

# %%
by_kind = {}
for method in METHODS:
    flags = [tw_prefs.judge(e.category, e.key, a) for s in SEEDS
             for e, a in zip(EVAL, runs[method, s]["answers"])]
    by_kind[method] = {k: sum(f[k] for f in flags) / len(flags) for k in ("correct", "complete", "concise")}
    print(f"{method:8} " + "  ".join(f"{k} {v:.1%}" for k, v in by_kind[method].items()))
em_holds = ranking_holds(results, METHODS, SEEDS, "exact_match")
print("exact-match ranking holds across seeds:", em_holds)

# %%
def better(metric, a, b):
    """Is method a's mean above method b's by more than the larger of their spreads?"""
    (ma, sa), (mb, sb) = table[metric][a], table[metric][b]
    return "above" if ma - mb > max(sa, sb) else "below" if mb - ma > max(sa, sb) else "within the spread of"


for metric in ("exact_match", "judge_score", "reward"):
    print(f"{metric:12}: sft+dpo is {better(metric, 'sft+dpo', 'sft')} sft · orpo is {better(metric, 'orpo', 'sft')} sft")
print(f"rule judge vs reward model on sft+dpo: judge win-rate {table['judge_win_vs_sft']['sft+dpo'][0]:.3f}, "
      f"reward-model win-rate {table['rm_win_vs_sft']['sft+dpo'][0]:.3f} (0.5 = no better than SFT)")
print(f"reward model's held-out accuracy on 'wrong' pairs (correctness): "
      f"{(rm_margin[torch.tensor([p.kind == 'wrong' for p in heldout_prefs])] > 0).float().mean():.1%}")

# %% [markdown]
# **Reading the table.** The rows and the checks printed above are this run's numbers; `holds` says whether a
# ranking survived all 3 seeds — where it says `False`, the seed-to-seed spread is as large as the gap between
# methods and no ranking may be claimed. What the mechanisms predict, to compare with the printout:
#
# - **SFT** already produces the chosen style (complete, concise sentences): the `curt` and `rambling` rejections
#   teach it little it has not seen. What is left is *correctness* on held-out items — a knowledge problem that
#   preference pairs about *other* items cannot fix.
# - **SFT → DPO**: the summed log-ratio pushes the `rambling` rejections — which *start* with the chosen sentence —
#   down, and part of that push lands on the shared tokens and the end-of-sentence: watch the `complete` column fall
#   (answers that run on, "Buenos…The capital of…"). This is *likelihood displacement*; the remedies are a larger β,
#   a smaller learning rate, fewer steps, or an SFT term in the loss (trl's `rpo_alpha`).

# %% [markdown]
# - **Two judges disagree.** The reward model cannot check facts well (its accuracy on `wrong` pairs is printed
#   above), so it can score a policy up while the rule judge scores it down — why a policy is evaluated by a judge
#   it never trained against, and by more than one.
# - **ORPO** must learn format and preference in one stage from the base within the same number of steps, each step
#   seeing 4 pairs where an SFT step sees 16 examples: at this budget expect it to lag SFT (the table says by how
#   much); its claim is one stage and no reference model, not more from less data.

# %% [markdown]
# ## 4. MT-Bench and AlpacaEval on the `a100` profile (wired, not run here)
#
# Open-ended benchmarks need a strong judge model (GPT-4-class) and the network, so CI does not run them. The code
# path is the same as above: `answer(model, tokenizer, ...)` on the benchmark's questions, written in the format the
# tools read. With `PROFILE = "a100"` the cell below writes AlpacaEval's `model_outputs.json` for the three methods
# (instruction / output / generator) and prints the commands; on `tiny` it writes the same file for the tiny models
# on our held-out questions, so the path is exercised, and prints the commands without running them.
#
# ```bash
# pip install alpaca-eval                      # AlpacaEval 2 (length-controlled win-rate vs GPT-4 Turbo)
# export OPENAI_API_KEY=...                    # the judge is an API model
# alpaca_eval --model_outputs outputs/sft+dpo.json --reference_outputs outputs/sft.json \
#             --annotators_config weighted_alpaca_eval_gpt4_turbo
# # MT-Bench (FastChat's llm_judge): 80 two-turn questions, GPT-4 grades 1–10
# git clone https://github.com/lm-sys/FastChat && cd FastChat/fastchat/llm_judge
# python gen_model_answer.py --model-path <merged-model-dir> --model-id sft-dpo
# python gen_judgment.py --model-list sft sft-dpo orpo --parallel 4
# python show_result.py
# ```

# %%
import json
import tempfile
from pathlib import Path


def write_alpaca_eval_outputs(models, questions, out_dir):
    """{name: model} and a list of instructions -> one AlpacaEval model_outputs JSON per model; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, model in models.items():
        prompts = [type("Q", (), {"instruction": q, "context": ""})() for q in questions]
        outputs = answer(model, tokenizer, prompts, max_new_tokens=24 if profile.name == "tiny" else 512)
        rows = [{"instruction": q, "output": o, "generator": name} for q, o in zip(questions, outputs)]
        paths[name] = out_dir / f"{name}.json"
        paths[name].write_text(json.dumps(rows, indent=1))
    return paths


bench_questions = [e.instruction for e in heldout_examples[:8]]       # a100: the AlpacaEval / MT-Bench questions
paths = write_alpaca_eval_outputs({"sft": sft_model, "sft+dpo": scratch_policy}, bench_questions,
                                  Path(tempfile.gettempdir()) / "course_day6_alpaca_eval")
print({k: str(v) for k, v in paths.items()})
print("then (a100, with a judge API key):",
      f"alpaca_eval --model_outputs {paths['sft+dpo']} --reference_outputs {paths['sft']} "
      "--annotators_config weighted_alpaca_eval_gpt4_turbo")
