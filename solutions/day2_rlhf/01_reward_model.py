# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 2 · 1 — Preference data and a reward model from scratch
#
# RLHF (Christiano et al. 2017; Stiennon et al. 2020; Ouyang et al. 2022, *InstructGPT*) has three stages:
# supervised fine-tuning, a **reward model** trained on human preferences, and reinforcement learning (PPO)
# against that reward. This notebook is stage two:
#
# 1. preference data: (prompt, chosen, rejected) triplets — where they come from, and the tiny world's set;
# 2. a reward model from scratch: the tiny model plus a scalar head that reads the **last non-pad token**;
# 3. the Bradley–Terry loss $\mathcal{L}_{RM} = -\log\sigma\big(r(x, y_w) - r(x, y_l)\big)$, **equal to trl**: on the
#    same batch and weights, our loss is `trl.RewardTrainer`'s;
# 4. the reward model trained with it and early-stopped on held-out pairs, its accuracy measured **per kind of error**;
# 5. a competent reward model: what the trunk-only model misses, the SFT model's own likelihood knows.

# %% tags=["parameters"]
PROFILE = "tiny"
RM_STEPS = 40        # reward-model training steps (early-stopped on validation pairs)
SFT_STEPS = 30       # supervised fine-tuning steps of the SFT model §5 reads (notebook 2's starting policy)

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import math
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F
from datasets import Dataset
from transformers import LlamaForSequenceClassification
from trl import RewardConfig, RewardTrainer

from course.loading import load_base, load_preference_data, load_tokenizer
from course.plotting import plot_curves, plt
from course.tinyworld.preferences import judge_score, off_topic_preferences
from course.tinyworld.tasks import examples
from course.training import use_cpu

torch.manual_seed(0)
tokenizer = load_tokenizer(profile)
prefs = load_preference_data()
print(prefs)

# %% [markdown]
# ## 1. Preference data
#
# A preference record is a **triplet**: a prompt $x$, a chosen response $y_w$ and a rejected one $y_l$. Where they
# come from:
# - **humans** — InstructGPT's labelers *ranked* $K$ = 4 to 9 sampled responses per prompt; every ordered pair of a
#   ranking is one triplet, so a ranking of $K$ gives $\binom{K}{2}$ comparisons from one reading of the prompt;
# - **AI judges** — a strong model (or a rule, or a constitution: Day 6) decides instead of a person (RLAIF);
# - **self-rejection sampling** — sample several responses from the model itself, score them (judge or reward model),
#   keep the best as chosen and the worst as rejected.
#
# The tiny world's set was made by rule: the chosen response is correct, complete and concise; the rejected one
# breaks exactly one of these (`kind`). Its rule judge scores any response 0–3, so every pair can be checked.
# We add a fourth kind, **off-topic**: a correct answer to a *different* question ("How do you say more than one
# mouse?" → "The plural of dish is dishes."). It is the error a briefly fine-tuned policy makes most (notebook 2),
# so a reward model that PPO will optimise against must have seen it.

# %%
for kind in ("wrong", "curt", "rambling"):
    row = next(r for r in prefs["test"] if r["kind"] == kind)
    print(f"[{kind}] prompt: {row['prompt']!r}\n    chosen:   {row['chosen']!r}\n    rejected: {row['rejected']!r}")
off_topic = {split: [p.as_dict() for p in off_topic_preferences(split)] for split in ("train", "heldout")}
print(f"[off_topic] rejected: {off_topic['heldout'][0]['rejected']!r} for {off_topic['heldout'][0]['prompt']!r}")
print("pairs per kind (train):", dict(Counter(prefs["train"]["kind"])), "+ off_topic", len(off_topic["train"]))
agree = sum(judge_score(r["category"], r["key"], r["chosen"]) > judge_score(r["category"], r["key"], r["rejected"])
            for r in prefs["train"])
print(f"the judge prefers the chosen response in {agree} of {len(prefs['train'])} training pairs")

