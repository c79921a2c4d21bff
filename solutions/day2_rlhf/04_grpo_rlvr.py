# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 2 · 4 — GRPO, RLOO and RL with verifiable rewards
#
# Notebook 2's PPO needs a value head to say how good each sampled response was expected to be. **GRPO**
# (Shao et al. 2024, *DeepSeekMath*) and **RLOO** (Ahmadian et al. 2024, *Back to Basics*) drop it: sample a
# **group** of G responses to the same prompt and use the group itself as the baseline. Where the reward is a
# program that checks the answer — a unit test, a math checker, here the tiny world's exact-match scorer — there is
# no reward model to hack either: **RL with verifiable rewards (RLVR)**, the recipe behind DeepSeek-R1.
#
# 1. group-relative advantages, with and without std normalisation, exactly as trl's `GRPOTrainer`;
# 2. the GRPO loss: clipped ratio, the loss types GRPO / DAPO / BNPO / Dr. GRPO (how tokens are averaged), the
#    optional KL term (trl's default is β = 0: no reference model at all);
# 3. RLOO's leave-one-out baseline;
# 4. all three against trl's own trainers on the same batch;
# 5. an RLVR run on addition, which SFT leaves weak on held-out questions, beside expert iteration;
# 6. why the printed loss is ≈ 0 and says nothing: watch the reward.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import copy
import time

import torch

from course.alignment import completion_logprobs, sample_groups, trl_group_batch
from course.generation import chat_prompt, evaluate_exact_match
from course.loading import load_base, load_tokenizer
from course.notebook import progress
from course.plotting import plot_curves, plt
from course.tinyworld import tasks
from course.training import train_sft

tokenizer = load_tokenizer(profile)

# %% [markdown]
# ## 1. Group-relative advantages
# For one prompt, sample G responses $o_1 \dots o_G$ with rewards $r_1 \dots r_G$. GRPO's advantage of response $i$ is
#
# $$A_i = \frac{r_i - \operatorname{mean}(r_1 \dots r_G)}{\operatorname{std}(r_1 \dots r_G) + 10^{-4}}$$
#
# the same for every token of $o_i$. trl's details, which the tests check: the std is the **sample** std
# (Bessel's correction, divide by G − 1); ε = 1e-4 is added to the std, not inside a square root; and
# `scale_rewards` chooses the std: `"group"` (per prompt, the default), `"batch"` (one std over the whole batch; the
# mean stays per group) or `"none"` (no division: Dr. GRPO argues the std re-weights easy and hard prompts).
#
# A batch holds B = prompts × G rewards, each prompt's G samples **consecutive** (trl's layout). A group whose
# rewards are all equal — all right or all wrong — carries no signal: its advantages are 0. With G = 1 the std is
# undefined; trl uses 0 there (and the advantage is 0 anyway).

# %% nbgrader={"grade": false, "grade_id": "group_advantages", "locked": false, "schema_version": 3, "solution": true, "task": false}
def group_advantages(rewards, num_generations, scale_rewards="group"):
    """rewards: (B,) float, B = prompts × num_generations, each prompt's samples consecutive -> advantages (B,).
    scale_rewards: "group" | "batch" | "none"."""
    ### BEGIN SOLUTION
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', not {scale_rewards!r}")
    grouped = rewards.view(-1, num_generations)                             # (prompts, G)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)
    if scale_rewards == "none":
        return centred
    if scale_rewards == "group":
        if num_generations > 1:
            std = grouped.std(dim=1, keepdim=True).expand_as(grouped).reshape(-1)
        else:
            std = torch.zeros_like(rewards)
    else:
        std = rewards.std().expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    return centred / (std + 1e-4)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "group_advantages__by_hand", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 5.0])            # two prompts, G = 4
