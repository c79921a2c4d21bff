# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 2 · 2 — PPO from its pieces, a toy RLHF loop, and reward hacking
#
# Stage three of RLHF maximises the reward-model score minus a KL penalty to the frozen SFT model:
#
# $$\max_\theta\ \mathbb{E}_{x,\ y\sim\pi_\theta}\big[r(x,y)\big] - \beta\,D_\text{KL}\big(\pi_\theta(\cdot\mid x)\,\|\,\pi_\text{ref}(\cdot\mid x)\big)$$
#
# with PPO (Schulman et al. 2017). trl 1.16 has no PPO trainer — so we write the pieces, each on tensors you can
# check by hand, then run them as a loop on the tiny policy:
#
# 1. per-token log-probabilities of a sampled response;
# 2. the per-token KL estimate to the frozen reference;
# 3. the KL-penalised reward (the reward model's score lands on the last token);
# 4. advantages with GAE(γ, λ) against a value head;
# 5. the clipped surrogate objective;
# 6. an RLHF loop on the tiny policy with notebook 1's competent reward model, beside the same loop on the rule
#    judge itself (an oracle, verifiable reward), both scored on a fixed held-out set;
# 7. reward hacking: a reward model with a length bias, a policy that exploits it, and β as the leash;
# 8. the judge and the reward-model score against KL: Gao et al.'s over-optimisation curve.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from course.loading import load_base, load_preference_data, load_tokenizer
from course.notebook import progress
from course.plotting import plot_curves, plt
from course.rlhf import LikelihoodRewardModel, sft_policy
from course.tinyworld.preferences import judge, off_topic_preferences
from course.tinyworld.tasks import examples

tokenizer = load_tokenizer(profile)

# %% [markdown]
# ## 1. Log-probabilities of a sampled response
# The policy generated $R$ tokens after the prompt. A causal LM's logits at position $t$ score the token at $t+1$, so
# the logits that scored the response are the $R$ positions **before** each response token: if `logits` covers the
# last $L \ge R+1$ positions of the sequence, they are `logits[:, -R-1:-1]`. Return
# $\log\pi(y_t\mid x, y_{<t})$ for each response token.

# %% nbgrader={"grade": false, "grade_id": "response_logprobs", "locked": false, "schema_version": 3, "solution": true, "task": false}
def response_logprobs(logits, response_ids):
    """logits: (B, L, V) for the last L >= R+1 positions; response_ids: (B, R), the last R tokens -> (B, R)."""
    ### BEGIN SOLUTION
    R = response_ids.shape[1]
    scoring = logits[:, -R - 1:-1, :]                                   # (B, R, V): position t-1 scores token t
    logp = scoring.log_softmax(-1)
    return torch.gather(logp, 2, response_ids.unsqueeze(-1)).squeeze(-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "response_logprobs__by_hand", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# sequence [prompt p0, p1 | response y0, y1]; rows of probabilities at positions 0..3 over a vocabulary of 3
_probs = torch.tensor([[[0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4]]])
_lp = response_logprobs(torch.log(_probs), torch.tensor([[1, 0]]))
assert _lp.shape == (1, 2), f"one log-prob per response token: expected (1, 2), got {tuple(_lp.shape)}"
assert torch.allclose(_lp, torch.log(torch.tensor([[0.6, 0.7]])), atol=1e-6), \
    "y0 = 1 is scored by position 1 (p = 0.6), y1 = 0 by position 2 (p = 0.7): shift by one, the last position scores nothing"

# %% nbgrader={"grade": true, "grade_id": "response_logprobs__logits_to_keep", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_g = torch.Generator().manual_seed(0)
_logits = 3 * torch.randn(4, 9, 11, generator=_g)
_resp = torch.randint(0, 11, (4, 3), generator=_g)
_full = response_logprobs(_logits, _resp)
_expected = -F.cross_entropy(_logits[:, 5:8].reshape(-1, 11), _resp.reshape(-1), reduction="none").view(4, 3)
assert torch.allclose(_full, _expected, atol=1e-5), "log-softmax over the vocabulary, gathered at the response tokens"
assert torch.allclose(response_logprobs(_logits[:, -4:], _resp), _full, atol=1e-6), \
    "the same result from only the last R+1 positions (what logits_to_keep=R+1 returns)"
### BEGIN HIDDEN TESTS
_big = torch.tensor([[[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0], [0.0, 0.0, 0.0]]])
_lp = response_logprobs(_big, torch.tensor([[1, 0]]))
assert torch.isfinite(_lp).all() and torch.allclose(_lp, torch.tensor([[-1000.0, -1000.0]]), atol=1e-3), \
    f"logits ±1000: log-probs −1000, finite (log_softmax, not log(softmax)); got {_lp.tolist()}"
_lp = response_logprobs(torch.log(torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])), torch.tensor([[1]]))
assert _lp.shape == (1, 1) and abs(_lp.item() - math.log(0.75)) < 1e-6, "batch 1, one response token: shape (1, 1)"
### END HIDDEN TESTS

# %% [markdown]
# ## 2. The KL to the frozen reference, per token
# We never have $D_\text{KL}(\pi\,\|\,\pi_\text{ref})$ in closed form over whole sequences, only samples $y\sim\pi$.
# With the log-ratio $\ell_t = \log\pi(y_t) - \log\pi_\text{ref}(y_t)$ two standard per-token estimators are
# - `k1` $= \ell_t$ — unbiased, but single samples can be negative;
# - `k3` $= (e^{-\ell_t} - 1) + \ell_t$ — also unbiased, never negative, lower variance (Schulman's note
#   "Approximating KL divergence").
#
# Return the estimate for each response token, **0 at padding** (`mask == 0`).

