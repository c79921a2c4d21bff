# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 4 · 1 — SFT data and chat templates
#
# Lab 02 (seed §2 and §5) starts with data: each example is a **(prompt, response)** pair, and before a model sees
# it the pair is rendered into one string by a **chat template**. The seed names three formats — ChatML, Alpaca and
# Llama-3 — and one rule: *the exact template must be consistent between training and inference*.
#
# In this notebook you write the three templates by hand, check each character for character against the
# tokenizer's own `apply_chat_template`, look at what the model actually sees (token ids), and then **measure** the
# mismatch bug: fine-tune in ChatML, serve in Alpaca or Llama-3, and compare held-out exact match question by question.
#
# The tiny world's templates live in `course/tinyworld/templates.py` (the tokenizer carries them as named chat
# templates). This notebook uses the tiny base whatever the profile (`PROFILES["tiny"]`: §4 needs a model that has
# never seen a chat template, which SmolLM2-Instruct is not; §5 loads SmolLM2's real tokenizer); notebooks 2 and 3
# follow the profile.

# %% tags=["parameters"]
PROFILE = "tiny"
SEED = 0

# %%
from course.notebook import setup

profile = setup(PROFILE, seed=SEED)

# %%
import tempfile

import torch
from datasets import Dataset
from transformers.trainer_callback import PrinterCallback
from trl import SFTConfig, SFTTrainer

from course.generation import evaluate_exact_match
from course.loading import load_base, load_instruction_data, load_tokenizer
from course.plotting import plot_bars
from course.tinyworld.tasks import examples, exact_match_by_family, score
from course.tinyworld.templates import ALPACA_PREAMBLE, END_OF_TURN, EXAMPLE_MESSAGES
from course.training import conversational, lora_config, with_template

from course.profiles import PROFILES

tok = load_tokenizer(PROFILES["tiny"])  # the tiny world's tokenizer, with its three named chat templates
print("named chat templates:", sorted(tok.chat_template) if isinstance(tok.chat_template, dict) else "one")

# %% [markdown]
# ## 1. The data: Dolly-15k's record format
#
# The lab's dataset, `databricks/databricks-dolly-15k`, has four fields: `instruction`, `context` (often empty),
# `response`, `category`. The tiny world ships its tasks in the same format, so one loader reads both
# (`course.loading.load_instruction_data`). A record becomes a conversation: the user turn is the context (if any)
# followed by the instruction; the assistant turn is the response.

# %%
data = load_instruction_data(PROFILES["tiny"])
print({split: len(ds) for split, ds in data.items()})
record = data["train"][0]
print(record)


def to_messages(rec):
    """A Dolly record as a two-turn conversation (user: context + instruction, assistant: response)."""
    user = f"{rec['context']}\n\n{rec['instruction']}" if rec["context"] else rec["instruction"]
    return [{"role": "user", "content": user}, {"role": "assistant", "content": rec["response"]}]


print(to_messages(record))

# %% [markdown]
# ## 2. Three templates by hand
#
# Every template answers the same questions: how does a turn start, how does the role show, how does a turn **end**
# (the end-of-turn token is what generation stops on), and what is appended when we ask the model to answer
# (`add_generation_prompt=True`: the opening of an assistant turn, left empty for the model to fill).
#
# ### Exercise 1 — ChatML
# Each message (any role, `system` included) renders as `<|im_start|>{role}\n{content}<|im_end|>\n`.
# With `add_generation_prompt=True`, append `<|im_start|>assistant\n`.

# %% nbgrader={"grade": false, "grade_id": "render_chatml", "locked": false, "schema_version": 3, "solution": true, "task": false}
def render_chatml(messages, add_generation_prompt=False):
    """ChatML: <|im_start|>role\\ncontent<|im_end|>\\n per message; returns one string."""
    ### BEGIN SOLUTION
    out = ""
    for m in messages:
        out += "<|im_start|>" + m["role"] + "\n" + m["content"] + "<|im_end|>\n"
    if add_generation_prompt:
        out += "<|im_start|>assistant\n"
    return out
    ### END SOLUTION


# %%
mine = render_chatml(EXAMPLE_MESSAGES)
theirs = tok.apply_chat_template(EXAMPLE_MESSAGES, chat_template="chatml", tokenize=False)
print(mine)
print("equal to the tokenizer's chat template:", mine == theirs)