_a = group_advantages(_r, 4)
_s1 = (1 / 3) ** 0.5                                                     # sample std of (1, 0, 0, 1): sqrt(1/3)
assert type(_a) is torch.Tensor and _a.shape == (8,), f"one advantage per response: expected (8,), got {getattr(_a, 'shape', _a)}"
assert torch.allclose(_a[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (_s1 + 1e-4), atol=1e-6), \
    f"group 1: (r − 0.5) / (sample std √(1/3) + 1e-4) = ±0.8659; got {_a[:4].tolist()}"
assert torch.allclose(_a[4:], torch.tensor([-0.75, -0.75, -0.75, 2.25]) / (1.5 + 1e-4), atol=1e-6), \
    "group 2: mean 2.75, sample std 1.5 — each prompt is normalised by its own group's statistics"
### BEGIN HIDDEN TESTS
_a3 = group_advantages(torch.tensor([3.0, 1.0, 2.0]), 3)
assert torch.allclose(_a3, torch.tensor([1.0, -1.0, 0.0]) / (1.0 + 1e-4), atol=1e-6), "G = 3: sample std of (3, 1, 2) is 1"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "group_advantages__scale_rewards", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert torch.allclose(group_advantages(_r, 4, "none"), torch.tensor([0.5, -0.5, -0.5, 0.5, -0.75, -0.75, -0.75, 2.25])), \
    "scale_rewards='none': only subtract the group mean"
### BEGIN HIDDEN TESTS
_ab = group_advantages(_r, 4, "batch")
assert torch.allclose(_ab, (_r - torch.tensor([0.5] * 4 + [2.75] * 4)) / (_r.std() + 1e-4), atol=1e-6), \
    "scale_rewards='batch': the group mean, but one sample std over the whole batch"
_ab2 = group_advantages(torch.tensor([0.0, 4.0, 1.0, 1.0, 7.0, 9.0]), 2, "batch")
_rr = torch.tensor([0.0, 4.0, 1.0, 1.0, 7.0, 9.0])
assert torch.allclose(_ab2, (_rr - torch.tensor([2.0, 2.0, 1.0, 1.0, 8.0, 8.0])) / (_rr.std() + 1e-4), atol=1e-6), \
    "'batch' with G = 2"
assert torch.allclose(group_advantages(_rr, 3, "none"), _rr - torch.tensor([5 / 3] * 3 + [17 / 3] * 3), atol=1e-6), \
    "'none' with G = 3: groups are consecutive runs of G rewards"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "group_advantages__degenerate", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_eq = group_advantages(torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]), 4)
assert torch.isfinite(_eq).all() and torch.equal(_eq[:4], torch.zeros(4)), \
    f"a group of equal rewards (std 0) gets advantage 0, not NaN: the 1e-4 keeps 0/0 away; got {_eq[:4].tolist()}"
### BEGIN HIDDEN TESTS
assert torch.equal(group_advantages(torch.tensor([2.0, 5.0, -1.0]), 1), torch.zeros(3)), \
    "G = 1: every response is its own group — advantage 0, not NaN (trl uses std 0 there)"
assert torch.equal(group_advantages(torch.tensor([3.0]), 1, "batch"), torch.zeros(1)), "a batch of one: 0, not NaN"
assert torch.equal(group_advantages(torch.zeros(6), 3, "batch"), torch.zeros(6)), "all equal, batch std 0: zeros"
_big = 1e4 + torch.tensor([0.0, 1.0, 0.0, 1.0])                          # float32: a large offset, unit differences
assert torch.allclose(group_advantages(_big, 4), group_advantages(_big - 1e4, 4), atol=1e-3), \
    "the advantage must not depend on a constant offset: compute the std from centred rewards (two-pass), not E[r²] − E[r]²"
### END HIDDEN TESTS

# %% [markdown]
# ## 2. The GRPO loss
# Per token $t$ of response $i$, with the ratio $\rho_{i,t} = \exp(\log\pi_\theta - \log\pi_\text{old})$ (old = the
# policy that sampled the batch) and the clip range $[1-\epsilon_\text{low},\ 1+\epsilon_\text{high}]$:
#
# $$\ell_{i,t} = -\min\big(\rho_{i,t} A_i,\ \operatorname{clip}(\rho_{i,t}, 1-\epsilon_\text{low}, 1+\epsilon_\text{high}) A_i\big) + \beta\, \rho_{i,t}\, k_3\big(\pi_\text{ref}, \pi_\theta\big)_{i,t}$$
#
# with $k_3 = e^{d} - d - 1$, $d = \log\pi_\text{ref} - \log\pi_\theta$ (notebook 2's estimator). The KL term is
# added only when β ≠ 0 and is multiplied by the ratio (trl's default `use_bias_correction_kl=True`: the samples
# came from π_old, not π_θ). `epsilon_high=None` means ε_high = ε (DAPO's "clip-higher" sets it larger).

# %% [markdown]
# Then average over the real tokens (`mask` = 1); **how** is the `loss_type`:
# - `"grpo"`: a mean per sequence, then over sequences — a token of a short answer weighs more;
# - `"bnpo"` and `"dapo"` (trl's default): one mean over all tokens of the batch;
# - `"dr_grpo"`: the sum divided by B × `max_completion_length` (a constant; `None` means the C columns given).
#
# A row with no real tokens contributes 0 to `"grpo"` (divide by its token count clamped to ≥ 1).