# %% nbgrader={"grade": false, "grade_id": "kl_estimate", "locked": false, "schema_version": 3, "solution": true, "task": false}
def kl_estimate(logp, ref_logp, mask, kind="k1"):
    """logp, ref_logp, mask: (B, R) -> per-token KL(π‖π_ref) estimate (B, R), zero where mask == 0."""
    ### BEGIN SOLUTION
    log_ratio = logp - ref_logp
    if kind == "k1":
        kl = log_ratio
    elif kind == "k3":
        kl = torch.exp(-log_ratio) - 1 + log_ratio
    else:
        raise ValueError(f"kind must be 'k1' or 'k3', not {kind!r}")
    return kl * mask
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "kl_estimate__by_hand", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_logp = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
_ref = torch.log(torch.tensor([[0.25, 0.4, 0.3]]))     # the third token is padding
_mask = torch.tensor([[1.0, 1.0, 0.0]])
_k1 = kl_estimate(_logp, _ref, _mask, "k1")
assert torch.allclose(_k1, torch.tensor([[math.log(2), -math.log(2), 0.0]]), atol=1e-6), \
    f"k1 = log π − log π_ref: (log 2, −log 2) and 0 at padding; got {_k1.tolist()}"
_k3 = kl_estimate(_logp, _ref, _mask, "k3")
assert torch.allclose(_k3, torch.tensor([[0.5 - 1 + math.log(2), 2 - 1 - math.log(2), 0.0]]), atol=1e-6), \
    "k3 = (π_ref/π − 1) − log(π_ref/π): (0.5 − 1 + log 2, 2 − 1 − log 2)"
### BEGIN HIDDEN TESTS
assert torch.equal(kl_estimate(_logp, _logp, torch.ones(1, 3), "k3"), torch.zeros(1, 3)), "zero when π = π_ref"
assert torch.allclose(kl_estimate(_logp, _ref, _mask), _k1), "the default kind is k1"
_tiny = kl_estimate(torch.tensor([[-200.0, -90.0]]), torch.tensor([[-201.0, -90.0]]), torch.ones(1, 2), "k3")
assert torch.isfinite(_tiny).all() and torch.allclose(_tiny, torch.tensor([[math.exp(-1.0), 0.0]]), atol=1e-5), \
    f"probabilities near 0 (log π = −200): k3 from the log-ratio stays finite; got {_tiny.tolist()}"
assert torch.equal(kl_estimate(_logp, _ref, torch.zeros(1, 3), "k3"), torch.zeros(1, 3)), "all padding: all zero"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "kl_estimate__unbiased", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_p = torch.tensor([0.6, 0.3, 0.1])
_q = torch.tensor([0.2, 0.5, 0.3])
_exact = (_p * (_p / _q).log()).sum()
_y = torch.multinomial(_p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0)).view(1, -1)
_ones = torch.ones_like(_y, dtype=torch.float32)
for _kind in ("k1", "k3"):
    _est = kl_estimate(_p.log()[_y], _q.log()[_y], _ones, _kind).mean()
    assert abs(_est - _exact) < 0.01, \
        f"{_kind}: the mean over samples y ~ π must approach the exact KL(π‖π_ref) = {_exact:.4f}; got {_est:.4f}"
assert (kl_estimate(_p.log()[_y], _q.log()[_y], _ones, "k3") >= 0).all(), "k3 is never negative"

# %% [markdown]
# ## 3. The KL-penalised reward
# PPO treats each response token as an action. The reward model scores the *whole* response once, so its score is the
# reward of the **last response token**; every token also pays $-\beta\cdot\mathrm{KL}_t$. Responses in a batch end at
# different places (the rest is padding), so "last" is each row's last `mask == 1` position.

# %% nbgrader={"grade": false, "grade_id": "kl_penalised_rewards", "locked": false, "schema_version": 3, "solution": true, "task": false}
def kl_penalised_rewards(scores, kl, mask, beta):
    """scores: (B,) reward-model scores; kl, mask: (B, R) -> per-token rewards (B, R), zero at padding."""
    ### BEGIN SOLUTION
    rewards = -beta * kl * mask
    last = mask.sum(-1).long() - 1                                      # (B,) index of each row's last token
    rewards[torch.arange(rewards.shape[0]), last] += scores
    return rewards
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "kl_penalised_rewards__by_hand", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_kl = torch.tensor([[0.5, 1.0, 2.0], [1.0, -1.0, 0.0]])
_mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
_r = kl_penalised_rewards(torch.tensor([3.0, -2.0]), _kl, _mask, 0.1)
assert torch.allclose(_r, torch.tensor([[-0.05, -0.1, 2.8], [-0.1, -2.0 + 0.1, 0.0]]), atol=1e-6), \
    f"−β·KL on every token, the score added on each row's last real token (row 2 ends at index 1); got {_r.tolist()}"

# %% nbgrader={"grade": true, "grade_id": "kl_penalised_rewards__sum", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_g = torch.Generator().manual_seed(1)
_kl = torch.rand(5, 6, generator=_g)
_mask = (torch.arange(6) < torch.tensor([[6], [1], [3], [4], [2]])).float()
_scores = torch.randn(5, generator=_g)
_r = kl_penalised_rewards(_scores, _kl, _mask, 0.2)
assert torch.allclose(_r.sum(-1), _scores - 0.2 * (_kl * _mask).sum(-1), atol=1e-6), \
    "summed over a response: score − β·(summed KL over its real tokens)"