# %% nbgrader={"grade": true, "grade_id": "render_chatml__equals_tokenizer", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_conv = [{"role": "user", "content": "Give the antonym of tall."}, {"role": "assistant", "content": "The opposite of tall is short."}]
_want = tok.apply_chat_template(_conv, chat_template="chatml", tokenize=False)
assert render_chatml(_conv) == _want, f"ChatML must match the tokenizer exactly:\n{_want!r}\ngot\n{render_chatml(_conv)!r}"
### BEGIN HIDDEN TESTS
_conv3 = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 3?"},
          {"role": "assistant", "content": "2 plus 3 is 5."}, {"role": "user", "content": "And 4 plus 4?"},
          {"role": "assistant", "content": "4 plus 4 is 8."}]
assert render_chatml(_conv3) == tok.apply_chat_template(_conv3, chat_template="chatml", tokenize=False), "system + multi-turn"
assert type(render_chatml(_conv3)) is str, "return a plain str"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "render_chatml__generation_prompt_and_end_of_turn", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_q = [{"role": "user", "content": "What is the plural of mouse?"}]
_want = tok.apply_chat_template(_q, chat_template="chatml", tokenize=False, add_generation_prompt=True)
assert render_chatml(_q, add_generation_prompt=True) == _want, f"with the generation prompt: {_want!r}"
_ids = tok(render_chatml(EXAMPLE_MESSAGES), add_special_tokens=False)["input_ids"]
assert tok.convert_ids_to_tokens(_ids).count(END_OF_TURN["chatml"]) == 2, "every turn ends with <|im_end|>"
### BEGIN HIDDEN TESTS
assert render_chatml([], add_generation_prompt=True) == "<|im_start|>assistant\n"
assert render_chatml(_q) == "<|im_start|>user\nWhat is the plural of mouse?<|im_end|>\n"
assert type(render_chatml(_q)) is str, "return a plain str"
_tool = [{"role": "user", "content": "2+2?"}, {"role": "tool", "content": "4"}, {"role": "assistant", "content": ""}]
assert render_chatml(_tool) == "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>tool\n4<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n", \
    "any role renders the same way, and empty content is still a turn"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 — Alpaca
# No special tokens at all, only text markers:
# - a preamble paragraph first: the system message's content if the conversation starts with one, otherwise the
#   standard `ALPACA_PREAMBLE` (imported above); followed by a blank line (`\n\n`);
# - a user turn: `### Instruction:\n{content}\n\n`;
# - an assistant turn: `### Response:\n{content}{eos_token}\n\n` — Alpaca has no end-of-turn marker of its own, so the
#   tokenizer's end-of-sequence token (`</s>` here) plays that role;
# - the generation prompt: `### Response:\n`.

# %% nbgrader={"grade": false, "grade_id": "render_alpaca", "locked": false, "schema_version": 3, "solution": true, "task": false}
def render_alpaca(messages, eos_token="</s>", add_generation_prompt=False):
    """Alpaca: preamble, ### Instruction: / ### Response: blocks; the response ends with eos_token."""
    ### BEGIN SOLUTION
    if messages and messages[0]["role"] == "system":
        out, turns = messages[0]["content"] + "\n\n", messages[1:]
    else:
        out, turns = ALPACA_PREAMBLE + "\n\n", messages
    for m in turns:
        if m["role"] == "user":
            out += "### Instruction:\n" + m["content"] + "\n\n"
        elif m["role"] == "assistant":
            out += "### Response:\n" + m["content"] + eos_token + "\n\n"
    if add_generation_prompt:
        out += "### Response:\n"
    return out
    ### END SOLUTION


# %%
mine = render_alpaca(EXAMPLE_MESSAGES, tok.eos_token)
print(mine)
print("equal:", mine == tok.apply_chat_template(EXAMPLE_MESSAGES, chat_template="alpaca", tokenize=False))

# %% nbgrader={"grade": true, "grade_id": "render_alpaca__equals_tokenizer", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_conv = [{"role": "user", "content": "Give the antonym of tall."}, {"role": "assistant", "content": "The opposite of tall is short."}]
_want = tok.apply_chat_template(_conv, chat_template="alpaca", tokenize=False)
assert render_alpaca(_conv, tok.eos_token) == _want, f"Alpaca must match the tokenizer exactly:\n{_want!r}"
### BEGIN HIDDEN TESTS
_conv3 = [{"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": "2 plus 3 is 5."},
          {"role": "user", "content": "And 4 plus 4?"}, {"role": "assistant", "content": "4 plus 4 is 8."}]