# %% nbgrader={"grade": false, "grade_id": "grpo_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def grpo_loss(logp, old_logp, advantages, mask, loss_type="dapo", epsilon=0.2, epsilon_high=None, beta=0.0,
              ref_logp=None, max_completion_length=None):
    """logp (with grad), old_logp, ref_logp, mask: (B, C); advantages: (B,) -> scalar loss."""
    ### BEGIN SOLUTION
    eps_high = epsilon if epsilon_high is None else epsilon_high
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)                                       # (B, 1): one advantage per response
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    if beta != 0.0:
        d = ref_logp - logp
        per_token = per_token + beta * (torch.exp(d) - d - 1) * ratio
    mask = mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type in ("bnpo", "dapo"):
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        L = mask.shape[1] if max_completion_length is None else max_completion_length
        return (per_token * mask).sum() / (per_token.shape[0] * L)
    raise ValueError(f"unknown loss_type {loss_type!r}")
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "grpo_loss__on_policy", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_lp = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.2, 0.4, 0.3]])).requires_grad_(True)
_m = torch.tensor([[1, 1, 1], [1, 0, 0]])
_A = torch.tensor([1.0, -2.0])
_l = grpo_loss(_lp, _lp.detach(), _A, _m, "grpo")
assert type(_l) is torch.Tensor and _l.dim() == 0, "return a scalar tensor"
# on-policy the ratio is 1: per-token loss −A_i; "grpo": mean per sequence (−1 and 2), then mean over sequences
assert torch.allclose(_l, torch.tensor(0.5)), f"on-policy, loss_type='grpo': ((−1) + 2) / 2 = 0.5; got {_l.item()}"
assert torch.allclose(grpo_loss(_lp, _lp.detach(), _A, _m, "dapo"), torch.tensor((-3.0 + 2.0) / 4)), \
    "'dapo': one mean over the 4 real tokens: (−1·3 + 2·1) / 4"
_l.backward()
assert torch.allclose(_lp.grad, torch.tensor([[-1 / 6, -1 / 6, -1 / 6], [1.0, 0.0, 0.0]])), \
    "the gradient is −A_i ∇log π per token, scaled by the normalisation; padding gets none"
### BEGIN HIDDEN TESTS
assert torch.allclose(grpo_loss(_lp.detach(), _lp.detach(), _A, _m, "bnpo"), torch.tensor(-0.25)), "'bnpo' = 'dapo' on one batch"
assert torch.allclose(grpo_loss(_lp.detach(), _lp.detach(), _A, _m, "dr_grpo"), torch.tensor(-1.0 / 6)), \
    "'dr_grpo': sum / (B × C) = −1 / (2 × 3) with max_completion_length=None"
assert torch.allclose(grpo_loss(_lp.detach(), _lp.detach(), _A, _m, "dr_grpo", max_completion_length=10), torch.tensor(-1.0 / 20)), \
    "'dr_grpo' divides by B × max_completion_length when given (10 here), not by the columns present"
_m0 = torch.tensor([[1, 1, 1], [0, 0, 0]])                               # a response with no real tokens
_l0 = grpo_loss(_lp.detach(), _lp.detach(), _A, _m0, "grpo")
assert torch.isfinite(_l0) and torch.allclose(_l0, torch.tensor(-0.5)), "an empty row adds 0 (count clamped to ≥ 1), not NaN"
assert torch.allclose(grpo_loss(_lp.detach(), _lp.detach(), _A, torch.zeros(2, 3), "dapo"), torch.tensor(0.0)), \
    "no real tokens at all: 0, not NaN"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "grpo_loss__clipping", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_old = torch.zeros(4, 1)
_m1 = torch.ones(4, 1)
_ratio = torch.tensor([[1.5], [1.5], [0.5], [0.5]])                       # ratios past both clip edges
_A4 = torch.tensor([1.0, -1.0, 1.0, -1.0])
_per = [grpo_loss(_ratio.log()[i:i + 1], _old[i:i + 1], _A4[i:i + 1], _m1[i:i + 1]).item() for i in range(4)]
assert torch.allclose(torch.tensor(_per), torch.tensor([-1.2, 1.5, -0.5, 0.8])), \
    f"−min(ρA, clip(ρ)A): A>0 & ρ=1.5 → −1.2 (clipped); A<0 & ρ=1.5 → 1.5; A>0 & ρ=0.5 → −0.5; A<0 & ρ=0.5 → 0.8; got {_per}"
### BEGIN HIDDEN TESTS
_per_hi = [grpo_loss(_ratio.log()[i:i + 1], _old[i:i + 1], _A4[i:i + 1], _m1[i:i + 1], epsilon=0.1, epsilon_high=0.28).item()
           for i in range(4)]
assert torch.allclose(torch.tensor(_per_hi), torch.tensor([-1.28, 1.5, -0.5, 0.9])), \
    f"epsilon_high=0.28 moves only the upper edge, epsilon=0.1 the lower: got {_per_hi}"
