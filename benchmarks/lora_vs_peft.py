"""From-scratch LoRA (Day 1, notebook 2) vs peft: forward+backward time on the same model, as a ratio.

The from-scratch `LoRALinear` / `inject_lora` are taken from the reference solution's cells
(solutions/day1_lora_qlora/02_lora_from_scratch.py), so this times exactly what the lesson teaches.
Both models get the same base weights, targets (all seven projections), r and alpha; the two are timed
interleaved, step by step, and the medians compared.

    python benchmarks/lora_vs_peft.py [--steps 30] [--batch 16] [--seq 64] [--threads 1] [--model tiny|wide]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _models import build_base  # noqa: E402  (benchmarks/, on sys.path when run as a script)


def load_solution_cells(grade_ids: tuple[str, ...]) -> dict:
    """The reference ``LoRALinear`` / ``inject_lora`` (Day 1, notebook 2), executed from the solution's cells."""
    from course.authoring.reference import solution_namespace
    from course.paths import SOLUTIONS

    return solution_namespace(SOLUTIONS / "day1_lora_qlora" / "02_lora_from_scratch.py", grade_ids,
                              "import math\nimport torch\nfrom torch import nn\n"
                              "TARGETS = ('q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj')")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", choices=["tiny", "wide"], default="tiny")
    args = ap.parse_args(argv)

    import torch
    from peft import LoraConfig, get_peft_model

    from course.notebook import quiet

    quiet()
    torch.set_num_threads(args.threads)
    ns = load_solution_cells(("lora_linear", "inject_lora"))
    targets = ns["TARGETS"]

    base = build_base(args.model)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    mine = base
    ns["inject_lora"](mine, targets, r=args.r, alpha=2 * args.r)
    ref = build_base(args.model)
    ref.load_state_dict(state)
    ref = get_peft_model(ref, LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=0.0, target_modules=list(targets)))

    torch.manual_seed(0)
    vocab = base.config.vocab_size
    ids = torch.randint(3, vocab, (args.batch, args.seq))

    def step(model):
        t = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    times = {"from scratch": [], "peft": []}
    for i in range(args.warmup + args.steps):
        for name, model in (("from scratch", mine), ("peft", ref)):
            dt = step(model)
            if i >= args.warmup:
                times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_mine = sum(p.numel() for p in mine.parameters() if p.requires_grad)
    n_peft = ref.get_nb_trainable_parameters()[0]
    print(f"model {args.model} ({sum(p.numel() for p in ref.parameters()) - n_peft:,} base params), LoRA r={args.r} "
          f"on {len(targets)} projections: trainable {n_mine:,} (scratch) vs {n_peft:,} (peft)")
    print(f"forward+backward, batch {args.batch} × seq {args.seq}, {args.threads} thread(s), "
          f"median of {args.steps} interleaved steps:")
    for k, v in med.items():
        print(f"  {k:<13} {1000 * v:8.2f} ms/step")
    print(f"ratio from-scratch / peft: {med['from scratch'] / med['peft']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
