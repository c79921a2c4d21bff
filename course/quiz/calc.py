"""Small scalar formulas behind the bank's numeric questions that the memory calculator
(``course.memory``) does not cover: one weight matrix's LoRA count, scalings, quantization overhead in
bits, step counts, and scalar versions of the preference losses (for a worked number, not a lesson's
tensor implementation). Every numeric question names one of these, or a ``course.memory`` function, in its
``compute:`` field; the loader evaluates it, so no answer is typed by hand.
"""

from __future__ import annotations

import math

from .. import memory


# ---- LoRA on one weight matrix ------------------------------------------------------------------------
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


def ia3_params(n_layers: int, k_dim: int, v_dim: int, ffn_dim: int) -> int:
    """(IA)³ learns one vector each for keys, values and the FFN's inner activation, per layer."""
    return n_layers * (k_dim + v_dim + ffn_dim)


# ---- quantization overhead (bits per parameter) ---------------------------------------------------------
def scale_overhead_bits(blocksize: int = 64) -> float:
    """Bits per parameter of one fp32 absmax scale per block (from the memory calculator's NF4 count)."""
    return memory.nf4_bits_per_param(double_quant=False, blocksize=blocksize) - 4


def double_quant_overhead_bits(blocksize: int = 64, blocksize2: int = 256) -> float:
    """QLoRA's double quantization: 8-bit scales per block of weights, plus one fp32 scale per ``blocksize2``
    of those scales (the memory calculator's NF4 count minus the 4 bits of the codes)."""
    return memory.nf4_bits_per_param(double_quant=True, blocksize=blocksize, dq_blocksize=blocksize2) - 4


def double_quant_saving_bits(blocksize: int = 64, blocksize2: int = 256) -> float:
    return scale_overhead_bits(blocksize) - double_quant_overhead_bits(blocksize, blocksize2)


def static_training_bytes(model: str, **kwargs) -> int:
    """Weights + master copy + adapters + gradients + optimizer states of one training step (everything the
    memory calculator counts except activations and logits, which depend on batch and sequence length)."""
    est = memory.estimate(memory.model_spec(model), **kwargs)
    return sum(v for k, v in est.components.items() if k not in ("activations", "logits"))


def bits_to_gb(n_params: float, bits_per_param: float) -> float:
    """Bytes/10⁹ taken by ``n_params`` values of ``bits_per_param`` bits."""
    return n_params * bits_per_param / 8 / 1e9


# ---- training schedule -------------------------------------------------------------------------------
def effective_batch_size(per_device: int, grad_accum: int, devices: int = 1) -> int:
    return per_device * grad_accum * devices


def optimizer_steps(n_examples: int, effective_batch: int, epochs: int = 1) -> int:
    return math.ceil(n_examples / effective_batch) * epochs


def warmup_steps(n_examples: int, effective_batch: int, epochs: int = 1, ratio: float = 0.03) -> int:
    """transformers' rule: ceil(total optimizer steps × warmup ratio)."""
    return math.ceil(optimizer_steps(n_examples, effective_batch, epochs) * ratio)


# ---- preference learning, scalar worked examples ----------------------------------------------------------
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


def ppo_clipped_objective(ratio: float, advantage: float, eps: float = 0.2) -> float:
    """min(ρA, clip(ρ, 1−ε, 1+ε)A) for one token (PPO maximizes it)."""
    return min(ratio * advantage, max(min(ratio, 1 + eps), 1 - eps) * advantage)


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n ‖ base) = log n − (n−1)/n nats (the analytic upper bound used by Stiennon et al. 2020)."""
    return math.log(n) - (n - 1) / n


def at_least_one(p: float, n: int) -> float:
    """Chance that at least one of n independent samples succeeds: 1 − (1−p)ⁿ."""
    return 1 - (1 - p) ** n
