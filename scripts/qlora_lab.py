"""Lab 02 as a script: QLoRA SFT of a profile's base model on its Dolly-format data, one epoch.

    python scripts/qlora_lab.py --profile tiny                       # CPU, seconds (the notebook's lab)
    python scripts/qlora_lab.py --profile small                      # CPU, SmolLM2-135M (course models fetch small)
    python scripts/qlora_lab.py --profile a100                       # Mistral-7B + Dolly-15k on one GPU (needs the hub)
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/qlora_lab.py --profile a100
    accelerate launch --config_file configs/accelerate/fsdp_qlora.yaml scripts/qlora_lab.py --profile a100
    accelerate launch --config_file configs/accelerate/cpu_ddp.yaml scripts/qlora_lab.py --profile tiny   # 2 CPU procs

Every hyperparameter comes from ``course/profiles.py`` (the seed's: NF4 + double quantization, LoRA r=16 α=32 on
every linear layer of the blocks — peft's ``all-linear``, read from the architecture — ``paged_adamw_8bit``, cosine
with 3 % warmup, gradient accumulation, one epoch). Checkpoints go to ``--output-dir``; ``--resume`` continues a
killed run from its last checkpoint. The last line printed (rank 0) is ``RESULT {json}`` with the run's figures.

The run, step by step (the seed's §5.1 and §5.2; the same code on every profile):
1. the tokenizer; a base model without a chat template (Mistral-7B) gets ``course.chat.BASE_TEMPLATE`` (Alpaca with
   its BOS exactly once under trl's ``add_special_tokens=False``);
2. the data: train records, and a held-out eval split (capped by the profile's ``max_eval_examples``);
3. the base in 4-bit (NF4 + double quantization) on the profile's device (a ``cuda`` profile without CUDA stops
   with an error); ``prepare_model_for_kbit_training`` except on the FSDP-QLoRA path, where it would upcast
   parameters FSDP must keep in one dtype (trl skips it there too);
4. eval loss before, ``SFTTrainer`` training with LoRA on ``all-linear``, eval loss after; the seed's sanity bands
   (initial loss ~2-3, final ~1.0-1.5 on Dolly) printed, and warned about on full-size (hub) profiles;
5. adapter **and tokenizer** saved to ``OUT/adapter``;
6. a fresh 4-bit base + the saved adapter reloaded from disk -> same logits as the trained model, then greedy
   generation on held-out prompts;
7. the merge, dequantize-first: the 4-bit base is dequantized to the profile's compute dtype (bf16 on a100) and the
   adapter merged into *those* weights (the ones it was trained against; merging into a re-quantized or freshly
   loaded base adds quantization error), saved with the tokenizer to ``OUT/merged`` and reloaded to compare logits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import replace
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
    ap.add_argument("--no-eval", action="store_true", help="skip the exact match before/after on tiny-world data")
    ap.add_argument("--eval-examples", type=int, default=None,
                    help="held-out records for the eval loss (default: all, within the profile's max_eval_examples)")
    ap.add_argument("--max-seq-len", type=int, default=None, help="override the profile's max_seq_len")
    ap.add_argument("--no-tail", action="store_true", help="stop after saving the adapter (no reload, generate, merge)")
    ap.add_argument("--generate", type=int, default=2, help="held-out prompts to generate for after reloading")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    ap.add_argument("--model", default=None, help="override the profile's model (a local folder: e.g. the random-weight "
                                                   "Mistral-7B that benchmarks/qlora_gpu.py --workdir leaves)")
    ap.add_argument("--tokenizer", default=None, help="load the tokenizer from here instead of the model's folder")
    ap.add_argument("--dataset", default=None, help="override the profile's dataset (a local Dolly-format folder)")
    return ap.parse_args(argv)


def to_conversation(rec):
    """A Dolly record as trl's conversational prompt/completion pair (context before the instruction)."""
    user = f"{rec['context']}\n\n{rec['instruction']}" if rec["context"] else rec["instruction"]
    return {"prompt": [{"role": "user", "content": user}], "completion": [{"role": "assistant", "content": rec["response"]}]}


def using_fsdp() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


SEED_BANDS = {"initial": (2.0, 3.0), "final": (1.0, 1.5)}      # the seed's §5.3 sanity checks (Dolly, 7B base)