# %% [markdown]
# ### Exercise 1 — pairs from a ranking
# A labeler ranked $K$ responses, best first. Return every (chosen, rejected) pair the ranking implies: for each
# $i<j$, `(ranked[i], ranked[j])`, in that order (i ascending, then j ascending).

# %% nbgrader={"grade": false, "grade_id": "pairs_from_ranking", "locked": false, "schema_version": 3, "solution": true, "task": false}
def pairs_from_ranking(ranked):
    """ranked: list of K responses, best first -> list of K·(K−1)/2 (chosen, rejected) tuples."""
    ### BEGIN SOLUTION
    return [(ranked[i], ranked[j]) for i in range(len(ranked)) for j in range(i + 1, len(ranked))]
    ### END SOLUTION


# %%
for K in (4, 9):
    print(f"K = {K}: {len(pairs_from_ranking(list(range(K))))} pairs from one ranking (K·(K−1)/2 = {K * (K - 1) // 2})")

# %% nbgrader={"grade": true, "grade_id": "pairs_from_ranking__small", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_pairs = pairs_from_ranking(["A", "B", "C"])
assert _pairs == [("A", "B"), ("A", "C"), ("B", "C")], \
    f"ranking A > B > C implies A≻B, A≻C, B≻C (chosen first); got {_pairs}"
assert pairs_from_ranking(["A"]) == [], "one response gives no comparison"

# %% nbgrader={"grade": true, "grade_id": "pairs_from_ranking__count", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
for _K in range(2, 10):
    _pairs = pairs_from_ranking(list(range(_K)))
    assert len(_pairs) == _K * (_K - 1) // 2, f"K = {_K} responses give K·(K−1)/2 = {_K * (_K - 1) // 2} pairs"
    assert all(a < b for a, b in _pairs), "the better-ranked response (earlier in the list) is the chosen one"
### BEGIN HIDDEN TESTS
assert len(set(pairs_from_ranking(list(range(6))))) == 15, "no duplicates"
assert pairs_from_ranking([]) == [], "an empty ranking gives no pair"
assert pairs_from_ranking(["same", "same", "other"]) == [("same", "same"), ("same", "other"), ("same", "other")], \
    "pairs are by position: two responses with the same text are still two ranked responses"
### END HIDDEN TESTS

# %% [markdown]
# ## 2. A reward model: the tiny model plus a scalar head
#
# The reward model reads prompt + response in the chat template and outputs one number. It is the language model's
# trunk (embeddings and blocks, no LM head) followed by a linear **score head** `d → 1`. A causal model's last
# position is the only one that has seen the whole sequence, so the reward is the head applied to the hidden state of
# the **last non-pad token** — wherever the padding is (right-padded batches here; left padding exists too).
#
# ### Exercise 2 — the last non-pad token
# Return, for each row, the index of the **rightmost** token that is not `pad_token_id` (this is how transformers'
# `*ForSequenceClassification` models pool). Hint: multiply the positions `0..T-1` by the not-pad mask and take the
# `argmax`.

# %% nbgrader={"grade": false, "grade_id": "last_non_pad_index", "locked": false, "schema_version": 3, "solution": true, "task": false}
def last_non_pad_index(input_ids, pad_token_id):
    """input_ids: (N, T) -> (N,) long: position of the rightmost token != pad_token_id."""
    ### BEGIN SOLUTION
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)      # (T,)
    not_pad = (input_ids != pad_token_id).long()                               # (N, T)
    return (positions * not_pad).argmax(-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "last_non_pad_index__right_padding", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9], [5, 0, 0, 0, 0]])
_idx = last_non_pad_index(_ids, 0)
assert _idx.tolist() == [2, 4, 0], f"right padding: the last real tokens are at 2, 4 and 0; got {_idx.tolist()}"

