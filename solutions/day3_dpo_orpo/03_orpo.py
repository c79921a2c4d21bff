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
from course.notebook import check_claims, progress
from course.plotting import plot_curves, plt
from course.training import use_cpu

torch.manual_seed(0)
tokenizer = load_tokenizer(profile)
prefs = load_preference_data()

# %% [markdown]
# ## 1. Odds instead of probabilities
#
# $\log\mathrm{odds} = \log\frac{P}{1-P} = \log P - \log(1-P)$. We hold $\log P$ (an average log-probability,
# always $<0$), so $\log(1-P) = \log(1 - e^{\log P}) = \log(-\mathrm{expm1}(\log P))$ — write it with
# `torch.log(-torch.expm1(x))`, which stays accurate as $P \to 1$. (trl writes `torch.log1p(-torch.exp(x))`: equal on
# moderate inputs, but in float32 `exp(-1e-9)` rounds to 1 and the log-odds become +∞.)
#
# ### Exercise 1 — log-odds
# Write `log_odds(avg_logps)` returning $\log\frac{P}{1-P}$ elementwise, given $\log P$.

# %% nbgrader={"grade": false, "grade_id": "log_odds", "locked": false, "schema_version": 3, "solution": true, "task": false}
def log_odds(avg_logps):
    """log(P / (1 − P)) from log P (< 0). avg_logps: (B,) -> (B,)."""
    ### BEGIN SOLUTION
    return avg_logps - torch.log(-torch.expm1(avg_logps))
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
_near1 = log_odds(torch.tensor([-1e-6, -1e-9]))                # P within 1e-6 and 1e-9 of 1
_want = torch.tensor([-1e-6, -1e-9], dtype=torch.float64)
_want = (_want - torch.log(-torch.expm1(_want))).float()
assert torch.isfinite(_near1).all() and torch.allclose(_near1, _want, atol=1e-3), \
    f"P close to 1: log(1 − P) needs expm1 (exp(−1e−9) rounds to 1 in float32); got {_near1.tolist()}"
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
### BEGIN HIDDEN TESTS
_losses, _lor = odds_ratio_loss(torch.tensor([-120.0, -1e-4]), torch.tensor([-1e-4, -120.0]))
assert torch.isfinite(_losses).all(), "a large margin: −log σ(z) must stay finite (use F.logsigmoid, not log(sigmoid))"
assert abs(_losses[0].item() + _lor[0].item()) < 1e-3 and _losses[1].item() < 1e-6, \
    "−log σ(z) ≈ −z for z ≪ 0 and ≈ 0 for z ≫ 0"
_one, _ = odds_ratio_loss(torch.tensor([-1.0]), torch.tensor([-1.0]))
assert _one.shape == (1,) and abs(_one.item() - torch.log(torch.tensor(2.0)).item()) < 1e-6, "batch of one, a tie"
### END HIDDEN TESTS

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
model = load_base(profile)
args = ORPOConfig(output_dir="/tmp/course_day3_orpo", beta=LAM, max_steps=profile.sweep_steps(12),
                  learning_rate=profile.lr(1e-3), per_device_train_batch_size=profile.per_device_batch_size,
                  per_device_eval_batch_size=8, bf16=False, use_cpu=use_cpu(model),
                  report_to=[], save_strategy="no", logging_steps=4, seed=0, disable_tqdm=True,
                  remove_unused_columns=False)
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
# ### Exercise 4 — the ORPO loss of a batch, as the paper defines it
# `orpo_batch_loss(model, batch, lam, nll_over="response")` takes trl's ORPO batch and returns `(loss, metrics)`:
# - run the model on `chosen_input_ids` and on `rejected_input_ids` (with their attention masks);
# - average log-probs of the responses from `chosen_labels` / `rejected_labels` (`average_logprobs`);
# - the SFT term: the token-level mean cross-entropy of the chosen sequence over
#   - `nll_over="response"` (the default, Hong et al.'s $\mathcal{L}_\text{SFT}$): the **response tokens only** —
#     the tokens `chosen_labels` scores;
#   - `nll_over="prompt+response"` (what trl 1.16 computes — its source says "orpo chosen nll loss is computed
#     over the full prompt and response"): every non-padding token, labels = `chosen_input_ids` with `-100` where
#     `chosen_attention_mask == 0`. With it your loss must equal trl's exactly; any other value is a `ValueError`;
# - `loss = orpo_loss(...)`; `metrics` with the floats `"nll_loss"`, `"log_odds_ratio"` (trl's name for the batch
#   mean of $\log\sigma(\text{log odds ratio})$) and `"log_odds_chosen"` (the batch mean of the log odds ratio).

