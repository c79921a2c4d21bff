# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 4 · 3 — The QLoRA lab (Lab 02)
#
# Seed §5: load a 4-bit base with `BitsAndBytesConfig` (NF4, double quantization, bf16 compute), LoRA r=16, α=32 on
# q/k/v/o and up/gate/down, `paged_adamw_8bit`, cosine schedule with 3 % warmup, a large effective batch through
# gradient accumulation, `SFTTrainer` for one epoch, save the adapter — and check that it worked.
#
# One parameter picks the scale. `PROFILE = "tiny"` (default) runs the whole lab on a CPU in seconds with the shipped
# tiny Llama and the tiny world's tasks in Dolly-15k's format; `PROFILE = "a100"` runs the **same cells** on
# Mistral-7B + `databricks/databricks-dolly-15k` on one GPU (needs the hub; `scripts/qlora_lab.py` is the same lab
# as a script, with `accelerate` configs for several GPUs). Every setting comes from `course/profiles.py`:

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import math
import tempfile
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, prepare_model_for_kbit_training
from transformers.trainer_callback import PrinterCallback
from trl import SFTConfig, SFTTrainer

from course.generation import evaluate_exact_match, generate
from course.kbit import keep_training_layout, linear4bit_modules
from course.loading import DTYPES, load_base, load_instruction_data, load_tokenizer
from course.memory import MiB, measured_weight_bytes
from course.plotting import plot_curves
from course.tinyworld.tasks import FAMILIES, Example, exact_match_by_family
from course.tinyworld.templates import TEMPLATES

for k, v in profile.as_dict().items():
    print(f"{k:28s} {v}")

# %% [markdown]
# ## 1. The 4-bit base
#
# `course.loading.load_base(profile, quantize=True)` passes the seed's config to `from_pretrained`:
# `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
# bnb_4bit_compute_dtype=...)` — bf16 compute on a GPU, the profile's dtype on a CPU.
#
# One CPU-only trap, found while building this lab: bitsandbytes 0.50 **repacks** a 4-bit layer's bytes for a fast
# inference kernel on its first forward without gradients (a `generate` call), after which the backward through that
# layer computes wrong gradients. `course.kbit.keep_training_layout` switches that off; on a GPU it does nothing.

# %%
tok = load_tokenizer(profile)
if tok.chat_template is None:                 # base models such as Mistral-7B ship without one: use Alpaca's
    tok.chat_template = TEMPLATES["alpaca"]
model = load_base(profile, quantize=True)
n4 = keep_training_layout(model)
print("quantization config:", {k: v for k, v in model.config.quantization_config.to_dict().items()
                                if k.startswith("bnb_4bit") or k == "load_in_4bit"})
print(f"{n4} Linear4bit layers, e.g. {type(linear4bit_modules(model)[0]).__name__}")
n_params = sum(p.numel() for p in load_base(profile).parameters()) if profile.name == "tiny" else None
w4 = measured_weight_bytes(model)
print(f"weights held by the 4-bit model: {w4 / MiB:.3f} MiB"
      + (f" vs {n_params * 4 / MiB:.3f} MiB in fp32 ({n_params:,} parameters)" if n_params else ""))

# %% [markdown]
# ## 2. Which modules get adapters — read from the model, not typed per model
#
# The seed: *the exact `target_modules` list depends on the model architecture* (Llama/Mistral: q, k, v, o, up,
# gate, down; OPT: q, k, v, out_proj, fc1, fc2; …). Typing the list per model is how adapters silently end up on
# the attention only. Read it from the model instead.
#
# ### Exercise 1 — `lora_target_modules`
# Return the **sorted, unique last names** (`"q_proj"`, not `"model.layers.0.self_attn.q_proj"`) of every linear
# layer in the model — `torch.nn.Linear` or a subclass of it, which bitsandbytes' `Linear4bit` is — **except the
# output layer** (`model.get_output_embeddings()`, the LM head: it maps to the vocabulary and is not adapted).
# This is what peft's `target_modules="all-linear"` resolves to.