# %% nbgrader={"grade": true, "grade_id": "last_non_pad_index__left_padding_and_pad_id", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_ids = torch.tensor([[0, 0, 5, 6, 7], [0, 5, 6, 7, 8]])
_idx = last_non_pad_index(_ids, 0)
assert _idx.tolist() == [4, 4], f"left padding: the last token is the last position; got {_idx.tolist()}"
### BEGIN HIDDEN TESTS
_ids = torch.tensor([[3, 0, 3, 3, 3], [0, 0, 3, 3, 0]])
assert last_non_pad_index(_ids, 3).tolist() == [1, 4], "pad_token_id is a parameter (here 3), not always 0"
_idx = last_non_pad_index(torch.tensor([[0, 0, 0], [0, 4, 0]]), 0)
assert _idx.tolist() == [0, 1], "an all-padding row pools position 0, as transformers' argmax does (no crash, no −1)"
assert last_non_pad_index(torch.tensor([[7], [0]]), 0).tolist() == [0, 0], "length-1 sequences"
### END HIDDEN TESTS

# %% [markdown]
# Given: the reward model. It reuses the causal LM's trunk (`causal_lm.model`) and adds the head, initialised small
# so the starting rewards are near 0.

# %% nbgrader={"grade": false, "grade_id": "given_reward_model", "locked": true, "schema_version": 3, "solution": false, "task": false}
class RewardModel(nn.Module):
    """r(x, y): the LM trunk + a linear score head read at the last non-pad token."""

    def __init__(self, causal_lm, pad_token_id):
        super().__init__()
        self.backbone = causal_lm.model                                          # embeddings + blocks + final norm
        self.score = nn.Linear(causal_lm.config.hidden_size, 1, bias=False)      # d -> 1, like LlamaForSequenceClassification
        nn.init.normal_(self.score.weight, std=1 / math.sqrt(causal_lm.config.hidden_size + 1))
        self.pad_token_id = pad_token_id

    def forward(self, input_ids, attention_mask):
        """(N, T), (N, T) -> rewards (N,)."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state   # (N, T, d)
        last = last_non_pad_index(input_ids, self.pad_token_id)                                       # (N,)
        return self.score(hidden[torch.arange(hidden.shape[0]), last]).squeeze(-1)


def chat_ids(prompt, response):
    """Token ids of one user turn + one assistant turn in the tokenizer's chat template."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]


def pair_batch(rows):
    """B preference rows -> input_ids, attention_mask (2B, T): chosen rows first, then rejected; right-padded."""
    seqs = [chat_ids(r["prompt"], r["chosen"]) for r in rows] + [chat_ids(r["prompt"], r["rejected"]) for r in rows]
    T = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), T), tokenizer.pad_token_id)
    attention_mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, :len(s)] = torch.tensor(s)
        attention_mask[i, :len(s)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


torch.manual_seed(0)
reward_model = RewardModel(load_base(profile), tokenizer.pad_token_id)
demo = pair_batch([prefs["test"][i] for i in range(4)])
with torch.no_grad():
    print("batch", tuple(demo["input_ids"].shape), "-> rewards", reward_model(**demo).numpy().round(3))

# %% [markdown]
# ### Exercise 3 — the Bradley–Terry loss
# Bradley–Terry models the probability that $y_w$ beats $y_l$ as $\sigma(r_w - r_l)$; its negative log-likelihood is
# the loss. Return its **mean** over the batch. Use `F.logsigmoid`: `torch.log(torch.sigmoid(m))` underflows to
# `log 0 = -inf` once the margin $m$ is very negative.

# %% nbgrader={"grade": false, "grade_id": "bradley_terry_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def bradley_terry_loss(rewards_chosen, rewards_rejected):
    """(B,), (B,) -> scalar: mean of −log σ(r_chosen − r_rejected)."""
    ### BEGIN SOLUTION
    return -F.logsigmoid(rewards_chosen - rewards_rejected).mean()
    ### END SOLUTION


# %%
print("equal rewards -> loss", round(bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item(), 4),
      "= log 2 =", round(math.log(2), 4))

# %% nbgrader={"grade": true, "grade_id": "bradley_terry_loss__values", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_loss = bradley_terry_loss(torch.tensor([1.0, 0.0, -2.0]), torch.tensor([0.0, 0.0, 1.0]))
_expected = (math.log(1 + math.exp(-1.0)) + math.log(2) + math.log(1 + math.exp(3.0))) / 3
assert _loss.dim() == 0, "return the batch mean (a scalar)"
assert abs(_loss.item() - _expected) < 1e-5, \
    f"mean of −log σ(r_w − r_l) over margins (1, 0, −3) is {_expected:.5f}; got {_loss.item():.5f}"

# %% nbgrader={"grade": true, "grade_id": "bradley_terry_loss__direction_and_stability", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_rc = torch.tensor([0.5, -1.0], requires_grad=True)
_rr = torch.tensor([0.0, 2.0], requires_grad=True)
bradley_terry_loss(_rc, _rr).backward()
assert (_rc.grad < 0).all() and (_rr.grad > 0).all(), \
    "gradient descent must raise the chosen reward and lower the rejected one (check the sign of the margin)"
_big = bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([0.0]))
assert torch.isfinite(_big) and abs(_big.item() - 200.0) < 1e-3, \
    f"margin −200 must give loss ≈ 200, not inf: use F.logsigmoid; got {_big.item()}"
