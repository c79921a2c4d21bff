"""The PEFT family on one task and budget (Day 1 · 5): full fine-tune, LoRA (r sweep), rsLoRA, DoRA, PiSSA, LoRA+,
(IA)³, prompt tuning and prefix tuning on the tiny world's instruction data, each trained with the same loop
(AdamW, completion-only loss, same steps and batch), over several seeds.

Prints, per method: trainable parameters, training-state memory (fp32 weights + trainable grads + AdamW m, v —
computed from the counts, not a measured peak), seconds per step (this machine, its load printed), held-out
exact match (mean and a 95% t-interval over seeds).

    python benchmarks/peft_family.py --seeds 0 1 2 --steps 150
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import warnings

import torch


def methods():
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig

    all_linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = dict(lora_alpha=16, target_modules=all_linear)
    return {
        "full fine-tune": (None, 1e-3, 1.0),
        "LoRA r=4": (LoraConfig(r=4, **lora), 3e-3, 1.0),
        "LoRA r=16": (LoraConfig(r=16, **lora), 3e-3, 1.0),
        "LoRA r=64": (LoraConfig(r=64, **lora), 3e-3, 1.0),
        "rsLoRA r=64": (LoraConfig(r=64, use_rslora=True, **lora), 3e-3, 1.0),
        "DoRA r=16": (LoraConfig(r=16, use_dora=True, **lora), 3e-3, 1.0),
        "PiSSA r=16": (LoraConfig(r=16, init_lora_weights="pissa", **lora), 3e-3, 1.0),
        "LoRA+ r=16 (ratio 16)": (LoraConfig(r=16, **lora), 3e-3, 16.0),
        "(IA)3": (IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                            feedforward_modules=["down_proj"]), 3e-2, 1.0),
        "prompt tuning P=16": (PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16), 3e-2, 1.0),
        "prefix tuning P=16": (PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16), 3e-2, 1.0),
    }


def encode(tok, exs, max_length=64):
    """Chat prompt + response + eos; labels -100 on the prompt and the padding (completion-only loss)."""
    from course.generation import chat_prompt

    ids, labels = [], []
    for e in exs:
        p = tok(chat_prompt(tok, e.instruction, None, e.context), add_special_tokens=False)["input_ids"]
        r = tok(e.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        seq = (p + r)[:max_length]
        ids.append(seq)
        labels.append(([-100] * len(p) + r)[:max_length])
    n = max(map(len, ids))
    pad = tok.pad_token_id
    mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in ids])
    return (torch.tensor([s + [pad] * (n - len(s)) for s in ids]), mask,
            torch.tensor([s + [-100] * (n - len(s)) for s in labels]))


def run(name, cfg, lr, ratio, seed, steps, bs, data, heldout, tok):
    from peft import get_peft_model
    from peft.optimizers import create_loraplus_optimizer

    from course.generation import evaluate_exact_match
    from course.loading import load_base

    torch.manual_seed(seed)
    model = load_base("tiny")
    if cfg is not None:
        model = get_peft_model(model, cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    if ratio != 1.0:
        opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=ratio, weight_decay=0.0)
    else:
        opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    ids, mask, labels = data
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.process_time()
    for _ in range(steps):
        idx = torch.randint(0, len(ids), (bs,), generator=g)
        loss = model(input_ids=ids[idx], attention_mask=mask[idx], labels=labels[idx]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    cpu_per_step = (time.process_time() - t0) / steps
    model.eval()
    score, _ = evaluate_exact_match(model, tok, heldout, progress=False)
    mem_mib = 4 * (n_total + 3 * n_train) / 2**20
    return dict(trainable=n_train, mem=mem_mib, step=cpu_per_step, em=score, loss=loss.item())


def ci95(xs):
    if len(xs) < 2:
        return float("nan")
    t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}.get(len(xs), 2.0)
    return t * statistics.stdev(xs) / math.sqrt(len(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--heldout", type=int, default=96)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(int(os.environ.get("COURSE_THREADS", "1")))
    from course.loading import load_tokenizer
    from course.tinyworld.tasks import examples

    tok = load_tokenizer("tiny")
    data = encode(tok, examples("train"))
    heldout = examples("heldout")
    heldout = [heldout[i] for i in torch.randperm(len(heldout), generator=torch.Generator().manual_seed(0))[: args.heldout]]
    print(f"train sequences {tuple(data[0].shape)}, held-out {len(heldout)}, steps {args.steps}, batch {args.batch}, "
          f"seeds {args.seeds}, load average {os.getloadavg()[0]:.1f}, threads {torch.get_num_threads()}")
    print(f"{'method':24s} {'trainable':>10s} {'state MiB':>9s} {'CPU s/step':>10s} {'held-out EM':>18s}  per seed")
    for name, (cfg, lr, ratio) in methods().items():
        if args.only and name not in args.only:
            continue
        rs = [run(name, cfg, lr, ratio, s, args.steps, args.batch, data, heldout, tok) for s in args.seeds]
        ems = [r["em"] for r in rs]
        print(f"{name:24s} {rs[0]['trainable']:>10,d} {rs[0]['mem']:>9.2f} "
              f"{statistics.mean(r['step'] for r in rs):>10.3f} "
              f"{statistics.mean(ems):>8.3f} ± {ci95(ems):.3f}  {[round(e, 3) for e in ems]}", flush=True)


if __name__ == "__main__":
    main()
