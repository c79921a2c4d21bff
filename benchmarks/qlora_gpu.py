"""QLoRA on a GPU, measured: the Mistral-7B architecture (random weights, no hub), NF4, gradient checkpointing.

    python benchmarks/qlora_gpu.py                       # on a GPU machine: seq 512 and 1024, batch 4
    python benchmarks/qlora_gpu.py --out results.json    # also write the figures as JSON
    python benchmarks/qlora_gpu.py --dry-run             # CPU, a tiny Mistral config: checks the code path

What it does, step by step:
1. builds ``MistralForCausalLM`` from Mistral-7B-v0.1's configuration (written out below — no hub access) with random
   bf16 weights and saves it to a temporary folder (≈ 14.5 GB of disk);
2. loads it through the lab's own loader, ``course.loading.load_base(profile, quantize=True)`` (NF4, double
   quantization, bf16 compute), and records the GPU memory the 4-bit weights take;
3. ``prepare_model_for_kbit_training`` with gradient checkpointing, LoRA r=16 α=32 on all seven projections (bf16
   adapters, as trl sets them), ``bitsandbytes.optim.PagedAdamW8bit``;
4. for each sequence length: a few warm-up steps, then timed steps of forward + backward + optimizer step on random
   tokens at the a100 profile's per-device batch; peak GPU memory (``torch.cuda.max_memory_allocated``) and tokens/s;
5. compares each peak with ``course.memory.estimate(..., method="qlora", optimizer="paged_adamw_8bit",
   grad_checkpointing=True)`` and projects one epoch of Dolly-15k at the a100 profile's settings.

Random weights make the losses meaningless; memory and speed do not depend on the values. The epoch projection
assumes every micro-batch is padded to the full sequence length — an upper bound, since most Dolly records are
shorter and the trainer pads each batch only to its longest member.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# mistralai/Mistral-7B-v0.1 config.json (the fields that shape the model)
MISTRAL_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768, rms_norm_eps=1e-5,
                  rope_theta=10000.0, sliding_window=4096, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
TINY_MISTRAL = dict(vocab_size=1000, hidden_size=64, intermediate_size=224, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                    sliding_window=None, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
DOLLY_RECORDS = 15011                                  # databricks-dolly-15k, train split
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny Mistral config, short sequences")
    ap.add_argument("--seq", type=int, nargs="+", default=None, help="sequence lengths (default 512 1024; dry run 32 64)")
    ap.add_argument("--batch", type=int, default=None, help="per-device batch (default: the a100 profile's)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per length (default 10; dry run 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; dry run 1)")
    ap.add_argument("--workdir", default=None, help="where to write the random checkpoint (default: a temp dir)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    return ap.parse_args(argv)


def build_random_checkpoint(cfg_fields: dict, folder: Path, dtype) -> int:
    """Save a randomly initialised MistralForCausalLM with this config to ``folder``; return its parameter count."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    cfg = MistralConfig(**cfg_fields)
    model = MistralForCausalLM(cfg).to(dtype)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder, safe_serialization=True)
    del model
    return n


