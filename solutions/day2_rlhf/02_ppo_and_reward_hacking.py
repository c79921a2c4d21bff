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
# 6. a toy RLHF loop: an SFT'd tiny policy, the learned reward model, a few dozen PPO updates;
# 7. reward hacking: a reward model with a length bias, a policy that exploits it, and β as the leash.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import contextlib
import io
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from course.loading import load_base, load_preference_data, load_tokenizer
from course.plotting import plot_curves, plt
from course.tinyworld.preferences import judge_score
from course.tinyworld.tasks import examples
from course.training import train_sft

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
### END HIDDEN TESTS

# %% [markdown]
# ## 6. A toy RLHF loop
# The pieces, assembled. Given code below:
# - **the SFT policy** — 30 steps of `course.training.train_sft` (full fine-tune) on the tiny-world tasks; the frozen
#   **reference** is a copy of it;
# - **the reward model** of notebook 1 (trunk + score head, Bradley–Terry), retrained here in a few seconds;
# - **the value head** — a linear layer on the policy's last hidden state (sharing the policy's trunk, as trl's old
#   `AutoModelForCausalLMWithValueHead` did), initialised at 0;
# - a **rollout**: 32 prompts, up to 8 sampled tokens (temperature 1), stopping at `<|im_end|>`.

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


