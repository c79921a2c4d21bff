# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 4 · 2 — Loss masking
#
# Seed §2.2: *compute loss only on the assistant's tokens. Build a labels tensor identical to `input_ids`, then set
# `labels[i] = -100` for every token that's part of the prompt. PyTorch's cross-entropy ignores -100.*
#
# You build those labels by hand (prompt **and** padding masked), check them token for token against the labels
# trl's `SFTTrainer` builds for the same examples, write the masked next-token loss and check it against the
# model's own loss, and finally measure what training **without** the mask does.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import tempfile

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers.trainer_callback import PrinterCallback
from trl import SFTConfig, SFTTrainer

from course.generation import evaluate_exact_match
from course.loading import load_base, load_tokenizer
from course.plotting import plot_bars
from course.tinyworld.tasks import examples
from course.training import conversational, lora_config, use_cpu, with_template

tok = with_template(load_tokenizer(profile), "chatml")    # ChatML with {% generation %} markers (tiny's default)
base = load_base(profile)
train = examples("train")
print(f"{len(train)} training examples; padding side {tok.padding_side!r}, pad token {tok.pad_token!r} = id {tok.pad_token_id}")

# %% [markdown]
# ## 1. Prompt and completion, tokenized
#
# trl's prompt/completion format keeps the two apart: the prompt is the user turn rendered **with** the generation
# prompt (`<|im_start|>assistant\n` at its end), the full text is prompt + completion. The prompt's token count is
# where the loss starts. Batches are right-padded with the pad token (printed above); `attention_mask` is 0 on
# padding. On `small` that pad token is SmolLM2's `<|im_end|>` = eos = ChatML's end of turn: mask padding by the
# attention mask, never by the pad id, or every end-of-turn label goes too (notebook 1, §5).

# %%
def tokenize_pairs(tokenizer, batch_examples, max_length=128):
    """Render and tokenize prompt/completion pairs; right-pad to the longest.

    Returns input_ids (B, T), attention_mask (B, T) and prompt_lengths (B,) — tokens before the response starts.
    """
    rows, prompt_lengths = [], []
    for conv in conversational(batch_examples):
        prompt = tokenizer.apply_chat_template(conv["prompt"], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(conv["prompt"] + conv["completion"], tokenize=False)
        assert full.startswith(prompt), "the prompt must be a prefix of the full conversation"
        rows.append(tokenizer(full, add_special_tokens=False)["input_ids"][:max_length])
        prompt_lengths.append(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
    padded = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
    return padded["input_ids"], padded["attention_mask"], torch.tensor(prompt_lengths)


# %%
input_ids, attention_mask, prompt_lengths = tokenize_pairs(tok, train[:4])
print("input_ids", tuple(input_ids.shape), "prompt lengths", prompt_lengths.tolist(),
      "real lengths", attention_mask.sum(1).tolist())
print(tok.convert_ids_to_tokens(input_ids[0, prompt_lengths[0]:attention_mask[0].sum()]))

# %% [markdown]
# ### Exercise 1 — labels with the prompt and the padding masked
# `mask_labels(input_ids, attention_mask, prompt_lengths)` returns a **new** tensor equal to `input_ids` except
# `-100` at every position `t < prompt_lengths[b]` (the prompt) and wherever `attention_mask` is 0 (padding).
# Do not modify `input_ids` in place — the model still needs them.

# %% nbgrader={"grade": false, "grade_id": "mask_labels", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mask_labels(input_ids, attention_mask, prompt_lengths):
    """input_ids, attention_mask: (B, T) long; prompt_lengths: (B,) long -> labels (B, T) with -100 on prompt + padding."""
    ### BEGIN SOLUTION
    labels = input_ids.clone()
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    labels[positions.unsqueeze(0) < prompt_lengths.unsqueeze(1)] = -100
    labels[attention_mask == 0] = -100
    return labels
    ### END SOLUTION


# %%
labels = mask_labels(input_ids, attention_mask, prompt_lengths)
print("row 0:", [(t, l != -100) for t, l in zip(tok.convert_ids_to_tokens(input_ids[0]), labels[0].tolist())][-12:])
print("tokens in the loss per row:", (labels != -100).sum(1).tolist())

# %% [markdown]
# ### The same examples through trl
#
# `SFTTrainer` tokenizes a prompt/completion dataset itself; with `completion_only_loss=True` its data collator
# returns `labels` with the prompt and the padding set to -100. We build a trainer (no training) on the same examples
# and collate the same rows.

# %%
def trl_labels(batch_examples, assistant_only=False):
    """The (input_ids, labels) trl's SFTTrainer feeds the model for these examples."""
    args = SFTConfig(output_dir=tempfile.mkdtemp(prefix="day4-"), use_cpu=use_cpu(base), bf16=False, report_to=[],
                     max_length=128, completion_only_loss=not assistant_only, assistant_only_loss=assistant_only)
    convs = conversational(batch_examples)
    data = [{"messages": c["prompt"] + c["completion"]} for c in convs] if assistant_only else convs
    trainer = SFTTrainer(model=base, args=args, train_dataset=Dataset.from_list(data), processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(batch_examples))])
    return batch["input_ids"], batch["labels"]


