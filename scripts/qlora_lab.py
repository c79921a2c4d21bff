"""Lab 02 as a script: QLoRA SFT of a profile's base model on its Dolly-format data, one epoch.

    python scripts/qlora_lab.py --profile tiny                       # CPU, seconds (the notebook's lab)
    python scripts/qlora_lab.py --profile a100                       # Mistral-7B + Dolly-15k on one GPU (needs the hub)
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/qlora_lab.py --profile a100
    accelerate launch --config_file configs/accelerate/fsdp_qlora.yaml scripts/qlora_lab.py --profile a100
    accelerate launch --config_file configs/accelerate/cpu_ddp.yaml scripts/qlora_lab.py --profile tiny   # 2 CPU procs

Every hyperparameter comes from ``course/profiles.py`` (the seed's: NF4 + double quantization, LoRA r=16 α=32 on
every linear layer of the blocks — peft's ``all-linear``, read from the architecture — ``paged_adamw_8bit``, cosine
with 3 % warmup, gradient accumulation, one epoch). Checkpoints go to ``--output-dir``; ``--resume`` continues a
killed run from its last checkpoint. The last line printed (rank 0) is ``RESULT {json}`` with the run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=None, help="tiny | small | a100 (default: COURSE_PROFILE or tiny)")
    ap.add_argument("--output-dir", default="runs/qlora_lab", help="checkpoints and the final adapter go here")
    ap.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (default: one epoch)")
    ap.add_argument("--max-train-examples", type=int, default=None, help="use only the first N training records")
    ap.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: only at the end)")
    ap.add_argument("--resume", action="store_true", help="resume from the last checkpoint in --output-dir")
    ap.add_argument("--kill-after-step", type=int, default=0,
                    help="testing: SIGKILL this process right after the checkpoint of this step is written")
    ap.add_argument("--no-eval", action="store_true", help="skip the tiny profile's exact match before/after")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    return ap.parse_args(argv)


def to_conversation(rec):
    """A Dolly record as trl's conversational prompt/completion pair (context before the instruction)."""
    user = f"{rec['context']}\n\n{rec['instruction']}" if rec["context"] else rec["instruction"]
    return {"prompt": [{"role": "user", "content": user}], "completion": [{"role": "assistant", "content": rec["response"]}]}


def load_quantized(profile):
    """The profile's base in 4-bit, placed for this process (one GPU per process; FSDP shards it itself)."""
    import torch
    from transformers import AutoModelForCausalLM

    from course.kbit import keep_training_layout
    from course.loading import DTYPES, bnb_config

    qcfg = bnb_config(profile)
    dtype = DTYPES["bfloat16" if profile.device == "cuda" else profile.compute_dtype]
    kwargs = {"quantization_config": qcfg, "dtype": dtype}
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        qcfg.bnb_4bit_quant_storage = dtype            # FSDP flattens parameters: 4-bit storage must share the dtype
    elif profile.device == "cuda" and torch.cuda.is_available():
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    else:
        kwargs["device_map"] = "cpu"
    model = AutoModelForCausalLM.from_pretrained(profile.model, **kwargs)
    keep_training_layout(model)                         # CPU: keep bitsandbytes from repacking (course/kbit.py)
    return model


class KillAfterSave:
    """Testing aid: SIGKILL the process once the checkpoint of ``step`` is on disk (a crash, not a clean exit)."""

    def __init__(self, step):
        self.step = step

    def __getattr__(self, name):                        # every other TrainerCallback event: no-op
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def last_checkpoint(output_dir: Path):
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None