# %% nbgrader={"grade": false, "grade_id": "lora_target_modules", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lora_target_modules(model):
    """Sorted unique last-name components of the model's linear layers, the output layer excluded."""
    ### BEGIN SOLUTION
    output = model.get_output_embeddings()
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not output:
            names.add(name.split(".")[-1])
    return sorted(names)
    ### END SOLUTION


# %%
targets = lora_target_modules(model)
print("target modules:", targets)

# %% nbgrader={"grade": true, "grade_id": "lora_target_modules__llama_seven", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
from transformers import LlamaConfig as _LlamaConfig
from transformers import LlamaForCausalLM as _Llama

_tiny = _Llama(_LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1))
_want = sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
assert lora_target_modules(_tiny) == _want, f"a Llama block has seven projections {_want}; got {lora_target_modules(_tiny)}"
### BEGIN HIDDEN TESTS
assert "lm_head" not in lora_target_modules(_tiny)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "lora_target_modules__4bit_and_other_architectures", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from peft import get_peft_model as _get_peft_model
from transformers import OPTConfig as _OPTConfig
from transformers import OPTForCausalLM as _OPT

_m4 = load_base(profile, quantize=True)                    # a fresh 4-bit model (the lab's own gets adapters later)
_got = lora_target_modules(_m4)
assert _got and all("mlp" not in t and "." not in t for t in _got), "last names only, e.g. 'down_proj'"
assert {"up_proj", "gate_proj", "down_proj"} <= set(_got), f"the 4-bit model's MLP projections are Linear4bit layers (a subclass of nn.Linear): {_got}"
_opt = _OPT(_OPTConfig(vocab_size=64, hidden_size=16, ffn_dim=32, num_hidden_layers=1, num_attention_heads=2,
                       word_embed_proj_dim=16, max_position_embeddings=32))
_peft_all = sorted({n.split(".")[-1] for n in _get_peft_model(_OPT(_opt.config), LoraConfig(r=4, target_modules="all-linear")).peft_config["default"].target_modules})
assert lora_target_modules(_opt) == _peft_all, f"OPT: peft's all-linear resolves to {_peft_all}"
### BEGIN HIDDEN TESTS
assert _got == sorted({n.split(".")[-1] for n in _get_peft_model(
    load_base(profile, quantize=True), LoraConfig(r=4, target_modules="all-linear")).peft_config["default"].target_modules})
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Before training: the base model on the format
#
# Two baselines the seed's sanity checks need: the base model's **loss on the formatted data** (the first training
# step should start there — LoRA's B = 0 makes the adapted model equal to the base) and, on the tiny profile, its
# **exact match** on the held-out tasks (items the fine-tuning data never mentions). The Dolly records become
# prompt/completion conversations; trl masks the prompt (notebook 2).

# %%
data = load_instruction_data(profile)


def to_conversation(rec):
    """A Dolly record as trl's conversational prompt/completion pair."""
    user = f"{rec['context']}\n\n{rec['instruction']}" if rec["context"] else rec["instruction"]
    return {"prompt": [{"role": "user", "content": user}], "completion": [{"role": "assistant", "content": rec["response"]}]}


train_ds = Dataset.from_list([to_conversation(r) for r in data["train"]])
print(f"{len(train_ds)} training conversations; e.g. {train_ds[0]}")


