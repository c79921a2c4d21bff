"""``course memory``: the training-memory calculator (course.memory) on a known model or any config.json."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "memory", help="estimate training memory (weights, grads, optimizer, LoRA, activations)",
        description="Estimate the memory of one training step, component by component, for a Llama-style model: "
                    "full fine-tune, LoRA, or QLoRA. Known models: tiny, mistral-7b, llama-2-7b, llama-2-70b, "
                    "llama-3-8b, llama-3-70b; or pass an HF config.json (or a folder holding one).")
    p.add_argument("--model", default="mistral-7b", help="known name or path to config.json (default mistral-7b)")
    p.add_argument("--method", choices=["full", "lora", "qlora"], default="qlora")
    p.add_argument("--optimizer", choices=["adamw", "adamw_8bit", "paged_adamw_8bit", "sgd"], default=None,
                   help="default: adamw for full/lora, paged_adamw_8bit for qlora")
    p.add_argument("--seq", type=int, default=1024, help="sequence length (default 1024)")
    p.add_argument("--batch", type=int, default=1, help="micro-batch size per step (default 1)")
    p.add_argument("--r", type=int, default=16, help="LoRA rank (default 16)")
    p.add_argument("--grad-checkpointing", action="store_true", help="keep only each block's input")
    p.add_argument("--master-weights", action="store_true", help="full fine-tune: add an fp32 master copy")
    p.add_argument("--gpu-gib", type=float, default=80, help="GPU memory in GiB for the fit line (default 80)")
    p.add_argument("--unit", choices=["GB", "GiB", "MiB", "MB", "B"], default="GB")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_memory)


def cmd_memory(args) -> int:
    from ..memory import GiB, estimate, model_spec

    try:
        spec = model_spec(args.model)
    except ValueError as e:
        print(f"error: {e}")
        return 2
    optimizer = args.optimizer or ("paged_adamw_8bit" if args.method == "qlora" else "adamw")
    est = estimate(spec, method=args.method, optimizer=optimizer, seq_len=args.seq, batch=args.batch, r=args.r,
                   grad_checkpointing=args.grad_checkpointing, master_weights=args.master_weights)
    if args.json:
        print(json.dumps(est.as_dict(), indent=2))
    else:
        gpu = int(args.gpu_gib * GiB)
        print(est.table(unit=args.unit, gpu_bytes=gpu, gpu_name=f"{args.gpu_gib:g} GiB GPU"))
    return 0