# %% nbgrader={"grade": false, "grade_id": "orpo_batch_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def orpo_batch_loss(model, batch, lam, nll_over="response"):
    """trl's ORPO batch (chosen_/rejected_ input_ids, attention_mask, labels) -> (scalar loss, metrics dict).

    nll_over: "response" (the paper's L_SFT) or "prompt+response" (trl's)."""
    ### BEGIN SOLUTION
    chosen_logits = model(input_ids=batch["chosen_input_ids"], attention_mask=batch["chosen_attention_mask"]).logits
    rejected_logits = model(input_ids=batch["rejected_input_ids"], attention_mask=batch["rejected_attention_mask"]).logits
    chosen_avg = average_logprobs(chosen_logits, batch["chosen_labels"])
    rejected_avg = average_logprobs(rejected_logits, batch["rejected_labels"])
    if nll_over == "response":
        nll_labels = batch["chosen_labels"]
    elif nll_over == "prompt+response":
        nll_labels = batch["chosen_input_ids"].masked_fill(batch["chosen_attention_mask"] == 0, -100)
    else:
        raise ValueError(f"nll_over must be 'response' or 'prompt+response', got {nll_over!r}")
    chosen_nll = F.cross_entropy(chosen_logits[:, :-1].flatten(0, 1), nll_labels[:, 1:].flatten(), ignore_index=-100)
    loss = orpo_loss(chosen_nll, chosen_avg, rejected_avg, lam)
    _, log_odds_ratio = odds_ratio_loss(chosen_avg, rejected_avg)
    metrics = {"nll_loss": chosen_nll.item(), "log_odds_ratio": F.logsigmoid(log_odds_ratio).mean().item(),
               "log_odds_chosen": log_odds_ratio.mean().item()}
    return loss, metrics
    ### END SOLUTION


# %%
with torch.no_grad():
    my_loss, my_metrics = orpo_batch_loss(model, orpo_batch, LAM, nll_over="prompt+response")
    paper_loss, paper_metrics = orpo_batch_loss(model, orpo_batch, LAM)
print(f"{'nll_over=prompt+response':30}{'from scratch':>14}{'trl':>14}{'|diff|':>10}")
print(f"{'loss':30}{my_loss.item():>14.6f}{trl_loss.item():>14.6f}{abs(my_loss.item() - trl_loss.item()):>10.1e}")
for k, v in my_metrics.items():
    print(f"{k:30}{v:>14.6f}{trl_metrics['eval_' + k]:>14.6f}{abs(v - trl_metrics['eval_' + k]):>10.1e}")
print(f"\nthe paper's L_SFT (response only): nll_loss {paper_metrics['nll_loss']:.4f} vs trl's {my_metrics['nll_loss']:.4f}"
      f" · loss {paper_loss.item():.4f} vs {my_loss.item():.4f}; the odds-ratio metrics are the same: "
      f"{paper_metrics['log_odds_chosen']:.4f} = {my_metrics['log_odds_chosen']:.4f}")

# %% nbgrader={"grade": true, "grade_id": "orpo_batch_loss__paper_response_only", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
with torch.no_grad():
    _loss, _metrics = orpo_batch_loss(model, orpo_batch, LAM)
    _cl = model(input_ids=orpo_batch["chosen_input_ids"], attention_mask=orpo_batch["chosen_attention_mask"]).logits
