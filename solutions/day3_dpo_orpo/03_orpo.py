# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 3 · 3 — ORPO from scratch, equal to trl's `ORPOTrainer`
#
# DPO (notebooks 1–2) needs an SFT model first and then a frozen copy of it as the reference. ORPO
# (Hong et al. 2024, seed §4.4) folds both stages into one loss on one model:
#
# $$\mathcal{L}_\text{ORPO} = \mathcal{L}_\text{SFT} + \lambda\,\mathcal{L}_\text{OR},\qquad
# \mathcal{L}_\text{OR} = -\log\sigma\Big(\log\frac{\mathrm{odds}_\theta(y_w\mid x)}{\mathrm{odds}_\theta(y_l\mid x)}\Big),\qquad
# \mathrm{odds}_\theta(y\mid x) = \frac{P_\theta(y\mid x)}{1-P_\theta(y\mid x)}$$
#
# where $\mathcal{L}_\text{SFT}$ is the usual next-token NLL on the chosen response and
# $P_\theta(y\mid x) = \exp\big(\frac{1}{|y|}\sum_t\log\pi_\theta(y_t\mid x,y_{<t})\big)$ is the **per-token
# average** probability (ORPO length-normalises, unlike DPO). No reference model anywhere.
#
# We build each piece, then check the whole loss against `trl.experimental.orpo.ORPOTrainer` on the same batch
# (tolerance 1e-5). In trl the weight λ is called `beta`.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import torch
import torch.nn.functional as F
from datasets import Dataset
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from course.loading import load_base, load_preference_data, load_tokenizer
from course.plotting import plot_curves, plt

torch.manual_seed(0)
tokenizer = load_tokenizer(profile)
prefs = load_preference_data()

# %% [markdown]
# ## 1. Odds instead of probabilities
#
# $\log\mathrm{odds} = \log\frac{P}{1-P} = \log P - \log(1-P)$. We hold $\log P$ (an average log-probability,
# always $<0$), so $\log(1-P) = \log(1 - e^{\log P})$ — use `torch.log1p(-torch.exp(x))` (or `-torch.expm1(x)`
# inside the log when $P$ is close to 1).
#
# ### Exercise 1 — log-odds
# Write `log_odds(avg_logps)` returning $\log\frac{P}{1-P}$ elementwise, given $\log P$.

# %% nbgrader={"grade": false, "grade_id": "log_odds", "locked": false, "schema_version": 3, "solution": true, "task": false}
def log_odds(avg_logps):
    """log(P / (1 − P)) from log P (< 0). avg_logps: (B,) -> (B,)."""
    ### BEGIN SOLUTION
    return avg_logps - torch.log1p(-torch.exp(avg_logps))
    ### END SOLUTION


# %%
p = torch.tensor([0.1, 0.5, 0.8, 0.99])
print("P        :", p.numpy())
print("log P    :", p.log().numpy().round(3))
print("log odds :", log_odds(p.log()).numpy().round(3), " (log 4 =", round(torch.log(torch.tensor(4.0)).item(), 3), ")")

# %% nbgrader={"grade": true, "grade_id": "log_odds__values", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_lo = log_odds(torch.log(torch.tensor([0.5, 0.8, 0.2])))
assert _lo.shape == (3,), f"elementwise: expected shape (3,), got {tuple(_lo.shape)}"
assert abs(_lo[0].item()) < 1e-6, "P = 0.5 means even odds: log-odds 0"
assert abs(_lo[1].item() - torch.log(torch.tensor(4.0)).item()) < 1e-5, "P = 0.8: odds 0.8/0.2 = 4"
assert abs(_lo[2].item() + torch.log(torch.tensor(4.0)).item()) < 1e-5, "P = 0.2: odds 1/4, log-odds −log 4 (not log P)"

# %% nbgrader={"grade": true, "grade_id": "log_odds__stable_range", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_x = -torch.logspace(-3, 1.3, 50)                 # log P from −0.001 to −20
_lo = log_odds(_x)
assert torch.isfinite(_lo).all(), "log-odds must be finite for every log P < 0"
_expected = _x - torch.log(-torch.expm1(_x))
assert torch.allclose(_lo, _expected, atol=1e-4, rtol=1e-5), "log P − log(1 − exp(log P))"
### BEGIN HIDDEN TESTS
assert torch.allclose(log_odds(torch.tensor([-30.0])), torch.tensor([-30.0]), atol=1e-6), \
    "for tiny P the odds are ≈ P: log-odds ≈ log P"
