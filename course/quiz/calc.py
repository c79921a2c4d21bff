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


# ---- PEFT variants ------------------------------------------------------------------------------------------
def dora_magnitude_params(model: str, targets=None) -> int:
    """DoRA's extra trainable magnitude vector: one entry per output feature of every adapted matrix."""
    spec = memory.model_spec(model)
    shapes = spec.projection_shapes()
    targets = targets or list(shapes)
    return spec.num_layers * sum(shapes[t][1] for t in targets)


def prompt_tuning_params(num_virtual_tokens: int, hidden_size: int) -> int:
    """Prompt tuning learns ``num_virtual_tokens`` input embeddings (no reparameterization)."""
    return num_virtual_tokens * hidden_size


def prefix_tuning_params(num_layers: int, num_virtual_tokens: int, kv_dim: int) -> int:
    """Prefix tuning learns a key and a value prefix per layer (the trained prefix, without the
    reparameterization MLP that is discarded after training)."""
    return 2 * num_layers * num_virtual_tokens * kv_dim


def dare_rescale(drop_rate: float) -> float:
    """DARE drops each delta entry with probability p and rescales the survivors by 1/(1−p), so the expected
    delta is unchanged."""
    return 1 / (1 - drop_rate)


# ---- serving ------------------------------------------------------------------------------------------------
def kv_cache_bytes(model: str, tokens: int = 1, dtype: str = "bf16") -> int:
    """Keys and values of every layer for ``tokens`` tokens: 2 · layers · kv_dim · bytes per token."""
    spec = memory.model_spec(model)
    return 2 * spec.num_layers * spec.kv_dim * memory.DTYPE_BYTES[dtype] * tokens


def adapter_bytes(model: str, r: int, dtype: str = "bf16", targets=None) -> int:
    """Bytes of one LoRA adapter (A and B of every targeted projection) stored in ``dtype``."""
    spec = memory.model_spec(model)
    kw = {"targets": targets} if targets else {}
    return memory.lora_params(spec, r, **kw) * memory.DTYPE_BYTES[dtype]


def adapters_that_fit(budget_bytes: float, model: str, r: int, dtype: str = "bf16") -> int:
    """How many whole adapters fit in ``budget_bytes`` of GPU memory."""
    return int(budget_bytes // adapter_bytes(model, r, dtype))


def kv_tokens_that_fit(budget_bytes: float, model: str, dtype: str = "bf16") -> int:
    """How many tokens of KV cache fit in ``budget_bytes``."""
    return int(budget_bytes // kv_cache_bytes(model, 1, dtype))


def serving_budget_bytes(gpu_gib: float, model: str, utilization: float = 0.9, weight_dtype: str = "bf16") -> float:
    """GPU memory left for KV cache and adapters after the weights, at vLLM's gpu_memory_utilization."""
    spec = memory.model_spec(model)
    return gpu_gib * memory.GiB * utilization - memory.weight_bytes(spec, "full", weight_dtype)


# ---- compute and cost -------------------------------------------------------------------------------------
def training_flops(n_params: float, tokens: float, frozen_base: bool = False) -> float:
    """≈ 6·N·D FLOPs for full training (2 forward, 4 backward). With a frozen base (LoRA/QLoRA) the weight
    gradients of the base are skipped: ≈ 4·N·D (adapter FLOPs are negligible)."""
    return (4 if frozen_base else 6) * n_params * tokens


def gpu_hours(flops: float, peak_tflops: float, mfu: float = 0.4) -> float:
    """Hours on one GPU at a model-FLOPs utilization ``mfu`` of its dense peak."""
    return flops / (peak_tflops * 1e12 * mfu) / 3600


def cost_usd(gpu_hours_: float, usd_per_gpu_hour: float) -> float:
    return gpu_hours_ * usd_per_gpu_hour


def decode_tokens_per_s_bound(model: str, hbm_tb_s: float, weight_dtype: str = "bf16", batch: int = 1) -> float:
    """Memory-bandwidth bound on decoding: each step reads every weight once, so at most
    HBM bandwidth / weight bytes steps per second, each producing ``batch`` tokens (KV reads ignored)."""
    spec = memory.model_spec(model)
    return hbm_tb_s * 1e12 / memory.weight_bytes(spec, "full", weight_dtype) * batch


# ---- RL from verifiable rewards ---------------------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 − C(n−c, k)/C(n, k)."""
    if n - c < k:
        return 1.0
    return 1 - math.comb(n - c, k) / math.comb(n, k)


# ---- preference-loss variants (IPO's loss is a Day 3 exercise: quizzes/worked_examples.py) -------------------
def simpo_margin(beta: float, gamma: float, logp_chosen: float, len_chosen: int, logp_rejected: float,
                 len_rejected: int) -> float:
    """SimPO's margin β·logπ(y_w)/|y_w| − β·logπ(y_l)/|y_l| − γ (no reference model); the loss is −log σ(margin)."""
    return beta * logp_chosen / len_chosen - beta * logp_rejected / len_rejected - gamma


def neg_log_sigmoid(x: float) -> float:
    """−log σ(x), computed stably."""
    return math.log1p(math.exp(-x)) if x > 0 else -x + math.log1p(math.exp(x))


def kto_desirable_loss(beta: float, log_ratio: float, z_ref: float, weight: float = 1.0) -> float:
    """KTO's loss on a desirable example: λ_D · (1 − σ(β·(log π/π_ref − z_ref)))."""
    return weight * (1 - 1 / (1 + math.exp(-beta * (log_ratio - z_ref))))


# ---- long context -------------------------------------------------------------------------------------------
def rope_scale_factor(new_context: int, trained_context: int) -> float:
    """Position interpolation / YaRN factor s = L_new / L_trained."""
    return new_context / trained_context


def ntk_rope_base(base: float, scale: float, head_dim: int) -> float:
    """'NTK-aware' RoPE scaling: raise the base to b·s^(d/(d−2)) so the lowest frequency is interpolated by s
    while the highest is almost untouched."""
    return base * scale ** (head_dim / (head_dim - 2))


def rope_wavelength(base: float, head_dim: int, pair: int) -> float:
    """Wavelength in tokens of RoPE pair i: 2π·b^(2i/d)."""
    return 2 * math.pi * base ** (2 * pair / head_dim)


def padding_fraction(lengths: list, pad_to: int) -> float:
    """Fraction of a padded batch that is padding when every sequence is padded to ``pad_to`` tokens
    (what packing removes)."""
    return 1 - sum(lengths) / (pad_to * len(lengths))


def api_cost_usd(calls: int, input_tokens: int, output_tokens: int, usd_per_m_input: float,
                 usd_per_m_output: float) -> float:
    """Cost of ``calls`` LLM API calls priced per million input and output tokens."""
    return calls * (input_tokens * usd_per_m_input + output_tokens * usd_per_m_output) / 1e6


def sample_size_for_margin(p: float, margin: float, z: float = 1.96) -> int:
    """Items needed so that a rate near ``p`` has a ±``margin`` confidence half-width: ⌈z²·p(1−p)/margin²⌉."""
    return math.ceil(z * z * p * (1 - p) / (margin * margin))


def generation_tokens(prompts: int, samples_per_prompt: int, tokens_per_sample: int) -> int:
    """Tokens generated by sampling ``samples_per_prompt`` completions for each prompt."""
    return prompts * samples_per_prompt * tokens_per_sample