def main(argv=None):
    a = parse_args(argv)
    import torch

    from course.kbit import keep_training_layout
    from course.loading import load_base
    from course.memory import GiB, estimate, model_spec
    from course.notebook import quiet
    from course.profiles import PROFILES

    quiet()
    cuda = torch.cuda.is_available() and not a.dry_run
    if not cuda and not a.dry_run:
        raise SystemExit("no GPU here: run with --dry-run to check the code path on the CPU")
    a100 = PROFILES["a100"]
    fields = TINY_MISTRAL if a.dry_run else MISTRAL_7B
    seqs = a.seq or ([32, 64] if a.dry_run else [512, 1024])
    batch = a.batch or (2 if a.dry_run else a100.per_device_batch_size)
    steps = a.steps or (2 if a.dry_run else 10)
    warmup = a.warmup if a.warmup is not None else (1 if a.dry_run else 3)
    device = "cuda" if cuda else "cpu"
    info = {"device": torch.cuda.get_device_name(0) if cuda else "cpu (dry run)", "torch": torch.__version__,
            "config": "tiny Mistral (dry run)" if a.dry_run else "Mistral-7B-v0.1", "batch": batch, "steps": steps}
    print(f"{info['config']} · device {info['device']} · batch {batch} · seq {seqs} · {steps} timed steps")

    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="qlora-gpu-"))
    ckpt = work / "random-mistral"
    t0 = time.perf_counter()
    n_params = build_random_checkpoint(fields, ckpt, torch.bfloat16)
    print(f"random checkpoint: {n_params:,} parameters written in {time.perf_counter() - t0:.1f} s")

    profile = replace(PROFILES["tiny" if a.dry_run else "a100"], model=str(ckpt), needs_hub=False)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = load_base(profile, quantize=True)
    keep_training_layout(model)
    weights_bytes = torch.cuda.memory_allocated() if cuda else None

    from bitsandbytes.optim import PagedAdamW8bit
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=a100.lora_r, lora_alpha=a100.lora_alpha, lora_dropout=0.0,
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    adapter_dtype = torch.bfloat16 if cuda else torch.float32
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(adapter_dtype)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = PagedAdamW8bit([p for p in model.parameters() if p.requires_grad], lr=a100.learning_rate)
    model.train()
    spec = model_spec(fields)

    rows = []
    g = torch.Generator().manual_seed(0)
    for seq in seqs:
        ids = torch.randint(3, fields["vocab_size"], (batch, seq), generator=g).to(device)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(warmup + steps):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t)
        step_s = sum(times) / len(times)
        peak = torch.cuda.max_memory_allocated() if cuda else None
        est = estimate(spec, method="qlora", optimizer="paged_adamw_8bit", seq_len=seq, batch=batch,
                       grad_checkpointing=True, r=a100.lora_r, adapter_dtype="bf16" if cuda else "fp32")
        n_train = DOLLY_RECORDS - math.ceil(DOLLY_RECORDS * 0.05)   # course.loading holds out 5 % (datasets rounds it up)
        opt_steps = math.ceil(math.ceil(n_train / a100.per_device_batch_size) / a100.gradient_accumulation_steps)
        epoch_s = opt_steps * a100.gradient_accumulation_steps * step_s * (a100.per_device_batch_size / batch)
        row = {"seq_len": seq, "step_seconds": step_s, "tokens_per_second": batch * seq / step_s,
               "peak_memory_bytes": peak, "estimate_bytes": est.total, "loss": loss.item(),
               "dolly_epoch_hours_upper_bound": epoch_s / 3600, "dolly_optimizer_steps": opt_steps}
        rows.append(row)
        mem = (f"peak {peak / GiB:.2f} GiB vs estimate {est.total / GiB:.2f} GiB (ratio {peak / est.total:.2f})"
               if peak else f"estimate {est.total / GiB:.4f} GiB (no GPU memory to measure)")
        print(f"seq {seq:5d}: {step_s * 1000:9.1f} ms/step · {row['tokens_per_second']:9.0f} tokens/s · {mem} · "
              f"Dolly-15k epoch ≤ {row['dolly_epoch_hours_upper_bound']:.2f} h ({opt_steps} steps × "
              f"{a100.gradient_accumulation_steps} micro-batches)")

    result = {**info, "parameters": n_params, "trainable": trainable, "weights_bytes_4bit": weights_bytes,
              "weights_estimate_bytes": estimate(spec, method="qlora").components["weights"], "rows": rows}
    if weights_bytes:
        print(f"4-bit weights on the GPU {weights_bytes / GiB:.2f} GiB vs estimate "
              f"{result['weights_estimate_bytes'] / GiB:.2f} GiB")
    print(f"trainable LoRA parameters: {trainable:,}")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