### END HIDDEN TESTS

# %% [markdown]
# ## 2. The odds-ratio term
#
# $$\mathcal{L}_\text{OR} = -\log\sigma\big(\log\mathrm{odds}_\theta(y_w\mid x) - \log\mathrm{odds}_\theta(y_l\mid x)\big)$$
#
# Same shape as DPO's loss — a logistic loss on a difference — but the difference is of the policy's own
# log-odds, with no reference model and no β inside.
#
# ### Exercise 2 — the odds-ratio loss
# Return the per-pair losses `(B,)` and the per-pair log odds ratio `(B,)` (trl logs its mean as
# `log_odds_chosen`).

# %% nbgrader={"grade": false, "grade_id": "odds_ratio_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def odds_ratio_loss(chosen_avg_logps, rejected_avg_logps):
    """(B,), (B,) average log-probs -> (losses (B,), log_odds_ratio (B,))."""
    ### BEGIN SOLUTION
    log_odds_ratio = log_odds(chosen_avg_logps) - log_odds(rejected_avg_logps)
    losses = -F.logsigmoid(log_odds_ratio)
    return losses, log_odds_ratio
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "odds_ratio_loss__values", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_c, _r = torch.log(torch.tensor([0.8, 0.5])), torch.log(torch.tensor([0.2, 0.5]))
_losses, _lor = odds_ratio_loss(_c, _r)
assert _losses.shape == (2,) and _lor.shape == (2,), "one loss and one log odds ratio per pair"
assert torch.allclose(_lor, torch.tensor([2 * torch.log(torch.tensor(4.0)).item(), 0.0]), atol=1e-5), \
    "log odds ratio = log(4) − log(1/4) = 2·log 4 for P = 0.8 vs 0.2 (log-odds, not log P)"
assert torch.allclose(_losses, -F.logsigmoid(_lor), atol=1e-6), "L_OR = −log σ(log odds ratio)"
assert abs(_losses[1].item() - torch.log(torch.tensor(2.0)).item()) < 1e-6, "equal odds: loss log 2"

# %% nbgrader={"grade": true, "grade_id": "odds_ratio_loss__direction", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_c = torch.tensor([-1.0, -2.0], requires_grad=True)
_r = torch.tensor([-1.5, -0.7], requires_grad=True)
_losses, _ = odds_ratio_loss(_c, _r)
_losses.sum().backward()
assert (_c.grad < 0).all() and (_r.grad > 0).all(), "minimising L_OR raises the chosen log-prob and lowers the rejected"
assert _losses[1] > _losses[0], "a pair whose rejected response is more likely than the chosen one costs more"

# %% [markdown]
# ## 3. The full ORPO loss
#
# ### Exercise 3 — combine
# `orpo_loss(chosen_nll, chosen_avg_logps, rejected_avg_logps, lam)`: the SFT term (a scalar, given) plus λ times
# the **batch mean** of $\mathcal{L}_\text{OR}$. Return the scalar loss.

# %% nbgrader={"grade": false, "grade_id": "orpo_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def orpo_loss(chosen_nll, chosen_avg_logps, rejected_avg_logps, lam):
    """chosen_nll: scalar; (B,), (B,) -> scalar L_SFT + λ · mean(L_OR)."""
    ### BEGIN SOLUTION
    losses, _ = odds_ratio_loss(chosen_avg_logps, rejected_avg_logps)
    return chosen_nll + lam * losses.mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "orpo_loss__values", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_c, _r = torch.log(torch.tensor([0.8, 0.5])), torch.log(torch.tensor([0.2, 0.5]))
_or = -F.logsigmoid(torch.tensor([2 * torch.log(torch.tensor(4.0)).item(), 0.0]))
_total = orpo_loss(torch.tensor(2.0), _c, _r, 0.1)
assert _total.dim() == 0, "a scalar loss"
assert abs(_total.item() - (2.0 + 0.1 * _or.mean().item())) < 1e-5, \
    f"L = L_SFT + λ·mean(L_OR) = {2.0 + 0.1 * _or.mean().item():.5f}, got {_total.item():.5f}"

