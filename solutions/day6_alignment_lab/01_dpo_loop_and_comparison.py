# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 6 · 1 — A DPO loop from scratch, and SFT vs SFT+DPO vs SFT+ORPO on one base
#
# Day 3 wrote the DPO loss and checked it against trl on one batch. Today it trains a model, and the comparison the
# seed asks for is run so that it can show something:
#
# 1. **SFT on noisy demonstrations.** Real demonstration sets are uneven; here one annotator's answers (two task
#    families) usually end in a pleasantry. The SFT policy learns the habit: a measured *defect*.
# 2. **On-policy preference pairs**: sample the SFT policy, label its own answers with the rule judge.
# 3. **The DPO loop from scratch** (the exercises) on those pairs, against trl's `DPOTrainer` on the same batches;
#    then an **off-policy contrast** (the shipped pairs, strings the policy never writes) read through
#    `rewards/chosen` and `rewards/rejected`.
# 4. **SFT+ORPO** on the same pairs with the same budget: prompt-masked NLL, λ tuned on validation questions, its
#    NLL shown to have flattened before it is compared.
# 5. **The comparison** over 3 seeds: paired differences against SFT on all held-out questions with bootstrap 95 %
#    confidence intervals, and a ranking claimed only where an interval excludes 0.
#
# Everything runs on one CPU thread; every number the text relies on is printed beside it.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import copy
import random
import time

import torch
import torch.nn.functional as F

from course.alignment import train_dpo
from course.generation import answer, chat_prompt, generate
from course.loading import load_base, load_tokenizer
from course.notebook import progress
from course.plotting import plot_bars, plot_curves, plt
from course.tinyworld import preferences as tw_prefs
from course.tinyworld import tasks
from course.training import train_sft

tokenizer = load_tokenizer(profile)


train_examples, heldout_examples = tasks.examples("train"), tasks.examples("heldout")
heldout_examples = profile.eval_items(heldout_examples)   # all of them on tiny
train_prefs = tw_prefs.preferences("train")           # the shipped, off-policy pairs (used in §3 as the contrast)
print(f"instruction examples: {len(train_examples)} train / {len(heldout_examples)} held-out")
print(f"shipped preference pairs: {len(train_prefs)} (rejected = wrong / curt / rambling strings written by rule)")

# %% [markdown]
# ## 0. Noisy demonstrations, and the defect SFT learns from them
#
# The demonstrations for two task families (`CHATTY`) came from an annotator who ends most answers with a
# pleasantry ("Thanks for asking." …). Everything else is clean. The rule judge of the tiny world scores every answer
# on **correct**, **complete** (a full sentence) and **concise** (nothing after it); the defect is a `concise`
# failure, concentrated in those two families.

# %% nbgrader={"grade": false, "grade_id": "given_noisy_demonstrations", "locked": true, "schema_version": 3, "solution": false, "task": false}
CHATTY, CHATTY_RATE = ("plural", "sound"), 0.9


def noisy_demonstrations(examples, seed=0):
    """The training examples, with CHATTY_RATE of the CHATTY families' answers followed by a pleasantry."""
    rng = random.Random(f"chatty-{seed}")
    out = []
    for e in examples:
        if e.category in CHATTY and rng.random() < CHATTY_RATE:
            e = tasks.Example(e.instruction, "", f"{e.response} {rng.choice(tw_prefs.FILLER)}", e.category, e.key)
        out.append(e)
    return out


def judge_flags(examples, answers):
    """Rule-judge flags per answer -> rates of correct / complete / concise, and concise on the CHATTY families."""
    flags = [tw_prefs.judge(e.category, e.key, a) for e, a in zip(examples, answers)]
    out = {k: sum(f[k] for f in flags) / len(flags) for k in ("correct", "complete", "concise")}
    chatty = [f for e, f in zip(examples, flags) if e.category in CHATTY]
    out["concise_on_chatty"] = sum(f["concise"] for f in chatty) / max(len(chatty), 1)
    return out