assert torch.equal(_r * (1 - _mask), torch.zeros(5, 6)), "padding positions get no reward"
### BEGIN HIDDEN TESTS
_kl_before = _kl.clone()
assert torch.equal(kl_penalised_rewards(_scores, _kl, _mask, 0.0).sum(-1), _scores), "β = 0: only the score"
_r1 = kl_penalised_rewards(_scores, _kl, _mask, 1.0)
assert torch.allclose(_r1.sum(-1), _scores - (_kl * _mask).sum(-1), atol=1e-6), "β = 1"
assert torch.equal(_kl, _kl_before), "the kl tensor passed in is not modified"
_r = kl_penalised_rewards(torch.tensor([5.0]), torch.tensor([[0.5]]), torch.ones(1, 1), 0.5)
assert torch.allclose(_r, torch.tensor([[4.75]])), "batch 1, one token: score − β·KL on that token"
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Advantages with GAE(γ, λ)
# A **value head** predicts $V_t$, the return expected from token $t$ on. The TD error
# $\delta_t = r_t + \gamma V_{t+1} - V_t$ (with $V_{t+1} = 0$ after the last real token) says how much better the step
# went than predicted; GAE (Schulman et al. 2016) blends them, $A_t = \delta_t + \gamma\lambda A_{t+1}$, computed
# backwards. λ trades bias (λ = 0: one-step TD) against variance (λ = 1: the full return minus $V_t$). The value head's
# target is the return $R_t = A_t + V_t$. PPO then **normalises** the advantages over the batch (masked mean 0,
# masked population std 1) — for the policy loss only; the returns use the raw advantages.

# %% nbgrader={"grade": false, "grade_id": "gae_advantages", "locked": false, "schema_version": 3, "solution": true, "task": false}
def masked_whiten(x, mask, eps=1e-8):
    """(x − masked mean) / sqrt(masked population variance + eps), zero at padding."""
    ### BEGIN SOLUTION
    n = mask.sum()
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / n
    return (x - mean) / torch.sqrt(var + eps) * mask
    ### END SOLUTION


def gae_advantages(rewards, values, mask, gamma, lam, normalise=True):
    """rewards, values, mask: (B, R) -> (advantages (B, R), returns (B, R)); advantages whitened if normalise."""
    ### BEGIN SOLUTION
    values = values * mask
    B, R = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros(B)
    for t in reversed(range(R)):
        next_value = values[:, t + 1] if t + 1 < R else torch.zeros(B)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
    returns = advantages + values
    if normalise:
        advantages = masked_whiten(advantages, mask)
    return advantages, returns
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "gae_advantages__by_hand", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_r = torch.tensor([[0.0, 0.0, 1.0]])
_v = torch.tensor([[0.5, 0.25, 0.5]])
_m = torch.ones(1, 3)
_adv, _ret = gae_advantages(_r, _v, _m, gamma=0.5, lam=0.8, normalise=False)
# δ2 = 1 − 0.5 = 0.5;  δ1 = 0 + 0.5·0.5 − 0.25 = 0;  δ0 = 0 + 0.5·0.25 − 0.5 = −0.375
# A2 = 0.5;  A1 = 0 + 0.4·0.5 = 0.2;  A0 = −0.375 + 0.4·0.2 = −0.295
assert torch.allclose(_adv, torch.tensor([[-0.295, 0.2, 0.5]]), atol=1e-6), \
    f"δ_t = r_t + γ·V_(t+1) − V_t, A_t = δ_t + γλ·A_(t+1), V after the end = 0; got {_adv.tolist()}"
assert torch.allclose(_ret, _adv + _v, atol=1e-6), "returns = advantages + values (before any normalisation)"

# %% nbgrader={"grade": true, "grade_id": "gae_advantages__padding_and_limits", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_r = torch.tensor([[0.0, 2.0, 0.0, 0.0]])
_v = torch.tensor([[1.0, 1.0, 9.0, 9.0]])            # values past the end must not leak in
_m = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
_adv, _ret = gae_advantages(_r, _v, _m, gamma=1.0, lam=1.0, normalise=False)
assert torch.allclose(_adv, torch.tensor([[1.0, 1.0, 0.0, 0.0]]), atol=1e-6), \
    "γ = λ = 1: A_t = (sum of rewards from t) − V_t; padding contributes nothing"
_adv0, _ = gae_advantages(_r, _v, _m, gamma=1.0, lam=0.0, normalise=False)
assert torch.allclose(_adv0, torch.tensor([[0.0, 1.0, 0.0, 0.0]]), atol=1e-6), "λ = 0: A_t = δ_t, one-step TD"
### BEGIN HIDDEN TESTS
_adv, _ = gae_advantages(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.0, 0.5, 0.0]]), torch.ones(1, 3),
                         gamma=0.9, lam=0.5, normalise=False)
# δ = (0.45, −0.5, 1); A2 = 1, A1 = −0.5 + 0.45 = −0.05, A0 = 0.45 − 0.0225 = 0.4275
assert torch.allclose(_adv, torch.tensor([[0.4275, -0.05, 1.0]]), atol=1e-6), "γ and λ play different roles"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "gae_advantages__normalised", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_g = torch.Generator().manual_seed(2)
_r, _v = torch.randn(6, 5, generator=_g), torch.randn(6, 5, generator=_g)
_m = (torch.arange(5) < torch.tensor([[5], [2], [4], [1], [3], [5]])).float()
_raw, _ret = gae_advantages(_r, _v, _m, 0.95, 0.9, normalise=False)
_adv, _ret2 = gae_advantages(_r, _v, _m, 0.95, 0.9, normalise=True)
_n = _m.sum()
assert abs((_adv * _m).sum() / _n) < 1e-5, "normalised advantages have masked mean 0"
assert abs(((_adv * _m) ** 2).sum() / _n - 1) < 1e-4, "... and masked (population) variance 1"
assert torch.equal(_adv * (1 - _m), torch.zeros(6, 5)), "padding stays 0"
assert torch.allclose(_ret2, _ret), "returns come from the raw advantages, normalised or not"
### BEGIN HIDDEN TESTS
_mean = (_raw * _m).sum() / _n
_std = ((((_raw - _mean) * _m) ** 2).sum() / _n).sqrt()
assert torch.allclose(_adv, (_raw - _mean) / _std * _m, atol=1e-4), "whiten with the masked mean and std"
_adv, _ = gae_advantages(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), 1.0, 0.95, normalise=True)
assert torch.isfinite(_adv).all() and torch.equal(_adv, torch.zeros(2, 3)), \
    "all advantages equal (variance 0): whitening gives zeros, not NaN (the eps)"