# %% nbgrader={"grade": true, "grade_id": "orpo_loss__lambda", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_c, _r = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.5, -0.7, -3.0])
assert abs(orpo_loss(torch.tensor(1.5), _c, _r, 0.0).item() - 1.5) < 1e-6, "λ = 0 is plain SFT"
_d1 = orpo_loss(torch.tensor(1.5), _c, _r, 1.0) - orpo_loss(torch.tensor(1.5), _c, _r, 0.0)
_d2 = orpo_loss(torch.tensor(1.5), _c, _r, 2.0) - orpo_loss(torch.tensor(1.5), _c, _r, 0.0)
assert abs(_d2.item() - 2 * _d1.item()) < 1e-5 and _d1.item() > 0, "λ scales only the odds-ratio term, linearly"
### BEGIN HIDDEN TESTS
assert abs(_d1.item() - odds_ratio_loss(_c, _r)[0].mean().item()) < 1e-5, "the odds-ratio term is averaged over pairs"
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Equal to trl
#
# Train a model for a few ORPO steps with trl (so the numbers are not those of the untouched base model), then
# take one held-out batch from the trainer's own data collator and ask the trainer for its loss and metrics on it
# (`get_batch_loss_metrics`). As for DPO, `ORPOConfig` defaults to `bf16=True` (bfloat16 autocast on CPU): we set
# `bf16=False` to compare in float32. trl's ORPO collator keeps `chosen_*` and `rejected_*` tensors separately,
# with `-100` in the labels on the prompt and padding; its prompts start with the BOS token `<s>`.

# %% nbgrader={"grade": false, "grade_id": "given_trl_orpo_run", "locked": true, "schema_version": 3, "solution": false, "task": false}
LAM = 0.1


def as_conversation(row):
    return {"prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}]}


train_ds = Dataset.from_list([as_conversation(prefs["train"][i]) for i in range(96)])
eval_ds = Dataset.from_list([as_conversation(prefs["test"][i]) for i in range(8)])
args = ORPOConfig(output_dir="/tmp/course_day3_orpo", beta=LAM, max_steps=12, learning_rate=1e-3,
                  per_device_train_batch_size=8, per_device_eval_batch_size=8, bf16=False, use_cpu=True,
                  report_to=[], save_strategy="no", logging_steps=4, seed=0, disable_tqdm=True,
                  remove_unused_columns=False)
model = load_base(profile)
trainer = ORPOTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer)
trainer.train()
model.eval()
orpo_batch = next(iter(trainer.get_eval_dataloader()))
with torch.no_grad():
    trl_loss, trl_metrics = trainer.get_batch_loss_metrics(model, orpo_batch, train_eval="eval")
print("trl loss:", round(trl_loss.item(), 6), {k: round(v, 5) for k, v in trl_metrics.items()
                                              if k.endswith(("nll_loss", "log_odds_ratio", "log_odds_chosen"))})
print({k: tuple(v.shape) for k, v in orpo_batch.items() if torch.is_tensor(v)})
print(repr(tokenizer.decode(orpo_batch["chosen_input_ids"][0])))


# %% [markdown]
# Sequence log-probabilities as in notebook 2, written here with `F.cross_entropy` (which ignores `-100` labels
# and returns 0 there) — given code:

# %% nbgrader={"grade": false, "grade_id": "given_logprobs", "locked": true, "schema_version": 3, "solution": false, "task": false}
def token_logprobs(logits, labels):
    """Shifted per-token log-probs, 0 where the label is -100. (N, T, V), (N, T) -> (N, T-1)."""
    return -F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none")


def average_logprobs(logits, labels):
    """Per-token average log-prob of the scored tokens: log P_θ(y|x) as ORPO defines it. -> (N,)."""
    return token_logprobs(logits, labels).sum(-1) / (labels[:, 1:] != -100).sum(-1)