demos = noisy_demonstrations(train_examples)
n_noisy = sum(d.response != e.response for d, e in zip(demos, train_examples))
print(f"{n_noisy} of {len(demos)} demonstrations ({n_noisy / len(demos):.1%}) carry a pleasantry, all in {CHATTY}")
print("e.g.", repr(next(d.response for d, e in zip(demos, train_examples) if d.response != e.response)))

# %% [markdown]
# Supervised fine-tuning is `course.training.train_sft` (trl's `SFTTrainer`, loss on the response tokens only, a
# full fine-tune). The SFT model of seed 0, greedy on all held-out questions (items no training example mentions):

# %% nbgrader={"grade": false, "grade_id": "given_sft", "locked": true, "schema_version": 3, "solution": false, "task": false}
SFT_STEPS, SFT_LR, SFT_BS = profile.steps(40), profile.lr(1.2e-3), 2 * profile.per_device_batch_size
DPO_STEPS, BETA, DPO_LR, DPO_BS = profile.steps(12), 0.1, profile.lr(5e-5), profile.batch(8)   # §3: DPO, ORPO in §5


def sft(seed):
    """The shipped base fine-tuned on the noisy demonstrations with this seed -> (model, per-step losses)."""
    torch.manual_seed(seed)
    return train_sft(load_base(profile), tokenizer, demos, lora=None, max_steps=SFT_STEPS, learning_rate=SFT_LR,
                     batch_size=SFT_BS, scheduler="linear", warmup_ratio=0.0, seed=seed)


def judge_scores(examples, answers):
    """(N,) float tensor: the rule judge's 0–3 score of each answer."""
    return torch.tensor([tw_prefs.judge_score(e.category, e.key, a) for e, a in zip(examples, answers)],
                        dtype=torch.float)


# %%
t0 = time.perf_counter()
sft_model, sft_losses = sft(0)
sft_answers = answer(sft_model, tokenizer, heldout_examples)
print(f"SFT: {SFT_STEPS} steps in {time.perf_counter() - t0:.1f} s, loss {sft_losses[0]:.3f} -> {sft_losses[-1]:.3f}")
print("held-out:", {k: f"{v:.1%}" for k, v in judge_flags(heldout_examples, sft_answers).items()})
for e, a in list(zip(heldout_examples, sft_answers))[100::25]:
    print(f"  {e.category:8} {e.instruction!r:42} -> {a!r}")

# %% [markdown]
# The `concise_on_chatty` rate above is the defect: the policy copies the annotator's habit on those families. The
# `correct` rate is the tiny model's knowledge; preference pairs about *other* items cannot raise it much.
#
# ## 1. On-policy preference pairs
#
# Sample 4 answers (temperature 1) from the SFT policy for every third training question; the rule judge scores
# them; the best becomes `chosen`, the worst `rejected`, and ties are dropped (no preference, no pair). The rejected
# answers are the policy's own mistakes — exactly what DPO's gradient can push down.

# %% nbgrader={"grade": false, "grade_id": "given_on_policy_pairs", "locked": true, "schema_version": 3, "solution": false, "task": false}
N_SAMPLES, PAIR_QUESTIONS = 4, profile.eval_items(train_examples[::3])


def on_policy_pairs(model, seed):
    """N_SAMPLES samples per PAIR_QUESTIONS question -> judge-labelled Preference pairs (best vs worst, ties dropped)."""
    torch.manual_seed(seed)
    prompts = [chat_prompt(tokenizer, e.instruction) for e in PAIR_QUESTIONS for _ in range(N_SAMPLES)]
    flat = generate(model, tokenizer, prompts, max_new_tokens=24, batch_size=128, do_sample=True, temperature=1.0)
    pairs = []
    for i, e in enumerate(PAIR_QUESTIONS):
        cands = flat[i * N_SAMPLES:(i + 1) * N_SAMPLES]
        s = judge_scores([e] * N_SAMPLES, cands).tolist()
        best = max(range(N_SAMPLES), key=lambda j: (s[j], -j))
        worst = min(range(N_SAMPLES), key=lambda j: (s[j], j))
        if s[best] > s[worst]:
            pairs.append(tw_prefs.Preference(e.instruction, cands[best], cands[worst], "on-policy", e.category, e.key))
    return pairs


