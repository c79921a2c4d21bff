"""Day 5 serving figures: adapter swap latency vs reloading the model, merged vs unmerged forward speed, and one
mixed-adapter batch vs one batch per adapter.

The adapters are LoRA r=8, α=16 on all seven projections with random (non-zero) B, saved to disk like trained ones;
speed does not depend on what the weights learned. ``--model tiny`` is the shipped tiny base; ``--model wide`` has
the same vocabulary, 4× the width and random weights (13.9 M parameters), to see how the ratios move with size.
The base is saved to a temporary folder first, so "reload" reads it from disk as a deployment would.

    python benchmarks/adapter_serving.py [--model tiny|wide] [--threads 1] [--repeats 20] [--batch 16] [--seq 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _models import build_base  # noqa: E402  (benchmarks/, on sys.path when run as a script)

from course.timing import median_seconds  # noqa: E402

TENANTS = ("t0", "t1", "t2")


def median_ms(fn, repeats: int) -> float:
    return median_seconds(fn, repeats) * 1e3


def interleaved_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Median ms of each function, timed alternately so that load changes hit all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["tiny", "wide"], default="tiny")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=32)
    args = ap.parse_args(argv)

    import copy

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from peft.utils.hotswap import hotswap_adapter
    from transformers import AutoModelForCausalLM

    from course.notebook import quiet

    quiet()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    base_dir = tmp / "base"
    build_base(args.model).save_pretrained(base_dir)

    def load_base():
        return AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()

    cfg = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    dirs = {}
    for i, name in enumerate(TENANTS):
        torch.manual_seed(100 + i)
        pm = get_peft_model(load_base(), cfg)
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)
        dirs[name] = tmp / name
        pm.save_pretrained(dirs[name])
    base_params = sum(p.numel() for p in load_base().parameters())
    adapter_bytes = (dirs["t0"] / "adapter_model.safetensors").stat().st_size
    print(f"model: {args.model} ({base_params:,} base parameters, {base_params * 4:,} bytes fp32); adapter "
          f"{adapter_bytes:,} bytes on disk; torch threads {args.threads}")

    # --- swap latency -------------------------------------------------------------------------------------------
    model = PeftModel.from_pretrained(load_base(), dirs["t0"], adapter_name="t0").eval()
    for name in TENANTS[1:]:
        model.load_adapter(dirs[name], adapter_name=name)
    one_slot = PeftModel.from_pretrained(load_base(), dirs["t0"]).eval()
    cycle = iter(TENANTS * 100_000)

    def load_delete():
        model.load_adapter(dirs["t2"], adapter_name="extra")
        model.delete_adapter("extra")

    swap = {
        "set_adapter (loaded)": median_ms(lambda: model.set_adapter(next(cycle)), args.repeats * 5),
        "hotswap_adapter (disk -> slot)": median_ms(
            lambda: hotswap_adapter(one_slot, str(dirs[next(cycle)]), adapter_name="default", torch_device="cpu"),
            args.repeats),
        "load_adapter + delete_adapter": median_ms(load_delete, args.repeats),
        "reload base + adapter": median_ms(lambda: PeftModel.from_pretrained(load_base(), dirs["t1"]),
                                           max(3, args.repeats // 4)),
    }
    reload_ms = swap["reload base + adapter"]
    print("\nswap latency (median)")
    for k, v in swap.items():
        print(f"  {k:32} {v:10.3f} ms   reload / this = {reload_ms / v:8.1f}")

    # --- merged vs unmerged forward ------------------------------------------------------------------------------
    torch.manual_seed(0)
    vocab = model.config.vocab_size
    x = torch.randint(5, vocab, (args.batch, args.seq))
    model.set_adapter("t0")
    merged = copy.deepcopy(model).merge_and_unload().eval()
    plain = load_base()
    with torch.no_grad():
        diff = (merged(x).logits - model(x).logits).abs().max().item()
        fwd = interleaved_ms({"unmerged": lambda: model(x), "merged": lambda: merged(x), "base": lambda: plain(x)},
                             args.repeats)
    print(f"\nforward of {args.batch}×{args.seq} tokens (median; merged vs unmerged max |Δlogit| {diff:.2e})")
    for k, v in fwd.items():
        print(f"  {k:10} {v:9.2f} ms")
    print(f"  ratio unmerged / merged: {fwd['unmerged'] / fwd['merged']:.3f}")

    # --- mixed-adapter batch vs one batch per adapter -------------------------------------------------------------
    names = [TENANTS[i % len(TENANTS)] for i in range(args.batch)]

    def per_adapter():
        for t in TENANTS:
            rows = [i for i, n in enumerate(names) if n == t]
            model.set_adapter(t)
            model(x[rows])

    with torch.no_grad():
        mixed = interleaved_ms({"mixed": lambda: model(x, adapter_names=names), "per_adapter": per_adapter},
                               args.repeats)
    print(f"\n{args.batch} rows over {len(TENANTS)} adapters (median)")
    print(f"  one mixed batch (adapter_names=)      {mixed['mixed']:9.2f} ms")
    print(f"  one batch per adapter (set_adapter)   {mixed['per_adapter']:9.2f} ms")
    print(f"  ratio per-adapter / mixed: {mixed['per_adapter'] / mixed['mixed']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