### BEGIN HIDDEN TESTS
assert abs(bradley_terry_loss(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0])).item()
           - math.log(1 + math.exp(-1.0))) < 1e-6, "a mean, not a sum"
_rc = torch.tensor([1000.0, -1000.0, 3.0], requires_grad=True)
_loss = bradley_terry_loss(_rc, torch.tensor([0.0, 0.0, 3.0]))
_loss.backward()
assert torch.isfinite(_loss) and abs(_loss.item() - (0.0 + 1000.0 + math.log(2)) / 3) < 1e-2, \
    f"margins +1000, −1000 and a tie: losses 0, 1000, log 2 (finite); got {_loss.item()}"
assert torch.isfinite(_rc.grad).all() and abs(_rc.grad[1].item() + 1 / 3) < 1e-5, "finite gradients at huge margins"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 4 — the loss of a batch
# Put it together as trl's `RewardTrainer.compute_loss` does: one forward pass over the `(2B, T)` batch (chosen rows
# first), split the rewards in two halves, and return the **mean** Bradley–Terry loss and the pair accuracy — the
# fraction of pairs whose chosen reward is **strictly** greater (a Python float).

# %% nbgrader={"grade": false, "grade_id": "reward_batch_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reward_batch_loss(model, batch):
    """batch: input_ids, attention_mask (2B, T), chosen rows first -> (scalar loss, accuracy float)."""
    ### BEGIN SOLUTION
    rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    rewards_chosen, rewards_rejected = rewards.chunk(2)
    loss = bradley_terry_loss(rewards_chosen, rewards_rejected)
    accuracy = (rewards_chosen > rewards_rejected).float().mean().item()
    return loss, accuracy
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "reward_batch_loss__toy_model", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
class _SumModel(nn.Module):          # reward = sum of the token ids, for hand-checkable numbers
    def forward(self, input_ids, attention_mask):
        return (input_ids * attention_mask).sum(-1).float()


_batch = {"input_ids": torch.tensor([[3, 0], [1, 1], [1, 0], [2, 2]]), "attention_mask": torch.tensor([[1, 0], [1, 1], [1, 0], [1, 1]])}
_loss, _acc = reward_batch_loss(_SumModel(), _batch)          # chosen rewards (3, 2), rejected (1, 4)
assert abs(_loss.item() - (-F.logsigmoid(torch.tensor([2.0, -2.0])).mean().item())) < 1e-6, \
    "first half chosen, second half rejected: margins (3 − 1, 2 − 4)"