# %%
t0 = time.perf_counter()
pairs0 = on_policy_pairs(sft_model, seed=0)
what = {k: sum(tw_prefs.judge(p.category, p.key, p.chosen)[k] > tw_prefs.judge(p.category, p.key, p.rejected)[k]
               for p in pairs0) for k in ("correct", "complete", "concise")}
print(f"{len(pairs0)} pairs from {len(PAIR_QUESTIONS)} questions in {time.perf_counter() - t0:.1f} s; "
      f"the chosen answer wins on: {what}")
print("e.g.", pairs0[0].prompt, "| chosen:", repr(pairs0[0].chosen), "| rejected:", repr(pairs0[0].rejected))

# %% [markdown]
# ## 2. Day 3's pieces, given
#
# Read-only: the tokenisation (prompt with the generation prompt, then prompt + response; `-100` on prompt and
# padding), summed sequence log-probabilities and the DPO loss exactly as Day 3 built and checked them against trl.

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
# ## 3. The DPO loop from scratch, on the on-policy pairs
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
dpo_step(_pol, _ref, _batch, _opt, 0.1)                   # policy = reference: the gradient is linear in β
_g3 = [p.grad.clone() for p in _pol.parameters()]
_f1, _f3 = torch.cat([a.flatten() for a in _g1]), torch.cat([b.flatten() for b in _g3])
assert ((_f1 - 5 * _f3).norm() / _f1.norm()).item() < 1e-3, \
    "β = 0.5 vs β = 0.1 at policy = reference: the gradient must be 5× larger (use the beta passed in)"
_loss1, _acc1 = dpo_step(_pol, _ref, pair_batch(train_prefs[8:9]), _opt, 0.5)
assert abs(_loss1 - torch.log(torch.tensor(2.0)).item()) < 1e-5 and _acc1 == 0.0, "a batch of one pair"
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
# every setting at a non-default value, against the loop written out (same draws, same optimiser)
_gen, _p, _r = torch.Generator().manual_seed(5), copy.deepcopy(sft_model), copy.deepcopy(sft_model).eval()
_o, _want = torch.optim.AdamW(_p.parameters(), lr=2e-3, weight_decay=0.0), []
for _ in range(3):
    _b = pair_batch([train_prefs[:64][i] for i in torch.randint(64, (3,), generator=_gen).tolist()])
    _in = {"input_ids": _b["input_ids"], "attention_mask": _b["attention_mask"]}
    _lp = sequence_logprobs(_p(**_in).logits, _b["labels"])
    with torch.no_grad():
        _rl = sequence_logprobs(_r(**_in).logits, _b["labels"])
    _l = dpo_loss(*_lp.chunk(2), *_rl.chunk(2), 0.3)[0].mean()
    _o.zero_grad()
    _l.backward()
    _o.step()
    _want.append(_l.item())
_got = dpo_train(copy.deepcopy(sft_model), train_prefs[:64], steps=3, beta=0.3, lr=2e-3, batch_size=3, seed=5)["loss"]
assert len(_got) == 3 and all(abs(a - b) < 1e-4 for a, b in zip(_got, _want)), \
    f"beta=0.3, lr=2e-3, batch_size=3, seed=5 must all be used: losses {_got} vs {_want}"
### END HIDDEN TESTS

# %% [markdown]
# ### From scratch vs trl, same data, same order
#
# trl's `DPOTrainer` on exactly the on-policy batches our loop drew: the pairs laid out in the order our generator
# picks them, read sequentially (`train_sampling_strategy="sequential"`); constant learning rate, AdamW without
# weight decay, no gradient clipping, float32, `ref_model=` a frozen copy (Day 3: trl cannot rebuild a reference from
# an in-memory model). `course.alignment.train_dpo` is a thin wrapper returning trl's log history.

# %%
def dpo_order(pairs, seed):
    """The pairs in the order dpo_train(seed) draws them (DPO_STEPS batches of DPO_BS)."""
    g = torch.Generator().manual_seed(seed)
    return [pairs[i] for _ in range(DPO_STEPS) for i in torch.randint(len(pairs), (DPO_BS,), generator=g).tolist()]


