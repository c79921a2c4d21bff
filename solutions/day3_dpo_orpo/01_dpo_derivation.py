# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 3 · 1 — DPO from the RLHF objective: the derivation, checked with numbers
#
# Reading for today: Rafailov et al. 2023, *Direct Preference Optimization: Your Language Model is Secretly a
# Reward Model*; Hong et al. 2024, *ORPO* (notebook 3).
#
# RLHF with PPO (Day 2) trains a reward model, then maximises reward with a KL leash to a reference policy.
# DPO's claim (seed §4.3): that constrained problem has a **closed-form optimum**, so the reward can be written in
# terms of the policy, and the preference data can train the policy **directly** with a classification loss —
# no reward model, no sampling, no PPO.
#
# This notebook derives that claim step by step and then checks every step with numbers on a toy problem small
# enough to enumerate: a handful of prompts $x$, each with a handful of possible responses $y$. A policy is then
# just a table $\pi(y\mid x)$ of shape `(prompts, responses)` whose rows sum to 1.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import torch
import torch.nn.functional as F

from course.plotting import plot_curves, plt

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)      # the toy is exact arithmetic; float64 keeps checks tight

# %% [markdown]
# ## 1. The toy world
#
# `P` prompts, `K` candidate responses each. A reference policy $\pi_\text{ref}$ (think: the SFT model) and a
# true reward $r(x, y)$ (think: what the human labellers like), both random but seeded.

# %%
P, K, BETA = 3, 5, 0.5
pi_ref = torch.softmax(torch.randn(P, K), dim=-1)        # (P, K), rows sum to 1
r_true = 2.0 * torch.randn(P, K)                         # (P, K)
print("pi_ref (rows = prompts):\n", pi_ref.numpy().round(3))
print("true reward:\n", r_true.numpy().round(3))
print("row sums of pi_ref:", pi_ref.sum(-1).numpy())

# %% [markdown]
# ## 2. The KL-constrained reward objective
#
# RLHF maximises, for each prompt $x$,
#
# $$J(\pi) \;=\; \mathbb{E}_{y\sim\pi(\cdot\mid x)}\big[r(x,y)\big] \;-\; \beta\,\mathrm{KL}\big(\pi(\cdot\mid x)\,\big\|\,\pi_\text{ref}(\cdot\mid x)\big)
# \;=\; \sum_y \pi(y\mid x)\Big[r(x,y) - \beta\log\frac{\pi(y\mid x)}{\pi_\text{ref}(y\mid x)}\Big].$$
#
# The first term pulls toward high reward; the KL term (note its direction: $\mathrm{KL}(\pi\,\|\,\pi_\text{ref})$,
# an expectation under $\pi$) keeps the policy close to the reference, with strength $\beta$.
#
# ### Exercise 1 — the objective
# Write `rlhf_objective(pi, pi_ref, r, beta)` returning $J$ for every prompt, shape `(P,)`. A policy may give a
# response **zero** probability (β → 0 optima do, in floating point): use the convention $0\log 0 = 0$ as
# `torch.distributions.kl_divergence` does (`torch.xlogy(x, y)` computes $x\log y$ with $0\log 0 = 0$), so $J$
# stays finite; it is $-\infty$ only where $\pi>0$ on a response $\pi_\text{ref}$ rules out.

# %% nbgrader={"grade": false, "grade_id": "rlhf_objective", "locked": false, "schema_version": 3, "solution": true, "task": false}
def rlhf_objective(pi, pi_ref, r, beta):
    """J(π) per prompt: E_π[r] − β·KL(π ‖ π_ref). pi, pi_ref, r: (P, K) -> (P,)."""
    ### BEGIN SOLUTION
    expected_reward = (pi * r).sum(-1)
    kl = (torch.xlogy(pi, pi) - torch.xlogy(pi, pi_ref)).sum(-1)      # 0·log 0 = 0, like torch's Categorical KL
    return expected_reward - beta * kl
    ### END SOLUTION


# %%
print("J(pi_ref) =", rlhf_objective(pi_ref, pi_ref, r_true, BETA).numpy().round(4),
      " (KL is 0, so this is just E_ref[r] =", (pi_ref * r_true).sum(-1).numpy().round(4), ")")

# %% nbgrader={"grade": true, "grade_id": "rlhf_objective__by_hand", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_pi, _ref, _r = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.25, 0.75]]), torch.tensor([[1.0, 0.0]])
_J = rlhf_objective(_pi, _ref, _r, 2.0)
assert _J.shape == (1,), f"one value per prompt: expected shape (1,), got {tuple(_J.shape)}"
# E_π[r] = 0.5; KL = 0.5·ln(0.5/0.25) + 0.5·ln(0.5/0.75) = 0.5·ln(4/3); J = 0.5 − 2·0.5·ln(4/3)
assert abs(_J.item() - (0.5 - torch.log(torch.tensor(4 / 3)).item())) < 1e-9, \
    f"J = E_π[r] − β·KL(π‖π_ref) = 0.5 − ln(4/3) ≈ 0.2123 here, got {_J.item():.4f}"