_x = torch.tensor([[0.3]], requires_grad=True)
grpo_loss(_x, torch.zeros(1, 1), torch.tensor([2.0]), torch.ones(1, 1)).backward()
assert _x.grad.abs().item() == 0.0, "ratio e^0.3 > 1.2 with A > 0: clipped, no gradient"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "grpo_loss__kl_term", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_lp2 = torch.log(torch.tensor([[0.5, 0.2]]))
_ref2 = torch.log(torch.tensor([[0.25, 0.4]]))
_k3 = torch.tensor([0.5 - 1 + torch.log(torch.tensor(2.0)).item(), 2 - 1 - torch.log(torch.tensor(2.0)).item()])
_lk = grpo_loss(_lp2, _lp2, torch.tensor([0.0]), torch.ones(1, 2), "grpo", beta=0.1, ref_logp=_ref2)
assert torch.allclose(_lk, 0.1 * _k3.mean(), atol=1e-6), \
    f"β · k3 with k3 = e^d − d − 1, d = log π_ref − log π: per token (0.5 − 1 + log 2, 2 − 1 − log 2); got {_lk.item()}"
assert torch.allclose(grpo_loss(_lp2, _lp2, torch.tensor([0.0]), torch.ones(1, 2), "grpo", beta=0.0, ref_logp=_ref2),
                      torch.tensor(0.0)), "β = 0 (trl's default): no KL term"
### BEGIN HIDDEN TESTS
_old2 = _lp2 - torch.log(torch.tensor([[1.1, 0.95]]))                    # ratios 1.1 and 0.95, within the clip range
_lk2 = grpo_loss(_lp2, _old2, torch.tensor([0.0]), torch.ones(1, 2), "dapo", beta=0.5, ref_logp=_ref2)
assert torch.allclose(_lk2, 0.5 * (_k3 * torch.tensor([1.1, 0.95])).mean(), atol=1e-6), \
    "off-policy the KL term is weighted by the ratio ρ (trl's use_bias_correction_kl)"
assert torch.isfinite(grpo_loss(torch.full((1, 2), -60.0), torch.full((1, 2), -60.0), torch.tensor([1.0]), torch.ones(1, 2),
                                beta=0.1, ref_logp=torch.full((1, 2), -60.0))), "tiny probabilities: still finite"
### END HIDDEN TESTS

# %% [markdown]
# ## 3. RLOO: leave one out
# RLOO's baseline for response $i$ is the mean reward of the **other** G − 1 responses to the same prompt:
#
# $$A_i = r_i - \frac{1}{G-1}\sum_{j\ne i} r_j = \frac{G}{G-1}\big(r_i - \bar r\big)$$
#
# — unbiased (the baseline does not depend on $o_i$), no std division. trl's `RLOOTrainer` puts the KL penalty in the
# **reward**, per sequence: with `kl` the summed $k_1 = \log\pi_\text{old} - \log\pi_\text{ref}$ of each response,
# $r_i \leftarrow r_i - \beta\,\mathrm{kl}_i$ before the baseline (β = 0.05 by default there). `normalize=True`
# then whitens the advantages over the whole batch: $(A - \operatorname{mean} A)/(\operatorname{std} A + 10^{-4})$,
# sample std. G = 1 has no "others": advantage 0.

# %% nbgrader={"grade": false, "grade_id": "rloo_advantages", "locked": false, "schema_version": 3, "solution": true, "task": false}
def rloo_advantages(rewards, num_generations, kl=None, beta=0.0, normalize=False):
    """rewards: (B,), each prompt's num_generations samples consecutive; kl: (B,) summed k1 or None -> (B,)."""
    ### BEGIN SOLUTION
    if beta != 0.0:
        rewards = rewards - beta * kl
    if num_generations == 1:
        return torch.zeros_like(rewards)
    grouped = rewards.view(-1, num_generations)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (num_generations - 1)
    advantages = (grouped - baseline).reshape(-1)
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-4)
    return advantages
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "rloo_advantages__by_hand", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_ra = rloo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 0.0, 0.0, 1.0]), 4)
assert type(_ra) is torch.Tensor and _ra.shape == (8,), "one advantage per response"
assert torch.allclose(_ra[:4], torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3]), atol=1e-6), \
    f"r_1 = 1, the others' mean is 1/3: A = 2/3; got {_ra[:4].tolist()}"
assert torch.allclose(_ra[4:], torch.tensor([3.0 - 1 / 3, -4 / 3, -4 / 3, 1 - 1.0]), atol=1e-6), \
    "the baseline leaves the response itself out: (sum − r_i) / (G − 1)"
### BEGIN HIDDEN TESTS
_r5 = torch.tensor([2.0, 7.0, -1.0, 0.5, 4.0, 4.0])
_g5 = _r5.view(-1, 3)
assert torch.allclose(rloo_advantages(_r5, 3), (3 / 2 * (_g5 - _g5.mean(1, keepdim=True))).reshape(-1), atol=1e-5), \
    "A = G/(G−1)·(r − mean) for G = 3"