assert isinstance(_acc, float) and _acc == 0.5, f"one of the two pairs has chosen > rejected; got {_acc!r}"

# %% nbgrader={"grade": true, "grade_id": "reward_batch_loss__ties", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_batch = {"input_ids": torch.tensor([[2], [5], [2], [1]]), "attention_mask": torch.ones(4, 1, dtype=torch.long)}
_loss, _acc = reward_batch_loss(_SumModel(), _batch)
assert _acc == 0.5, "a tie (2 vs 2) is not a win: strict >"
### BEGIN HIDDEN TESTS
assert abs(_loss.item() - (math.log(2) + math.log(1 + math.exp(-4.0))) / 2) < 1e-6
_batch = {"input_ids": torch.tensor([[4], [4], [4], [4]]), "attention_mask": torch.ones(4, 1, dtype=torch.long)}
_loss, _acc = reward_batch_loss(_SumModel(), _batch)
assert _acc == 0.0 and abs(_loss.item() - math.log(2)) < 1e-6, "all ties: accuracy 0, loss log 2"
_batch = {"input_ids": torch.tensor([[9], [1]]), "attention_mask": torch.ones(2, 1, dtype=torch.long)}
_loss, _acc = reward_batch_loss(_SumModel(), _batch)
assert type(_acc) is float and _acc == 1.0 and abs(_loss.item() - math.log(1 + math.exp(-8.0))) < 1e-6, \
    "a batch of one pair: accuracy 1.0 (a float), loss −log σ(8)"
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Equal to trl's `RewardTrainer`
# Before training with your loss, check it against the library. trl's reward model is
# `AutoModelForSequenceClassification` with `num_labels=1`: the same trunk, a bias-free `score` head, pooled at the
# last non-pad token. Copy our (still untrained) weights into one, let `RewardTrainer` evaluate a held-out batch
# (its `compute_loss` is `-logsigmoid(chosen - rejected).mean()` over a chosen-first batch), and compare.
# `bf16=False` keeps trl in float32 on CPU.