# %% [markdown]
# ### Exercise 4 — the ORPO loss of a batch, as trl computes it
# `orpo_batch_loss(model, batch, lam)` takes trl's ORPO batch and returns `(loss, metrics)`:
# - run the model on `chosen_input_ids` and on `rejected_input_ids` (with their attention masks);
# - average log-probs of the responses from `chosen_labels` / `rejected_labels` (`average_logprobs`);
# - the SFT term **as trl computes it**: the token-level mean cross-entropy over *every non-padding token of
#   prompt + chosen* (labels = `chosen_input_ids` with `-100` where `chosen_attention_mask == 0`; trl's source says
#   "orpo chosen nll loss is computed over the full prompt and response"). The paper's $\mathcal{L}_\text{SFT}$
#   scores the response only — §5 prints both;
# - `loss = orpo_loss(...)`; `metrics` with the floats `"nll_loss"`, `"log_odds_ratio"` (trl's name for the batch
#   mean of $\log\sigma(\text{log odds ratio})$) and `"log_odds_chosen"` (the batch mean of the log odds ratio).

# %% nbgrader={"grade": false, "grade_id": "orpo_batch_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def orpo_batch_loss(model, batch, lam):
    """trl's ORPO batch (chosen_/rejected_ input_ids, attention_mask, labels) -> (scalar loss, metrics dict)."""
    ### BEGIN SOLUTION
    chosen_logits = model(input_ids=batch["chosen_input_ids"], attention_mask=batch["chosen_attention_mask"]).logits
    rejected_logits = model(input_ids=batch["rejected_input_ids"], attention_mask=batch["rejected_attention_mask"]).logits
    chosen_avg = average_logprobs(chosen_logits, batch["chosen_labels"])
    rejected_avg = average_logprobs(rejected_logits, batch["rejected_labels"])
    nll_labels = batch["chosen_input_ids"].masked_fill(batch["chosen_attention_mask"] == 0, -100)
    chosen_nll = F.cross_entropy(chosen_logits[:, :-1].flatten(0, 1), nll_labels[:, 1:].flatten(), ignore_index=-100)
    loss = orpo_loss(chosen_nll, chosen_avg, rejected_avg, lam)
    _, log_odds_ratio = odds_ratio_loss(chosen_avg, rejected_avg)
    metrics = {"nll_loss": chosen_nll.item(), "log_odds_ratio": F.logsigmoid(log_odds_ratio).mean().item(),
               "log_odds_chosen": log_odds_ratio.mean().item()}
    return loss, metrics
    ### END SOLUTION


# %%
with torch.no_grad():
    my_loss, my_metrics = orpo_batch_loss(model, orpo_batch, LAM)
print(f"{'':18}{'from scratch':>14}{'trl':>14}{'|diff|':>10}")
print(f"{'loss':18}{my_loss.item():>14.6f}{trl_loss.item():>14.6f}{abs(my_loss.item() - trl_loss.item()):>10.1e}")
for k, v in my_metrics.items():
    print(f"{k:18}{v:>14.6f}{trl_metrics['eval_' + k]:>14.6f}{abs(v - trl_metrics['eval_' + k]):>10.1e}")

# %% nbgrader={"grade": true, "grade_id": "orpo_batch_loss__equals_trl_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
with torch.no_grad():
    _loss, _metrics = orpo_batch_loss(model, orpo_batch, LAM)
assert _loss.dim() == 0, "a scalar loss"
assert abs(_loss.item() - trl_loss.item()) < 1e-5, \
    f"from-scratch ORPO loss {_loss.item():.6f} must equal trl's {trl_loss.item():.6f} to 1e-5"

# %% nbgrader={"grade": true, "grade_id": "orpo_batch_loss__equals_trl_metrics", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
with torch.no_grad():
    _loss, _metrics = orpo_batch_loss(model, orpo_batch, LAM)
for _k in ("nll_loss", "log_odds_ratio", "log_odds_chosen"):
    assert abs(_metrics[_k] - trl_metrics["eval_" + _k]) < 1e-5, f"{_k}: {_metrics[_k]:.6f} vs trl {trl_metrics['eval_' + _k]:.6f}"
### BEGIN HIDDEN TESTS
with torch.no_grad():
    _l0, _m0 = orpo_batch_loss(model, orpo_batch, 0.0)
assert abs(_l0.item() - trl_metrics["eval_nll_loss"]) < 1e-5, "with λ = 0 the loss is trl's nll_loss alone"
### END HIDDEN TESTS