_adv, _ = gae_advantages(torch.tensor([[3.0, 0.0, 0.0]]), torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]),
                         1.0, 0.95, normalise=True)
assert torch.isfinite(_adv).all() and torch.equal(_adv, torch.zeros(1, 3)), "one real token in the batch: zero, finite"
_adv, _ret = gae_advantages(torch.tensor([[2.0]]), torch.tensor([[0.5]]), torch.ones(1, 1), 0.9, 0.5, normalise=False)
assert torch.allclose(_adv, torch.tensor([[1.5]])) and torch.allclose(_ret, torch.tensor([[2.0]])), "R = 1"
### END HIDDEN TESTS

# %% [markdown]
# ## 5. The clipped surrogate objective
# With the probability ratio $\rho_t = \pi_\theta(y_t)/\pi_\text{old}(y_t) = e^{\log\pi_\theta - \log\pi_\text{old}}$ (old = the policy that
# sampled the batch), PPO maximises $\min\big(\rho_t A_t,\ \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\,A_t\big)$. The min is a
# pessimistic bound: once the ratio has moved past the clip range *in the direction the advantage rewards*, the
# gradient is zero; moving the wrong way is never clipped. Return the **loss** (minus the objective), averaged over
# the real tokens.

# %% nbgrader={"grade": false, "grade_id": "clipped_surrogate_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def clipped_surrogate_loss(logp, old_logp, advantages, mask, clip_eps=0.2):
    """logp (with grad), old_logp, advantages, mask: (B, R) -> scalar loss = −masked mean of the clipped objective."""
    ### BEGIN SOLUTION
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages
    objective = torch.min(unclipped, clipped)
    return -(objective * mask).sum() / mask.sum()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "clipped_surrogate_loss__clip_cases", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# four tokens: ratio 1.5 or 0.5, advantage +1 or −1; ε = 0.2
_ratio = torch.tensor([[1.5, 1.5, 0.5, 0.5]])
_adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
_old = torch.zeros(1, 4)
_lp = _ratio.log().clone().requires_grad_(True)
_loss = clipped_surrogate_loss(_lp, _old, _adv, torch.ones(1, 4), 0.2)
# objectives: min(1.5, 1.2) = 1.2 (clipped) · min(−1.5, −1.2) = −1.5 · min(0.5, 0.8) = 0.5 · min(−0.5, −0.8) = −0.8 (clipped)
assert abs(_loss.item() - (-(1.2 - 1.5 + 0.5 - 0.8) / 4)) < 1e-6, \
    f"loss = −mean(min(ρA, clip(ρ)A)) = {(1.2 - 1.5 + 0.5 - 0.8) / -4:.4f}; got {_loss.item():.4f}"
_loss.backward()
assert _lp.grad[0, 0] == 0 and _lp.grad[0, 3] == 0, \
    "ρ past the range in the direction A rewards (ρ > 1+ε with A > 0, ρ < 1−ε with A < 0): clipped, no gradient"
assert _lp.grad[0, 1] != 0 and _lp.grad[0, 2] != 0, "moves in the wrong direction are not clipped: they get a gradient"

# %% nbgrader={"grade": true, "grade_id": "clipped_surrogate_loss__start_and_mask", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_lp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
_adv = torch.tensor([[2.0, -1.0, 7.0]])
_mask = torch.tensor([[1.0, 1.0, 0.0]])
_loss = clipped_surrogate_loss(_lp, _lp.detach(), _adv, _mask, 0.2)
assert abs(_loss.item() - (-(2.0 - 1.0) / 2)) < 1e-6, \
    "at the start (ρ = 1) the loss is −(masked mean advantage); padding (A = 7 here) is excluded"
_loss.backward()
assert torch.allclose(_lp.grad, torch.tensor([[-1.0, 0.5, 0.0]])), \
    "∂loss/∂log π = −A·ρ/n at ρ = 1: raise the log-prob of positive-advantage tokens"
### BEGIN HIDDEN TESTS
_lp = torch.log(torch.tensor([[1.1, 0.85]])).requires_grad_(True)
_loss = clipped_surrogate_loss(_lp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2), 0.2)
assert abs(_loss.item() - (-(1.1 - 0.85) / 2)) < 1e-6, "inside the range nothing is clipped"
_loss.backward()
assert (_lp.grad != 0).all()
_loss = clipped_surrogate_loss(torch.log(torch.tensor([[1.5]])), torch.zeros(1, 1), torch.tensor([[1.0]]), torch.ones(1, 1), 0.1)
assert abs(_loss.item() + 1.1) < 1e-6, "clip_eps is a parameter"
_lp = torch.tensor([[-200.0, -150.0]], requires_grad=True)
_loss = clipped_surrogate_loss(_lp, torch.tensor([[-200.0, -150.0]]), torch.tensor([[1.0, 3.0]]), torch.ones(1, 2))
assert torch.isfinite(_loss) and abs(_loss.item() + 2.0) < 1e-5, \
    f"log-probs near −200 (π ≈ 0): the ratio from exp(logp − old_logp) is 1, loss −mean(A) = −2; got {_loss.item()}"
_loss.backward()
assert torch.isfinite(_lp.grad).all(), "finite gradients at tiny probabilities"
### END HIDDEN TESTS

# %% [markdown]
# ## 6. An RLHF loop
# The pieces, assembled. Given code below:
# - **the SFT policy** — 30 steps of `train_sft` (full fine-tune) on the tiny-world tasks; the frozen
#   **reference** is a copy of it;
# - **the reward model** — notebook 1's competent one (`course.rlhf.LikelihoodRewardModel`: the SFT model's mean
#   log-prob and PMI, a head fitted with Bradley–Terry on the preference pairs plus the off-topic ones);
# - **the value head** — a linear layer on the policy's last hidden state (sharing the policy's trunk, as trl's old
#   `AutoModelForCausalLMWithValueHead` did), initialised at 0;
# - a **rollout**: prompts in, up to 8 sampled tokens (temperature 1), stopping at `<|im_end|>`.