def sanity_bands(losses: dict, full_size: bool, log=print) -> dict:
    """The seed's loss bands beside this run's: first logged loss, and the mean of the last tenth of the run.

    On a full-size run (a hub profile: Mistral-7B on Dolly) a figure outside its band is a warning (printed to
    stderr and listed in the result), never an error: the bands are the seed's rough expectations, not guarantees.
    Tiny and small runs train on the tiny-world data, where the bands do not apply; they are printed for comparison.
    """
    steps = sorted(losses, key=int)
    if not steps:
        return {}
    tail = steps[-max(1, len(steps) // 10):]
    figures = {"initial": losses[steps[0]], "final": sum(losses[s] for s in tail) / len(tail)}
    out = {"initial_loss": round(figures["initial"], 4), "final_loss": round(figures["final"], 4), "warnings": []}
    for k, (lo, hi) in SEED_BANDS.items():
        inside = lo <= figures[k] <= hi
        log(f"seed sanity band, {k} loss ~{lo}-{hi}: this run {figures[k]:.3f}"
            f"{'' if inside else ' (outside)'}{'' if full_size else ' [tiny-world data: the band is for Dolly on a 7B base]'}")
        if full_size and not inside:
            msg = f"WARNING: {k} training loss {figures[k]:.3f} is outside the seed's ~{lo}-{hi} band"
            print(msg, file=sys.stderr, flush=True)
            out["warnings"].append(msg)
    return out


def probe_logits(model, ids):
    """Last-position logits of one fixed prompt (float32, CPU): the fingerprint reload and merge must reproduce."""
    import torch

    with torch.no_grad():
        return model(input_ids=ids.to(next(model.parameters()).device)).logits[0, -1].float().cpu()


def replicas_equal(trainer, world: int) -> bool:
    """DDP keeps the replicas identical: gather every rank's trainable vector and compare (on the comm device)."""
    import torch

    dist = torch.distributed
    vec = torch.cat([q.detach().float().flatten() for q in trainer.model.parameters() if q.requires_grad])
    # NCCL moves only CUDA tensors; gloo only CPU ones
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    vec = vec.to(device)
    gathered = [torch.zeros_like(vec) for _ in range(world)]
    dist.all_gather(gathered, vec)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def load_quantized(profile):
    """The profile's base in 4-bit, placed for this process (one GPU per process; FSDP shards it itself)."""
    import torch
    from transformers import AutoModelForCausalLM

    from course.kbit import keep_training_layout
    from course.loading import DTYPES, bnb_config

    qcfg = bnb_config(profile)
    dtype = DTYPES["bfloat16" if profile.device == "cuda" else profile.compute_dtype]
    kwargs = {"quantization_config": qcfg, "dtype": dtype}
    if using_fsdp():
        qcfg.bnb_4bit_quant_storage = dtype            # FSDP flattens parameters: 4-bit storage must share the dtype
    elif profile.device == "cuda":                     # (require_device has checked that CUDA is there)
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

    from course.loading import DTYPES, DeviceMissing, load_instruction_data, load_tokenizer, require_device
    from course.profiles import get_profile

    p = get_profile(a.profile)
    local = {k: v for k, v in (("model", a.model), ("dataset", a.dataset)) if v}
    if local:                                           # local folders: nothing to download, no converted source
        p = replace(p, **local, needs_hub=False, source=None)
    try:
        require_device(p)                               # a cuda profile without CUDA: an error, not a CPU crawl
    except DeviceMissing as e:
        raise SystemExit(f"qlora_lab: {e}") from None

    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from trl import SFTConfig, SFTTrainer

    from course.chat import ensure_chat_template
    from course.paths import TINY_DOLLY

    if a.threads:
        torch.set_num_threads(a.threads)
    seed_everything(0)
    out = Path(a.output_dir)
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    fsdp = using_fsdp()
    log = print if rank == 0 else (lambda *x, **k: None)
    log(f"profile {p.name} · model {p.label} · world size {world}{' · FSDP' if fsdp else ''} · output {out}")

    tok = load_tokenizer(replace(p, model=a.tokenizer) if a.tokenizer else p)
    template = ensure_chat_template(tok)                # a base model without one: Alpaca with its BOS once
    log(f"chat template: {template}")
    data = load_instruction_data(p)
    train = data["train"]
    if a.max_train_examples:
        train = train.select(range(min(a.max_train_examples, len(train))))
    heldout_records = data["test"]
    n_eval = a.eval_examples if a.eval_examples is not None else p.eval_count(len(heldout_records))
    heldout_records = heldout_records.select(range(min(n_eval, len(heldout_records))))
    train_ds = Dataset.from_list([to_conversation(r) for r in train])
    eval_ds = Dataset.from_list([to_conversation(r) for r in heldout_records]) if len(heldout_records) else None
    max_len = a.max_seq_len or p.max_seq_len

    model = load_quantized(p)
    heldout, em_before = None, None
    tiny_world = p.dataset == str(TINY_DOLLY)           # exact-match scorers exist for the tiny-world tasks only
    if tiny_world and not a.no_eval and rank == 0 and not a.resume:
        from course.generation import evaluate_exact_match
        from course.tinyworld.tasks import FAMILIES, Example

        heldout = [Example(r["instruction"], r["context"], r["response"], r["category"],
                           FAMILIES[r["category"]].parse(r["response"])[0]) for r in heldout_records]
        em_before, _ = evaluate_exact_match(model, tok, heldout, max_new_tokens=p.max_new_tokens)
        log(f"exact match before: {em_before:.3f} on {len(heldout)} held-out records")

    if not fsdp:
        # casts norms / LM head to fp32 and enables input gradients for checkpointing; on FSDP-QLoRA that upcast
        # would break the single storage dtype FSDP flattens, so (as trl does for sharded QLoRA) it is skipped
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=p.gradient_checkpointing)
    lora = LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    on_cpu = p.device == "cpu"
    max_steps = a.max_steps if a.max_steps > 0 else (p.max_train_steps or -1)
    args = SFTConfig(
        output_dir=str(out), num_train_epochs=p.epochs, max_steps=max_steps,
        per_device_train_batch_size=p.per_device_batch_size, gradient_accumulation_steps=p.gradient_accumulation_steps,
        # the "before" eval runs inside train() (eval_on_start): a trainer.evaluate() *before* train() under DDP left
        # the training model unwrapped here (transformers 5.24: replicas diverged; docs/PITFALLS.md)
        per_device_eval_batch_size=p.per_device_batch_size, eval_strategy="no", prediction_loss_only=True,
        eval_on_start=eval_ds is not None and not a.resume,
        learning_rate=p.learning_rate, lr_scheduler_type=p.lr_scheduler, warmup_steps=p.warmup_ratio, optim=p.optim,
        gradient_checkpointing=p.gradient_checkpointing, bf16=p.compute_dtype == "bfloat16" and not on_cpu,
        use_cpu=on_cpu, max_length=max_len, completion_only_loss=True, logging_steps=1, report_to=[],
        save_strategy="steps" if a.save_steps else "no", save_steps=a.save_steps or 500, seed=0, data_seed=0,
        disable_tqdm=p.is_local, dataloader_num_workers=0, ddp_find_unused_parameters=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok,
                         peft_config=lora)
    for prm in trainer.model.parameters():             # trl casts a quantized model's adapters to bf16; keep the
        if prm.requires_grad:                          # profile's compute dtype (bf16 on a100, fp32 on tiny)
            prm.data = prm.data.to(DTYPES["bfloat16" if not on_cpu else p.compute_dtype])
    if p.is_local:
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
    # the adapter starts at B = 0, so the eval at step 0 is the base model's loss on the format
    eval_before = next((h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h and h["step"] == 0), None)
    if eval_before is not None:
        log(f"eval loss before: {eval_before:.4f} on {len(eval_ds)} held-out records")
    eval_after = trainer.evaluate()["eval_loss"] if eval_ds is not None else None
    if eval_after is not None:
        log(f"eval loss after: {eval_after:.4f}" + (f" (before {eval_before:.4f})" if eval_before is not None else ""))

    adapter = out / "adapter"
    if fsdp:                                           # gather the sharded adapter into one file for saving
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(adapter))
    if rank == 0:
        tok.save_pretrained(adapter)                   # the adapter is served with the tokenizer it was trained with
    result = {"profile": p.name, "world_size": world, "global_step": trainer.state.global_step,
              "max_steps": trainer.state.max_steps, "resumed_from": resume, "train_seconds": round(seconds, 2),
              "losses": losses, "targets": targets, "trainable": n_train, "chat_template": template,
              "eval_examples": len(eval_ds) if eval_ds is not None else 0,
              "eval_loss_before": eval_before, "eval_loss_after": eval_after,
              "effective_batch": p.per_device_batch_size * p.gradient_accumulation_steps * world}
    result["sanity"] = sanity_bands({str(k): v for k, v in losses.items()}, full_size=not p.is_local, log=log)
    if world > 1 and torch.distributed.is_initialized() and not fsdp:   # FSDP shards differ by design
        result.update(backend=torch.distributed.get_backend(), replicas_equal=replicas_equal(trainer, world))
    trainer.accelerator.wait_for_everyone()
    if rank != 0:
        return result

    size = (adapter / "adapter_model.safetensors").stat().st_size
    result["adapter_bytes"] = size
    result["adapter_files"] = sorted(f.name for f in adapter.iterdir() if f.is_file())
    log(f"adapter + tokenizer saved to {adapter}: {size / 2**20:.3f} MiB of adapter weights")
    if heldout is not None:
        from course.generation import evaluate_exact_match

        em_after, _ = evaluate_exact_match(trainer.model, tok, heldout, max_new_tokens=p.max_new_tokens)
        result.update(exact_match_before=em_before, exact_match_after=em_after)
        log(f"exact match {em_before:.3f} → {em_after:.3f}")
    if not a.no_tail:
        result.update(tail(p, trainer, tok, heldout_records, adapter, out, a.generate, log))
    print("RESULT " + json.dumps(result), flush=True)
    return result