def trl_dpo(pairs_in_order):
    """trl's DPOTrainer from a copy of the seed-0 SFT model on pairs read in this order -> (model, log history)."""
    return train_dpo(copy.deepcopy(sft_model), copy.deepcopy(sft_model), tokenizer, pairs_in_order, beta=BETA,
                     learning_rate=DPO_LR, max_steps=DPO_STEPS, batch_size=DPO_BS, lr_scheduler_type="constant",
                     max_grad_norm=0.0, train_sampling_strategy="sequential")


scratch_policy = copy.deepcopy(sft_model)
t0 = time.perf_counter()
scratch = dpo_train(scratch_policy, pairs0, DPO_STEPS, beta=BETA, lr=DPO_LR, batch_size=DPO_BS, seed=0)
scratch_s = time.perf_counter() - t0
t0 = time.perf_counter()
trl_policy, trl_log = trl_dpo(dpo_order(pairs0, 0))
trl_s = time.perf_counter() - t0
trl_losses = [h["loss"] for h in trl_log if "loss" in h]
trl_acc = [h["rewards/accuracies"] for h in trl_log if "rewards/accuracies" in h]
gap = max(abs(a - b) for a, b in zip(scratch["loss"], trl_losses))
print(f"batches of {DPO_BS} pairs · from scratch: {DPO_STEPS} steps in {scratch_s:.1f} s · trl: {len(trl_losses)} steps in {trl_s:.1f} s")
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
# logs the same batch loss before each update); the differences are float summation order. Did it fix the defect?

# %%
dpo_answers = answer(scratch_policy, tokenizer, heldout_examples)
before, after = judge_flags(heldout_examples, sft_answers), judge_flags(heldout_examples, dpo_answers)
print(f"{'held-out':18}{'SFT':>8}{'SFT+DPO':>9}")
for k in before:
    print(f"{k:18}{before[k]:>8.1%}{after[k]:>9.1%}")

# %% [markdown]
# ## 4. Off-policy pairs: a larger margin, a smaller fix
#
# The same trl run on the **shipped** pairs, whose rejected answers (a wrong item, a bare word, a rambling run-on)
# were written by rule, not sampled from this policy. trl logs the implicit rewards
# $\beta\,[\log\pi_\theta(y|x) - \log\pi_{ref}(y|x)]$ of the chosen and the rejected answers (`rewards/chosen`,
# `rewards/rejected`); read both runs side by side.

# %%
t0 = time.perf_counter()
off_policy, off_log = trl_dpo(dpo_order(train_prefs, 0))


def last_mean(log, key, k=4):
    vals = [h[key] for h in log if key in h]
    return sum(vals[-k:]) / k


off_answers = answer(off_policy, tokenizer, heldout_examples)
contrast = {}
for name, log, ans in (("on-policy", trl_log, answer(trl_policy, tokenizer, heldout_examples)),
                       ("off-policy", off_log, off_answers)):
    contrast[name] = {"rewards/chosen": last_mean(log, "rewards/chosen"),
                      "rewards/rejected": last_mean(log, "rewards/rejected"),
                      "margin": last_mean(log, "rewards/margins"), **judge_flags(heldout_examples, ans)}
print(f"(off-policy run {time.perf_counter() - t0:.1f} s; rewards: mean of the last 4 steps)")
print(f"{'':11}" + "".join(f"{k:>18}" for k in contrast["on-policy"]))
for name, row in contrast.items():
    print(f"{name:11}" + "".join(f"{v:>18.3f}" for v in row.values()))
plot_curves({f"{n} {k}": [h[f"rewards/{k}"] for h in log if f"rewards/{k}" in h]
             for n, log in (("on-policy", trl_log), ("off-policy", off_log)) for k in ("chosen", "rejected")},
            title="implicit rewards during DPO", ylabel="β·log-ratio")
plt.show()