# %% nbgrader={"grade": false, "grade_id": "given_models", "locked": true, "schema_version": 3, "solution": false, "task": false}
IM_END = tokenizer.convert_tokens_to_ids("<|im_end|>")
PAD = tokenizer.pad_token_id


def chat_ids(prompt, response=None):
    """The chat template's token ids: prompt + generation prompt, or prompt + a full assistant turn."""
    messages = [{"role": "user", "content": prompt}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                         add_generation_prompt=response is None)["input_ids"]


def pad_batch(seqs, left=False):
    """Token lists -> input_ids, attention_mask (N, T), padded on the right (or the left)."""
    T = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), T), PAD)
    attention_mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(T - len(s), T) if left else slice(0, len(s))
        input_ids[i, sl] = torch.tensor(s)
        attention_mask[i, sl] = 1
    return input_ids, attention_mask


def frozen_copy(model):
    ref = load_base(profile)
    ref.load_state_dict(model.state_dict())
    return ref.eval().requires_grad_(False)


task_examples = examples("train")
prompts = [e.instruction for e in task_examples]
preference_rows = list(load_preference_data()["train"]) + [p.as_dict() for p in off_topic_preferences("train")]
preference_rows = profile.eval_items(preference_rows, scale=4, key=lambda r: r["kind"])   # all on tiny; every kind on small
sft = sft_policy(profile, tokenizer, task_examples, steps=30)      # the profile scales steps and lr
reward_model = LikelihoodRewardModel(sft, tokenizer)
reward_model.fit(preference_rows)
print(f"SFT policy: {sum(p.numel() for p in sft.parameters())} parameters; reward model head "
      f"w = {reward_model.head.weight.numpy().round(2)}, b = {reward_model.head.bias.item():.2f}")

# %% nbgrader={"grade": false, "grade_id": "given_rollout", "locked": true, "schema_version": 3, "solution": false, "task": false}
@torch.no_grad()
def rollout(policy, prompts, max_new_tokens=8):
    """Sample one response per prompt. Returns input_ids, attention_mask (B, P+R), response (B, R), mask (B, R),
    texts. The response mask covers the tokens up to and including the first <|im_end|>; the rest is padding."""
    prompt_ids, prompt_mask = pad_batch([chat_ids(p) for p in prompts], left=True)
    policy.eval()
    out = policy.generate(input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=max_new_tokens,
                          do_sample=True, temperature=1.0, top_k=0, top_p=1.0, eos_token_id=IM_END, pad_token_id=PAD)
    policy.train()
    response = out[:, prompt_ids.shape[1]:]
    ended = (response == IM_END).long()
    after_end = (ended.cumsum(-1) - ended) > 0                          # strictly after the first <|im_end|>
    response = response.masked_fill(after_end, PAD)
    mask = (~after_end).float()
    return {"input_ids": torch.cat([prompt_ids, response], 1),
            "attention_mask": torch.cat([prompt_mask, mask.long()], 1),
            "response": response, "mask": mask,
            "texts": [t.strip() for t in tokenizer.batch_decode(response, skip_special_tokens=True)]}


def forward_logprobs(model, batch, value_head=None):
    """Per-token log-probs (B, R) of the response under `model` (and values (B, R) from `value_head`)."""
    am = batch["attention_mask"]
    R = batch["response"].shape[1]
    out = model(input_ids=batch["input_ids"], attention_mask=am, position_ids=(am.cumsum(-1) - 1).clamp(min=0),
                logits_to_keep=R + 1, output_hidden_states=value_head is not None)
    logp = response_logprobs(out.logits, batch["response"])
    if value_head is None:
        return logp, None
    return logp, value_head(out.hidden_states[-1][:, -R - 1:-1]).squeeze(-1)


torch.manual_seed(0)
demo_prompts = prompts[::50][:4]
demo = rollout(sft, demo_prompts)
for p, t in zip(demo_prompts, demo["texts"]):
    print(f"{p!r:50} -> {t!r}")
print("response mask:\n", demo["mask"])

# %% [markdown]
# **What we measure, and on what.** The policy is scored on a **fixed held-out set**: the 219 tiny-world questions
# of the held-out split, items the SFT data never asked about (on `small` a spread of 24 over every family: the
# count is printed), one response each, sampled at temperature 1 with the same seed every time. The rule judge gives each response three marks — *correct* (the right fact for *this*
# question), *complete* (a well-formed answer sentence), *concise* (one sentence) — logged separately and summed
# (0–3). Beside them: the reward model's mean score and the KL to the reference (summed over a response, nats).
# In-batch numbers would mix the policy's progress with which prompts happened to be drawn.

# %% nbgrader={"grade": false, "grade_id": "given_evaluation", "locked": true, "schema_version": 3, "solution": false, "task": false}
eval_examples = profile.eval_items(examples("heldout"), key=lambda e: e.category)  # all 219 on tiny
eval_prompts = [e.instruction for e in eval_examples]
print(f"held-out evaluation set: {len(eval_examples)} questions")


def n_tokens(texts):
    """(N,) float: how many tokens each response has (without the end token)."""
    return torch.tensor([float(len(tokenizer(t, add_special_tokens=False)["input_ids"])) for t in texts])