assert render_alpaca(_conv3, tok.eos_token) == tok.apply_chat_template(_conv3, chat_template="alpaca", tokenize=False)
assert type(render_alpaca(_conv3, tok.eos_token)) is str, "return a plain str"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "render_alpaca__system_and_generation_prompt", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_sys = [{"role": "system", "content": "You answer in one sentence."}, {"role": "user", "content": "What sound does a cow make?"}]
_want = tok.apply_chat_template(_sys, chat_template="alpaca", tokenize=False, add_generation_prompt=True)
assert render_alpaca(_sys, tok.eos_token, add_generation_prompt=True) == _want, f"a system message replaces the preamble: {_want!r}"
### BEGIN HIDDEN TESTS
assert render_alpaca(EXAMPLE_MESSAGES, "<END>").count("<END>") == 1, "the response ends with the eos_token passed in"
assert render_alpaca([{"role": "user", "content": "x"}], add_generation_prompt=True).endswith("### Instruction:\nx\n\n### Response:\n")
assert render_alpaca([]) == ALPACA_PREAMBLE + "\n\n", "no messages: the preamble alone"
assert render_alpaca([{"role": "system", "content": "S."}], add_generation_prompt=True) == "S.\n\n### Response:\n"
assert type(render_alpaca([])) is str, "return a plain str"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 3 — Llama-3
# `<|begin_of_text|>` once at the start; each message is
# `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>` (no newline after `<|eot_id|>`);
# the generation prompt is `<|start_header_id|>assistant<|end_header_id|>\n\n`.

# %% nbgrader={"grade": false, "grade_id": "render_llama3", "locked": false, "schema_version": 3, "solution": true, "task": false}
def render_llama3(messages, add_generation_prompt=False):
    """Llama-3: <|begin_of_text|>, then header-wrapped roles, each turn ending in <|eot_id|>."""
    ### BEGIN SOLUTION
    out = "<|begin_of_text|>"
    for m in messages:
        out += "<|start_header_id|>" + m["role"] + "<|end_header_id|>\n\n" + m["content"] + "<|eot_id|>"
    if add_generation_prompt:
        out += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return out
    ### END SOLUTION


# %%
mine = render_llama3(EXAMPLE_MESSAGES)
print(mine)
print("equal:", mine == tok.apply_chat_template(EXAMPLE_MESSAGES, chat_template="llama3", tokenize=False))

# %% nbgrader={"grade": true, "grade_id": "render_llama3__equals_tokenizer", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_conv = [{"role": "user", "content": "Give the antonym of tall."}, {"role": "assistant", "content": "The opposite of tall is short."}]
_want = tok.apply_chat_template(_conv, chat_template="llama3", tokenize=False)
assert render_llama3(_conv) == _want, f"Llama-3 must match the tokenizer exactly:\n{_want!r}"
### BEGIN HIDDEN TESTS
_conv3 = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 3?"},
          {"role": "assistant", "content": "2 plus 3 is 5."}, {"role": "user", "content": "And 4 plus 4?"}]
assert render_llama3(_conv3, add_generation_prompt=True) == tok.apply_chat_template(
    _conv3, chat_template="llama3", tokenize=False, add_generation_prompt=True), "system + multi-turn + generation prompt"
assert type(render_llama3(_conv3)) is str, "return a plain str"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "render_llama3__generation_prompt_and_end_of_turn", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_q = [{"role": "user", "content": "What is the plural of mouse?"}]
_want = tok.apply_chat_template(_q, chat_template="llama3", tokenize=False, add_generation_prompt=True)
assert render_llama3(_q, add_generation_prompt=True) == _want, f"with the generation prompt: {_want!r}"
_toks = tok.convert_ids_to_tokens(tok(render_llama3(EXAMPLE_MESSAGES), add_special_tokens=False)["input_ids"])
assert _toks.count(END_OF_TURN["llama3"]) == 2 and _toks[0] == "<|begin_of_text|>", "one <|eot_id|> per turn, one BOS"
### BEGIN HIDDEN TESTS
assert render_llama3([]) == "<|begin_of_text|>"
assert render_llama3([], add_generation_prompt=True) == "<|begin_of_text|><|start_header_id|>assistant<|end_header_id|>\n\n"
assert render_llama3([{"role": "tool", "content": ""}]) == "<|begin_of_text|><|start_header_id|>tool<|end_header_id|>\n\n<|eot_id|>"
assert type(render_llama3([])) is str, "return a plain str"
### END HIDDEN TESTS

