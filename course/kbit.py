"""4-bit (bitsandbytes) models on a CPU: keep the weight layout that training needs.

bitsandbytes 0.50 on a CPU with AVX-512 BF16 switches a ``Linear4bit`` layer to a fused inference kernel on its
first forward in eval mode without gradients (``model.generate`` does exactly that): it **repacks the weight bytes
in place** into that kernel's layout (``quant_state.packing_format_for_cpu = True``). The forward stays right,
but the backward of ``matmul_4bit`` still dequantizes the bytes as if they were in the standard layout, so every
gradient that flows *through* a 4-bit layer is wrong from then on (measured on the tiny model: the embedding
gradient after one ``generate`` has a relative error ≈ 1 against the fp32 model's). QLoRA on a CPU that evaluates
before or during training therefore trains on garbage gradients unless the repacking is switched off.
GPUs are not affected (this code path is CPU-only).
"""

from __future__ import annotations


def linear4bit_modules(model) -> list:
    """Every bitsandbytes ``Linear4bit`` in the model (empty when bitsandbytes is absent or nothing is 4-bit)."""
    try:
        import bitsandbytes as bnb
    except ImportError:  # pragma: no cover - bitsandbytes is a dependency
        return []
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def keep_training_layout(model) -> int:
    """Switch off the CPU inference repacking on every 4-bit layer and undo it where it already happened.

    Returns the number of 4-bit layers seen. Harmless on a GPU and on models without 4-bit layers.
    """
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    layers = linear4bit_modules(model)
    for m in layers:
        m.support_avx512bf16_for_cpu = False
        qs = getattr(m.weight, "quant_state", None)
        if qs is not None and getattr(qs, "packing_format_for_cpu", False):
            m.weight.data, m.weight.quant_state = _convert_weight_packed_for_cpu_inverse(m.weight.data, qs)
    return len(layers)


def repacked_layers(model) -> int:
    """How many 4-bit layers currently hold the CPU kernel's repacked layout."""
    return sum(bool(getattr(getattr(m.weight, "quant_state", None), "packing_format_for_cpu", False))
               for m in linear4bit_modules(model))