def tail(p, trainer, tok, records, adapter: Path, out: Path, n_generate: int, log) -> dict:
    """Steps 6-7: reload a fresh base + the saved adapter, generate; dequantize-first merge, save, reload, compare."""
    import gc

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from course.generation import chat_prompt, generate
    from course.kbit import keep_training_layout
    from course.loading import DTYPES

    rec = records[0] if len(records) else {"instruction": "Say hello.", "context": ""}
    prompt = chat_prompt(tok, rec["instruction"], context=rec["context"])
    probe = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    trained = trainer.model.eval()
    ref = probe_logits(trained, probe)
    del trainer, trained
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    t0 = time.perf_counter()
    tok2 = AutoTokenizer.from_pretrained(adapter)      # what a server would load: the adapter folder's tokenizer
    reloaded = PeftModel.from_pretrained(load_quantized(p), adapter).eval()
    reload_diff = (probe_logits(reloaded, probe) - ref).abs().max().item()
    log(f"reloaded fresh base + adapter in {time.perf_counter() - t0:.1f} s: max |Δ logit| vs trained {reload_diff:.2e}")
    prompts = [chat_prompt(tok2, r["instruction"], context=r["context"]) for r in list(records)[:n_generate]]
    gens = generate(reloaded, tok2, prompts, max_new_tokens=p.max_new_tokens) if prompts else []
    for r, g in zip(records, gens):
        log(f"  Q: {r['instruction'][:70]!r}\n  A: {g[:160]!r}  (reference: {r['response'][:60]!r})")

    # dequantize-first merge: W_merged = dequant(W_nf4) + (α/r)·B·A, in the profile's compute dtype
    merge_dtype = DTYPES[p.compute_dtype]
    t0 = time.perf_counter()
    base = reloaded.unload()                           # the 4-bit base without LoRA layers
    del reloaded
    # on a CPU, bitsandbytes may have repacked the 4-bit bytes for inference during generate(): dequantizing those
    # gives garbage (docs/PITFALLS.md). load_quantized switched the repacking off; undo it here should it have run
    keep_training_layout(base)
    base = base.dequantize(dtype=merge_dtype)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload().eval()
    merged_dir = out / "merged"
    merged.save_pretrained(merged_dir)
    tok2.save_pretrained(merged_dir)
    del merged, base
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    device_map = {"": 0} if p.device == "cuda" else "cpu"
    again = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=merge_dtype, device_map=device_map).eval()
    merged_diff = (probe_logits(again, probe) - ref).abs().max().item()
    same_top = bool(probe_logits(again, probe).argmax() == ref.argmax())
    merged_bytes = sum(f.stat().st_size for f in merged_dir.glob("*.safetensors"))
    del again
    # for contrast: the same adapter merged into the original full-precision base (not the weights it trained on)
    from course.loading import load_base

    naive = PeftModel.from_pretrained(load_base(p, dtype=p.compute_dtype), adapter).merge_and_unload().eval()
    naive_diff = (probe_logits(naive, probe) - ref).abs().max().item()
    del naive
    log(f"merged ({p.compute_dtype}, dequantize-first) and saved with the tokenizer to {merged_dir} "
        f"({merged_bytes / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s: max |Δ logit| vs trained "
        f"{merged_diff:.2e}, same next token: {same_top}; merged into the original base instead: {naive_diff:.2e}")
    return {"reload_max_abs_logit_diff": reload_diff, "generations": gens, "merged_dir": str(merged_dir),
            "merged_dtype": p.compute_dtype, "merged_bytes": merged_bytes, "merged_max_abs_logit_diff": merged_diff,
            "merged_into_original_max_abs_logit_diff": naive_diff,
            "merged_same_next_token": same_top,
            "merged_files": sorted(f.name for f in merged_dir.iterdir() if f.is_file())}


if __name__ == "__main__":
    main()