@torch.no_grad()
def evaluate(policy, ref, reward_fn, max_new_tokens=8, seed=1234):
    """The held-out report: judge parts, judge (0–3), reward-model score, KL to `ref`, tokens; and the texts."""
    with torch.random.fork_rng():                   # the same samples' randomness every time; training RNG untouched
        torch.manual_seed(seed)
        batch = rollout(policy, eval_prompts, max_new_tokens)
    logp, _ = forward_logprobs(policy, batch)
    ref_logp, _ = forward_logprobs(ref, batch)
    marks = [judge(e.category, e.key, t) for e, t in zip(eval_examples, batch["texts"])]
    out = {k: sum(m[k] for m in marks) / len(marks) for k in ("correct", "complete", "concise")}
    out["judge"] = out["correct"] + out["complete"] + out["concise"]
    out["score"] = reward_fn(eval_prompts, batch["texts"]).mean().item()
    out["kl"] = ((logp - ref_logp) * batch["mask"]).sum(-1).mean().item()
    out["tokens"] = n_tokens(batch["texts"]).mean().item()
    out["texts"] = batch["texts"]
    return out

# %% [markdown]
# The loop. Each **update**: draw 24 prompts (3 on `small`, where a full fine-tune step of the 135M model costs about
# half a second per sequence on a CPU thread) and sample **4 responses to each** with the current policy; score them;
# subtract from each score the mean score of the *other* three responses to the same prompt (a leave-one-out
# baseline, as in RLOO: the question's difficulty cancels, only "better or worse than my siblings" remains); compute
# the old log-probs, the reference log-probs and the values (no gradient); per-token rewards with the KL penalty;
# GAE advantages and returns; then **2 PPO epochs** over the 96 responses in minibatches of 48: the clipped
# surrogate loss plus a value loss $\tfrac12(V_t - R_t)^2$ weighted 0.1. The held-out report is taken every 4
# updates (runs from the same start, scored the same way, share the report at update 0).