# %%
trl_ids, trl_lab = trl_labels(train[:4])
print("same input_ids as trl:", torch.equal(trl_ids, input_ids), "· same labels as trl:", torch.equal(trl_lab, labels))

# %% nbgrader={"grade": true, "grade_id": "mask_labels__equals_trl_completion_only", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_ex = examples("heldout", families=["plural", "units"])[::7][:6]          # other families, other lengths
_ids, _am, _pl = tokenize_pairs(tok, _ex)
_ref_ids, _ref = trl_labels(_ex)
assert torch.equal(_ref_ids, _ids), "sanity: same tokens as trl"
_mine = mask_labels(_ids, _am, _pl)
assert torch.equal(_mine, _ref), (f"labels must equal trl's completion_only_loss labels; they differ at "
                                 f"{(_mine != _ref).nonzero().tolist()[:6]} (row, position)")
### BEGIN HIDDEN TESTS
_ex2 = examples("train", families=["addition", "sound"])[::11][:5]
_ids2, _am2, _pl2 = tokenize_pairs(tok, _ex2)
assert torch.equal(mask_labels(_ids2, _am2, _pl2), trl_labels(_ex2)[1])
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "mask_labels__hand_cases", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
_am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
_keep = _ids.clone()
_out = mask_labels(_ids, _am, torch.tensor([2, 1]))
assert _out.tolist() == [[-100, -100, 7, 8, 9], [-100, 6, 7, -100, -100]], (
    f"the first prompt_length positions and the padding become -100, the rest stay: got {_out.tolist()}")
assert torch.equal(_ids, _keep), "mask_labels must not modify input_ids in place"
### BEGIN HIDDEN TESTS
assert mask_labels(_ids, _am, torch.tensor([0, 0])).tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, -100, -100]]
assert mask_labels(_ids, torch.ones_like(_ids), torch.tensor([5, 3])).tolist() == [[-100] * 5, [-100, -100, -100, 0, 0]], (
    "a pad id that is attended to (mask 1) is a real token; only attention_mask decides padding")
assert type(_out) is torch.Tensor and _out.dtype == _ids.dtype, "labels: a plain tensor of input_ids' dtype (long)"
_one = mask_labels(torch.tensor([[4, 3, 2]]), torch.tensor([[1, 1, 1]]), torch.tensor([7]))
assert _one.tolist() == [[-100, -100, -100]], "batch of 1, a prompt longer than the row: everything masked"
_bool = mask_labels(_ids, _am.bool(), torch.tensor([2, 1]))
assert _bool.tolist() == [[-100, -100, 7, 8, 9], [-100, 6, 7, -100, -100]], "a boolean attention_mask works the same"
### END HIDDEN TESTS

# %% [markdown]
# ### `completion_only_loss` vs `assistant_only_loss`
#
# trl has a second switch: `assistant_only_loss=True` on conversational `messages` data counts exactly the tokens the
# chat template wraps in `{% generation %}…{% endgeneration %}` (see `course/tinyworld/templates.py`). For the
# tiny ChatML template that is the content plus `<|im_end|>` — but **not** the `\n` the template writes after it,
# which the completion of a prompt/completion pair does include. The two masks differ exactly there:

# %%
_, asst = trl_labels(train[:4], assistant_only=True)
diff = (asst != labels).nonzero().tolist()
print("positions where the two masks differ (row, position):", diff)
print("the tokens there:", [tok.convert_ids_to_tokens(int(input_ids[r, t])) for r, t in diff],
      "· preceded by", {tok.convert_ids_to_tokens(int(input_ids[r, t - 1])) for r, t in diff})

# %% [markdown]
# ## 2. The masked loss
#
# A causal LM predicts token $t+1$ from tokens $\le t$, so the logits at position $t$ are scored against the label at
# $t+1$: **shift** logits left and labels right by one, then average the cross-entropy over the positions whose label
# is not -100:
#
# $$\mathcal{L} = \frac{1}{|\{t: y_{t+1}\neq-100\}|}\sum_{t:\,y_{t+1}\neq-100} -\log p_\theta(y_{t+1}\mid x_{\le t})$$
#
# ### Exercise 2 — `sft_loss`
# `sft_loss(logits, labels)`: logits (B, T, V), labels (B, T) → a scalar, the mean over **all counted tokens of the
# batch** (not a mean of per-row means).

# %% nbgrader={"grade": false, "grade_id": "sft_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sft_loss(logits, labels):
    """Next-token cross-entropy over positions whose (shifted) label is not -100. (B, T, V), (B, T) -> scalar."""
    ### BEGIN SOLUTION
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=-100, reduction="mean")
    ### END SOLUTION