assert torch.equal(rloo_advantages(torch.tensor([1.0, 2.0]), 1), torch.zeros(2)), "G = 1: advantage 0, not NaN"
assert torch.equal(rloo_advantages(torch.ones(4), 2), torch.zeros(4)), "equal rewards: 0"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "rloo_advantages__kl_and_normalize", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_kl = torch.tensor([0.0, 10.0, 0.0, 0.0])
assert torch.allclose(rloo_advantages(torch.tensor([1.0, 1.0, 0.0, 0.0]), 2, kl=_kl, beta=0.1),
                      torch.tensor([1.0, -1.0, 0.0, 0.0]), atol=1e-6), \
    "β·kl comes off the reward first: rewards (1, 1 − 1) → advantages (1, −1)"
### BEGIN HIDDEN TESTS
assert torch.allclose(rloo_advantages(torch.tensor([1.0, 1.0, 0.0, 0.0]), 2, kl=_kl, beta=0.0),
                      torch.zeros(4)), "β = 0: the KL is ignored"
_rn = torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 0.0, 0.0, 1.0])
_raw = rloo_advantages(_rn, 4)
_nrm = rloo_advantages(_rn, 4, normalize=True)
assert torch.allclose(_nrm, (_raw - _raw.mean()) / (_raw.std() + 1e-4), atol=1e-5), \
    "normalize: whiten over the whole batch with the sample std and + 1e-4"
assert torch.allclose(rloo_advantages(_rn, 4, kl=torch.full((8,), 3.0), beta=0.2, normalize=True), _nrm, atol=1e-5), \
    "a KL equal for every response shifts nothing"
assert torch.equal(rloo_advantages(torch.zeros(4), 2, normalize=True), torch.zeros(4)), "all equal, normalised: 0, not NaN"
### END HIDDEN TESTS

# %% [markdown]
# RLOO's loss (given) is PPO's clip on **whole sequences**: the ratio of the summed log-probs of each response,
# one term per response, averaged over the batch.

# %% nbgrader={"grade": false, "grade_id": "given_rloo_loss", "locked": true, "schema_version": 3, "solution": false, "task": false}
def rloo_loss(logp, old_seq_logp, advantages, mask, epsilon=0.2):
    """logp, mask: (B, C); old_seq_logp, advantages: (B,) -> scalar: −mean of min(ρA, clip(ρ)A), ρ per sequence."""
    ratio = torch.exp((logp * mask).sum(1) - old_seq_logp)
    return -torch.min(ratio * advantages, ratio.clamp(1 - epsilon, 1 + epsilon) * advantages).mean()


# %% [markdown]
# ## 4. The same numbers as trl
# `course.alignment.trl_group_batch` builds trl's real `GRPOTrainer` / `RLOOTrainer` on the base model, lets it
# sample one batch of groups, and gives it rewards we choose. We then call trl's own `_compute_loss` on that batch and
# compare it with ours, computed from the same log-probs. To exercise the clip and the KL term, the batch's stored
# old and reference log-probs are moved off the policy's (trl reads them from the batch). `tests/test_grpo.py`
# repeats this on other prompts, rewards and options.

# %%
_questions = ["What is 3 plus 4?", "Name the capital city of Peru."]
_rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0])        # two prompts, G = 4
_noise = torch.Generator().manual_seed(0)
for loss_type in ("grpo", "dapo", "bnpo", "dr_grpo"):
    trainer, batch = trl_group_batch("grpo", profile.model, tokenizer, _questions, _rewards, num_generations=4,
                                     max_completion_length=6, loss_type=loss_type, beta=0.04, epsilon_high=0.28)
    mask = batch["completion_mask"]
    logp = completion_logprobs(trainer.model, batch)
    batch["old_per_token_logps"] = logp.detach() + 0.3 * torch.randn(logp.shape, generator=_noise)
    batch["ref_per_token_logps"] = logp.detach() + 0.5 * torch.randn(logp.shape, generator=_noise)
    ours_adv = group_advantages(_rewards, 4)
    ours = grpo_loss(logp, batch["old_per_token_logps"], ours_adv, mask, loss_type, epsilon=0.2, epsilon_high=0.28,
                     beta=0.04, ref_logp=batch["ref_per_token_logps"], max_completion_length=6)
    theirs = trainer._compute_loss(trainer.model, batch)
    print(f"GRPO {loss_type:8}: trl {theirs.item():+.6f}  ours {ours.item():+.6f}  |Δloss| {abs(theirs - ours).item():.1e}"
          f"  |Δadvantages| {(batch['advantages'] - ours_adv).abs().max().item():.1e}")

