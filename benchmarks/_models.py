"""The models the benchmarks time: ``tiny`` is the shipped tiny base; ``wide`` has the same vocabulary, 4× the width
and random weights (13.9 M parameters), to see how a ratio moves with size. Imported by the scripts next to it
(``python benchmarks/<name>.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations


def build_base(kind: str):
    """A causal LM: ``"tiny"`` (trained, from course/assets) or ``"wide"`` (random, seed 0)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from course.loading import load_base
    from course.paths import TINY_BASE

    if kind == "tiny":
        return load_base("tiny")
    if kind != "wide":
        raise ValueError(f"unknown model kind {kind!r}: 'tiny' or 'wide'")
    cfg = LlamaConfig.from_pretrained(TINY_BASE)          # same vocabulary, 4× wider, random weights
    cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_key_value_heads = 512, 1536, 8, 4
    cfg.head_dim = 64
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)