def base_format_loss(model, rows, batch_size=8):
    """Mean masked (response-only) loss of the model on these conversations, as SFTTrainer would compute it."""
    losses = []
    for i in range(0, len(rows), batch_size):
        enc, n_prompt = [], []
        for r in rows[i:i + batch_size]:
            p = tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
            full = tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
            enc.append(tok(full, add_special_tokens=False)["input_ids"][:profile.max_seq_len])
            n_prompt.append(len(tok(p, add_special_tokens=False)["input_ids"]))
        pad = tok.pad({"input_ids": enc}, return_tensors="pt")
        labels = pad["input_ids"].masked_fill(pad["attention_mask"] == 0, -100)
        for b, n in enumerate(n_prompt):
            labels[b, :n] = -100
        dev = next(model.parameters()).device
        with torch.no_grad():
            losses.append(model(input_ids=pad["input_ids"].to(dev), attention_mask=pad["attention_mask"].to(dev),
                                labels=labels.to(dev)).loss.item())
    return sum(losses) / len(losses)


sample = [train_ds[i] for i in range(0, len(train_ds), max(1, len(train_ds) // 64))][:64]
base_loss = base_format_loss(model, sample)
print(f"base model's loss on the formatted responses ({len(sample)} examples): {base_loss:.3f}")

# %%
if profile.name == "tiny":
    heldout = [Example(r["instruction"], r["context"], r["response"], r["category"],
                       FAMILIES[r["category"]].parse(r["response"])[0]) for r in data["test"]]
else:                                           # Dolly has no exact-match tasks: look at a few answers instead
    heldout = None
    probe = [data["test"][i] for i in range(3)]
if heldout:
    em_before, gens_before = evaluate_exact_match(model, tok, heldout)
    print(f"exact match before training on {len(heldout)} held-out tasks: {em_before:.3f} · "
          f"e.g. {heldout[0].instruction!r} → {gens_before[0]!r}")

# %% [markdown]
# ## 4. LoRA on the 4-bit model
#
# `prepare_model_for_kbit_training` (seed §5.2) freezes the base, casts the remaining non-quantized weights (norms,
# embeddings, LM head) to fp32 for stability, and — with gradient checkpointing — makes the inputs require grad so
# checkpointed blocks still pass gradients back to the adapters.

# %%
model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=profile.gradient_checkpointing)
lora = LoraConfig(r=profile.lora_r, lora_alpha=profile.lora_alpha, lora_dropout=profile.lora_dropout,
                  target_modules=targets, task_type="CAUSAL_LM")
print(lora.r, lora.lora_alpha, sorted(lora.target_modules))

# %% [markdown]
# ## 5. How many optimizer steps, how much warmup
#
# With `per_device_train_batch_size` b, `gradient_accumulation_steps` g and N processes, one optimizer step sees
# b·g·N examples (the **effective batch**). The Trainer's arithmetic, exactly: each process's dataloader has
# ⌈⌈n/b⌉/N⌉ batches; an epoch is ⌈batches/g⌉ optimizer steps; the run is ⌈epochs · steps per epoch⌉ steps; a warmup
# *ratio* w becomes ⌈w · total⌉ warmup steps.
#
# ### Exercise 2 — `schedule`
# Return `(total_optimizer_steps, warmup_steps)`.

# %% nbgrader={"grade": false, "grade_id": "schedule", "locked": false, "schema_version": 3, "solution": true, "task": false}
def schedule(n_examples, per_device_batch, grad_accum, epochs=1.0, warmup_ratio=0.03, world_size=1):
    """(total optimizer steps, warmup steps) of a Trainer run over n_examples."""
    ### BEGIN SOLUTION
    batches = math.ceil(math.ceil(n_examples / per_device_batch) / world_size)
    steps_per_epoch = max(math.ceil(batches / grad_accum), 1)
    total = math.ceil(epochs * steps_per_epoch)
    warmup = math.ceil(total * warmup_ratio)
    return total, warmup
    ### END SOLUTION


# %%
total_steps, warmup = schedule(len(train_ds), profile.per_device_batch_size, profile.gradient_accumulation_steps,
                               profile.epochs, profile.warmup_ratio)
print(f"{len(train_ds)} examples · effective batch {profile.effective_batch_size} "
      f"({profile.per_device_batch_size} × {profile.gradient_accumulation_steps} accumulation) · "
      f"{total_steps} optimizer steps · {warmup} warmup")

# %% nbgrader={"grade": true, "grade_id": "schedule__hand_cases", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert schedule(100, 8, 4) == (4, 1), f"⌈100/8⌉ = 13 batches, ⌈13/4⌉ = 4 steps, ⌈0.12⌉ = 1 warmup step; got {schedule(100, 8, 4)}"
assert schedule(100, 8, 4, epochs=2.5, warmup_ratio=0.1) == (10, 1), "⌈2.5 · 4⌉ = 10 steps, ⌈1.0⌉ = 1"
### BEGIN HIDDEN TESTS
assert schedule(14260, 4, 4) == (892, 27), "the a100 lab: 95 % of Dolly-15k, 4 × 4"
assert schedule(14260, 4, 4, world_size=2) == (446, 14), "two GPUs halve the steps"
assert schedule(5, 8, 4) == (1, 1)
assert schedule(64, 8, 1, warmup_ratio=0.0) == (8, 0)
### END HIDDEN TESTS

# %% [markdown]
# ## 6. Training: `SFTTrainer`, one epoch
#
# The profile supplies every hyperparameter. Two details:
# - trl casts the adapters of a quantized model to **bf16** (the QLoRA paper's setting). On the tiny profile the
#   compute dtype is fp32 and bf16 adapters learn far more slowly on a 1-M-parameter model, so we cast the trainable
#   weights back to the profile's compute dtype before training (a no-op for a100, whose compute dtype is bf16).
# - `logging_steps=1` keeps every step's loss for the sanity checks.

# %%
out_dir = Path(tempfile.mkdtemp(prefix="day4-qlora-"))
args = SFTConfig(
    output_dir=str(out_dir), num_train_epochs=profile.epochs, per_device_train_batch_size=profile.per_device_batch_size,
    gradient_accumulation_steps=profile.gradient_accumulation_steps, learning_rate=profile.learning_rate,
    lr_scheduler_type=profile.lr_scheduler, warmup_steps=profile.warmup_ratio, optim=profile.optim,
    gradient_checkpointing=profile.gradient_checkpointing, bf16=profile.compute_dtype == "bfloat16",
    use_cpu=profile.device == "cpu", max_length=profile.max_seq_len, completion_only_loss=True,
    logging_steps=1, save_strategy="no", report_to=[], seed=0, disable_tqdm=profile.name == "tiny",
)
trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tok, peft_config=lora)
trainer.remove_callback(PrinterCallback)
for p in trainer.model.parameters():
    if p.requires_grad:
        p.data = p.data.to(DTYPES[profile.compute_dtype])
n_train = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
print(f"trainable LoRA parameters: {n_train:,}")
trainer.train()
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
print(f"{trainer.state.global_step} optimizer steps (schedule() said {total_steps}); "
      f"warmup {trainer.args.get_warmup_steps(trainer.state.max_steps)} (schedule() said {warmup})")
plot_curves({"training loss (per optimizer step)": losses}, title=f"QLoRA SFT, profile {profile.name}", smooth_window=3);

# %% nbgrader={"grade": true, "grade_id": "schedule__equals_trainer", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_got = schedule(len(train_ds), profile.per_device_batch_size, profile.gradient_accumulation_steps, profile.epochs, profile.warmup_ratio)
_want = (trainer.state.max_steps, trainer.args.get_warmup_steps(trainer.state.max_steps))
assert _got == _want, f"the Trainer ran {_want[0]} steps with {_want[1]} warmup; schedule() says {_got}"
### BEGIN HIDDEN TESTS
assert schedule(len(train_ds), profile.per_device_batch_size, 1, 3.0, 0.1)[0] == 3 * math.ceil(len(train_ds) / profile.per_device_batch_size)
### END HIDDEN TESTS

# %% [markdown]
# ## 7. The seed's sanity checks, as measurements
#
# 1. *Initial loss should be the base model's loss on the format* — the first logged loss against the base model's
#    loss on a sample of the same formatted data (not the same batch, so close, not equal).
# 2. *Loss should drop* — the mean of the last few steps against the first few.
# 3. *Generated responses should follow the format* — on the tiny profile, the share of held-out answers that parse
#    as their family's answer sentence, and exact match before and after.

# %%
k = max(1, len(losses) // 8)
first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
print(f"1. first-step loss {losses[0]:.3f} vs the base model's loss on the format {base_loss:.3f} "
      f"(ratio {losses[0] / base_loss:.3f})")
print(f"2. mean loss over the first {k} steps {first:.3f} → last {k} steps {last:.3f}")
assert abs(losses[0] / base_loss - 1) < 0.25, "the first step must start at the base model's loss (B = 0)"
assert last < 0.6 * first, "the loss must fall over the epoch"

# %%
tuned = trainer.model
if heldout:
    em_after, gens_after = evaluate_exact_match(tuned, tok, heldout)
    formatted = sum(FAMILIES[e.category].parse(g) is not None for e, g in zip(heldout, gens_after)) / len(heldout)
    print(f"3. held-out answers in their family's answer format: {formatted:.3f}")
    print(f"   exact match {em_before:.3f} → {em_after:.3f} (gain {em_after - em_before:+.3f}); by family after: "
          f"{exact_match_by_family(heldout, gens_after)}")
    for e, g in list(zip(heldout, gens_after))[::40]:
        print(f"   {e.instruction!r} → {g!r}")
    assert em_after >= em_before + 0.1, "one epoch of QLoRA must raise held-out exact match"
else:
    prompts = [tok.apply_chat_template(to_conversation(r)["prompt"], tokenize=False, add_generation_prompt=True) for r in probe]
    for r, g in zip(probe, generate(tuned, tok, prompts, max_new_tokens=128)):
        print(f"3. {r['instruction']!r}\n   → {g!r}")

# %% [markdown]
# ## 8. Save the adapter; its size on disk
#
# Only the adapter is saved (`adapter_model.safetensors` + `adapter_config.json`): the base stays where it is. Its
# size is the LoRA parameter count times the bytes per weight it is stored in. For the a100 profile that is Mistral-7B's
# 41,943,040 LoRA parameters in bf16 — the seed's "~100MB".

# %%
adapter_dir = out_dir / "adapter"
tuned.save_pretrained(adapter_dir)
files = {f.name: f.stat().st_size for f in adapter_dir.iterdir()}
weights = files["adapter_model.safetensors"]
stored = {p.dtype.itemsize for n, p in tuned.named_parameters() if "lora_" in n}
print(files)
print(f"adapter weights on disk {weights / MiB:.3f} MiB = {weights:,} bytes for {n_train:,} parameters × "
      f"{max(stored)} bytes (+ {weights - n_train * max(stored):,} bytes of safetensors header)")

# %% [markdown]
# ## Summary
# - QLoRA = a 4-bit NF4 base (double quantization, bf16 compute) + LoRA adapters in higher precision + a paged 8-bit
#   optimizer; only the adapters train and only they are saved.
# - Target modules come from the model (`lora_target_modules`, peft's `all-linear`): the MLP projections included.
# - The Trainer's step arithmetic (`schedule`) sets the length of the cosine schedule and its warmup.
# - The sanity checks are numbers: first loss = base loss on the format, loss falls, answers follow the format, and
#   held-out exact match goes up.
# - Full size: `python scripts/qlora_lab.py --profile a100` (one GPU) or `accelerate launch --config_file
#   configs/accelerate/ddp.yaml scripts/qlora_lab.py --profile a100` (several); `benchmarks/qlora_gpu.py` measures
#   memory and speed of the Mistral-7B architecture on a GPU.