trainer, batch = trl_group_batch("rloo", profile.model, tokenizer, _questions, _rewards, num_generations=4)
logp = completion_logprobs(trainer.model, batch)
ours_adv = rloo_advantages(_rewards, 4)                                    # KL = 0: trl's reference is the policy here
ours = rloo_loss(logp, batch["old_logps"] - 0.2, ours_adv, batch["completion_mask"])
batch["old_logps"] = batch["old_logps"] - 0.2
theirs = trainer._compute_loss(trainer.model, batch)
print(f"RLOO         : trl {theirs.item():+.6f}  ours {ours.item():+.6f}  |Δloss| {abs(theirs - ours).item():.1e}"
      f"  |Δadvantages| {(batch['advantages'] - ours_adv).abs().max().item():.1e}")

# %% [markdown]
# ## 5. RL with a verifiable reward
# The task: **addition** ("What is 7 plus 9?"). The pretraining corpus states every sum, and SFT teaches the answer
# format, but on *held-out* sums (never in the SFT data) the SFT policy often answers a different sum — it copies a
# wrong operand. The reward is the tiny world's exact-match scorer, `tasks.score(example, text)`: 1 if the answer is
# exactly right, else 0. Nothing learned, nothing to hack.
#
# The SFT policy (given) is the shipped base fine-tuned on all six families' training questions, Day 6's settings.
# Its held-out exact match per family is printed: addition is the weak family the RL run targets.

# %% nbgrader={"grade": false, "grade_id": "given_sft_policy", "locked": true, "schema_version": 3, "solution": false, "task": false}
SFT_STEPS, SFT_LR = profile.steps(50), profile.lr(1.2e-3)
RL_FAMILY = "addition"
rl_questions = tasks.examples("train", [RL_FAMILY])          # the RL prompts: training sums only
heldout_all = tasks.examples("heldout")                      # every family's held-out questions (never trained on)
heldout_all = profile.eval_items(heldout_all, scale=2, key=lambda e: e.category)  # all on tiny; every family on small


def sft_policy(seed):
    """The shipped base fine-tuned on every family's training examples -> model (eval mode)."""
    torch.manual_seed(seed)
    model, _ = train_sft(load_base(profile), tokenizer, tasks.examples("train"), max_steps=SFT_STEPS,
                         learning_rate=SFT_LR, batch_size=2 * profile.per_device_batch_size, scheduler="linear",
                         warmup_ratio=0.0, seed=seed)
    return model


def heldout_report(model):
    """Greedy exact match on every held-out question -> {family: exact match}."""
    _, gens = evaluate_exact_match(model, tokenizer, heldout_all, max_new_tokens=16, batch_size=128)
    return tasks.exact_match_by_family(heldout_all, gens)


# %%
t0 = time.perf_counter()
sft = sft_policy(0)
sft_report = heldout_report(sft)
print(f"SFT: {SFT_STEPS} steps ({time.perf_counter() - t0:.1f} s); held-out exact match by family:")
print("  " + "  ".join(f"{k} {v:.3f}" for k, v in sft_report.items()))
print(f"RL prompts: {len(rl_questions)} training '{RL_FAMILY}' questions; "
      f"held-out '{RL_FAMILY}' questions: {sum(e.category == RL_FAMILY for e in heldout_all)}")

# %% [markdown]
# The loop (given; it calls your `group_advantages` and `grpo_loss`). Each **step**: draw 8 training questions (3 on `small`),
# sample a group of G = 8 answers to each at temperature 1 (`course.alignment.sample_groups`), reward them,
# compute group advantages, and take **one** Adam step on the GRPO loss — trl's defaults: `loss_type="dapo"`,
# β = 0, one gradient step per batch (`num_iterations=1`), so π_old = π_θ and the ratio is exactly 1.
#
# **Expert iteration**, the baseline, uses the same samples and the same optimiser: keep the correct answers of
# each group (best-of-8 under the verifier) and take one SFT step on them — no negatives, no baseline.
#
# Logged per step: the loss, the mean reward of the samples, the mean per-token KL (k3) to the SFT policy (measured
# even at β = 0), the mean response length, the gradient norm, and the fraction of groups whose rewards are all equal
# (they teach nothing).

# %% nbgrader={"grade": false, "grade_id": "given_rl_loop", "locked": true, "schema_version": 3, "solution": false, "task": false}
RL_STEPS, RL_LR, PROMPTS_PER_STEP, GROUP, TEMPERATURE, MAX_NEW = profile.steps(40), profile.lr(2e-4), profile.batch(8), 8, 1.0, 12
print(f"{RL_STEPS} steps at lr {RL_LR:g}, {PROMPTS_PER_STEP} prompts × G = {GROUP} samples per step")   # small: 12, 2e-05, 3


def frozen_copy(model):
    ref = load_base(profile)
    ref.load_state_dict(model.state_dict())
    return ref.eval().requires_grad_(False)


