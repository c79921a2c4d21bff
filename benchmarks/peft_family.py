"""The PEFT family on one task and budget (Day 1 · 5): full fine-tune, LoRA (r sweep), rsLoRA, DoRA, PiSSA, LoRA+,
(IA)³, prompt tuning and prefix tuning on the tiny world's instruction data, each trained by the same loop
(``course.peft_compare``: AdamW, completion-only loss, same steps, batch and data order) at its own learning rate,
over several seeds. Prints trainable parameters, measured peak training memory (resident-set high-water mark above
the loaded model), CPU ms per step, held-out exact match and loss (mean ± 95% t-interval over seeds).

    python benchmarks/peft_family.py --seeds 0 1 2 --steps 120 --batch 16     # the docs/BENCHMARKS.md table
    python benchmarks/peft_family.py --sweep --steps 30 --batch 8              # choose each method's learning rate

``--sweep`` trains every method at each learning rate of its grid on seed 0 and prints the validation loss (training
examples set aside, never the held-out set); the best one per method is what ``course.peft_compare.lora_family``
uses.
"""

from __future__ import annotations

import argparse
import os
import warnings

import torch

GRIDS = {"full fine-tune": (3e-4, 1e-3, 3e-3), "DoRA r=16": (1e-3, 3e-3, 1e-2, 3e-2),
         "(IA)3": (1e-2, 3e-2, 1e-1, 3e-1), "prompt tuning P=16": (1e-2, 3e-2, 1e-1, 3e-1),
         "prefix tuning P=16": (1e-2, 3e-2, 1e-1, 3e-1)}
LORA_GRID = (1e-3, 3e-3, 1e-2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--heldout", type=int, default=0, help="held-out examples (0: all)")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--sweep", action="store_true", help="learning-rate sweep on the validation split, seed 0")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(int(os.environ.get("COURSE_THREADS", "1")))
    from course.loading import load_tokenizer
    from course.notebook import quiet
    from course.peft_compare import Method, format_table, heldout_scores, lora_family, splits, summarize_runs, train_method

    quiet()
    tok = load_tokenizer("tiny")
    train, val, held = splits(tok, args.heldout or None)
    print(f"train {tuple(train[0].shape)} · validation {tuple(val[0].shape)} · held-out {tuple(held[0].shape)} · "
          f"steps {args.steps} × batch {args.batch} · seeds {args.seeds} · threads {torch.get_num_threads()} · "
          f"load average {os.getloadavg()[0]:.1f} · {os.cpu_count()} CPUs")
    methods = [m for m in lora_family() if not args.only or m.name in args.only]
    if args.sweep:
        for m in methods:
            scores = {}
            for lr in GRIDS.get(m.name, LORA_GRID):
                r = train_method(Method(m.name, m.make_config, lr, m.loraplus_ratio), 0, args.steps, args.batch,
                                 train, val)
                scores[lr] = r["heldout_loss"]
            best = min(scores, key=scores.get)
            print(f"{m.name:20s} validation loss " + "  ".join(f"lr {lr:g}: {v:.3f}" for lr, v in scores.items())
                  + f"  → best {best:g} (table uses {m.lr:g})", flush=True)
        return
    results = []
    for m in methods:
        results += [train_method(m, s, args.steps, args.batch, train, held) for s in args.seeds]
        print(f"  done {m.name} (lr {m.lr:g}{f', LoRA+ ratio {m.loraplus_ratio:g}' if m.loraplus_ratio != 1 else ''})",
              flush=True)
    print(format_table(summarize_runs(results)))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