# %%
with torch.no_grad():
    out = base(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
print(f"sft_loss {sft_loss(out.logits, labels).item():.6f} · the model's own loss {out.loss.item():.6f}")

# %% nbgrader={"grade": true, "grade_id": "sft_loss__equals_model_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_ex = examples("heldout", families=["capital", "sound"])[::5][:6]
_ids, _am, _pl = tokenize_pairs(tok, _ex)
_lab = mask_labels(_ids, _am, _pl)
with torch.no_grad():
    _out = base(input_ids=_ids, attention_mask=_am, labels=_lab)
_mine = sft_loss(_out.logits, _lab)
assert _mine.dim() == 0, "a scalar"
assert abs(_mine.item() - _out.loss.item()) < 1e-5, f"must equal the model's loss with these labels: {_mine.item():.6f} vs {_out.loss.item():.6f}"
### BEGIN HIDDEN TESTS
_lab2 = _lab.clone()
_lab2[0, : int(_pl[0]) + 3] = -100                      # uneven counts per row: a mean over tokens, not rows
with torch.no_grad():
    _ref2 = base(input_ids=_ids, attention_mask=_am, labels=_lab2).loss
assert abs(sft_loss(_out.logits, _lab2).item() - _ref2.item()) < 1e-5
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "sft_loss__hand_case", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_logits = torch.zeros(1, 3, 4)
_logits[0, 0, 2] = 10.0                     # position 0 predicts token 2 with near certainty
_logits[0, 1, 1] = 10.0                     # position 1 predicts token 1
_lab = torch.tensor([[-100, 2, 3]])         # position 0's target is 2 (right), position 1's target is 3 (wrong)
_want = (F.cross_entropy(_logits[0, :2], torch.tensor([2, 3]))).item()
assert abs(sft_loss(_logits, _lab).item() - _want) < 1e-6, (
    f"logits at t are scored against labels at t+1; expected {_want:.4f}, got {sft_loss(_logits, _lab).item():.4f}")
### BEGIN HIDDEN TESTS
assert abs(sft_loss(_logits, torch.tensor([[-100, 2, -100]])).item() - F.cross_entropy(_logits[0, :1], torch.tensor([2])).item()) < 1e-6
# large logits (a confident, wrong model): the loss is ~1000 per token, finite, never inf/nan
_big = torch.zeros(2, 3, 5)
_big[:, :, 0] = 1000.0
_lb = torch.tensor([[-100, 1, 2], [-100, 3, -100]])
_v = sft_loss(_big, _lb)
assert torch.isfinite(_v) and abs(_v.item() - 1000.0) < 1e-3, f"use log-softmax (cross_entropy), not log(softmax): {_v}"
# differentiable: training backpropagates through it
_g = torch.randn(2, 4, 6, requires_grad=True)
_l = sft_loss(_g, torch.tensor([[-100, 1, 2, 3], [-100, -100, 4, 5]]))
assert type(_l) is torch.Tensor and _l.requires_grad, "return the loss tensor itself (not .item(), not a new tensor)"
_l.backward()
assert _g.grad is not None and _g.grad[:, -1].abs().sum() == 0, "the last position predicts nothing: no gradient there"
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Training without the mask, measured
#
# Same data, same seed, same 80 steps of LoRA SFT (`profile.steps(80)`; the learning rate through `profile.lr`); the only difference is `completion_only_loss`. Without the mask the
# loss also pays for predicting the *questions* — the template, the instruction wording — which the model never has
# to produce at inference. We measure three things on both models:
# 1. held-out exact match (items the training data never mentions);
# 2. the loss on the **response** tokens of held-out examples (the masked loss, your `sft_loss`);
# 3. the loss on the **prompt** tokens — what the unmasked model spent its updates on.

# %%
STEPS = profile.steps(80)


def sft(model, train_examples, completion_only=True, steps=STEPS, batch_size=8, lr=profile.lr(1e-2), seed=0):
    """LoRA SFT (r=16, α=32, all linear layers) in the default ChatML template; returns the trained model."""
    args = SFTConfig(output_dir=tempfile.mkdtemp(prefix="day4-"), max_steps=steps, per_device_train_batch_size=batch_size,
                     learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=1, report_to=[],
                     save_strategy="no", use_cpu=use_cpu(model), bf16=False, gradient_checkpointing=False, seed=seed,
                     completion_only_loss=completion_only, max_length=128, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(conversational(train_examples)),
                         processing_class=tok, peft_config=lora_config(r=16, alpha=32))
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer.model


torch.manual_seed(0)
models = {"masked (prompt -100)": sft(load_base(profile), train, completion_only=True),
          "unmasked (loss on everything)": sft(load_base(profile), train, completion_only=False)}

# %%
heldout = examples("heldout")
h_ids, h_am, h_pl = tokenize_pairs(tok, heldout)
h_labels = mask_labels(h_ids, h_am, h_pl)
h_prompt_labels = torch.where((h_labels == -100) & (h_am == 1), h_ids, -100)   # the complement: prompt tokens only
results = {}
for name, model in models.items():
    model.eval()
    em, gens = evaluate_exact_match(model, tok, heldout)
    with torch.no_grad():
        logits = model(input_ids=h_ids, attention_mask=h_am).logits
    results[name] = {"exact match": em, "response loss": sft_loss(logits, h_labels).item(),
                     "prompt loss": sft_loss(logits, h_prompt_labels).item()}
    print(f"{name:30s} held-out exact match {em:.3f} · loss on response tokens {results[name]['response loss']:.3f} · "
          f"loss on prompt tokens {results[name]['prompt loss']:.3f} · e.g. {heldout[0].instruction!r} → {gens[0]!r}")

# %%
plot_bars({n: r["exact match"] for n, r in results.items()}, title=f"Held-out exact match after {STEPS} steps", ylabel="exact match");
m, u = results["masked (prompt -100)"], results["unmasked (loss on everything)"]
print(f"with the mask: exact match {m['exact match']:.3f} vs {u['exact match']:.3f} without · "
      f"response loss {m['response loss']:.3f} vs {u['response loss']:.3f} · "
      f"prompt loss {m['prompt loss']:.3f} vs {u['prompt loss']:.3f}")

# %% [markdown]
# ## Summary
# - Labels = `input_ids` with -100 on the prompt and on padding; the hand-built labels equal trl's
#   `completion_only_loss` labels token for token. `assistant_only_loss` (template `{% generation %}` markers) differs
#   only in whether the newline after the end-of-turn token is trained.
# - The loss shifts by one: logits at $t$ score the label at $t+1$; the mean is over counted tokens.
# - Without the mask the same number of updates is shared between learning the prompts (its prompt loss falls) and
#   learning to answer; the numbers above are the measured cost on held-out answers. With a realistic dataset (long
#   prompts, short answers) the prompt tokens dominate an unmasked loss even more.