# %% [markdown]
# ## 3. What the model sees
#
# The same conversation in three templates is three different token sequences. In the tiny tokenizer (as in the
# real ones) each marker such as `<|im_start|>` or `<|eot_id|>` is **one** special token, while Alpaca's
# `### Response:` is several ordinary tokens. Template tokens are overhead on every example; the end-of-turn token is
# the one generation stops on (`course.generation` stops on `</s>`, `<|im_end|>` and `<|eot_id|>`).

# %%
renderers = {"chatml": render_chatml, "alpaca": lambda m, **k: render_alpaca(m, tok.eos_token, **k),
             "llama3": render_llama3}
content_tokens = sum(len(tok(m["content"], add_special_tokens=False)["input_ids"]) for m in EXAMPLE_MESSAGES)
for name, render in renderers.items():
    ids = tok(render(EXAMPLE_MESSAGES), add_special_tokens=False)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    print(f"{name:7s} {len(ids):3d} tokens ({len(ids) - content_tokens} of them template) · "
          f"ends with {pieces[-2:]} · end-of-turn {END_OF_TURN[name]!r} is token id {tok.convert_tokens_to_ids(END_OF_TURN[name])}")

# %% [markdown]
# ## 4. The mismatch bug, measured
#
# Fine-tune the tiny base with LoRA on the training tasks rendered in **ChatML** (trl's `SFTTrainer`, prompt masked
# from the loss — notebook 2 builds that mask by hand), then ask the held-out questions — items the fine-tuning data
# never mentions — rendered in each of the three templates. Same weights, same questions; only the serving template
# changes. All six families are asked (219 questions), so no single family decides the ranking.

# %%
def sft(model, train_examples, template="chatml", steps=150, batch_size=8, lr=3e-3, completion_only=True, seed=0):
    """LoRA SFT (r=16, α=32, all linear layers) with trl; returns (trainer, per-step losses)."""
    args = SFTConfig(output_dir=tempfile.mkdtemp(prefix="day4-"), max_steps=steps, per_device_train_batch_size=batch_size,
                     learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=1, report_to=[],
                     save_strategy="no", use_cpu=True, bf16=False, gradient_checkpointing=False, seed=seed,
                     completion_only_loss=completion_only, max_length=128, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(conversational(train_examples)),
                         processing_class=with_template(tok, template), peft_config=lora_config(r=16, alpha=32))
    trainer.remove_callback(PrinterCallback)          # keep the per-step log dicts out of the notebook
    trainer.train()
    return trainer, [h["loss"] for h in trainer.state.log_history if "loss" in h]


torch.manual_seed(SEED)
trainer, losses = sft(load_base(PROFILES["tiny"]), examples("train"), template="chatml", seed=SEED)
chatml_model = trainer.model
print(f"trained {len(losses)} steps in ChatML: loss {losses[0]:.3f} → {losses[-1]:.3f}")

# %%
heldout = examples("heldout")
served, gens_by = {}, {}
for name in ("chatml", "alpaca", "llama3"):
    em, gens = evaluate_exact_match(chatml_model, tok, heldout, template=name)
    served[name], gens_by[name] = em, gens
    print(f"trained in chatml, served in {name:7s}: exact match {em:.3f} "
          f"({exact_match_by_family(heldout, gens)}) · e.g. {heldout[0].instruction!r} → {gens[0]!r}")
plot_bars(served, title="Held-out exact match: trained in ChatML, served in…", ylabel="exact match");

# %%
drop = served["chatml"] - max(served["alpaca"], served["llama3"])
right = {name: [score(e, g) for e, g in zip(heldout, gens_by[name])] for name in served}
print(f"serving in the wrong template costs at least {drop:.3f} exact match "
      f"({served['chatml']:.3f} in the training template vs ≤ {max(served['alpaca'], served['llama3']):.3f})")
for other in ("alpaca", "llama3"):
    print(f"  question by question, chatml vs {other}: right only in chatml "
          f"{sum(a and not b for a, b in zip(right['chatml'], right[other]))}, right only in {other} "
          f"{sum(b and not a for a, b in zip(right['chatml'], right[other]))}")
paired_gap = {o: sum(a != b for a, b in zip(right["chatml"], right[o])) for o in ("alpaca", "llama3")}
print(f"chatml − llama3 = {served['chatml'] - served['llama3']:+.3f} over {paired_gap['llama3']} discordant questions: "
      + ("within noise: a template close in structure (role headers + one end-of-turn token) can transfer"
         if abs(served["chatml"] - served["llama3"]) < 0.05 else "a real gap"))