def main(argv=None):
    a = parse_args(argv)
    from course.notebook import quiet, seed_everything

    quiet(a.profile)
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from trl import SFTConfig, SFTTrainer

    from course.loading import DTYPES, load_instruction_data, load_tokenizer
    from course.profiles import get_profile
    from course.tinyworld.templates import TEMPLATES

    if a.threads:
        torch.set_num_threads(a.threads)
    seed_everything(0)
    p = get_profile(a.profile)
    out = Path(a.output_dir)
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    log = print if rank == 0 else (lambda *x, **k: None)
    log(f"profile {p.name} · model {p.model} · world size {world} · output {out}")

    tok = load_tokenizer(p)
    if tok.chat_template is None:                       # Mistral-7B base has none: Alpaca, the classic Dolly format
        tok.chat_template = TEMPLATES["alpaca"]
    data = load_instruction_data(p)
    train = data["train"]
    if a.max_train_examples:
        train = train.select(range(min(a.max_train_examples, len(train))))
    train_ds = Dataset.from_list([to_conversation(r) for r in train])

    model = load_quantized(p)
    heldout, em_before = None, None
    if p.name == "tiny" and not a.no_eval and rank == 0 and not a.resume:
        from course.generation import evaluate_exact_match
        from course.tinyworld.tasks import FAMILIES, Example

        heldout = [Example(r["instruction"], r["context"], r["response"], r["category"],
                           FAMILIES[r["category"]].parse(r["response"])[0]) for r in data["test"]]
        em_before, _ = evaluate_exact_match(model, tok, heldout)
        log(f"exact match before: {em_before:.3f}")

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=p.gradient_checkpointing)
    lora = LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    on_cpu = p.device == "cpu" or not torch.cuda.is_available()
    args = SFTConfig(
        output_dir=str(out), num_train_epochs=p.epochs, max_steps=a.max_steps,
        per_device_train_batch_size=p.per_device_batch_size, gradient_accumulation_steps=p.gradient_accumulation_steps,
        learning_rate=p.learning_rate, lr_scheduler_type=p.lr_scheduler, warmup_steps=p.warmup_ratio, optim=p.optim,
        gradient_checkpointing=p.gradient_checkpointing, bf16=p.compute_dtype == "bfloat16" and not on_cpu,
        use_cpu=on_cpu, max_length=p.max_seq_len, completion_only_loss=True, logging_steps=1, report_to=[],
        save_strategy="steps" if a.save_steps else "no", save_steps=a.save_steps or 500, seed=0, data_seed=0,
        disable_tqdm=p.name == "tiny", dataloader_num_workers=0, ddp_find_unused_parameters=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tok, peft_config=lora)
    for prm in trainer.model.parameters():             # trl casts a quantized model's adapters to bf16; keep the
        if prm.requires_grad:                          # profile's compute dtype (bf16 on a100, fp32 on tiny)
            prm.data = prm.data.to(DTYPES["bfloat16" if not on_cpu else p.compute_dtype])
    if p.name == "tiny":
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if a.kill_after_step:
        trainer.add_callback(KillAfterSave(a.kill_after_step))
    resume = last_checkpoint(out) if a.resume else None
    if a.resume and resume is None:
        raise SystemExit(f"--resume: no checkpoint-* folder in {out}")
    log(f"resuming from {resume}" if resume else "starting from scratch")
    targets = sorted({n.split(".")[-1] for n in trainer.model.peft_config["default"].target_modules})
    n_train = sum(q.numel() for q in trainer.model.parameters() if q.requires_grad)
    log(f"LoRA r={p.lora_r} α={p.lora_alpha} on {targets}: {n_train:,} trainable parameters")

    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - t0
    losses = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}

    adapter = out / "adapter"
    trainer.save_model(str(adapter))
    result = {"profile": p.name, "world_size": world, "global_step": trainer.state.global_step,
              "max_steps": trainer.state.max_steps, "resumed_from": resume, "train_seconds": round(seconds, 2),
              "losses": losses, "targets": targets, "trainable": n_train,
              "effective_batch": p.per_device_batch_size * p.gradient_accumulation_steps * world}
    if world > 1 and torch.distributed.is_initialized():   # DDP keeps the replicas identical: check it
        vec = torch.cat([q.detach().float().flatten().cpu() for q in trainer.model.parameters() if q.requires_grad])
        gathered = [torch.zeros_like(vec) for _ in range(world)]
        torch.distributed.all_gather(gathered, vec)
        result.update(backend=torch.distributed.get_backend(),
                      replicas_equal=all(torch.equal(g, gathered[0]) for g in gathered))
    if rank == 0:
        size = (adapter / "adapter_model.safetensors").stat().st_size
        result["adapter_bytes"] = size
        log(f"adapter saved to {adapter}: {size / 2**20:.3f} MiB")
        if heldout is not None:
            from course.generation import evaluate_exact_match

            em_after, _ = evaluate_exact_match(trainer.model, tok, heldout)
            result.update(exact_match_before=em_before, exact_match_after=em_after)
            log(f"exact match {em_before:.3f} → {em_after:.3f}")
        print("RESULT " + json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