### BEGIN HIDDEN TESTS
_J2 = rlhf_objective(_ref, _pi, _r, 1.0)   # the other direction of KL gives a different number
assert abs(_J2.item() - (0.25 - (0.25 * torch.log(torch.tensor(0.5)) + 0.75 * torch.log(torch.tensor(1.5))).item())) < 1e-9, \
    "the KL is an expectation under π (the first argument), not under π_ref"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "rlhf_objective__against_torch_kl", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_g = torch.Generator().manual_seed(1)
_pi = torch.softmax(torch.randn(4, 6, generator=_g), -1)
_ref = torch.softmax(torch.randn(4, 6, generator=_g), -1)
_r = torch.randn(4, 6, generator=_g)
_kl = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=_pi), torch.distributions.Categorical(probs=_ref))
assert torch.allclose(rlhf_objective(_pi, _ref, _r, 0.3), (_pi * _r).sum(-1) - 0.3 * _kl, atol=1e-9), \
    "J must equal E_π[r] − β·KL(π‖π_ref) with torch's own Categorical KL"
### BEGIN HIDDEN TESTS
assert torch.allclose(rlhf_objective(_pi, _ref, _r, 0.0), (_pi * _r).sum(-1), atol=1e-12), "β = 0 leaves only E_π[r]"
assert torch.allclose(rlhf_objective(_pi, _ref, torch.zeros_like(_r), 2.0), -2.0 * _kl, atol=1e-9), \
    "with zero reward J = −β·KL: the KL term is subtracted and scaled by β"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "rlhf_objective__zero_probability", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_pi0, _ref0, _r0 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]])
_J0 = rlhf_objective(_pi0, _ref0, _r0, 1.0)
assert torch.isfinite(_J0).all(), f"a response with π = 0 contributes 0·log 0 = 0 to the KL, so J is finite; got {_J0}"
assert abs(_J0.item() - (1.0 - torch.log(torch.tensor(2.0)).item())) < 1e-9, "J = 1 − KL((1,0) ‖ (½,½)) = 1 − ln 2"
### BEGIN HIDDEN TESTS
_g0 = torch.Generator().manual_seed(5)
_p = torch.softmax(torch.randn(3, 5, generator=_g0), -1)
_p[:, 1] = 0.0
_p = _p / _p.sum(-1, keepdim=True)
_q = torch.softmax(torch.randn(3, 5, generator=_g0), -1)
_rr = torch.randn(3, 5, generator=_g0)
_kl0 = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=_p), torch.distributions.Categorical(probs=_q))
assert torch.allclose(rlhf_objective(_p, _q, _rr, 0.7), (_p * _rr).sum(-1) - 0.7 * _kl0, atol=1e-9), \
    "with zeros in π, J must still equal E_π[r] − β·KL with torch's Categorical KL"
_Jinf = rlhf_objective(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), 1.0)
assert _Jinf.item() == float("-inf"), "π > 0 where π_ref = 0: KL is +∞, so J = −∞ (torch's KL says the same)"
_J32 = rlhf_objective(_pi0.float(), _ref0.float(), _r0.float(), 1.0)
assert torch.isfinite(_J32).all(), "finite in float32 too"
### END HIDDEN TESTS

# %% [markdown]
# ## 3. The optimum in closed form
#
# Put both terms under one logarithm. Define the normaliser $Z(x) = \sum_y \pi_\text{ref}(y\mid x)\,e^{r(x,y)/\beta}$ and
#
# $$\pi^*(y\mid x) \;=\; \frac{1}{Z(x)}\,\pi_\text{ref}(y\mid x)\,\exp\!\Big(\frac{r(x,y)}{\beta}\Big).$$
#
# Then $r - \beta\log\frac{\pi}{\pi_\text{ref}} = -\beta\log\frac{\pi}{\pi_\text{ref}\,e^{r/\beta}} = -\beta\log\frac{\pi}{\pi^*} + \beta\log Z$, so
#
# $$J(\pi) \;=\; \beta\log Z(x) \;-\; \beta\,\mathrm{KL}\big(\pi\,\|\,\pi^*\big).$$
#
# $Z$ does not depend on $\pi$ and a KL is $\ge 0$ with equality only at $\pi=\pi^*$: **$\pi^*$ is the unique
# maximiser, and the maximum is $\beta\log Z$.**
#
# ### Exercise 2 — the optimal policy
# Write `optimal_policy(pi_ref, r, beta)` returning $\pi^*$, shape `(P, K)`, each row normalised over responses.
# It must stay exact for small β: $e^{r/\beta}$ overflows float32 once $r/\beta > 88.7$ (`inf/inf = nan`). Work in
# log space — $\log\pi^* = \log\pi_\text{ref} + r/\beta - \log Z$ with $\log Z$ a `logsumexp` (or `torch.softmax`
# of the logits $\log\pi_\text{ref} + r/\beta$, which subtracts the row maximum for you).

