"""Build the tiny world's assets deterministically: tokenizer, data files, and the pretrained base model.

Run with ``course build-base`` (a few minutes on 2 CPU cores). Everything is seeded; the result is
saved with ``save_pretrained`` (safetensors) into ``course/assets/tiny-base`` together with
``build_info.json`` (config, seed, steps, final loss, held-out perplexity, unigram baseline, build time,
chat-format exact match of the base).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

from .. import paths
from ..generation import evaluate_exact_match
from . import corpus, preferences, tasks
from .tokenizer import train_tokenizer

SEED = 0
SEQ_LEN = 128
MODEL_CONFIG = dict(
    hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
    tie_word_embeddings=False, torch_dtype="float32",
)
TRAIN = dict(steps=1000, batch_size=32, lr=3e-3, warmup=30, weight_decay=0.01, seed=SEED)


def make_config(tokenizer) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **MODEL_CONFIG,
    )


def pack(tokenizer, docs: list[str], seq_len: int = SEQ_LEN) -> torch.Tensor:
    """Tokenize ``<s> doc </s>`` for every document, concatenate, cut into rows of ``seq_len``."""
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=True)["input_ids"]:
        ids.extend(enc + [tokenizer.eos_token_id])
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


@torch.no_grad()
def perplexity(model, rows: torch.Tensor, batch_size: int = 64) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        b = rows[i:i + batch_size]
        out = model(input_ids=b, labels=b)
        n = b[:, 1:].numel()
        total += out.loss.item() * n
        count += n
    return math.exp(total / count)


def unigram_perplexity(train_rows: torch.Tensor, eval_rows: torch.Tensor, vocab_size: int) -> float:
    """Perplexity of an add-one-smoothed unigram model fitted on the training tokens (the baseline)."""
    counts = Counter(train_rows.flatten().tolist())
    total = sum(counts.values()) + vocab_size
    ids = eval_rows[:, 1:].flatten().tolist()
    nll = -sum(math.log((counts.get(i, 0) + 1) / total) for i in ids) / len(ids)
    return math.exp(nll)


def write_data_files() -> dict[str, int]:
    """The tiny instruction data (Dolly-15k record format) and preference set, as JSON lines."""
    sizes = {}
    for folder, rows in (
        (paths.TINY_DOLLY, {"train": [e.to_dolly() for e in tasks.examples("train")],
                            "test": [e.to_dolly() for e in tasks.examples("heldout")]}),
        (paths.TINY_PREFS, {"train": [p.as_dict() for p in preferences.preferences("train")],
                            "test": [p.as_dict() for p in preferences.preferences("heldout")]}),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        for split, recs in rows.items():
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
            sizes[f"{folder.name}/{split}"] = len(recs)
    return sizes


def build(out: Path = paths.TINY_BASE, steps: int = TRAIN["steps"], progress: bool = True) -> dict:
    t0 = time.time()
    torch.manual_seed(SEED)
    sizes = write_data_files()
    train_docs, held_docs = corpus.train_corpus(), corpus.heldout_corpus()
    questions = [e.instruction for e in tasks.examples("train") + tasks.examples("heldout")]
    tokenizer = train_tokenizer(train_docs + questions)
    train_rows, held_rows = pack(tokenizer, train_docs), pack(tokenizer, held_docs)

    model = LlamaForCausalLM(make_config(tokenizer))
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN["lr"], weight_decay=TRAIN["weight_decay"], betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / TRAIN["warmup"]) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    gen = torch.Generator().manual_seed(SEED)
    losses = []
    model.train()
    for step in tqdm(range(steps), desc="pretraining tiny base", disable=not progress):
        idx = torch.randint(len(train_rows), (TRAIN["batch_size"],), generator=gen)
        batch = train_rows[idx]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    train_time = time.time() - t0

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id,
                                            tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                            tokenizer.convert_tokens_to_ids("<|eot_id|>")]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)

    held_ppl = perplexity(model, held_rows)
    uni_ppl = unigram_perplexity(train_rows, held_rows, len(tokenizer))
    heldout = tasks.examples("heldout")
    em_chat, _ = evaluate_exact_match(model, tokenizer, heldout)
    info = {
        "config": MODEL_CONFIG, "vocab_size": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters()),
        "train": {**TRAIN, "steps": steps, "seq_len": SEQ_LEN, "train_tokens": train_rows.numel(),
                  "final_loss_mean_last_20": sum(losses[-20:]) / 20},
        "heldout_perplexity": held_ppl, "unigram_baseline_perplexity": uni_ppl,
        "heldout_chat_exact_match": em_chat, "data_files": sizes,
        "build_seconds": round(time.time() - t0, 1), "train_seconds": round(train_time, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "loss_curve_every_10": [round(x, 4) for x in losses[::10]],
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