# %% [markdown]
# **Reading it.** DPO only needs the *margin* to grow, and the cheapest way is to lower the rejected answer:
# `rewards/chosen` stays near zero (it can turn negative — the chosen answer itself loses probability, *likelihood
# displacement*, Razin et al. 2024), while `rewards/rejected` falls. Off-policy, the rejected strings are text this
# policy would never write; pushing them down buys a large margin and moves little of what the policy actually says,
# so `concise_on_chatty` moves less than on-policy. Margins and reward accuracy measure the optimiser, not the
# behaviour; the behaviour is measured by generating.

# %% [markdown]
# ## 5. SFT+ORPO on the same pairs
#
# ORPO (Hong et al., 2024) adds an odds-ratio term to the SFT loss, no reference model:
# $\mathcal L = \mathcal L_{NLL}(y_w) - \lambda\,\log\sigma\big(\log\tfrac{\text{odds}(y_w)}{\text{odds}(y_l)}\big)$,
# with $\text{odds}(y) = \frac{P}{1-P}$ and $P = \exp$(the **mean** per-token log-probability of the response). The paper's
# NLL covers the response tokens only (trl's covers prompt + response, Day 3); this loop, given code, uses the
# paper's. To compare like with like it starts from the same SFT model as DPO, on the same on-policy pairs, with
# DPO's step count, batch size and learning rate — "SFT+ORPO", as the seed names it. ORPO's own claim (one stage
# from the base, no SFT run) is not what this table tests.

# %% nbgrader={"grade": false, "grade_id": "given_orpo", "locked": true, "schema_version": 3, "solution": false, "task": false}
ORPO_LAMBDAS = (0.1, 1.0, 3.0)
VALIDATION = profile.eval_items(train_examples[1::3][:90])   # questions not in the pairs: for λ


def average_logprobs(logits, labels):
    """(N, T, V), (N, T) -> (N,): mean log-prob per scored (label != -100) token, shifted by one."""
    labels = labels[:, 1:]
    mask = labels != -100
    per_token = torch.gather(logits[:, :-1].log_softmax(-1), 2, labels.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)
    return (per_token * mask).sum(-1) / mask.sum(-1)


def orpo_losses(policy, batch, lam):
    """(2B, T) pair batch -> (total loss, response-only NLL of the chosen, odds-ratio term), all scalars."""
    avg = average_logprobs(policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                           batch["labels"])
    chosen, rejected = avg.chunk(2)
    log_odds = (chosen - torch.log1p(-torch.exp(chosen))) - (rejected - torch.log1p(-torch.exp(rejected)))
    nll, odds_term = -chosen.mean(), -F.logsigmoid(log_odds).mean()
    return nll + lam * odds_term, nll, odds_term


@torch.inference_mode()
def chosen_nll(policy, pairs, batch_size=64):
    """Response-only NLL of every pair's chosen answer, averaged: the supervised part of ORPO's objective."""
    total = 0.0
    for i in range(0, len(pairs), batch_size):
        b = collate([encode(p.prompt, p.chosen) for p in pairs[i:i + batch_size]])
        total -= average_logprobs(policy(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                                  b["labels"]).sum().item()
    return total / len(pairs)


def orpo_train(policy, pairs, steps, lam, lr=DPO_LR, batch_size=DPO_BS, seed=0, every=0, start_nll=None):
    """Train in place (AdamW, batches drawn as in dpo_train) -> {"loss", "nll", "odds"} per step and, if `every`,
    the chosen NLL over all the pairs at step 0 (`start_nll` if given) and every `every` steps (the convergence
    check)."""
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    start = [(0, chosen_nll(policy, pairs) if start_nll is None else start_nll)] if every else []
    hist = {"loss": [], "nll": [], "odds": [], "full_nll": start}
    policy.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(pairs), (batch_size,), generator=g).tolist()
        loss, nll, odds = orpo_losses(policy, pair_batch([pairs[i] for i in idx]), lam)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for k, v in (("loss", loss), ("nll", nll), ("odds", odds)):
            hist[k].append(v.item())
        if every and step % every == 0:
            hist["full_nll"].append((step, chosen_nll(policy, pairs)))
    policy.eval()
    return hist