assert served["chatml"] > served["alpaca"] + 0.3, "a template far from the training one should fail badly"

# %% [markdown]
# ## 5. Two traps in a real tokenizer: SmolLM2-135M-Instruct
#
# The tiny tokenizer has a pad token of its own. Many real ones do not, and the usual fix — `pad_token = eos_token`
# — sets a trap. SmolLM2's tokenizer (the `small` profile; only the tokenizer is loaded, from the course's model
# cache) ships that way: `pad = eos = <|im_end|>`, which is also ChatML's end-of-turn token.
#
# **The pad = eos masking trap.** A collator that masks padding *by token id* (`labels[ids == pad_id] = -100`)
# masks every end-of-turn token too: the model is never trained to stop. Mask by the attention mask (or by the
# lengths) instead.

# %%
from course.chat import BASE_TEMPLATE, count_bos
from course.profiles import PROFILES

real = load_tokenizer(PROFILES["small"])
print(f"SmolLM2: bos {real.bos_token!r} · eos {real.eos_token!r} · pad {real.pad_token!r} · "
      f"padding side {real.padding_side} · pad id == eos id: {real.pad_token_id == real.eos_token_id}")
convs = [to_messages(data["train"][i]) for i in (0, 7, 30)]
enc = [real(real.apply_chat_template(c, tokenize=False), add_special_tokens=False)["input_ids"] for c in convs]
batch = real.pad({"input_ids": enc}, return_tensors="pt")
ids, mask = batch["input_ids"], batch["attention_mask"]
by_id = ids.masked_fill(ids == real.pad_token_id, -100)
by_mask = ids.masked_fill(mask == 0, -100)
eos_in_text = int(((ids == real.eos_token_id) & (mask == 1)).sum())
print(f"end-of-turn tokens in the {len(convs)} conversations: {eos_in_text}; still in the labels when padding is "
      f"masked by id: {int((by_id == real.eos_token_id).sum())}; masked by attention mask: "
      f"{int((by_mask == real.eos_token_id).sum())}")

# %% [markdown]
# **Double BOS.** trl tokenizes the *rendered* template with `add_special_tokens=False`, so the template alone
# decides the start token. Tokenize the rendered string the default way with a tokenizer that adds BOS itself
# (Llama-2 and Mistral tokenizers ship `add_bos_token=True`; SmolLM2's ships it off — we switch it on to see) and
# the sequence starts with BOS twice, a sequence the model never saw in pretraining. `course.chat.BASE_TEMPLATE`
# (Alpaca with the tokenizer's BOS once) is what the lab uses for base models without a template.

# %%
for add_bos in (False, True):
    t = load_tokenizer(PROFILES["small"])
    t.add_bos_token = add_bos
    text = t.apply_chat_template(convs[0], chat_template=BASE_TEMPLATE, tokenize=False)
    default, trl_way = t(text)["input_ids"], t(text, add_special_tokens=False)["input_ids"]
    print(f"add_bos_token={add_bos!s:5}: BOS count, default tokenization {count_bos(t, default)} "
          f"({t.convert_ids_to_tokens(default[:3])}) · trl's add_special_tokens=False {count_bos(t, trl_way)}")

# %% [markdown]
# ## Summary
# - A template is a function from messages to one string; hand-written versions of ChatML, Alpaca and Llama-3 equal
#   the tokenizer's `apply_chat_template` character for character.
# - Each template has an end-of-turn marker (`<|im_end|>`, `</s>`, `<|eot_id|>`): forget it in training data and the
#   model never learns to stop.
# - Train in one template and serve in a different one and the output garbles (the seed's warning): served in Alpaca,
#   exact match falls to about zero. Llama-3, whose structure is close to ChatML's (role headers, one end-of-turn
#   token), costs far less — on some seeds nothing measurable (compare the paired counts printed above). Measure the
#   template you serve in; never assume a "similar" one is safe.
#   In practice: save the tokenizer (with its `chat_template`) next to the adapter and always render prompts with
#   `tokenizer.apply_chat_template`, never by hand-formatting in the serving code.
# - Real tokenizers: with pad = eos, mask padding by the attention mask, never by id; let the template alone place
#   the BOS (tokenize rendered templates with `add_special_tokens=False`).