# %% nbgrader={"grade": false, "grade_id": "optimal_policy", "locked": false, "schema_version": 3, "solution": true, "task": false}
def optimal_policy(pi_ref, r, beta):
    """π*(y|x) = π_ref(y|x)·exp(r(x,y)/β) / Z(x). pi_ref, r: (P, K) -> (P, K), rows sum to 1."""
    ### BEGIN SOLUTION
    logits = torch.log(pi_ref) + r / beta                  # log of the unnormalised π*, (P, K)
    return torch.exp(logits - torch.logsumexp(logits, dim=-1, keepdim=True))
    ### END SOLUTION


# %%
pi_star = optimal_policy(pi_ref, r_true, BETA)
log_Z = torch.logsumexp(torch.log(pi_ref) + r_true / BETA, dim=-1)       # (P,)
print("pi* :\n", pi_star.numpy().round(3))
print("J(pi*)        =", rlhf_objective(pi_star, pi_ref, r_true, BETA).numpy().round(6))
print("beta * log Z  =", (BETA * log_Z).numpy().round(6))

# %% nbgrader={"grade": true, "grade_id": "optimal_policy__normalised_and_known", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_ref = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
_r = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
_ps = optimal_policy(_ref, _r, 1.0)
assert _ps.shape == (2, 2), f"expected shape (2, 2), got {tuple(_ps.shape)}"
assert torch.allclose(_ps.sum(-1), torch.ones(2)), "each prompt's row of π* must sum to 1 (divide by Z(x))"
_e = torch.exp(torch.tensor(1.0))
assert torch.allclose(_ps[0], torch.tensor([_e / (_e + 1), 1 / (_e + 1)])), \
    "with π_ref uniform, r = (1, 0), β = 1: π* = (e, 1)/(e + 1)"
assert torch.allclose(_ps[1], _ref[1]), "a constant reward leaves π* = π_ref"
### BEGIN HIDDEN TESTS
_ps2 = optimal_policy(_ref, _r, 0.5)
assert torch.allclose(_ps2[0], torch.softmax(torch.tensor([2.0, 0.0]), -1)), "the reward is divided by β inside the exp"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "optimal_policy__beta_limits", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_g = torch.Generator().manual_seed(2)
_ref = torch.softmax(torch.randn(3, 4, generator=_g), -1)
_r = torch.randn(3, 4, generator=_g)
assert torch.allclose(optimal_policy(_ref, _r, 1e4), _ref, atol=1e-3), "β → ∞: the KL leash wins, π* → π_ref"
assert torch.equal(optimal_policy(_ref, _r, 0.01).argmax(-1), _r.argmax(-1)), "β → 0: π* puts its mass on the highest reward"
### BEGIN HIDDEN TESTS
_J_star = rlhf_objective(optimal_policy(_ref, _r, 0.7), _ref, _r, 0.7)
_logZ = torch.logsumexp(torch.log(_ref) + _r / 0.7, -1)
assert torch.allclose(_J_star, 0.7 * _logZ, atol=1e-9), "J(π*) must equal β·log Z(x)"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "optimal_policy__float32_small_beta", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_f32 = torch.float32                     # this notebook's default dtype is float64: ask for float32 explicitly
_ps32 = optimal_policy(torch.tensor([[0.5, 0.5]], dtype=_f32), torch.tensor([[1.0, 0.0]], dtype=_f32), 0.01)
assert torch.isfinite(_ps32).all(), \
    f"float32, r/β = 100: exp(100) = inf and inf/inf = nan — work in log space (logsumexp); got {_ps32}"
assert torch.allclose(_ps32, torch.tensor([[1.0, 0.0]], dtype=_f32)), "β → 0 in float32: all mass on the best response"
### BEGIN HIDDEN TESTS
_g3 = torch.Generator().manual_seed(6)
_ref3 = torch.softmax(torch.randn(4, 5, generator=_g3, dtype=_f32), -1)
_r3 = 50 * torch.randn(4, 5, generator=_g3, dtype=_f32)
for _b in (0.05, 0.5, 1e-3):
    _exact = torch.softmax(torch.log(_ref3.double()) + _r3.double() / _b, -1).float()
    _got = optimal_policy(_ref3, _r3, _b)
    assert torch.isfinite(_got).all() and torch.allclose(_got, _exact, atol=1e-6), \
        f"β = {_b}, |r/β| up to {(_r3.abs().max() / _b).item():.0f}: π* must match the float64 answer"