# %% nbgrader={"grade": false, "grade_id": "given_rlhf_loop", "locked": true, "schema_version": 3, "solution": false, "task": false}
def rlhf(sft_model, reward_fn, *, beta=0.05, updates=8, prompts_per_update=profile.batch(24), samples_per_prompt=4,
         max_new_tokens=8, lr=profile.lr(4e-4), ppo_epochs=2, minibatch=48, clip_eps=0.2, gamma=1.0, lam=0.95,
         vf_coef=0.1, seed=0, eval_every=4, eval_reward=None, start_report=None, desc="PPO"):
    """PPO with a KL penalty from `sft_model`. reward_fn(prompt_indices, texts) -> (B,) scores.
    Returns the trained policy and the held-out reports [(update, report)] (report scored by `eval_reward`);
    `start_report` is the update-0 report of another run from the same `sft_model`, scored the same way."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    policy, ref = frozen_copy(sft_model).requires_grad_(True).train(), frozen_copy(sft_model)
    value_head = nn.Linear(policy.config.hidden_size, 1)
    nn.init.zeros_(value_head.weight), nn.init.zeros_(value_head.bias)
    optimizer = torch.optim.Adam([{"params": policy.parameters(), "lr": lr},
                                  {"params": value_head.parameters(), "lr": 10 * lr}])
    eval_reward = eval_reward or reward_model
    reports = [(0, start_report or evaluate(policy, ref, eval_reward, max_new_tokens))]
    G = samples_per_prompt
    for update in progress(range(1, updates + 1), desc=desc):
        idx = [i for i in torch.randint(len(prompts), (prompts_per_update,), generator=g).tolist() for _ in range(G)]
        batch = rollout(policy, [prompts[i] for i in idx], max_new_tokens)
        mask = batch["mask"]
        with torch.no_grad():
            old_logp, values = forward_logprobs(policy, batch, value_head)
            ref_logp, _ = forward_logprobs(ref, batch)
            scores = reward_fn(idx, batch["texts"]).view(-1, G)                    # (prompts, G)
            scores = (scores - (scores.sum(1, keepdim=True) - scores) / (G - 1)).view(-1)   # leave-one-out
            kl = kl_estimate(old_logp, ref_logp, mask, "k1")
            rewards = kl_penalised_rewards(scores, kl, mask, beta)
            advantages, returns = gae_advantages(rewards, values, mask, gamma, lam, normalise=True)
        for _ in range(ppo_epochs):
            for mb in torch.randperm(len(idx), generator=g).split(minibatch):
                part = {k: batch[k][mb] for k in ("input_ids", "attention_mask", "response", "mask")}
                logp, v = forward_logprobs(policy, part, value_head)
                pg_loss = clipped_surrogate_loss(logp, old_logp[mb], advantages[mb], part["mask"], clip_eps)
                vf_loss = 0.5 * (((v - returns[mb]) ** 2) * part["mask"]).sum() / part["mask"].sum()
                optimizer.zero_grad()
                (pg_loss + vf_coef * vf_loss).backward()
                optimizer.step()
        if update % eval_every == 0:
            reports.append((update, evaluate(policy, ref, eval_reward, max_new_tokens)))
    return policy.eval(), reports


def learned_reward(idx, texts):
    return reward_model([prompts[i] for i in idx], texts)


def oracle_reward(idx, texts):
    """The rule judge itself (0–3): a verifiable reward, as in RL on maths or code with a checker."""
    return torch.tensor([float(sum(judge(task_examples[i].category, task_examples[i].key, t).values()))
                         for i, t in zip(idx, texts)])


COLUMNS = ("kl", "score", "judge", "correct", "complete", "concise", "tokens")


def show(name, reports):
    print(f"{name:>24} {'update':>6}" + "".join(f"{c:>9}" for c in COLUMNS))
    for u, r in reports:
        print(f"{'':>24} {u:>6}" + "".join(f"{r[c]:9.3f}" for c in COLUMNS))


_, rm_reports = rlhf(sft, learned_reward, desc="PPO, competent RM")
_, oracle_reports = rlhf(sft, oracle_reward, start_report=rm_reports[0][1], desc="PPO, oracle reward")
show("competent reward model", rm_reports)
show("oracle (the judge)", oracle_reports)
for name, reps in (("competent RM", rm_reports), ("oracle", oracle_reports)):
    (_, a), (_, b) = reps[0], reps[-1]
    print(f"{name:>12}: judge {a['judge']:.3f} -> {b['judge']:.3f} ({b['judge'] - a['judge']:+.3f});  " +
          "  ".join(f"{k} {b[k] - a[k]:+.3f}" for k in ("correct", "complete", "concise")))

# %%
# The lesson's claim on this seed (tests/test_day2.py asserts it on seeds 1 and 2)
(_, first), (_, last) = rm_reports[0], rm_reports[-1]
checks = {f"PPO raises the held-out judge by > 0.05 ({first['judge']:.3f} -> {last['judge']:.3f})":
              last["judge"] > first["judge"] + 0.05,
          f"PPO raises the RM score by > 0.3 ({first['score']:.3f} -> {last['score']:.3f})": last["score"] > first["score"] + 0.3,
          f"the policy moves from the reference (KL {last['kl']:.3f} > 0.3)": last["kl"] > 0.3}
from course.notebook import check_claims

check_claims(checks, profile)   # asserted on tiny (measured there on seeds 0–2); printed elsewhere

# %%
fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
for ax, key in zip(axes, ("judge", "correct", "complete", "concise")):
    plot_curves({name: ([u for u, _ in reps], [r[key] for _, r in reps])
                 for name, reps in (("competent RM", rm_reports), ("oracle", oracle_reports))},
                ax=ax, title=f"held-out {key}", xlabel="PPO update", ylabel=key)
plt.show()
print("held-out samples before:", list(zip(eval_prompts[::40], rm_reports[0][1]["texts"][::40])))
print("held-out samples after: ", list(zip(eval_prompts[::40], rm_reports[-1][1]["texts"][::40])))

# %% [markdown]
# Read the two tables. Under the competent reward model PPO **raises** the held-out judge score, and the oracle
# run — the judge's own marks as the reward — shows what this budget can buy at best: the two gains printed last
# are close. The per-column gains say *where* each run improved: most in `complete` (fewer broken fragments, such as
# the stray tokens after the full stop in the samples before), least in `correct`. A policy can only up-weight
# answers it already samples, and on unseen items it rarely samples the right fact. The reward model's own score
# rises with the KL, as it must: PPO climbs what it is shown. The judge's rise under the competent reward model is
# asserted above on this seed and in tests/test_day2.py on seeds 1 and 2.

# %% [markdown]
# ## 7. Reward hacking
# A reward model is trained on what annotators preferred — including their biases. Longer answers *look* more
# helpful to people and to AI judges, and RLHF'd models grow longer (Singhal et al. 2023, *A Long Way to Go*, found
# much of the reward gain was length). Build that bias in: the same competent reward model **plus a bonus per
# response token**. Responses may now run to 12 tokens — room to ramble.

# %% nbgrader={"grade": false, "grade_id": "given_flawed_reward_model", "locked": true, "schema_version": 3, "solution": false, "task": false}
LENGTH_BONUS = 1.0                 # reward per response token


def biased_reward_model(prompts_, texts):
    return reward_model(prompts_, texts) + LENGTH_BONUS * n_tokens(texts)


def flawed_reward(idx, texts):
    return biased_reward_model([prompts[i] for i in idx], texts)


row = load_preference_data()["test"][0]
probe = {"concise (judge 3)": row["chosen"], "+ filler (judge 2)": row["chosen"] + " Thanks for asking.",
         "+ junk words (judge ≤ 2)": row["chosen"].replace(" is ", " 25 kilometers is ")}
for name, text in probe.items():
    print(f"{name:26} competent RM {reward_model([row['prompt']], [text]).item():7.2f}   "
          f"length-biased RM {biased_reward_model([row['prompt']], [text]).item():7.2f}   {text!r}")

# %% [markdown]
# Per token the bonus is small next to what an unlikely token costs: in the probes, a filler sentence or words
# wedged into the answer lose more likelihood than the bonus pays, so the concise answer still wins. PPO has to
# *find* longer responses the reward model overrates. Optimise it at a weak and a strong KL coefficient, same SFT
# start, same seed. (A β sweep: on `small`, where an update of the 135M model costs about 20 s, each run is two
# updates; `profile.sweep_steps` would allow one, but the first update starts at the reference, where the KL and so
# β do nothing.) The held-out report now scores the **biased** reward (what PPO sees) beside the judge (what we
# wanted), with the response length.

# %%
# a β sweep: 8 updates each on tiny, 2 on small (β acts from the second update: the first starts at the reference, KL 0)
HACK_BETAS, HACK_UPDATES = (0.01, 0.3), max(2, profile.sweep_steps(8))
hack_reports = {}
for b in HACK_BETAS:
    hack_reports[b] = rlhf(sft, flawed_reward, beta=b, updates=HACK_UPDATES, eval_every=max(1, HACK_UPDATES // 2),
                           max_new_tokens=12, eval_reward=biased_reward_model,
                           start_report=hack_reports[HACK_BETAS[0]][0][1] if hack_reports else None,
                           desc=f"PPO, length-biased RM, β = {b}")[1]
for b, reps in hack_reports.items():
    show(f"length-biased RM, β = {b}", reps)
LONG = 9                                             # tokens: longer than any answer sentence of the tiny world
sft_lengths = n_tokens(hack_reports[HACK_BETAS[0]][0][1]["texts"])
print(f"\nanswer sentences have at most {max(n_tokens([e.response for e in task_examples])):.0f} tokens; "
      f"share of held-out responses longer than {LONG}:")
for b, reps in hack_reports.items():
    print(f"  β = {b}: " + " -> ".join(f"{(n_tokens(r['texts']) > LONG).float().mean().item():.2f}" for _, r in reps))
final = hack_reports[HACK_BETAS[0]][-1][1]
lengths = n_tokens(final["texts"])
marks = torch.tensor([sum(judge(e.category, e.key, t).values()) for e, t in zip(eval_examples, final["texts"])],
                     dtype=torch.float)
long = lengths > LONG
print(f"β = {HACK_BETAS[0]}, last report: judge of responses ≤ {LONG} tokens {marks[~long].mean():.2f} "
      f"({int((~long).sum())} of them), > {LONG} tokens {marks[long].mean():.2f} ({int(long.sum())})")
print("samples:", list(zip(eval_prompts[::40], final["texts"][::40])))

# %%
# The lesson's claims on this seed (tests/test_day2.py asserts them on seeds 1 and 2)
(_, f0), (_, f1) = hack_reports[0.01][0], hack_reports[0.01][-1]
(_, l0), (_, l1) = hack_reports[0.3][0], hack_reports[0.3][-1]
checks = {f"β = 0.01: responses grow by > 0.5 tokens ({f0['tokens']:.2f} -> {f1['tokens']:.2f})": f1["tokens"] > f0["tokens"] + 0.5,
          f"β = 0.01: the judge falls by > 0.1 ({f0['judge']:.3f} -> {f1['judge']:.3f})": f1["judge"] < f0["judge"] - 0.1,
          f"β = 0.3 ends at a smaller KL ({l1['kl']:.2f} vs {f1['kl']:.2f})": l1["kl"] < f1["kl"],
          f"β = 0.3 loses less judge ({l0['judge'] - l1['judge']:.3f} vs {f0['judge'] - f1['judge']:.3f})":
              l0["judge"] - l1["judge"] < f0["judge"] - f1["judge"],
          f"β = 0.3 ends shorter ({l1['tokens']:.2f} vs {f1['tokens']:.2f} tokens)": l1["tokens"] < f1["tokens"]}
check_claims(checks, profile)   # asserted on tiny (measured there on seeds 0–2); printed elsewhere

# %% [markdown]
# Read the tables: with the weak leash (β = 0.01) the biased reward climbs, responses get **longer** (the share
# longer than any answer sentence grows), and the judge falls, in all three marks. The samples show what PPO found:
# answers that run on past their full stop, and fragments of other answers — likely enough under the SFT model, and
# paid per token. The split by length shows where the judge's marks went: the long responses score far lower than
# the rest, so the drop comes *from* the exploited feature. That is **reward hacking**: the proxy rises, the truth
# falls. With β = 0.3 every token that departs from the SFT model pays $\beta\log\frac{\pi}{\pi_\text{ref}}$: the
# KL ends lower, the length barely moves and the judge holds (asserted above on this seed, and in tests/test_day2.py on seeds 1 and 2). β
# cannot make a flawed reward model right; the real fixes are better preference data, length penalties or
# length-controlled judging, and ensembles.

# %% [markdown]
# ## 8. Over-optimisation against KL
# Gao et al. (2023, *Scaling Laws for Reward Model Overoptimization*) plot the gold score and the proxy score against
# the distance the policy has moved from its start: the proxy keeps rising, the gold score rises, peaks and falls.
# Here: every held-out report of the runs above, x = KL to the reference.

# %%
runs = {"competent RM, β = 0.05": rm_reports, "oracle, β = 0.05": oracle_reports,
        **{f"length-biased RM, β = {b}": r for b, r in hack_reports.items()}}
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
plot_curves({n: ([r["kl"] for _, r in reps], [r["judge"] for _, r in reps]) for n, reps in runs.items()},
            ax=axes[0], title="gold: the judge", xlabel="KL(π‖π_ref), nats / response", ylabel="judge (0–3)")
plot_curves({n: ([r["kl"] for _, r in reps], [r["score"] for _, r in reps]) for n, reps in runs.items()},
            ax=axes[1], title="proxy: the optimised reward model", xlabel="KL(π‖π_ref), nats / response",
            ylabel="its score")
plt.show()
for n, reps in runs.items():
    best = max(reps, key=lambda ur: ur[1]["judge"])
    print(f"{n:28} judge peaks at {best[1]['judge']:.3f} (KL {best[1]['kl']:.2f}); last: judge "
          f"{reps[-1][1]['judge']:.3f}, proxy {reps[0][1]['score']:.2f} -> {reps[-1][1]['score']:.2f}, KL {reps[-1][1]['kl']:.2f}")

# %% [markdown]
# The proxy curves rise with KL in every run. The gold curves part ways: under the competent reward model and the
# oracle the judge rises with KL in this range (this budget does not reach the turning point Gao et al. find
# further out); under the length-biased model it is flat at first and then falls as the KL grows, while the strongly
# leashed run stops at a smaller KL with its judge intact. The KL spent, not the update count, is the axis on which
# to compare runs: that is why β (or a KL target, as in InstructGPT's adaptive controller) is the knob that decides
# how far a flawed proxy can be exploited.

# %% [markdown]
# **Interview answers this notebook backs with code**
# - *Where does the KL penalty enter PPO for RLHF?* In the per-token reward: $-\beta\,(\log\pi - \log\pi_\text{ref})$
#   on every token, the reward-model score on the last one (§3).
# - *Why clip?* The surrogate is only trusted near the sampling policy; the min of clipped and unclipped terms removes
#   the incentive to push the ratio past $1\pm\epsilon$ in the rewarded direction (§5, the four boundary cases).
# - *What do γ and λ do in GAE?* γ discounts future reward; λ interpolates between one-step TD (λ = 0, low variance,
#   biased by the value head) and Monte-Carlo returns (λ = 1) (§4).
# - *Does RLHF improve the true objective?* Under a competent reward model, yes, measured on a fixed held-out set
#   with a judge the policy never sees; an oracle reward shows the ceiling of the budget (§6).
# - *What is reward hacking, and what does β do about it?* The policy finds what the reward model overrates (here:
#   length) and the true quality falls while the proxy reward rises; the KL coefficient limits how far it can go, and
#   the gold-vs-KL curve shows where (§7–8).
