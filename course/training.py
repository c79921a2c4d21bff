"""Quick supervised fine-tuning on tiny-world examples with trl's ``SFTTrainer``.

Infrastructure for the days that need a fine-tuned model as a starting point (an SFT policy for RLHF,
task adapters for serving, the SFT arm of the Day 6 comparison). The label masking is trl's own
(``completion_only_loss`` on prompt/completion data); the Day 4 lesson has students build it by hand.
"""

from __future__ import annotations

import copy
import tempfile

import torch

from .tinyworld.tasks import Example


def conversational(examples: list[Example]) -> list[dict]:
    """Prompt/completion records in trl's conversational form (the prompt is masked from the loss)."""
    return [
        {"prompt": [{"role": "user", "content": f"{e.context}\n\n{e.instruction}" if e.context else e.instruction}],
         "completion": [{"role": "assistant", "content": e.response}]}
        for e in examples
    ]


def with_template(tokenizer, template: str | None):
    """A copy of the tokenizer whose default chat template is the named one (None = unchanged)."""
    if template is None:
        return tokenizer
    tok = copy.deepcopy(tokenizer)
    # the named template becomes the default (it must come last: the tokenizer's own dict has a "default" too)
    tok.chat_template = {**tokenizer.chat_template, "default": tokenizer.get_chat_template(template)}
    return tok


def restore_forward(model):
    """Undo trl's per-instance ``forward`` patch (its fused LM head) on ``model`` and its submodules; return model.

    trl replaces ``model.forward`` with a closure over the *original* model's bound forward, so a ``copy.deepcopy``
    of a trained model would silently compute with the original's weights (and give its own parameters no
    gradient). Without the patch the class's ``forward`` runs, which is what trl calls for ordinary forwards anyway.
    """
    for m in model.modules():
        f = m.__dict__.get("forward")
        code = getattr(getattr(f, "__func__", None), "__code__", None)      # functools.wraps keeps the old __name__
        if code is not None and code.co_name == "_fused_forward":
            del m.__dict__["forward"]
    return model


def use_cpu(model) -> bool:
    """True when ``model`` lives on the CPU (the tiny and small profiles), False on a GPU (``a100``).

    The trainers' ``use_cpu`` follows where ``course.loading.load_base`` put the model (the profile's device),
    so the same call trains on the CPU on tiny and on the GPU on a100.
    """
    return next(model.parameters()).device.type == "cpu"


def lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.0, targets="all-linear"):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")


def train_sft(model, tokenizer, examples: list[Example], *, template: str | None = None, lora=None,
              max_steps: int = 150, learning_rate: float = 3e-3, batch_size: int = 16, seed: int = 0,
              warmup_ratio: float = 0.03, scheduler: str = "cosine", max_length: int = 128,
              output_dir: str | None = None, progress: bool = False, adapter_dtype=None, **config):
    """Fine-tune ``model`` on ``examples`` in a chat template; return (trained model, per-step losses).

    ``lora`` is a peft ``LoraConfig`` (adapter-only training) or None (full fine-tune). Runs where the model is.
    ``adapter_dtype`` (e.g. ``torch.float32``) casts the trainable weights after trl has set the model up: trl casts
    a 4-bit model's adapters to bf16 (the QLoRA paper's setting), which a fp32-compute tiny model learns slowly in.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    out = output_dir or tempfile.mkdtemp(prefix="course-sft-")
    # trl's SFTConfig defaults to bf16=True, which on a CPU trains a float32 model under bf16 autocast; follow the
    # model's own dtype instead (the tiny profile is float32, the a100 profile loads bf16)
    config.setdefault("bf16", next(model.parameters()).dtype == torch.bfloat16)
    # trl's configs also default to gradient checkpointing, which re-runs every forward in the backward pass: a
    # memory saving a tiny CPU model does not need (it costs ~1.7x per step there); pass True for a large model
    config.setdefault("gradient_checkpointing", False)
    args = SFTConfig(
        output_dir=out, max_steps=max_steps, learning_rate=learning_rate, per_device_train_batch_size=batch_size,
        lr_scheduler_type=scheduler, warmup_steps=warmup_ratio,  # transformers 5: a float < 1 is a ratio
        logging_steps=1, report_to=[], save_strategy="no",
        use_cpu=use_cpu(model), seed=seed, data_seed=seed, completion_only_loss=True, max_length=max_length,
        disable_tqdm=not progress, dataloader_num_workers=0, **config,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(conversational(examples)),
                         processing_class=with_template(tokenizer, template), peft_config=lora)
    if not progress:                     # with tqdm disabled, transformers prints every log dict to stdout
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if adapter_dtype is not None:
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.data = p.data.to(adapter_dtype)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    # accelerate wraps forward in autocast for mixed precision; hand back the plain model, which computes exactly
    # what it computes after save_pretrained / from_pretrained
    model = restore_forward(trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False))
    model.eval()
    model.config.use_cache = True        # trl turns the KV cache off for training; generation wants it back
    return model, losses