_neg = optimal_policy(torch.tensor([[0.5, 0.5]], dtype=_f32), torch.tensor([[-2.0, -3.0]], dtype=_f32), 0.01)
assert torch.allclose(_neg, torch.tensor([[1.0, 0.0]], dtype=_f32)), \
    "large negative r/β underflows exp to 0 for every response (0/0 = nan) unless you subtract the max"
_zero_ref = optimal_policy(torch.tensor([[0.0, 1.0]]), torch.tensor([[5.0, 0.0]]), 1.0)
assert torch.allclose(_zero_ref, torch.tensor([[0.0, 1.0]])), "π_ref = 0 stays 0: π* can only reweight π_ref's support"
### END HIDDEN TESTS

# %% [markdown]
# **Check: no policy beats $\pi^*$.** Draw many random policies (Dirichlet rows, so they cover the simplex) and
# evaluate the objective; also check the identity $J(\pi) = \beta\log Z - \beta\,\mathrm{KL}(\pi\|\pi^*)$ on every one.

# %%
n_random = 20_000
random_pis = torch.distributions.Dirichlet(torch.ones(K)).sample((n_random, P))          # (n, P, K)
J_random = rlhf_objective(random_pis, pi_ref, r_true, BETA)                              # (n, P)
J_star = rlhf_objective(pi_star, pi_ref, r_true, BETA)                                   # (P,)
kl_to_star = (random_pis * (random_pis.log() - pi_star.log())).sum(-1)                   # (n, P)
print(f"random policies beating pi* on some prompt: {(J_random > J_star).sum().item()} of {n_random * P}")
print("best random J per prompt:", J_random.max(0).values.numpy().round(4), " J(pi*):", J_star.numpy().round(4))
print("max |J - (beta log Z - beta KL(pi||pi*))| over all random policies:",
      f"{(J_random - (BETA * log_Z - BETA * kl_to_star)).abs().max().item():.2e}")

# %% [markdown]
# ## 4. Invert: the reward in terms of the policy
#
# Take logs of the optimum and solve for $r$:
#
# $$r(x,y) \;=\; \beta\log\frac{\pi^*(y\mid x)}{\pi_\text{ref}(y\mid x)} \;+\; \beta\log Z(x).$$
#
# Any policy $\pi$ therefore *implies* a reward $\hat r(x,y)=\beta\log\frac{\pi(y\mid x)}{\pi_\text{ref}(y\mid x)}$,
# up to the prompt-only term $\beta\log Z(x)$ — the "your language model is secretly a reward model" of the title.
# These are exactly the `rewards/chosen` and `rewards/rejected` trl logs during DPO training.
#
# ### Exercise 3 — the implied reward
# Write `implied_reward(pi, pi_ref, beta)` returning $\beta\log\frac{\pi}{\pi_\text{ref}}$, shape `(P, K)`.

# %% nbgrader={"grade": false, "grade_id": "implied_reward", "locked": false, "schema_version": 3, "solution": true, "task": false}
def implied_reward(pi, pi_ref, beta):
    """r̂(x,y) = β·log(π(y|x)/π_ref(y|x)). pi, pi_ref: (..., K) -> same shape."""
    ### BEGIN SOLUTION
    return beta * (torch.log(pi) - torch.log(pi_ref))
    ### END SOLUTION


# %%
r_hat_star = implied_reward(pi_star, pi_ref, BETA)
print("r - r_hat(pi*) per response (each row should be one constant, beta log Z):\n",
      (r_true - r_hat_star).numpy().round(6))
print("beta log Z:", (BETA * log_Z).numpy().round(6))

# %% nbgrader={"grade": true, "grade_id": "implied_reward__values", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_pi, _ref = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.25, 0.75]])
_rh = implied_reward(_pi, _ref, 2.0)
assert _rh.shape == (1, 2), f"one reward per (prompt, response): expected (1, 2), got {tuple(_rh.shape)}"
assert torch.allclose(_rh, 2.0 * torch.log(torch.tensor([[2.0, 2 / 3]]))), \
    "r̂ = β·log(π/π_ref): here 2·ln 2 and 2·ln(2/3) — positive where π puts more mass than π_ref"