# %% nbgrader={"grade": false, "grade_id": "given_trl_reward_trainer", "locked": true, "schema_version": 3, "solution": false, "task": false}
def as_conversation(row):
    return {"prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}]}


trl_model = LlamaForSequenceClassification.from_pretrained(str(profile.model), num_labels=1)
trl_model.load_state_dict({k.replace("backbone.", "model."): v for k, v in reward_model.state_dict().items()})
eval_rows = list(prefs["test"])[5::13][:16]                      # 16 held-out pairs of every kind
eval_ds = Dataset.from_list([as_conversation(r) for r in eval_rows])
trainer = RewardTrainer(
    model=trl_model, processing_class=tokenizer, train_dataset=eval_ds, eval_dataset=eval_ds,
    args=RewardConfig(output_dir="/tmp/course_day2_rm", per_device_eval_batch_size=len(eval_rows), bf16=False,
                      use_cpu=use_cpu(trl_model), report_to=[], save_strategy="no", disable_tqdm=True))
trl_metrics = trainer.evaluate()
trl_batch = next(iter(trainer.get_eval_dataloader()))
print({k: round(v, 6) for k, v in trl_metrics.items() if k in ("eval_loss", "eval_accuracy", "eval_margin")})

# %%
mine = pair_batch(eval_rows)
print("same input_ids as trl's collator:", torch.equal(mine["input_ids"], trl_batch["input_ids"]))
with torch.no_grad():
    my_loss, my_acc = reward_batch_loss(reward_model, trl_batch)
print(f"loss      from scratch {my_loss.item():.6f}   trl {trl_metrics['eval_loss']:.6f}   "
      f"|diff| {abs(my_loss.item() - trl_metrics['eval_loss']):.1e}")
print(f"accuracy  from scratch {my_acc:.6f}   trl {trl_metrics['eval_accuracy']:.6f}")

# %% nbgrader={"grade": true, "grade_id": "reward_batch_loss__equals_trl", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
with torch.no_grad():
    _loss, _acc = reward_batch_loss(reward_model, trl_batch)
assert abs(_loss.item() - trl_metrics["eval_loss"]) < 1e-5, \
    f"from-scratch loss {_loss.item():.6f} must equal trl's {trl_metrics['eval_loss']:.6f} to 1e-5"
assert abs(_acc - trl_metrics["eval_accuracy"]) < 1e-6, "pair accuracy as trl logs it (strict >)"

# %% [markdown]
# ## 4. Train it
# Given: a plain loop — AdamW, batches of 16 pairs drawn from all four kinds, the pair accuracy measured every few
# steps on 96 **validation** pairs (prompts about items the training pairs never mention). Reward models overfit
# fast (InstructGPT trained theirs for one epoch), so the loop keeps the weights of the best validation step
# (**early stopping**); the report below uses the *other* held-out pairs.

# %% nbgrader={"grade": false, "grade_id": "given_train_reward_model", "locked": true, "schema_version": 3, "solution": false, "task": false}
def train_reward_model(model, rows, eval_rows, steps=40, batch_size=16, lr=2e-3, every=5, seed=0):
    """Train in place with the Bradley–Terry loss, then restore the weights of the best validation step.
    Returns [(step, validation accuracy)], [(step, train loss)], the best step."""
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    eval_batch = pair_batch(eval_rows)
    accuracy, losses, best = [], [], (-1.0, 0, None)
    for step in range(steps + 1):
        if step % every == 0:
            model.eval()
            with torch.no_grad():
                accuracy.append((step, reward_batch_loss(model, eval_batch)[1]))
            if accuracy[-1][1] > best[0]:
                best = (accuracy[-1][1], step, {k: v.clone() for k, v in model.state_dict().items()})
            model.train()
        if step == steps:
            break
        idx = torch.randint(len(rows), (batch_size,), generator=g).tolist()
        loss, _ = reward_batch_loss(model, pair_batch([rows[i] for i in idx]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append((step + 1, loss.item()))
    model.load_state_dict(best[2])
    return accuracy, losses, best[1]


KINDS = ("wrong", "curt", "rambling", "off_topic")


def accuracy_by_kind(r_chosen, r_rejected, rows):
    """Pair accuracy (strict r_w > r_l) overall and per kind of rejected response."""
    wins = r_chosen > r_rejected
    kinds = [r["kind"] for r in rows]
    out = {k: wins[torch.tensor([x == k for x in kinds])].float().mean().item() for k in KINDS}
    return {"all": wins.float().mean().item(), **out}


train_rows = list(prefs["train"]) + off_topic["train"]
heldout = list(prefs["test"]) + off_topic["heldout"]
valid_rows, test_rows = heldout[::4][:96], [r for i, r in enumerate(heldout) if i % 4 or i // 4 >= 96]


# the profile's evaluation budget (all of them on tiny; a pretrained 135M model scores fewer on a CPU)
valid_rows, test_rows = profile.eval_items(valid_rows), profile.eval_items(test_rows)
acc_curve, loss_curve, best_step = train_reward_model(reward_model, train_rows, valid_rows, steps=profile.steps(RM_STEPS),
                                                      lr=profile.lr(2e-3))
reward_model.eval()
print("validation pair accuracy by step:", [(s, round(a, 3)) for s, a in acc_curve])
print(f"kept the weights of step {best_step} (validation accuracy {max(a for _, a in acc_curve):.3f})")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
plot_curves({"train BT loss": tuple(zip(*loss_curve))}, ax=axes[0], title="Bradley–Terry loss", smooth_window=5)
plot_curves({"validation pair accuracy": tuple(zip(*acc_curve))}, ax=axes[1], title="validation pairs: r_w > r_l",
            ylabel="accuracy")
plt.show()

# %% [markdown]
# Accuracy on the held-out test pairs, by kind of rejected response:

# %%
with torch.no_grad():
    trunk_acc = accuracy_by_kind(*reward_model(**pair_batch(test_rows)).chunk(2), test_rows)
print(f"{len(test_rows)} held-out test pairs:", "  ".join(f"{k} {v:.1%}" for k, v in trunk_acc.items()))

# %% [markdown]
# Read the table: the *format* kinds (`curt`, `rambling`) are what a 1-million-parameter trunk picks up in a few dozen
# steps; `off_topic` (does the answer match the question?) comes partly; telling a **wrong** fact from the right one is
# near 50 %, a coin flip: the score head on the last hidden state does not reach the facts the model knows.
#
# ## 5. A competent reward model
# Real reward models start from the SFT model (InstructGPT: a 6B SFT model with its unembedding replaced by a scalar
# head), so what the language model knows is there to be read. Our tiny SFT model *does* know which answer is right:
# the mean log-probability it gives a response, $\bar\ell(y\mid x) = \frac1{|y|}\sum_t \log\pi_\text{SFT}(y_t\mid x,
# y_{<t})$, orders the pairs below. Alone it has a blind spot: a response likely under *any* prompt scores high for
# every prompt. Pointwise mutual information, $\bar\ell(y\mid x) - \bar\ell(y\mid \varnothing)$ (the same response after an
# empty prompt), measures how much the response depends on *this* question.
# Given (in `course/rlhf.py`, shared with notebook 2): the SFT model (notebook 2's starting policy: a full fine-tune on
# the tiny-world tasks) and its mean log-probability of a response; below, how well each signal alone orders the
# held-out test pairs.

# %% nbgrader={"grade": false, "grade_id": "given_sft_likelihood", "locked": true, "schema_version": 3, "solution": false, "task": false}
from course.rlhf import LikelihoodRewardModel, mean_logprob, sft_policy


def sft_model(steps=SFT_STEPS, seed=0):
    """The SFT model: a full fine-tune with trl's SFTTrainer on the tiny-world tasks, frozen."""
    return sft_policy(profile, tokenizer, examples("train"), steps=steps, seed=seed)


def prompts_of(rows):
    return [r["prompt"] for r in rows]


sft = sft_model()
lp = {side: mean_logprob(sft, tokenizer, prompts_of(test_rows), [r[side] for r in test_rows]) for side in ("chosen", "rejected")}
lp_empty = {side: mean_logprob(sft, tokenizer, [""] * len(test_rows), [r[side] for r in test_rows]) for side in ("chosen", "rejected")}
signals = {"trunk reward model (§4)": trunk_acc,
           "mean log-prob ℓ̄(y|x)": accuracy_by_kind(lp["chosen"], lp["rejected"], test_rows),
           "PMI ℓ̄(y|x) − ℓ̄(y|∅)": accuracy_by_kind(lp["chosen"] - lp_empty["chosen"],
                                                   lp["rejected"] - lp_empty["rejected"], test_rows)}
print(f"{'signal':28}" + "".join(f"{k:>11}" for k in trunk_acc))
for name, accs in signals.items():
    print(f"{name:28}" + "".join(f"{v:11.1%}" for v in accs.values()))

# %% [markdown]
# The competent reward model reads both numbers: $r(x, y) = w_1\,\bar\ell(y\mid x) + w_2\,\big(\bar\ell(y\mid x) -
# \bar\ell(y\mid\varnothing)\big) + b$ on the frozen SFT model, with $(w_1, w_2, b)$ fitted by **your** Bradley–Terry loss
# on the training pairs. Two features, so it cannot overfit; it is judged on the same held-out test pairs. The class
# is `course.rlhf.LikelihoodRewardModel`, so notebook 2 can rebuild the same model.

# %% nbgrader={"grade": false, "grade_id": "given_likelihood_reward_model", "locked": true, "schema_version": 3, "solution": false, "task": false}
# course.rlhf.LikelihoodRewardModel: features(prompts, responses) -> (N, 2) = (ℓ̄(y|x), ℓ̄(y|x) − ℓ̄(y|∅));
# forward = a Linear(2, 1) head on them; fit(rows, loss_fn) trains only the head, full batch, with loss_fn
competent_rm = LikelihoodRewardModel(sft, tokenizer)
fit_rows = profile.eval_items(train_rows, scale=4)   # every training pair on tiny; fewer on small
print(f"final Bradley–Terry loss {competent_rm.fit(fit_rows, loss_fn=bradley_terry_loss):.3f};  head w = "
      f"{competent_rm.head.weight.detach().numpy().round(2)}, b = {competent_rm.head.bias.item():.2f}")
with torch.no_grad():
    competent_acc = accuracy_by_kind(competent_rm(prompts_of(test_rows), [r["chosen"] for r in test_rows]),
                                     competent_rm(prompts_of(test_rows), [r["rejected"] for r in test_rows]), test_rows)
print(f"{'competent reward model':28}" + "".join(f"{v:11.1%}" for v in competent_acc.values()))
print(f"wrong-fact pairs: trunk {trunk_acc['wrong']:.1%} -> competent {competent_acc['wrong']:.1%};  "
      f"off-topic: {trunk_acc['off_topic']:.1%} -> {competent_acc['off_topic']:.1%}")

# %%
# The lesson's claim on this seed (tests/test_day2.py asserts it on seeds 1 and 2)
checks = {f"trunk RM: format yes (curt {trunk_acc['curt']:.1%}), facts near chance (wrong {trunk_acc['wrong']:.1%} < 65 %)":
              trunk_acc["wrong"] < 0.65 and trunk_acc["curt"] > 0.9,
          f"competent RM knows the facts (wrong {competent_acc['wrong']:.1%} > 80 % and > trunk + 20 points)":
              competent_acc["wrong"] > 0.8 and competent_acc["wrong"] > trunk_acc["wrong"] + 0.2,
          f"PMI covers off-topic ({competent_acc['off_topic']:.1%} > 70 %), best overall row":
              competent_acc["off_topic"] > 0.7 and competent_acc["all"] > trunk_acc["all"]}
from course.notebook import check_claims

check_claims(checks, profile)   # asserted on tiny (measured there on seeds 0–2); printed elsewhere

# %% [markdown]
# Compare the rows. The likelihood knows the facts (its `wrong` column is far above the trunk model's coin flip),
# PMI covers its off-topic blind spot, and the fitted combination is the best overall row. This competent reward
# model is the one notebook 2 optimises with PPO. It is still a proxy: its remaining errors are where a policy
# that optimises it can go wrong.

# %% [markdown]
# **Interview answers this notebook backs with numbers**
# - *Where does preference data come from?* Rankings by people (InstructGPT: $K$ responses → $\binom{K}{2}$ pairs),
#   AI or rule judges, and self-rejection sampling (§1).
# - *How does a reward model produce one number from a sequence?* A linear head on the hidden state of the last
#   non-pad token of prompt + response (§2).
# - *What is the reward model's loss?* Bradley–Terry, $-\log\sigma(r_w - r_l)$, averaged over pairs — exactly trl's
#   `RewardTrainer` loss on the same batch (§3). It only sees *differences*: adding a constant to every reward changes
#   nothing, which is why trl offers `center_rewards_coefficient`.
# - *Is a reward model a faithful judge?* No — held-out accuracy by kind (§4) shows what it learned and what it did not.
# - *Why initialise the reward model from the SFT model?* Its knowledge is what tells a wrong fact from a right one:
#   a small head on a briefly trained trunk learns format only; the SFT model's own likelihood (with PMI for
#   off-topic answers) reaches the facts (§5). *Why early-stop?* Held-out accuracy peaks and then falls (§4).