_lab = orpo_batch["chosen_labels"]
_resp_nll = F.cross_entropy(_cl[:, :-1].flatten(0, 1), _lab[:, 1:].flatten(), ignore_index=-100).item()
_expected = _resp_nll - LAM * trl_metrics["eval_log_odds_ratio"]          # L_SFT(response) + λ·mean(−log σ)
assert _loss.dim() == 0, "a scalar loss"
assert abs(_metrics["nll_loss"] - _resp_nll) < 1e-5, \
    f"the default L_SFT is the mean NLL over the response tokens only ({_resp_nll:.5f}), got {_metrics['nll_loss']:.5f}"
assert abs(_loss.item() - _expected) < 1e-5, f"loss = L_SFT(response) + λ·mean L_OR = {_expected:.6f}, got {_loss.item():.6f}"
### BEGIN HIDDEN TESTS
with torch.no_grad():
    _l3, _m3 = orpo_batch_loss(model, orpo_batch, 0.7)
assert abs(_l3.item() - (_resp_nll - 0.7 * trl_metrics["eval_log_odds_ratio"])) < 1e-5, "λ = 0.7 weights the OR term"
with torch.no_grad():
    _l0, _ = orpo_batch_loss(model, orpo_batch, 0.0)
assert abs(_l0.item() - _resp_nll) < 1e-5, "with λ = 0 the loss is the response-only NLL alone"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "orpo_batch_loss__equals_trl_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
with torch.no_grad():
    _loss, _metrics = orpo_batch_loss(model, orpo_batch, LAM, nll_over="prompt+response")
assert _loss.dim() == 0, "a scalar loss"
assert abs(_loss.item() - trl_loss.item()) < 1e-5, \
    f"nll_over='prompt+response': ORPO loss {_loss.item():.6f} must equal trl's {trl_loss.item():.6f} to 1e-5"

# %% nbgrader={"grade": true, "grade_id": "orpo_batch_loss__equals_trl_metrics", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
with torch.no_grad():
    _loss, _metrics = orpo_batch_loss(model, orpo_batch, LAM, nll_over="prompt+response")
_tol = 1e-5 if profile.name == "tiny" else 1e-3   # trl's log1p(−exp(x)) loses float32 digits as P → 1 (§1)
for _k in ("nll_loss", "log_odds_ratio", "log_odds_chosen"):
    assert abs(_metrics[_k] - trl_metrics["eval_" + _k]) < _tol, f"{_k}: {_metrics[_k]:.6f} vs trl {trl_metrics['eval_' + _k]:.6f}"
### BEGIN HIDDEN TESTS
with torch.no_grad():
    _l0, _m0 = orpo_batch_loss(model, orpo_batch, 0.0, nll_over="prompt+response")
assert abs(_l0.item() - trl_metrics["eval_nll_loss"]) < 1e-5, "with λ = 0 the loss is trl's nll_loss alone"
try:
    orpo_batch_loss(model, orpo_batch, LAM, nll_over="prompt")
    raise AssertionError("an unknown nll_over must raise ValueError")
except ValueError:
    pass
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
or_term = LAM * odds_ratio_loss(c_avg, r_avg)[0].mean().item()
print(f"L_SFT over prompt+response (trl): {my_metrics['nll_loss']:.4f}   over the response only (paper): {resp_nll.item():.4f}")
print(f"λ·mean L_OR = {or_term:.4f}  (λ = {LAM}): {100 * or_term / (resp_nll.item() + or_term):.1f} % of the paper's loss")
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
# ## 6. What the odds-ratio term does: its gradient, and λ = 0 vs λ > 0
#
# A term's share of the loss says nothing about its share of the *update*. Take the trained model and one batch,
# and compute each term's gradient and its first-order effect on the quantity the term targets, the chosen −
# rejected log odds gap $G$ (the batch mean of the log odds ratio): a small gradient-descent step $-\eta\,g$ changes
# $G$ by $-\eta\,\langle g, \nabla G\rangle$.

