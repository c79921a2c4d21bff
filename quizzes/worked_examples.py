"""Scalar worked examples behind the bank's numeric questions whose formula is also a lesson's exercise.

These functions answer lesson exercises (Day 1: a LoRA update's parameter count and its α/r or α/√r scaling;
Day 2: Bradley-Terry and PPO's clipped objective; Day 3: DPO's loss, log odds, ORPO's odds-ratio term and IPO's loss; Day 2 nb4: GRPO's group-relative advantage), so
they live here, beside the bank and outside the importable ``course`` package: a student cannot
``import`` an answer. A question names one as ``compute: {fn: worked_examples.<name>, ...}``; the loader
(``course.quiz.loader``) loads this file by its path. Everything else the bank computes lives in
``course.memory`` and ``course.quiz.calc``.

Only plain functions of numbers, standard library only, one scalar at a time (the lessons build the tensor
versions).
"""

from __future__ import annotations

import math


# ---- LoRA on one weight matrix (Day 1) ------------------------------------------------------------------
def full_matrix_params(d: int, k: int) -> int:
    """Entries of a d×k weight (what a full update trains)."""
    return d * k


def lora_matrix_params(d: int, k: int, r: int) -> int:
    """A (r×k) plus B (d×r): r·(d+k)."""
    return r * (d + k)


def lora_compression(d: int, k: int, r: int) -> float:
    """How many times fewer parameters a rank-r update has than a full d×k update."""
    return full_matrix_params(d, k) / lora_matrix_params(d, k, r)


def lora_scaling(alpha: float, r: int, rslora: bool = False) -> float:
    """The factor on B·A: α/r (Hu et al. 2021), or α/√r with rank-stabilized LoRA (Kalajdzievski 2023)."""
    return alpha / math.sqrt(r) if rslora else alpha / r


def lora_extra_flops_fraction(d: int, k: int, r: int) -> float:
    """Extra multiply-adds of an unmerged adapter, B(Ax), relative to the base W₀x: r(d+k)/(dk)."""
    return lora_matrix_params(d, k, r) / full_matrix_params(d, k)


# ---- preference learning, one pair / one token (Days 2 and 3) ----------------------------------------------
def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bradley_terry_prob(margin: float) -> float:
    """P(chosen ≻ rejected) = σ(r_w − r_l)."""
    return sigmoid(margin)


def bradley_terry_loss(r_chosen: float, r_rejected: float) -> float:
    """−log σ(r_w − r_l)."""
    return -math.log(sigmoid(r_chosen - r_rejected))


def dpo_loss(beta: float, logp_chosen: float, ref_logp_chosen: float, logp_rejected: float,
             ref_logp_rejected: float) -> float:
    """−log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]) for one pair."""
    margin = beta * ((logp_chosen - ref_logp_chosen) - (logp_rejected - ref_logp_rejected))
    return -math.log(sigmoid(margin))


def log_odds(p: float) -> float:
    return math.log(p / (1 - p))


def orpo_ratio_loss(p_chosen: float, p_rejected: float) -> float:
    """ORPO's odds-ratio term −log σ(log odds(y_w) − log odds(y_l)), with P the length-normalized likelihood."""
    return -math.log(sigmoid(log_odds(p_chosen) - log_odds(p_rejected)))


def ipo_loss(tau: float, h: float) -> float:
    """IPO's squared loss for one pair: (h − 1/(2τ))², h the difference of (length-averaged) log-ratios."""
    return (h - 1 / (2 * tau)) ** 2


def ppo_clipped_objective(ratio: float, advantage: float, eps: float = 0.2) -> float:
    """min(ρA, clip(ρ, 1−ε, 1+ε)A) for one token (PPO maximizes it)."""
    return min(ratio * advantage, max(min(ratio, 1 + eps), 1 - eps) * advantage)


# ---- GRPO (Day 2 nb4) -------------------------------------------------------------------------------------
def grpo_advantage(rewards: list, index: int, scale: bool = True) -> float:
    """GRPO's group-relative advantage of completion ``index`` as trl computes it: (r_i − mean) / (std + 1e-4)
    with the Bessel-corrected std of the group (``scale_rewards="group"``), or r_i − mean without scaling."""
    n = len(rewards)
    mean = sum(rewards) / n
    adv = rewards[index] - mean
    if not scale:
        return adv
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1))
    return adv / (std + 1e-4)