# %% [markdown]
# ## 5. What the terms do, and why no reference model is needed
#
# DPO needs $\pi_\text{ref}$ because its only signal is *relative*: without the reference nothing anchors the
# policy (notebook 1, check 3), and since DPO starts from an SFT model the reference is what keeps that SFT
# behaviour. ORPO keeps the anchor **inside the loss**: $\mathcal{L}_\text{SFT}$ *is* supervised fine-tuning on
# the chosen responses, so the model keeps learning to produce them, while $\lambda\,\mathcal{L}_\text{OR}$ only adds
# a small contrastive push against the rejected ones. One model, one forward per sequence, no frozen copy:

# %%
with torch.no_grad():
    c_logits = model(input_ids=orpo_batch["chosen_input_ids"], attention_mask=orpo_batch["chosen_attention_mask"]).logits
    r_logits = model(input_ids=orpo_batch["rejected_input_ids"], attention_mask=orpo_batch["rejected_attention_mask"]).logits
c_avg = average_logprobs(c_logits, orpo_batch["chosen_labels"])
r_avg = average_logprobs(r_logits, orpo_batch["rejected_labels"])
resp_nll = -token_logprobs(c_logits, orpo_batch["chosen_labels"]).sum() / (orpo_batch["chosen_labels"][:, 1:] != -100).sum()
n_params = sum(p.numel() for p in model.parameters())
print(f"L_SFT over prompt+response (trl): {my_metrics['nll_loss']:.4f}   over the response only (paper): {resp_nll.item():.4f}")
print(f"λ·mean L_OR = {LAM * odds_ratio_loss(c_avg, r_avg)[0].mean().item():.4f}  (λ = {LAM})")
print(f"models in memory — DPO: 2 ({2 * n_params:,} parameters), ORPO: 1 ({n_params:,})")
print(f"forward passes per step — DPO: policy + reference on 2B sequences; ORPO: the policy only")

# %% [markdown]
# **Why odds and not plain probabilities?** For the same pair, the log odds ratio adds
# $\log(1-P_l) - \log(1-P_w)$ to the log probability ratio, which is $>0$ whenever $P_w > P_l$: the contrast is larger,
# $-\log\sigma(\cdot)$ saturates sooner, and its gradient weight $\sigma(-\text{contrast})$ dies away sooner. Hong et al.
# argue that a probability ratio inside the same loss suppresses the rejected responses' likelihood too strongly
# next to the SFT term; the odds ratio is the milder contrast. The plot shows both for a rejected response at
# $P_l = 0.1$ as $P_w$ grows; below, the gradient weights on our trained batch.

# %%
p_w = torch.linspace(0.02, 0.98, 100)
p_l = torch.tensor(0.1)
plot_curves({"log odds ratio": (p_w.tolist(), (log_odds(p_w.log()) - log_odds(p_l.log())).tolist()),
             "log probability ratio": (p_w.tolist(), (p_w.log() - p_l.log()).tolist())},
            title="contrast between chosen and rejected (P_l = 0.1)", xlabel="P_w (per-token average)", ylabel="nats")
plt.show()
pr = c_avg - r_avg
lor = log_odds(c_avg) - log_odds(r_avg)
print(f"batch: mean gradient weight σ(−contrast) — odds ratio {torch.sigmoid(-lor).mean().item():.4f}, "
      f"probability ratio {torch.sigmoid(-pr).mean().item():.4f}")
print("at P_w = 0.98: log odds ratio =", round((log_odds(p_w[-1:].log()) - log_odds(p_l.log().view(1))).item(), 3),
      " log probability ratio =", round((p_w[-1].log() - p_l.log()).item(), 3))

# %% [markdown]
# **Interview answers this notebook backs with numbers**
# - *ORPO vs DPO?* DPO: two stages (SFT, then preferences), a frozen reference, summed log-probs, β-scaled
#   log-ratios. ORPO: one stage, one model, SFT NLL + λ·odds-ratio term on length-normalised probabilities.
# - *Why does ORPO not need a reference model?* The SFT term anchors the model to the chosen responses inside
#   the loss itself; the odds-ratio term is a bounded contrast on top (§5). DPO's reference plays the anchoring role
#   that RLHF's KL penalty plays (notebook 1, §7).
# - *Is your ORPO the same as trl's?* Same batch, same λ: equal to `ORPOTrainer`'s loss and its `nll_loss`,
#   `log_odds_ratio`, `log_odds_chosen` to 1e-5 (§4) — including trl's choice of the NLL over prompt + response.