# %%
def flat_grad(scalar):
    """Gradient of a scalar w.r.t. all trainable parameters, flattened into one vector."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([g.flatten() for g in torch.autograd.grad(scalar, params, retain_graph=True)])


model.train()
c_logits = model(input_ids=orpo_batch["chosen_input_ids"], attention_mask=orpo_batch["chosen_attention_mask"]).logits
r_logits = model(input_ids=orpo_batch["rejected_input_ids"], attention_mask=orpo_batch["rejected_attention_mask"]).logits
c_avg_g = average_logprobs(c_logits, orpo_batch["chosen_labels"])
r_avg_g = average_logprobs(r_logits, orpo_batch["rejected_labels"])
lab = orpo_batch["chosen_labels"]
sft_term = F.cross_entropy(c_logits[:, :-1].flatten(0, 1), lab[:, 1:].flatten(), ignore_index=-100)
or_losses, lor_g = odds_ratio_loss(c_avg_g, r_avg_g)
g_sft = flat_grad(sft_term)
g_or = flat_grad(LAM * or_losses.mean())
g_gap = flat_grad(lor_g.mean())
model.eval()
grad_rows = {"L_SFT": g_sft, f"λ·L_OR (λ={LAM})": g_or}
print(f"{'term':18}{'value':>9}{'|grad|':>10}{'dG/dη (gap change per unit step)':>34}")
for (name, g), val in zip(grad_rows.items(), (sft_term.item(), LAM * or_losses.mean().item())):
    print(f"{name:18}{val:>9.4f}{g.norm().item():>10.4f}{-(g @ g_gap).item():>34.4f}")
cos = (g_sft @ g_or / (g_sft.norm() * g_or.norm())).item()
print(f"cosine(grad L_SFT, grad λ·L_OR) = {cos:.3f}")

# %% [markdown]
# The columns say how much each term's descent direction widens the gap (positive) or narrows it. Now the same
# thing over a run: train from the base model with the paper's loss for 40 steps at λ = 0 (plain SFT on the
# chosen responses) and at λ > 0, same data, seed and optimiser, and measure on 64 held-out pairs the mean
# log-probability per token of chosen and rejected responses and their log odds gap. (Another profile scales the
# steps, batch, held-out pairs and learning rate: `profile.sweep_steps`, `per_device_batch_size`, `eval_count`, `lr`.)

# %% nbgrader={"grade": false, "grade_id": "given_lambda_runs", "locked": true, "schema_version": 3, "solution": false, "task": false}
HELDOUT = range(8, 8 + profile.eval_count(64))   # 64 held-out pairs on tiny
heldout_trainer = ORPOTrainer(model=load_base(profile), args=ORPOConfig(**{**args.to_dict(), "per_device_eval_batch_size": len(HELDOUT)}),
                              train_dataset=train_ds, eval_dataset=Dataset.from_list([as_conversation(prefs["test"][i]) for i in HELDOUT]),
                              processing_class=tokenizer)
heldout_batch = next(iter(heldout_trainer.get_eval_dataloader()))
train_batches = list(trainer.get_train_dataloader())


heldout_kinds = [prefs["test"][i]["kind"] for i in HELDOUT]
KINDS = ("wrong", "curt", "rambling")


def heldout_gap(m):
    """(mean chosen avg log-prob, mean rejected avg log-prob, mean log odds gap, gap per kind of pair)."""
    with torch.no_grad():
        cl = m(input_ids=heldout_batch["chosen_input_ids"], attention_mask=heldout_batch["chosen_attention_mask"]).logits
        rl = m(input_ids=heldout_batch["rejected_input_ids"], attention_mask=heldout_batch["rejected_attention_mask"]).logits
    ca, ra = average_logprobs(cl, heldout_batch["chosen_labels"]), average_logprobs(rl, heldout_batch["rejected_labels"])
    gap = log_odds(ca) - log_odds(ra)
    per_kind = [gap[torch.tensor([k == kind for k in heldout_kinds])].mean().item() for kind in KINDS]
    return ca.mean().item(), ra.mean().item(), gap.mean().item(), per_kind


def train_orpo(lam, steps=profile.sweep_steps(40), lr=profile.lr(1e-3), seed=0):
    """From the base model: Adam on the paper's ORPO loss over trl's collated training batches."""
    torch.manual_seed(seed)
    order = torch.randperm(len(train_batches)).tolist()                   # batch order set by the seed
    m = load_base(profile)
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.0)
    m.train()
    for step in range(steps):
        loss, _ = orpo_batch_loss(m, train_batches[order[step % len(order)]], lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


# %%
base_row = heldout_gap(load_base(profile))
runs = {0.0: None, LAM: None, 1.0: None}
for lam in progress(list(runs), desc="ORPO runs"):
    runs[lam] = heldout_gap(train_orpo(lam))
print(f"{'':12}{'chosen logp':>12}{'rejected logp':>15}{'log odds gap':>14}" + "".join(f"{'gap ' + k:>14}" for k in KINDS))
for name, row in [("base", base_row)] + [(f"λ = {lam}", row) for lam, row in runs.items()]:
    print(f"{name:12}{row[0]:>12.3f}{row[1]:>15.3f}{row[2]:>14.3f}" + "".join(f"{g:>14.3f}" for g in row[3]))
print(f"gap added by the odds-ratio term over λ = 0: λ = {LAM}: {runs[LAM][2] - runs[0.0][2]:+.3f}, "
      f"λ = 1.0: {runs[1.0][2] - runs[0.0][2]:+.3f}; by SFT alone over the base: {runs[0.0][2] - base_row[2]:+.3f}")

# %%
# The claims of the paragraph below, on this run; tests/test_day3.py checks them on seeds 1 and 2.
(_, rej0, gap0, _), (_, rej_s, gap_s, _), (_, rej1, gap1, _) = runs[0.0], runs[LAM], runs[1.0]
claims = {
    "SFT alone (λ = 0) widens the gap over the base more than the odds-ratio term adds on top":
        gap0 - base_row[2] > max(gap_s, gap1) - gap0,
    f"both λ = {LAM} and λ = 1 add gap over λ = 0": gap0 < gap_s and gap0 < gap1,
    "both lower the rejected responses' log-probability below λ = 0's": rej_s < rej0 and rej1 < rej0,
}
check_claims(claims, profile)                   # asserts on tiny (seeded, deterministic); prints a WARNING elsewhere

# %% [markdown]
# An honest, mostly negative result on this data. The gradient table says the SFT term's descent direction widens
# the gap far more than the odds-ratio term's (its gradient is about two orders of magnitude larger), and the runs
# agree: SFT alone — λ = 0 — raises the chosen responses much more than the rejected ones and does most of the
# separating; λ > 0 adds a little more gap (the last printed line), by pushing the rejected responses down.
# Over three seeds (batch orders; `tests/test_day3.py`) λ = 0.1 and λ = 1 both add gap on every seed, but λ = 1 beats
# λ = 0.1 on two of the three only: these runs cannot say how the effect grows with λ. The tiny world's rejections
# are easy to tell apart from the chosen answers, so a contrastive term has little left to do; compare the per-kind
# columns to see where it adds most. ORPO's term earns its keep when SFT on the chosen responses would also lift the
# rejected ones — the paper's motivation (their Fig. 3: SFT raises rejected log-probs alongside chosen); Day 6
# measures ORPO on on-policy pairs.

# %% [markdown]
# **Interview answers this notebook backs with numbers**
# - *ORPO vs DPO?* DPO: two stages (SFT, then preferences), a frozen reference, summed log-probs, β-scaled
#   log-ratios. ORPO: one stage, one model, SFT NLL + λ·odds-ratio term on length-normalised probabilities.
# - *Why does ORPO not need a reference model?* The SFT term anchors the model to the chosen responses inside
#   the loss itself; the odds-ratio term is a bounded contrast on top (§5). DPO's reference plays the anchoring role
#   that RLHF's KL penalty plays (notebook 1, §7).
# - *Is your ORPO the same as trl's?* Same batch, same λ: equal to `ORPOTrainer`'s loss and its `nll_loss`,
#   `log_odds_ratio`, `log_odds_chosen` to 1e-5 (§4) with `nll_over="prompt+response"`: trl's NLL covers the prompt
#   too, the paper's only the response (the graded default).
# - *The odds-ratio term is tiny in the loss — does it matter?* Measure it, don't assume it: here its gradient is
#   about two orders of magnitude smaller than the SFT term's, SFT alone (λ = 0) does most of the separating on
#   held-out pairs, and λ > 0 adds a little more gap by pushing the rejected responses down (§6; three seeds in the
#   tests).
