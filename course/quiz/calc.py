"""Small scalar formulas behind the bank's numeric questions that the memory calculator
(``course.memory``) does not cover: (IA)³ counts, quantization overhead in bits, step counts, best-of-n.
Every numeric question names one of these, a ``course.memory`` function, or a ``worked_examples`` function
in its ``compute:`` field; the loader evaluates it, so no answer is typed by hand.

A formula that is also a lesson's exercise (LoRA's r·(d+k) and α/r, the preference losses, PPO's clip) does
not belong here: ``course`` is importable, so it would hand students the answer. Those live in
``quizzes/worked_examples.py``, outside the package.
"""

from __future__ import annotations

import math

from .. import memory


# ---- other PEFT methods ---------------------------------------------------------------------------------
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


# ---- rejection sampling -------------------------------------------------------------------------------
def best_of_n_kl(n: int) -> float:
    """KL(best-of-n ‖ base) = log n − (n−1)/n nats (the analytic upper bound used by Stiennon et al. 2020)."""
    return math.log(n) - (n - 1) / n


def at_least_one(p: float, n: int) -> float:
    """Chance that at least one of n independent samples succeeds: 1 − (1−p)ⁿ."""
    return 1 - (1 - p) ** n