### BEGIN HIDDEN TESTS
assert torch.allclose(implied_reward(_ref, _ref, 5.0), torch.zeros(1, 2)), "π = π_ref implies zero reward everywhere"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "implied_reward__recovers_reward_up_to_constant", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_g = torch.Generator().manual_seed(3)
_ref = torch.softmax(torch.randn(4, 6, generator=_g), -1)
_r = torch.randn(4, 6, generator=_g)
_beta = 0.8
_pstar = _ref * torch.exp(_r / _beta)
_pstar = _pstar / _pstar.sum(-1, keepdim=True)
_diff = _r - implied_reward(_pstar, _ref, _beta)
assert torch.allclose(_diff, _diff[:, :1].expand_as(_diff), atol=1e-9), \
    "r − β·log(π*/π_ref) must be the same for every response of a prompt (it is β·log Z(x))"
### BEGIN HIDDEN TESTS
assert torch.allclose(_diff[:, 0], _beta * torch.logsumexp(torch.log(_ref) + _r / _beta, -1), atol=1e-9), \
    "the per-prompt constant is β·log Z(x)"
### END HIDDEN TESTS

# %% [markdown]
# ## 5. $Z$ cancels in Bradley–Terry, and the DPO loss appears
#
# Preference data says "$y_w$ was preferred to $y_l$". The Bradley–Terry model turns rewards into preference
# probabilities through their **difference**:
#
# $$p(y_w \succ y_l \mid x) \;=\; \sigma\big(r(x,y_w) - r(x,y_l)\big).$$
#
# Substitute the reward from §4: the $\beta\log Z(x)$ terms are the same for both responses of a prompt and cancel —
# the intractable normaliser is gone:
#
# $$p(y_w \succ y_l \mid x) \;=\; \sigma\Big(\beta\log\frac{\pi^*(y_w\mid x)}{\pi_\text{ref}(y_w\mid x)} - \beta\log\frac{\pi^*(y_l\mid x)}{\pi_\text{ref}(y_l\mid x)}\Big).$$
#
# Replace $\pi^*$ by a trainable $\pi_\theta$ and maximise the likelihood of the observed preferences:
#
# $$\mathcal{L}_\text{DPO}(\theta) \;=\; -\,\mathbb{E}_{(x,y_w,y_l)}\Big[\log\sigma\Big(\beta\log\frac{\pi_\theta(y_w\mid x)}{\pi_\text{ref}(y_w\mid x)} - \beta\log\frac{\pi_\theta(y_l\mid x)}{\pi_\text{ref}(y_l\mid x)}\Big)\Big].$$
#
# First the cancellation, with numbers: the preference matrix from the true reward equals the one from $\pi^*$'s
# implied reward, although the rewards themselves differ by $\beta\log Z$.

# %%
def bt_matrix(reward):
    """p(y_i ≻ y_j | x) for all pairs. reward: (P, K) -> (P, K, K)."""
    return torch.sigmoid(reward[:, :, None] - reward[:, None, :])


print("max |r - r_hat(pi*)|                    :", f"{(r_true - r_hat_star).abs().max().item():.4f}")
print("max |BT(r) - BT(r_hat(pi*))| over pairs  :", f"{(bt_matrix(r_true) - bt_matrix(r_hat_star)).abs().max().item():.2e}")

# %% [markdown]
# ## 6. Minimise the DPO loss on sampled preferences — does it recover the reward?
#
# Now the real test. Sample comparisons from the Bradley–Terry model of the true reward (pick two different
# responses uniformly, let the true reward decide the winner with probability $\sigma(r_w - r_l)$), then fit a
# policy $\pi_\theta = \mathrm{softmax}(\theta)$ by minimising the DPO loss. $\theta$ starts at $\log\pi_\text{ref}$,
# just as DPO starts from the SFT model. The policy never sees $r$, only who won.
#
# Counts make it fast: `wins[p, i, j]` = how often response `i` beat `j` on prompt `p`.

# %%
def sample_preferences(r, n_per_prompt, generator):
    """Bradley–Terry comparisons of uniformly drawn pairs. r: (P, K) -> wins: (P, K, K) counts."""
    P_, K_ = r.shape
    wins = torch.zeros(P_, K_, K_)
    for p in range(P_):
        i = torch.randint(0, K_, (n_per_prompt,), generator=generator)
        j = (i + torch.randint(1, K_, (n_per_prompt,), generator=generator)) % K_      # j != i, uniform
        i_wins = torch.rand(n_per_prompt, generator=generator) < torch.sigmoid(r[p, i] - r[p, j])
        w, l = torch.where(i_wins, i, j), torch.where(i_wins, j, i)
        wins[p].index_put_((w, l), torch.ones(n_per_prompt), accumulate=True)
    return wins