def rl_train(sft_model, questions, method="grpo", steps=RL_STEPS, lr=RL_LR, seed=0, loss_type="dapo", beta=0.0,
             scale_rewards="group", desc=None):
    """GRPO (method="grpo") or expert iteration ("expert_iteration") from sft_model on questions -> (policy, log)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    policy, ref = frozen_copy(sft_model).requires_grad_(True).train(), frozen_copy(sft_model)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    log = {k: [] for k in ("loss", "reward", "kl", "length", "grad_norm", "flat_groups")}
    for _ in progress(range(steps), desc=desc or method):
        chosen = [questions[i] for i in torch.randint(len(questions), (PROMPTS_PER_STEP,), generator=g).tolist()]
        batch = sample_groups(policy, tokenizer, [chat_prompt(tokenizer, e.instruction) for e in chosen], GROUP,
                              max_new_tokens=MAX_NEW, temperature=TEMPERATURE)
        rewards = torch.tensor([float(tasks.score(e, t)) for e, t in zip([e for e in chosen for _ in range(GROUP)],
                                                                          batch["texts"])])
        mask = batch["completion_mask"].float()
        logp = completion_logprobs(policy, batch, TEMPERATURE)
        with torch.no_grad():
            ref_logp = completion_logprobs(ref, batch, TEMPERATURE)
        if method == "grpo":
            advantages = group_advantages(rewards, GROUP, scale_rewards)
            loss = grpo_loss(logp, logp.detach(), advantages, mask, loss_type, beta=beta, ref_logp=ref_logp,
                             max_completion_length=MAX_NEW)
        elif method == "expert_iteration":
            keep = rewards[:, None] * mask                                 # the tokens of the correct answers
            loss = -(logp * keep).sum() / keep.sum().clamp(min=1.0)
        else:
            raise ValueError(method)
        optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), float("inf"))
        optimizer.step()
        d = (ref_logp - logp).detach()
        log["loss"].append(loss.item())
        log["reward"].append(rewards.mean().item())
        log["kl"].append((((d.exp() - d - 1) * mask).sum() / mask.sum()).item())
        log["length"].append(mask.sum(1).mean().item())
        log["grad_norm"].append(grad_norm.item())
        log["flat_groups"].append((rewards.view(-1, GROUP).std(1) == 0).float().mean().item())
    return policy.eval(), log


# %%
t0 = time.perf_counter()
grpo_policy, grpo_log = rl_train(sft, rl_questions, "grpo", desc="GRPO")
grpo_time = time.perf_counter() - t0
ei_policy, ei_log = rl_train(sft, rl_questions, "expert_iteration", desc="expert iteration")
reports = {"SFT": sft_report, "SFT + GRPO": heldout_report(grpo_policy), "SFT + expert iteration": heldout_report(ei_policy)}
print(f"{RL_STEPS} steps × {PROMPTS_PER_STEP * GROUP} samples each ({grpo_time:.1f} s for GRPO)\n")
print(f"{'held-out exact match':24}" + "".join(f"{k:>10}" for k in sft_report))
for name, rep in reports.items():
    print(f"{name:24}" + "".join(f"{v:>10.3f}" for v in rep.values()))


def first_last(xs, k=5):
    return sum(xs[:k]) / k, sum(xs[-k:]) / k


for name, lg in (("GRPO", grpo_log), ("expert iteration", ei_log)):
    (r0, r1), (k0, k1), (n0, n1) = first_last(lg["reward"]), first_last(lg["kl"]), first_last(lg["length"])
    print(f"{name:17} sample reward {r0:.3f} -> {r1:.3f}   KL to SFT {k0:.4f} -> {k1:.4f}   length {n0:.2f} -> {n1:.2f}")

# %%
# The lesson's claims on this seed (tests/test_grpo.py asserts them on seeds 1–3)
before, after = sft_report[RL_FAMILY], reports["SFT + GRPO"][RL_FAMILY]
(r0, r1), losses, norms = first_last(grpo_log["reward"]), grpo_log["loss"], grpo_log["grad_norm"]
checks = {f"GRPO raises held-out {RL_FAMILY} exact match ({before:.3f} -> {after:.3f})": after > before,
          f"the sample reward rises by > 0.1 ({r0:.3f} -> {r1:.3f})": r1 > r0 + 0.1,
          f"the printed loss stays near 0 (max |loss| {max(map(abs, losses)):.3f} < 0.5)": max(map(abs, losses)) < 0.5,
          "the gradient is non-zero on ≥ 80 % of steps": sum(n > 0 for n in norms) >= 0.8 * len(norms)}
from course.notebook import check_claims

check_claims(checks, profile)   # asserted on tiny (measured there on seeds 0–5); printed elsewhere

# %%
fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
for key, ax, title in (("reward", axes[0], "mean reward (exact match of samples)"), ("kl", axes[1], "KL(π‖π_SFT) per token"),
                       ("length", axes[2], "response length (tokens)"), ("loss", axes[3], "the printed loss")):
    plot_curves({"GRPO": grpo_log[key], "expert iteration": ei_log[key]}, ax=ax, title=title, xlabel="step",
                ylabel=key, smooth_window=5)
plt.show()

# %% [markdown]
# Read the table by column. **Addition** — the family the runs trained on, measured on sums they never saw — is
# the RLVR result: the verifier's reward taught the policy to answer the sum it was asked, and that carried over to
# held-out sums. The **other columns** are the price: both runs saw only addition prompts, β = 0 puts no leash on
# them, and families they never practised lose exact match (compare the rows). The KL to the SFT policy grows with
# the reward in both runs: it measures the distance travelled whether or not it is in the loss — the place to start
# if you want the other families back is β > 0 or mixing other families' prompts into the RL batches.
#
# Expert iteration is the honest baseline: on the same samples it also raises held-out addition, with no negatives
# and no baseline (compare its row) — on a task this small a strong one. This is one seed: which of the two gains
# more, or forgets more, is not settled by it. What is asserted, on this seed above and on seeds 1–3 in
# `tests/test_grpo.py`, is the GRPO gain on held-out addition. The learning rate matters: at 3e-4 one seed in six
# *lost* held-out addition, at 5e-4 half the seeds collapsed to 0; 2e-4 gained on all six (measured, see the test).

# %% [markdown]
# ## 6. The loss ≈ 0 is cosmetic: watch the reward
# Users of trl's `GRPOTrainer` regularly ask why the logged loss is 0 (or tiny) while training works (trl issues
# #2703, #3452). With one gradient step per batch the ratio is exactly 1, so the loss is $-\sum_i A_i \lvert o_i
# \rvert / \sum_i \lvert o_i\rvert$ for `"dapo"`, and with `"grpo"`'s per-sequence mean it is $-\operatorname{mean}_i
# A_i$ — **exactly 0**, because each group's advantages sum to 0. Its *gradient* is not 0: it is
# $-\sum A_i\,\nabla\log\pi(o_i)$, the policy gradient. The printed numbers:

# %%
gl = torch.tensor(grpo_log["loss"])
print(f"GRPO ('dapo') loss over {RL_STEPS} steps: mean {gl.mean():+.4f}, max |loss| {gl.abs().max():.4f}; "
      f"sample reward {first_last(grpo_log['reward'])[0]:.3f} -> {first_last(grpo_log['reward'])[1]:.3f}")
print(f"gradient norm: mean {sum(grpo_log['grad_norm']) / RL_STEPS:.3f} (the update is real)")
print(f"groups with all-equal rewards (no signal): {first_last(grpo_log['flat_groups'])[0]:.2f} of the first steps, "
      f"{first_last(grpo_log['flat_groups'])[1]:.2f} of the last")
TYPE_STEPS = profile.sweep_steps(3)                          # a side run: 3 steps on tiny, 1 on small
_, grpo_type_log = rl_train(sft, rl_questions, "grpo", steps=TYPE_STEPS, loss_type="grpo", desc="loss_type='grpo'")
print(f"loss_type='grpo', first {TYPE_STEPS} steps: loss", [f"{x:+.1e}" for x in grpo_type_log["loss"]],
      " gradient norm", [f"{x:.3f}" for x in grpo_type_log["grad_norm"]])

# %% [markdown]
# So: never judge a GRPO run by its loss. Watch the **reward** (here the samples' exact match), a **held-out**
# score the run never trains on, the **KL** from where it started, the **length**, and the share of groups with no
# signal — when every answer to a prompt is right (or wrong) the group's advantages vanish, and a batch of such
# groups moves nothing (DAPO's *dynamic sampling* drops them and samples more).

# %% [markdown]
# **Interview answers this notebook backs with code**
# - *GRPO vs PPO?* GRPO drops the value model: the baseline is the mean reward of G samples of the same prompt
#   (§1), which costs G generations per prompt instead of a second network; PPO's per-token credit assignment becomes
#   one advantage per response.
# - *GRPO vs DPO?* DPO learns offline from fixed preference pairs with no sampling; GRPO samples online and needs only
#   a reward — ideally a verifier (§5) — so it can improve beyond the data it was given.
# - *What do Dr. GRPO and DAPO change?* How tokens are averaged (§2: per sequence favours short answers' tokens;
#   per batch or a constant does not) and whether the std divides the advantage; DAPO also clips higher (ε_high).
# - *RLOO vs GRPO?* RLOO's leave-one-out baseline is unbiased, without std scaling, and trl puts its KL in the reward
#   (§3); GRPO puts the KL (if any) in the loss.
# - *Why is my GRPO loss 0?* §6.