def tune_lambda(model, pairs, seed):
    """Train one SFT+ORPO run per λ in ORPO_LAMBDAS; keep the best by judge score on VALIDATION (first on ties)."""
    runs, start_nll = {}, chosen_nll(model, pairs)          # every run starts from `model`: its NLL once
    for lam in ORPO_LAMBDAS:
        m = copy.deepcopy(model)
        hist = orpo_train(m, pairs, DPO_STEPS, lam, seed=seed, every=max(1, DPO_STEPS // 3), start_nll=start_nll)
        runs[lam] = (judge_scores(VALIDATION, answer(m, tokenizer, VALIDATION)).mean().item(), m, hist)
    best = max(ORPO_LAMBDAS, key=lambda lam: (runs[lam][0], -ORPO_LAMBDAS.index(lam)))
    return best, runs


# %%
t0 = time.perf_counter()
orpo_lambda0, orpo_runs0 = tune_lambda(sft_model, pairs0, seed=0)
print(f"λ grid in {time.perf_counter() - t0:.1f} s · validation judge score per λ:",
      {lam: round(r[0], 3) for lam, r in orpo_runs0.items()}, f"-> λ = {orpo_lambda0}")
orpo_hist0 = orpo_runs0[orpo_lambda0][2]
full = orpo_hist0["full_nll"]
rel = [abs(b[1] - a[1]) / a[1] for a, b in zip(full, full[1:])]
print("chosen NLL over all pairs at steps", [s for s, _ in full], ":", [round(v, 4) for _, v in full])
print(f"relative change per {full[1][0]} steps: {[f'{r:.1%}' for r in rel]} -> last change {rel[-1]:.1%} "
      f"(converged: {rel[-1] < 0.05})")
print(f"odds-ratio term: {orpo_hist0['odds'][0]:.3f} -> {orpo_hist0['odds'][-1]:.3f}; "
      f"its share of the loss at the last step: {orpo_lambda0 * orpo_hist0['odds'][-1] / orpo_hist0['loss'][-1]:.1%}")
plot_curves({"chosen NLL, all pairs": ([s for s, _ in full], [v for _, v in full]),
             "odds-ratio term, batch": orpo_hist0["odds"]}, title=f"SFT+ORPO, λ = {orpo_lambda0}", ylabel="loss")
plt.show()

# %% [markdown]
# The chosen NLL is the supervised half of ORPO's objective: the printout says whether it had flattened (last
# relative change under 5 %) before the model enters the comparison. The odds-ratio term is what separates chosen
# from rejected; its printed share of the loss says how much of the gradient is preference, not imitation.
#
# ## 6. The comparison: SFT, SFT+DPO, SFT+ORPO, 3 seeds
#
# Each seed trains its own SFT model, samples its own on-policy pairs, then runs DPO (our loop) and ORPO (λ as tuned
# on seed 0 above) from copies of it. All held-out questions (the count is printed), greedy. Per question we compare each method's judge score to
# the same seed's SFT answer: a **paired difference**, which removes the question-to-question variation that an
# unpaired comparison of two means would carry.
#
# %% [markdown]
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
assert win_rate([3, 0, 1], [2, 0, 2]) == 0.5, "plain lists of ints work too (one win, one tie, one loss)"
assert win_rate(torch.tensor([1e30]), torch.tensor([-1e30])) == 1.0, "huge scores: a comparison, not a difference"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "win_rate__symmetry", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_g = torch.Generator().manual_seed(3)
_a, _b = torch.randint(0, 4, (50,), generator=_g), torch.randint(0, 4, (50,), generator=_g)
assert abs(win_rate(_a, _b) + win_rate(_b, _a) - 1.0) < 1e-6, "win_rate(a, b) + win_rate(b, a) = 1 (ties split)"
assert win_rate(_a, _a) == 0.5, "an answer set against itself: all ties, 0.5"

# %% nbgrader={"grade": false, "grade_id": "given_methods", "locked": true, "schema_version": 3, "solution": false, "task": false}
METHODS, SEEDS = ("sft", "sft+dpo", "sft+orpo"), profile.seeds(3)      # seeds 0, 1, 2 (tiny)


def train_seed(seed):
    """SFT, its on-policy pairs, then DPO (our loop) and ORPO (seed 0's tuned λ) from copies of the SFT model
    -> ({method: model}, info). Seed 0 reuses the models of §0–§5."""
    if seed == 0:
        sft_m, pairs, dpo_m = sft_model, pairs0, scratch_policy
        lam, orpo_m = orpo_lambda0, orpo_runs0[orpo_lambda0][1]
    else:
        sft_m = sft(seed)[0]
        pairs = on_policy_pairs(sft_m, seed)
        dpo_m = copy.deepcopy(sft_m)
        dpo_train(dpo_m, pairs, DPO_STEPS, beta=BETA, lr=DPO_LR, batch_size=DPO_BS, seed=seed)
        lam, orpo_m = orpo_lambda0, copy.deepcopy(sft_m)
        orpo_train(orpo_m, pairs, DPO_STEPS, lam, seed=seed)
    return {"sft": sft_m, "sft+dpo": dpo_m.eval(), "sft+orpo": orpo_m}, {"pairs": len(pairs), "lambda": lam}


def evaluate(model):
    """Greedy answers to every held-out question -> answers, judge scores (N,), exact match, judge flag rates."""
    answers = answer(model, tokenizer, heldout_examples)
    return {"answers": answers, "judge": judge_scores(heldout_examples, answers),
            "exact_match": tasks.exact_match(heldout_examples, answers), **judge_flags(heldout_examples, answers)}


def bootstrap_ci(diffs, n_boot=2000, seed=0, level=0.95):
    """(N,) paired differences -> (mean, low, high): percentile bootstrap over the N questions."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(diffs), (n_boot, len(diffs)), generator=g)
    means = diffs[idx].mean(1)
    lo, hi = torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=means.dtype)).tolist()
    return diffs.mean().item(), lo, hi


# %%
runs, results, info = {}, {}, {}
t0 = time.perf_counter()
for seed in progress(SEEDS, desc="seeds"):
    models, info[seed] = train_seed(seed)
    for method, model in models.items():
        runs[method, seed] = evaluate(model)
    base = runs["sft", seed]
    for method in METHODS:
        r = runs[method, seed]
        results[method, seed] = {"exact_match": r["exact_match"], "judge_score": r["judge"].mean().item(),
                                 "concise_on_chatty": r["concise_on_chatty"],
                                 "judge_win_vs_sft": win_rate(r["judge"], base["judge"])}
print(f"{len(heldout_examples)} held-out questions per model · {time.perf_counter() - t0:.0f} s · per seed:", info)

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
# ### The table, and paired differences with bootstrap confidence intervals

# %%
METRICS = ("judge_score", "concise_on_chatty", "exact_match", "judge_win_vs_sft")
table = {metric: summarize(results, METHODS, SEEDS, metric) for metric in METRICS}
print(f"{'method':10}" + "".join(f"{m:>22}" for m in METRICS))
for method in METHODS:
    print(f"{method:10}" + "".join(f"{table[m][method][0]:>13.3f} ± {table[m][method][1]:<6.3f}" for m in METRICS))
if len(SEEDS) < 2:
    print("(one seed on this profile: a sample std over one seed is undefined, printed as nan)")
print(f"\nranking per seed and whether it holds across the {len(SEEDS)} seeds:")
for metric in ("judge_score", "concise_on_chatty", "exact_match"):
    per_seed = [" > ".join(ranking(results, METHODS, s, metric)) for s in SEEDS]
    print(f"  {metric:18} holds: {str(ranking_holds(results, METHODS, SEEDS, metric)):5}  " + " | ".join(per_seed))

# %%
def paired(a, b, seeds=SEEDS):
    """Per-question judge-score differences a − b, averaged over the seeds: (N,)."""
    return torch.stack([runs[a, s]["judge"] - runs[b, s]["judge"] for s in seeds]).mean(0)


def verdict(low, high, a, b):
    return f"{a} > {b}" if low > 0 else f"{b} > {a}" if high < 0 else "no ranking can be claimed"


comparisons = [("sft+dpo", "sft"), ("sft+orpo", "sft"), ("sft+dpo", "sft+orpo")]
cis = {}
print(f"judge-score difference per question, bootstrap 95 % CI over the {len(heldout_examples)} questions")
for a, b in comparisons:
    for s in SEEDS:
        cis[a, b, s] = bootstrap_ci(paired(a, b, (s,)), seed=s)
    cis[a, b, "all"] = m, lo, hi = bootstrap_ci(paired(a, b))
    per_seed = " ".join(f"s{s} {cis[a, b, s][0]:+.3f} [{cis[a, b, s][1]:+.3f}, {cis[a, b, s][2]:+.3f}]" for s in SEEDS)
    print(f"  {a:>8} − {b:<8}: {len(SEEDS)} seeds {m:+.3f} [{lo:+.3f}, {hi:+.3f}] -> {verdict(lo, hi, a, b):26} · {per_seed}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, metric in zip(axes, ("judge_score", "concise_on_chatty")):
    plot_bars({m: table[metric][m][0] for m in METHODS}, errors={m: table[metric][m][1] for m in METHODS}, ax=ax,
              title=f"{metric} (mean ± std, {len(SEEDS)} seeds)")
plt.show()
for method in METHODS:
    rates = {k: sum(runs[method, s][k] for s in SEEDS) / len(SEEDS) for k in ("correct", "complete", "concise")}
    print(f"{method:9} " + "  ".join(f"{k} {v:.1%}" for k, v in rates.items()))

# %% [markdown]
# The lesson's claim, checked on every seed of the table: SFT carries the defect (`concise_on_chatty` under ½), each
# preference method raises it by more than 0.2, and its paired judge-score CI against SFT lies above 0. On `tiny`
# every run is seeded and far from these thresholds, so they are asserts; on `small` (one seed, 12 steps, 24
# held-out questions, 6 of them in the chatty families) they are printed as warnings.

# %%
from course.notebook import claim_checker

claim = claim_checker(profile)   # asserts on tiny (seeded, measured there); elsewhere prints a WARNING and goes on


for s in SEEDS:
    sft_rate = runs["sft", s]["concise_on_chatty"]
    claim(sft_rate < 0.5, f"seed {s}: SFT carries the defect, concise_on_chatty {sft_rate:.3f} < 0.5")
    for method in ("sft+dpo", "sft+orpo"):
        rate, (mean, low, high) = runs[method, s]["concise_on_chatty"], cis[method, "sft", s]
        claim(rate > sft_rate + 0.2, f"seed {s}: {method} concise_on_chatty {sft_rate:.3f} -> {rate:.3f} (> +0.2)")
        claim(low > 0, f"seed {s}: {method} − sft judge {mean:+.3f} [{low:+.3f}, {high:+.3f}], CI above 0")

# %% [markdown]
# **Reading the table** (the printouts above are this run's numbers).
#
# - **SFT** learned the annotator's habit: `concise_on_chatty` is its defect, and the `correct` rate is the tiny
#   model's knowledge of held-out items.
# - **SFT+DPO** on the policy's own samples reduces the habit: `concise_on_chatty` rises on every seed, and the
#   paired judge-score difference against SFT has a confidence interval that excludes 0. It does not teach facts:
#   the pairs are about other items, so `correct` barely moves.
# - **SFT+ORPO** on the same pairs and budget fixes the same defect through its NLL on the chosen answers plus the
#   odds-ratio term.
# - **DPO vs ORPO**: read the last comparison line. Where its interval covers 0 the printout says *no ranking can be
#   claimed* — the gap is smaller than these questions and 3 seeds can resolve, and a leaderboard built on it would
#   be noise; where it excludes 0, the ranking holds for this budget and these pairs, not in general. A per-seed
#   `holds: False` shows how much a single-seed comparison can mislead.

# %% [markdown]
# Try it: rerun §3 with `DPO_LR = 2e-4` or three times the steps, and watch `complete` and the reward accuracy —
# the loss keeps improving; does the behaviour?

# %% [markdown]
# ## 7. MT-Bench and AlpacaEval on the `a100` profile (wired, not run here)
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
        outputs = answer(model, tokenizer, prompts, max_new_tokens=profile.max_new_tokens)
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