def fit_dpo(wins, pi_ref, beta, steps=1500, lr=0.05):
    """Full-batch Adam on the DPO loss; returns (π_θ (P, K), loss curve)."""
    theta = torch.log(pi_ref).clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    losses = []
    for _ in range(steps):
        h = beta * (torch.log_softmax(theta, -1) - torch.log(pi_ref))                   # β log π_θ/π_ref, (P, K)
        per_pair = -F.logsigmoid(h[:, :, None] - h[:, None, :])                         # (P, K, K): winner i, loser j
        loss = (wins * per_pair).sum() / wins.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return torch.softmax(theta.detach(), -1), losses


def centred(x):
    """Remove each prompt's mean: rewards are only identified up to a per-prompt constant. (P, K) -> (P, K)."""
    return x - x.mean(-1, keepdim=True)


gen = torch.Generator().manual_seed(0)
wins = sample_preferences(r_true, 20_000, gen)
pi_dpo, dpo_losses = fit_dpo(wins, pi_ref, BETA)
r_hat_dpo = implied_reward(pi_dpo, pi_ref, BETA)
print("comparisons per prompt:", int(wins[0].sum().item()), " final DPO loss:", round(dpo_losses[-1], 4))
print("true reward (centred):\n", centred(r_true).numpy().round(3))
print("DPO implied reward (centred):\n", centred(r_hat_dpo).numpy().round(3))
print(f"max |centred error|: {(centred(r_hat_dpo) - centred(r_true)).abs().max().item():.4f}")
print(f"total variation(pi_dpo, pi*) per prompt: {(0.5 * (pi_dpo - pi_star).abs().sum(-1)).numpy().round(4)}")

# %% [markdown]
# The recovered reward agrees with the true one up to a per-prompt constant, and the fitted policy is (close to)
# the closed-form $\pi^*$. The remaining error is sampling noise: it shrinks as the number of comparisons grows
# (roughly like $1/\sqrt{n}$).