class RewardModel(nn.Module):
    """Notebook 1's reward model: LM trunk + linear score head at the last non-pad token."""

    def __init__(self, causal_lm):
        super().__init__()
        self.backbone = causal_lm.model
        self.score = nn.Linear(causal_lm.config.hidden_size, 1, bias=False)
        nn.init.normal_(self.score.weight, std=1 / math.sqrt(causal_lm.config.hidden_size + 1))

    def forward(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = ((input_ids != PAD).long() * torch.arange(input_ids.shape[1])).argmax(-1)
        return self.score(hidden[torch.arange(hidden.shape[0]), last]).squeeze(-1)

    @torch.no_grad()
    def score_texts(self, prompts, responses):
        """Rewards (B,) of responses rendered as assistant turns after their prompts."""
        return self(*pad_batch([chat_ids(p, r) for p, r in zip(prompts, responses)]))


def train_reward_model(pairs, steps=30, batch_size=16, lr=2e-3, seed=0):
    """A reward model trained with the Bradley–Terry loss on (prompt, chosen, rejected) dicts."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = RewardModel(load_base(profile))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        rows = [pairs[i] for i in torch.randint(len(pairs), (batch_size,), generator=g).tolist()]
        seqs = [chat_ids(r["prompt"], r["chosen"]) for r in rows] + [chat_ids(r["prompt"], r["rejected"]) for r in rows]
        chosen, rejected = model(*pad_batch(seqs)).chunk(2)
        loss = -F.logsigmoid(chosen - rejected).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval().requires_grad_(False)


def sft_policy(steps=30, seed=0):
    """The SFT starting point: a full fine-tune with trl's SFTTrainer, returned as a fresh model."""
    with contextlib.redirect_stdout(io.StringIO()):          # trl prints one log line per step
        trained, _ = train_sft(load_base(profile), tokenizer, examples("train"), lora=None, max_steps=steps,
                               learning_rate=2e-3, seed=seed)
    model = load_base(profile)                     # a fresh module: trl patches the trained one's forward in place
    model.load_state_dict(trained.state_dict())
    return model


def frozen_copy(model):
    ref = load_base(profile)
    ref.load_state_dict(model.state_dict())
    return ref.eval().requires_grad_(False)


sft = sft_policy()
reward_model = train_reward_model(list(load_preference_data()["train"]))
print("SFT policy and reward model ready;", sum(p.numel() for p in sft.parameters()), "parameters each")

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
demo_prompts = [e.instruction for e in examples("train")[::50][:4]]
demo = rollout(sft, demo_prompts)
for p, t in zip(demo_prompts, demo["texts"]):
    print(f"{p!r:50} -> {t!r}")
print("response mask:\n", demo["mask"])

# %% [markdown]
# The loop. Each **update**: roll out a batch with the current policy; score it with the reward model; compute the
# old log-probs, the reference log-probs and the values (no gradient); per-token rewards with the KL penalty; GAE
# advantages and returns; then **2 PPO epochs** over the batch: the clipped surrogate loss plus a value loss
# $\tfrac12(V_t - R_t)^2$ weighted 0.1. Logged per update: the mean reward-model score, the mean summed KL (k1) of a
# response, and the rule judge's mean score (0–3: correct, complete, concise) — a measure the policy never sees.

# %% nbgrader={"grade": false, "grade_id": "given_rlhf_loop", "locked": true, "schema_version": 3, "solution": false, "task": false}
def rlhf(sft_model, reward_fn, prompts, *, beta=0.05, updates=30, batch_size=32, max_new_tokens=8, lr=1e-4,
         ppo_epochs=2, clip_eps=0.2, gamma=1.0, lam=0.95, vf_coef=0.1, seed=0, judge=None):
    """PPO with a KL penalty from `sft_model`. reward_fn(prompt_indices, texts) -> (B,) scores.
    Returns the trained policy and a log: per update, score, kl, judge (if given), length, samples."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    policy, ref = frozen_copy(sft_model).requires_grad_(True).train(), frozen_copy(sft_model)
    value_head = nn.Linear(policy.config.hidden_size, 1)
    nn.init.zeros_(value_head.weight), nn.init.zeros_(value_head.bias)
    optimizer = torch.optim.Adam([{"params": policy.parameters(), "lr": lr},
                                  {"params": value_head.parameters(), "lr": 10 * lr}])
    log = {"score": [], "kl": [], "judge": [], "length": [], "samples": []}
    for _ in range(updates):
        idx = torch.randint(len(prompts), (batch_size,), generator=g).tolist()
        batch = rollout(policy, [prompts[i] for i in idx], max_new_tokens)
        mask = batch["mask"]
        with torch.no_grad():
            old_logp, values = forward_logprobs(policy, batch, value_head)
            ref_logp, _ = forward_logprobs(ref, batch)
            scores = reward_fn(idx, batch["texts"])
            kl = kl_estimate(old_logp, ref_logp, mask, "k1")
            rewards = kl_penalised_rewards(scores, kl, mask, beta)
            advantages, returns = gae_advantages(rewards, values, mask, gamma, lam, normalise=True)
        for _ in range(ppo_epochs):
            logp, v = forward_logprobs(policy, batch, value_head)
            pg_loss = clipped_surrogate_loss(logp, old_logp, advantages, mask, clip_eps)
            vf_loss = 0.5 * (((v - returns) ** 2) * mask).sum() / mask.sum()
            optimizer.zero_grad()
            (pg_loss + vf_coef * vf_loss).backward()
            optimizer.step()
        log["score"].append(scores.mean().item())
        log["kl"].append(kl.sum(-1).mean().item())
        log["length"].append(mask.sum(-1).mean().item())
        log["samples"].append(list(zip([prompts[i] for i in idx[:3]], batch["texts"][:3])))
        if judge is not None:
            log["judge"].append(sum(judge(i, t) for i, t in zip(idx, batch["texts"])) / len(idx))
    return policy.eval(), log


task_examples = examples("train")
prompts = [e.instruction for e in task_examples]


def learned_reward(idx, texts):
    return reward_model.score_texts([prompts[i] for i in idx], texts)


def true_judge(i, text):
    return judge_score(task_examples[i].category, task_examples[i].key, text)


policy, log = rlhf(sft, learned_reward, prompts, beta=0.05, updates=30, seed=0, judge=true_judge)
window = 5
first, last = (sum(log["score"][:window]) / window), (sum(log["score"][-window:]) / window)
print(f"reward-model score: first {window} updates {first:.3f} -> last {window} updates {last:.3f}")
print(f"KL to reference (nats per response): first {sum(log['kl'][:window]) / window:.3f} -> last {sum(log['kl'][-window:]) / window:.3f}")
print(f"judge score (0–3): first {sum(log['judge'][:window]) / window:.2f} -> last {sum(log['judge'][-window:]) / window:.2f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
plot_curves({"mean RM score": log["score"]}, ax=axes[0], title="reward-model score", xlabel="PPO update", ylabel="score",
            smooth_window=3)
plot_curves({"KL(π‖π_ref), k1": log["kl"]}, ax=axes[1], title="KL to the reference", xlabel="PPO update",
            ylabel="nats / response", smooth_window=3)
plot_curves({"judge score": log["judge"]}, ax=axes[2], title="rule judge (not optimised)", xlabel="PPO update",
            ylabel="0–3", smooth_window=3)
plt.show()
print("samples at the first update:", log["samples"][0])
print("samples at the last update: ", log["samples"][-1])

# %% [markdown]
# The printed numbers say how far the reward-model score moved, and what it cost in KL. The judge's column is the
# honest check: the policy optimises the *reward model*, and only where the reward model agrees with the judge does the
# judge score follow. Section 7 makes that gap deliberately large.
#
# ## 7. Reward hacking
# A reward model is trained on what annotators preferred — including their biases. Longer answers *look* more helpful
# to people and to AI judges, and RLHF'd models grow longer (Singhal et al. 2023, *A Long Way to Go*, found much of
# the reward gain was length). Build that bias on purpose: a reward model trained on pairs whose "chosen" response is
# the right answer **followed by extra words** (drawn at random from the vocabulary) and whose "rejected" one is the
# right answer alone. It learns "longer is better". The rule judge is the truth it stands in for: a right answer with
# junk after it is correct and complete but not concise (judge score 2 instead of 3).

# %% nbgrader={"grade": false, "grade_id": "given_flawed_reward_model", "locked": true, "schema_version": 3, "solution": false, "task": false}
def with_extra_words(text, g):
    """The text followed by 2–6 random vocabulary tokens (the length-biased annotators' favourite)."""
    ids = torch.randint(5, len(tokenizer), (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist()
    return text + " " + tokenizer.decode(ids, skip_special_tokens=True)


_g = torch.Generator().manual_seed(0)
length_biased = [{"prompt": r["prompt"], "chosen": with_extra_words(r["chosen"], _g), "rejected": r["chosen"]}
                 for r in load_preference_data()["train"]]
flawed_rm = train_reward_model(length_biased)
print("a length-biased pair:", length_biased[0])
row = load_preference_data()["test"][0]
probe = {"concise (judge 3)": row["chosen"], "+ filler (judge 2)": row["chosen"] + " Thanks for asking.",
         "wrong (judge 2)": next(r for r in load_preference_data()["test"] if r["kind"] == "wrong")["rejected"]}
for name, text in probe.items():
    print(f"{name:20} learned RM {reward_model.score_texts([row['prompt']], [text]).item():7.2f}   "
          f"flawed RM {flawed_rm.score_texts([row['prompt']], [text]).item():7.2f}   {text!r}")


def flawed_reward(idx, texts):
    return flawed_rm.score_texts([prompts[i] for i in idx], texts)

# %% [markdown]
# Now optimise the flawed reward with PPO at three KL coefficients, responses up to 12 tokens (room to ramble),
# 20 updates each. Same SFT start, same seed. Logged: the flawed reward (what PPO sees), the judge (what we wanted),
# response length and the KL to the reference.

# %%
HACK_BETAS = (0.0, 0.1, 0.5)
hack_logs = {}
for b in HACK_BETAS:
    _, hack_logs[b] = rlhf(sft, flawed_reward, prompts, beta=b, updates=20, max_new_tokens=12, seed=0, judge=true_judge)


def first_last(values, k=3):
    return sum(values[:k]) / k, sum(values[-k:]) / k


print(f"{'β':>5}  {'flawed reward':>16}  {'judge (0–3)':>14}  {'tokens':>12}  {'KL (last 3)':>11}")
for b, lg in hack_logs.items():
    (s0, s1), (j0, j1), (n0, n1) = first_last(lg["score"]), first_last(lg["judge"]), first_last(lg["length"])
    print(f"{b:>5}  {s0:7.2f} → {s1:6.2f}  {j0:6.2f} → {j1:5.2f}  {n0:5.2f} → {n1:4.2f}  {first_last(lg['kl'])[1]:11.2f}")
print("\nβ = 0, last update:")
for p, t in hack_logs[0.0]["samples"][-1]:
    print(f"  {p!r:45} -> {t!r}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
for key, ax, title in (("score", axes[0], "flawed reward (optimised)"), ("judge", axes[1], "judge score (the truth)"),
                       ("kl", axes[2], "KL to the reference")):
    plot_curves({f"β = {b}": hack_logs[b][key] for b in HACK_BETAS}, ax=ax, title=title, xlabel="PPO update",
                ylabel=key, smooth_window=3)
plt.show()

# %% [markdown]
# Read the table and the curves: with no leash (β = 0) PPO climbs the flawed reward by making responses longer — the
# samples show an answer followed by whatever keeps the reward model happy — and the judge score falls while the
# reward rises: **reward hacking**. The KL penalty makes every token that departs from the SFT model pay
# $\beta\log\frac{\pi}{\pi_\text{ref}}$: compare the KL and the reward reached at β = 0 and β = 0.5 — the leash keeps
# the policy closer to the reference and buys less of the hack (tests/test_day2.py checks both across seeds 0–2).
# β cannot make a flawed reward model right, only keep the policy near the model whose behaviour we trusted — the
# real fixes are better preference data, reward-model ensembles, length penalties, and watching a held-out judge.

# %% [markdown]
# **Interview answers this notebook backs with code**
# - *Where does the KL penalty enter PPO for RLHF?* In the per-token reward: $-\beta\,(\log\pi - \log\pi_\text{ref})$
#   on every token, the reward-model score on the last one (§3).
# - *Why clip?* The surrogate is only trusted near the sampling policy; the min of clipped and unclipped terms removes
#   the incentive to push the ratio past $1\pm\epsilon$ in the rewarded direction (§5, the four boundary cases).
# - *What do γ and λ do in GAE?* γ discounts future reward; λ interpolates between one-step TD (λ = 0, low variance,
#   biased by the value head) and Monte-Carlo returns (λ = 1) (§4).
# - *What is reward hacking, and what does β do about it?* The policy finds what the reward model overrates (here:
#   length) and the true quality falls while the proxy reward rises; the KL coefficient limits how far it can go (§7).
