"""A tiny-model preference setup shared by the Day 3 tests (tests/test_day3.py, tests/test_dpo_family.py): the
tokenizer, a reference model, a policy that differs from it (the base perturbed, no training needed) and
preference pairs in trl's conversational format that the notebooks do not use."""

from __future__ import annotations

import torch

OTHER_PAIRS = (3, 40, 41, 42, 100)          # train-split rows no Day 3 notebook uses


def perturbed_tiny_pairs(seed: int, rows=OTHER_PAIRS):
    """→ (tokenizer, reference, policy, pairs); ``seed`` draws the policy's perturbation."""
    from course.loading import load_base, load_preference_data, load_tokenizer
    from course.notebook import quiet

    quiet()
    tok = load_tokenizer("tiny")
    ref = load_base("tiny").eval()
    policy = load_base("tiny").eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    train = load_preference_data()["train"]
    data = [{"prompt": [{"role": "user", "content": train[i]["prompt"]}],
             "chosen": [{"role": "assistant", "content": train[i]["chosen"]}],
             "rejected": [{"role": "assistant", "content": train[i]["rejected"]}]} for i in rows]
    return tok, ref, policy, data