# %%
sizes = [200, 2_000, 20_000, 200_000]
errors = []
for n in sizes:
    w = sample_preferences(r_true, n, torch.Generator().manual_seed(1))
    pi_n, _ = fit_dpo(w, pi_ref, BETA, steps=800, lr=0.1)
    errors.append((centred(implied_reward(pi_n, pi_ref, BETA)) - centred(r_true)).abs().max().item())
    print(f"n = {n:>7,} comparisons/prompt: max |centred reward error| = {errors[-1]:.4f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].scatter(centred(r_true).flatten(), centred(r_hat_dpo).flatten())
lims = [centred(r_true).min().item() - 0.3, centred(r_true).max().item() + 0.3]
axes[0].plot(lims, lims, "k--", lw=1)
axes[0].set(xlabel="true reward (centred per prompt)", ylabel="DPO implied reward (centred)", title="n = 20,000")
plot_curves({"max error": (sizes, errors)}, title="reward recovery vs data", xlabel="comparisons per prompt",
            ylabel="max |error|", ax=axes[1])
axes[1].set_xscale("log")
axes[1].set_yscale("log")
plt.show()

# %% [markdown]
# ## 7. Interview link — PPO's KL penalty and DPO's reference model are the same constraint
#
# **PPO-RLHF** (Day 2) optimises $J(\pi)$ by sampling: each sampled response gets the *shaped* reward
#
# $$\tilde r(x,y) = r_\phi(x,y) - \beta\log\frac{\pi_\theta(y\mid x)}{\pi_\text{ref}(y\mid x)},\qquad \mathbb{E}_{y\sim\pi_\theta}\big[\tilde r\big] = J(\pi_\theta),$$
#
# so the KL penalty *is* the $-\beta\,\mathrm{KL}(\pi\|\pi_\text{ref})$ of §2, estimated one sample at a time
# (per token, in practice). **DPO** never samples: it uses that the maximiser of the same $J$ is
# $\pi^*\propto\pi_\text{ref}\,e^{r/\beta}$ (§3), and the $\pi_\text{ref}$ inside its log-ratios is that
# constraint, carried into the loss. Same objective, same $\beta$, same optimum; PPO gets there with a learned
# reward model and on-policy samples, DPO with a classification loss on offline pairs.
#
# Three checks with numbers:
# 1. the Monte-Carlo average of the shaped reward equals $J(\pi)$ (what PPO actually estimates);
# 2. gradient ascent on $J$ — what PPO does, here with exact gradients instead of sampled ones — converges to
#    the same $\pi^*$ as the DPO fit above;
# 3. drop $\pi_\text{ref}$ from the DPO loss (use $\beta\log\pi_\theta$ alone) and the optimum moves: the
#    constraint was the reference all along.

# %%
# 1. Monte Carlo of PPO's shaped reward under a random policy vs the exact objective
pi_any = random_pis[0]                                                                   # (P, K)
samples = torch.multinomial(pi_any, 200_000, replacement=True, generator=torch.Generator().manual_seed(4))
shaped = r_true.gather(1, samples) - BETA * (pi_any.log() - pi_ref.log()).gather(1, samples)
print("MC mean of shaped reward :", shaped.mean(-1).numpy().round(4))
print("exact J(pi)              :", rlhf_objective(pi_any, pi_ref, r_true, BETA).numpy().round(4))

# %%
# 2. Gradient ascent on J (the PPO objective, exact gradients) from pi_ref
theta = torch.log(pi_ref).clone().requires_grad_(True)
opt = torch.optim.Adam([theta], lr=0.05)
J_curve = []
for _ in range(1500):
    J = rlhf_objective(torch.softmax(theta, -1), pi_ref, r_true, BETA).sum()
    opt.zero_grad()
    (-J).backward()
    opt.step()
    J_curve.append(J.item())
pi_ppo_like = torch.softmax(theta.detach(), -1)
tv = lambda a, b: (0.5 * (a - b).abs().sum(-1)).max().item()           # noqa: E731 — max over prompts
print(f"TV(gradient ascent on J, pi*) = {tv(pi_ppo_like, pi_star):.2e}")
print(f"TV(DPO fit on sampled prefs, pi*) = {tv(pi_dpo, pi_star):.2e}")
print(f"TV(pi_ref, pi*) for scale = {tv(pi_ref, pi_star):.3f}")

# %%
# 3. DPO without the reference model: h = β log π_θ instead of β log π_θ/π_ref
theta = torch.log(pi_ref).clone().requires_grad_(True)
opt = torch.optim.Adam([theta], lr=0.05)
for _ in range(1500):
    h = BETA * torch.log_softmax(theta, -1)
    loss = (wins * -F.logsigmoid(h[:, :, None] - h[:, None, :])).sum() / wins.sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
pi_noref = torch.softmax(theta.detach(), -1)
print(f"TV(reference-free DPO fit, pi*) = {tv(pi_noref, pi_star):.3f}  (vs {tv(pi_dpo, pi_star):.2e} with the reference)")
print(f"TV(reference-free fit, softmax(r/beta)) = {tv(pi_noref, torch.softmax(r_true / BETA, -1)):.3f}"
      "  — it solves the problem with a uniform reference instead")

# %% [markdown]
# ## 8. When "same optimum" fails — and IPO's fix
#
# §6 recovered $\pi^*$ because two conditions held: the preferences came from a Bradley–Terry model with a
# **finite** reward, so no pair is won 100 % of the time; and every pair of responses was compared. Break either
# and DPO's minimiser is no longer the RLHF optimum (Azar et al. 2023, *A General Theoretical Paradigm to
# Understand Learning from Human Preferences* — IPO).
#
# **Deterministic preferences.** If $y_0$ always beats $y_1$, the BT reward gap that fits the data is $+\infty$:
# $-\log\sigma(\beta\Delta)$ keeps falling as $\Delta\to\infty$, whatever β is. The KL leash is gone, and the fitted
# policy drives $\pi(y_1)\to 0$. **IPO** replaces the logistic loss by a squared one on the log-ratio gap
# $\Delta$: $\big(\Delta - \frac{1}{2\beta}\big)^2$, minimised at the finite $\Delta = \frac{1}{2\beta}$ — β
# controls the distance again. One prompt, three responses, $y_0 \succ y_1 \succ y_2$ in every comparison, the
# same number of comparisons per pair:

# %% nbgrader={"grade": false, "grade_id": "given_fit_pairwise", "locked": true, "schema_version": 3, "solution": false, "task": false}
def fit_pairwise(wins, pi_ref, pair_loss, steps, lr=0.05):
    """Full-batch Adam on Σ wins·pair_loss(Δ) with Δ = log π_θ/π_ref (winner) − (loser); returns π_θ."""
    theta = torch.log(pi_ref).clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(steps):
        h = torch.log_softmax(theta, -1) - torch.log(pi_ref)                             # (P, K)
        loss = (wins * pair_loss(h[:, :, None] - h[:, None, :])).sum() / wins.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.softmax(theta.detach(), -1)


# %%
ref3 = torch.full((1, 3), 1 / 3)
det_wins = torch.zeros(1, 3, 3)
det_wins[0, 0, 1] = det_wins[0, 1, 2] = det_wins[0, 0, 2] = 1000.0                    # y0 ≻ y1 ≻ y2, always
print(f"{'β':>5}{'steps':>7}{'DPO π(y2)':>12}{'DPO gap Δ01':>13}{'IPO π(y2)':>12}{'IPO gap Δ01':>13}{'(2/3)/(2β)':>12}")
det_rows = []
for b in (0.1, 1.0):
    for n_steps in (300, 3000):
        p_dpo = fit_pairwise(det_wins, ref3, lambda d, b=b: -F.logsigmoid(b * d), n_steps)
        p_ipo = fit_pairwise(det_wins, ref3, lambda d, b=b: (d - 1 / (2 * b)) ** 2, n_steps)
        gap = lambda p: (torch.log(p[0, 0]) - torch.log(p[0, 1])).item()             # noqa: E731 (π_ref uniform)
        det_rows.append((b, n_steps, p_dpo[0, 2].item(), gap(p_dpo), p_ipo[0, 2].item(), gap(p_ipo)))
        print(f"{b:>5}{n_steps:>7}{p_dpo[0, 2].item():>12.2e}{gap(p_dpo):>13.2f}{p_ipo[0, 2].item():>12.4f}"
              f"{gap(p_ipo):>13.3f}{2 / 3 / (2 * b):>12.3f}")

# %% [markdown]
# Read the rows: DPO's gap keeps growing with more steps and $\pi(y_2)$ heads to 0 at both β — the fit is chasing
# an infinite reward, and β only sets how fast. IPO's gaps stop at a finite value set by β, the same after 300 and
# 3000 steps, and $\pi(y_2)$ stays positive. (Each pair asks for a gap of $\frac{1}{2\beta}$, but
# $\Delta_{02} = \Delta_{01} + \Delta_{12}$ cannot equal all three: the least-squares compromise is
# $\Delta_{01} = \Delta_{12} = \frac{2}{3}\cdot\frac{1}{2\beta}$, the last column.)
#
# **Partial coverage.** Now compare only $y_0$ with $y_1$ (noisy BT labels from the true reward) and never
# show $y_2$ — although under the true reward $y_2$ is the best response. The DPO loss does not depend on
# $\theta_2$ at all (the normaliser cancels in $\Delta$), so nothing moves $y_2$'s log-ratio, while the RLHF
# optimum $\pi^*$ puts most of its mass on it:

# %%
r_part = torch.tensor([[1.0, 0.0, 2.0]])
part_wins = torch.zeros(1, 3, 3)
part_wins[0, 0, 1] = 1000 * torch.sigmoid(torch.tensor(1.0))                            # BT: y0 beats y1 73 % of the time
part_wins[0, 1, 0] = 1000 * torch.sigmoid(torch.tensor(-1.0))
p_part = fit_pairwise(part_wins, ref3, lambda d: -F.logsigmoid(BETA * d), 3000)
p_star_part = optimal_policy(ref3, r_part, BETA)
print("π* (true reward, β = 0.5)      :", p_star_part.numpy().round(3))
print("DPO fit on y0-vs-y1 pairs only  :", p_part.numpy().round(3))
print(f"log π/π_ref of the never-compared y2: {torch.log(p_part[0, 2] / ref3[0, 2]).item():+.3f} "
      f"(π* has {torch.log(p_star_part[0, 2] / ref3[0, 2]).item():+.3f})")

# %% [markdown]
# The fitted $y_0$-vs-$y_1$ gap is right (BT identifies it), but $y_2$ only moves through the normaliser — its
# probability *falls* as $y_0$ rises. A real model does generalise to responses it never saw compared, but
# through its parameters, not through the loss; that is why preference data should cover what the policy
# actually produces (Day 6 samples pairs from the SFT policy).

# %% [markdown]
# **Interview answers this notebook backs with numbers**
# - *Derive DPO from the RLHF objective.* §2–§5: $J = \beta\log Z - \beta\,\mathrm{KL}(\pi\|\pi^*)$, so
#   $\pi^* \propto \pi_\text{ref}e^{r/\beta}$; invert for $r$; $Z(x)$ cancels in Bradley–Terry; maximum likelihood
#   gives $\mathcal L_\text{DPO}$.
# - *Why does DPO need a reference model?* It is the KL constraint of RLHF: without it the loss fits a different
#   optimum (check 3) and nothing stops the policy drifting from the SFT model.
# - *What does β do?* The same as PPO's KL coefficient: large β keeps $\pi$ near $\pi_\text{ref}$
#   ($\pi^*\to\pi_\text{ref}$), small β chases the reward ($\pi^*\to$ argmax). Notebook 2 sweeps it on a real model.
# - *What are DPO's "rewards"?* $\beta\log\frac{\pi_\theta}{\pi_\text{ref}}$ — the implied reward, correct up to a
#   per-prompt constant, which is all Bradley–Terry can ever identify.
# - *Are RLHF and DPO really equivalent?* Same optimum only with finite-reward (non-deterministic) preferences over
#   pairs that cover the responses; with deterministic wins DPO's gap grows without bound at any β, IPO's stops at
#   $1/(2\beta)$, and never-compared responses are not pinned (§8).
