# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 5 · 1 — Inference with an adapter, and merging it
#
# Friday in the seed's cadence: *inference with adapter; merge; compare base vs fine-tuned outputs.* The Lab 02
# deliverable is an adapter folder, a small fraction of the base's size (measured below), that only means
# something on top of its base. This notebook:
#
# 1. trains a small task adapter **by QLoRA on the 4-bit base** (the stand-in for Day 4's output), saves it, and
#    loads **base + adapter** back the way a deployment does;
# 2. compares **base vs fine-tuned** on held-out prompts — side by side, and with the task scorer's numbers;
# 3. **merges** the adapter into the base (`merge_and_unload`): the logits agree to a tolerance we state and
#    explain, and we measure what merging buys in speed;
# 4. merges onto a **4-bit base**: why you dequantize first, with the error of each way measured.

# %% tags=["parameters"]
PROFILE = "tiny"
SEED = 0

# %%
from course.notebook import setup

profile = setup(PROFILE, seed=SEED)

# %%
import copy
import statistics
import tempfile
import time
from pathlib import Path

import bitsandbytes.functional as bnbF
import torch
from peft import PeftModel, prepare_model_for_kbit_training

from course.generation import answer, chat_prompt
from course.kbit import keep_training_layout
from course.loading import load_base, load_tokenizer
from course.memory import measured_weight_bytes, nf4_bits_per_param
from course.notebook import check_claims, progress
from course.timing import median_seconds
from course.tinyworld import tasks
from course.training import lora_config, train_sft

TEMPLATE = "chatml"
FAMILIES = ["capital", "antonym", "plural"]
tokenizer = load_tokenizer(profile)

# %% [markdown]
# ## 1. An adapter to serve, trained by QLoRA
#
# Day 4's lab trains the adapter; its output is not shipped with the course, so we train a small one here the same
# way: the base loaded in **4-bit NF4** (`load_base(profile, quantize=True)`), `prepare_model_for_kbit_training`, and
# `course.training.train_sft` (trl's `SFTTrainer`, prompt masked, LoRA r=8, α=16 on all seven projections, adapters
# kept in fp32) on three task families of the tiny world, `profile.steps(60)` steps at `profile.lr(5e-3)`.
# `keep_training_layout` switches off bitsandbytes' CPU repacking (docs/PITFALLS.md). Then we save it exactly as
# Lab 02 does: `save_pretrained` writes only the adapter — its config and its A, B matrices — not the base.

# %%
torch.manual_seed(SEED)
t0 = time.perf_counter()
qbase = load_base(profile, quantize=True)
keep_training_layout(qbase)
qbase = prepare_model_for_kbit_training(qbase, use_gradient_checkpointing=False)
STEPS = profile.steps(60)
trained, losses = train_sft(qbase, tokenizer, tasks.examples("train", FAMILIES), template=TEMPLATE,
                            lora=lora_config(r=8, alpha=16), max_steps=STEPS, batch_size=8,
                            learning_rate=profile.lr(5e-3), seed=SEED, adapter_dtype=torch.float32)
print(f"QLoRA: trained {STEPS} steps in {time.perf_counter() - t0:.1f} s; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
ADAPTER_DIR = Path(tempfile.mkdtemp(prefix="day5-adapter-"))
trained.save_pretrained(ADAPTER_DIR)
tokenizer.save_pretrained(ADAPTER_DIR)                     # the chat template travels with the adapter
adapter_bytes = (ADAPTER_DIR / "adapter_model.safetensors").stat().st_size
plain_base = load_base(profile).eval()                      # the full-precision base, for checks
base_params = sum(p.numel() for p in plain_base.parameters())
base_bytes = sum(p.numel() * p.element_size() for p in plain_base.parameters())
print("saved:", sorted(f.name for f in ADAPTER_DIR.iterdir()))
print(f"adapter weights on disk: {adapter_bytes:,} bytes; the base it needs: {base_params:,} parameters "
      f"= {base_bytes:,} bytes in fp32 ({base_bytes / adapter_bytes:.1f}× the adapter), "
      f"{measured_weight_bytes(qbase):,} bytes held by the 4-bit base")

# %% [markdown]
# **Load base + adapter**, as a server does: the base from its own folder (the hub name in the other profiles),
# then `PeftModel.from_pretrained(base, adapter_dir)`, which reads `adapter_config.json` (targets, r, α), wraps the
# targeted `nn.Linear`s in LoRA layers and loads A and B. On a fresh **4-bit** base it computes exactly what the
# trained model did. Sections 1–3 then serve the adapter on the **full-precision** base — the base a merge for
# deployment starts from; the difference is the base's NF4 rounding, measured in section 4.

# %%
probe = tokenizer([chat_prompt(tokenizer, e.instruction, TEMPLATE) + e.response
                   for e in tasks.examples("heldout", FAMILIES)[::10]], return_tensors="pt", padding=True,
                  add_special_tokens=False)
reloaded_4bit = load_base(profile, quantize=True)
keep_training_layout(reloaded_4bit)                         # the layout training used
reloaded_4bit = PeftModel.from_pretrained(reloaded_4bit, ADAPTER_DIR).eval()
model = PeftModel.from_pretrained(load_base(profile), ADAPTER_DIR).eval()
with torch.no_grad():
    trained_logits = trained(**probe).logits                # (batch, seq, vocab)
    ref_logits = model(**probe).logits
    print("logits", tuple(ref_logits.shape), "· max |reloaded on 4-bit − trained| =",
          (reloaded_4bit(**probe).logits - trained_logits).abs().max().item(),
          "· max |on the fp32 base − trained| =", f"{(ref_logits - trained_logits).abs().max().item():.3f}")
del reloaded_4bit

# %%
heldout = tasks.examples("heldout", FAMILIES)
for e, g in zip(heldout[::30], answer(model, tokenizer, heldout[::30], TEMPLATE)):
    print(f"{e.instruction!r:48} -> {g!r}")

# %% [markdown]
# ## 2. Base vs fine-tuned, on the same prompts
#
# A `PeftModel` holds both models at once: with the LoRA layers bypassed it *is* the base (each LoRA layer returns
# `base_layer(x)`), so there is no need to load the base twice. `with model.disable_adapter():` bypasses them for
# the block and restores them after, even if the block raises.
#
# ### Exercise 1
# `side_by_side(model, tokenizer, examples, template)` returns `{"base": [...], "tuned": [...]}`: the greedy answers
# (`course.generation.answer`) of the base model (adapter disabled) and of the fine-tuned model (adapter on) to the
# same examples, in order, both asked in `template` with at most `max_new_tokens` new tokens. The model must be left
# as it was found: adapter enabled — also when generation raises.

# %% nbgrader={"grade": false, "grade_id": "side_by_side", "locked": false, "schema_version": 3, "solution": true, "task": false}
def side_by_side(model, tokenizer, examples, template=TEMPLATE, max_new_tokens=24) -> dict[str, list[str]]:
    """Greedy answers with the adapter disabled ("base") and enabled ("tuned"); n examples -> two lists of n."""
    ### BEGIN SOLUTION
    with model.disable_adapter():
        base = answer(model, tokenizer, examples, template, max_new_tokens=max_new_tokens)
    tuned = answer(model, tokenizer, examples, template, max_new_tokens=max_new_tokens)
    return {"base": base, "tuned": tuned}
    ### END SOLUTION


# %%
cols = side_by_side(model, tokenizer, heldout)
for i in range(0, len(heldout), 30):
    print(f"{heldout[i].instruction}\n  expected: {heldout[i].response}\n  base:     {cols['base'][i]!r}\n"
          f"  tuned:    {cols['tuned'][i]!r}")

# %% [markdown]
# Samples persuade; the scorer decides. Exact match per family on the held-out prompts (items the fine-tuning data
# never mentions; the base learned the facts in pretraining but has never seen a chat turn):

# %%
base_by_family = tasks.exact_match_by_family(heldout, cols["base"])
tuned_by_family = tasks.exact_match_by_family(heldout, cols["tuned"])
print(f"{'family':10} {'base':>6} {'tuned':>6}")
for fam in FAMILIES:
    print(f"{fam:10} {base_by_family[fam]:6.2f} {tuned_by_family[fam]:6.2f}")
print(f"{'all':10} {tasks.exact_match(heldout, cols['base']):6.2f} {tasks.exact_match(heldout, cols['tuned']):6.2f}"
      f"   ({len(heldout)} held-out prompts)")

# %% nbgrader={"grade": true, "grade_id": "side_by_side__base_column_is_the_base", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
model.base_model.enable_adapter_layers()            # start from a known state: adapter on
_ex = tasks.examples("heldout", ["capital", "antonym"])[::7]
_cols = side_by_side(model, tokenizer, _ex)
assert set(_cols) == {"base", "tuned"} and len(_cols["base"]) == len(_cols["tuned"]) == len(_ex), \
    "return {'base': [...], 'tuned': [...]}, one answer per example"
assert _cols["base"] == answer(plain_base, tokenizer, _ex, TEMPLATE), \
    "the 'base' column must be what the base model alone answers: disable the adapter for it"
### BEGIN HIDDEN TESTS
assert _cols["base"] != _cols["tuned"], "the two columns come from different models"
_ex2 = tasks.examples("heldout", ["plural"])[:5]
assert side_by_side(model, tokenizer, _ex2, max_new_tokens=6)["base"] == answer(plain_base, tokenizer, _ex2, TEMPLATE,
                                                                                 max_new_tokens=6)
_alp = side_by_side(model, tokenizer, _ex2, template="alpaca", max_new_tokens=8)
assert _alp["base"] == answer(plain_base, tokenizer, _ex2, "alpaca", max_new_tokens=8), \
    "the base column is asked in the template passed in, not the notebook's default"
_empty = side_by_side(model, tokenizer, [])
assert type(_empty) is dict and _empty == {"base": [], "tuned": []}, "no examples: two empty columns"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "side_by_side__adapter_left_on", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
model.base_model.enable_adapter_layers()            # start from a known state: adapter on
_ex = tasks.examples("heldout", ["antonym", "plural"])[::6]
_before = answer(model, tokenizer, _ex, TEMPLATE)
_cols = side_by_side(model, tokenizer, _ex)
assert _cols["tuned"] == _before, "the 'tuned' column is the fine-tuned model's answers (adapter enabled)"
assert answer(model, tokenizer, _ex, TEMPLATE) == _before, \
    "after side_by_side the adapter must be enabled again (use `with model.disable_adapter():`)"
### BEGIN HIDDEN TESTS
with torch.no_grad():
    assert torch.equal(model(**probe).logits, ref_logits), "the model must compute what it computed before the call"
_l3 = side_by_side(model, tokenizer, _ex, template="llama3", max_new_tokens=5)
assert _l3["tuned"] == answer(model, tokenizer, _ex, "llama3", max_new_tokens=5), \
    "the tuned column honours the template and max_new_tokens too"
try:
    side_by_side(model, tokenizer, [None])               # generation raises on a bad example
except Exception:
    pass
assert answer(model, tokenizer, _ex, TEMPLATE) == _before, \
    "when generation raises inside side_by_side the adapter must still be enabled again (a `with` block does that)"
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Merging: $W = W_0 + \frac{\alpha}{r}BA$
#
# An unmerged adapter costs two extra thin matmuls per targeted projection on every token. For a single-adapter
# deployment you fold it in once: `merge_and_unload()` replaces each LoRA layer by a plain `nn.Linear` whose weight
# is $W_0 + \frac{\alpha}{r}BA$ — the same architecture and size as the base, and no peft at inference.
#
# ### Exercise 2
# `merged_weight(layer, adapter_name)` returns that weight for one peft LoRA layer (`peft.tuners.lora.Linear`):
# `layer.base_layer.weight` is $W_0$ `(out, in)`, `layer.lora_A[name].weight` is $A$ `(r, in)`,
# `layer.lora_B[name].weight` is $B$ `(out, r)`, and `layer.scaling[name]` is the scale peft applies: α/r
# (α/√r for an adapter created with `use_rslora=True`). Do not modify $W_0$.

# %% nbgrader={"grade": false, "grade_id": "merged_weight", "locked": false, "schema_version": 3, "solution": true, "task": false}
@torch.no_grad()
def merged_weight(layer, adapter_name: str = "default") -> torch.Tensor:
    """W0 + (α/r)·B·A for one LoRA layer. W0: (out, in), A: (r, in), B: (out, r) -> (out, in)."""
    ### BEGIN SOLUTION
    w0 = layer.base_layer.weight
    a = layer.lora_A[adapter_name].weight
    b = layer.lora_B[adapter_name].weight
    return w0 + layer.scaling[adapter_name] * (b @ a)
    ### END SOLUTION


# %%
merged = copy.deepcopy(model).merge_and_unload().eval()     # a copy: `model` keeps its adapter
q_lora = model.base_model.model.model.layers[0].self_attn.q_proj
print(type(q_lora).__name__, "->", type(merged.model.layers[0].self_attn.q_proj).__name__,
      "· scaling α/r =", q_lora.scaling["default"])
print("max |merged_weight − merge_and_unload| on layer 0 q_proj:",
      (merged_weight(q_lora) - merged.model.layers[0].self_attn.q_proj.weight).abs().max().item())

# %% nbgrader={"grade": true, "grade_id": "merged_weight__equals_peft_merge", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_layers = model.base_model.model.model.layers
for _name in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"):
    _mine = merged_weight(_layers[1].get_submodule(_name))
    _peft = merged.model.layers[1].get_submodule(_name).weight
    assert _mine.shape == _peft.shape, f"{_name}: the merged weight has W0's shape (out, in) = {tuple(_peft.shape)}"
    assert torch.allclose(_mine, _peft, atol=1e-6), \
        f"{_name}: must equal merge_and_unload's weight W0 + (α/r)·B·A; max diff {(_mine - _peft).abs().max():.2e}"

# %% nbgrader={"grade": true, "grade_id": "merged_weight__named_adapter_and_scaling", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from peft import LoraConfig as _LoraConfig
from peft import get_peft_model as _get_peft_model

torch.manual_seed(7)
_net = torch.nn.Sequential()
_net.add_module("proj", torch.nn.Linear(12, 20, bias=False))
_w0 = _net.proj.weight.detach().clone()
_pm = _get_peft_model(_net, _LoraConfig(r=4, lora_alpha=4, target_modules=["proj"]), adapter_name="one")
_pm.add_adapter("two", _LoraConfig(r=2, lora_alpha=16, target_modules=["proj"]))
_layer = _pm.base_model.model.proj
with torch.no_grad():
    for _n in ("one", "two"):
        _layer.lora_B[_n].weight.normal_()
_x = torch.randn(3, 12)
_pm.set_adapter("two")
with torch.no_grad():
    _y = _layer(_x)
assert torch.allclose(_x @ merged_weight(_layer, "two").T, _y, atol=1e-5), \
    "x @ merged.T must equal the adapter layer's output for adapter 'two' (scaling α/r = 16/2 = 8)"
### BEGIN HIDDEN TESTS
_a, _b = _layer.lora_A["one"].weight, _layer.lora_B["one"].weight
assert torch.allclose(merged_weight(_layer, "one"), _w0 + 1.0 * _b @ _a, atol=1e-6), "adapter 'one': α/r = 4/4 = 1"
_a, _b = _layer.lora_A["two"].weight, _layer.lora_B["two"].weight
assert torch.allclose(merged_weight(_layer, "two"), _w0 + 8.0 * _b @ _a, atol=1e-5), "adapter 'two': α/r = 16/2 = 8"
assert torch.equal(_layer.base_layer.weight, _w0), "merged_weight must not modify W0 in place"
_pm.add_adapter("three", _LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=["proj"]))
_pm.add_adapter("rank1", _LoraConfig(r=1, lora_alpha=3, target_modules=["proj"]))
_pm.add_adapter("fresh", _LoraConfig(r=2, lora_alpha=16, target_modules=["proj"]))
with torch.no_grad():
    for _n in ("three", "rank1"):
        _layer.lora_B[_n].weight.normal_()
_a, _b = _layer.lora_A["three"].weight, _layer.lora_B["three"].weight
assert torch.allclose(merged_weight(_layer, "three"), _w0 + 4.0 * _b @ _a, atol=1e-5), \
    "rsLoRA adapter: peft's scaling is α/√r = 8/2 = 4 — read layer.scaling, do not recompute α/r"
_a, _b = _layer.lora_A["rank1"].weight, _layer.lora_B["rank1"].weight
_m1 = merged_weight(_layer, "rank1")
assert _m1.shape == (20, 12) and torch.allclose(_m1, _w0 + 3.0 * _b @ _a, atol=1e-5), "r = 1: B·A is an outer product"
assert torch.equal(merged_weight(_layer, "fresh"), _w0), "a freshly initialised adapter (B = 0) merges to W0 exactly"
assert torch.equal(_layer.base_layer.weight, _w0), "merged_weight must not modify W0 in place"
### END HIDDEN TESTS

# %% [markdown]
# ### Merged and unmerged logits agree — to a tolerance, not exactly
#
# Mathematically $(W_0 + sBA)x = W_0x + s\,B(Ax)$. In floating point they are different computations: the merged
# model rounds $W_0 + sBA$ once per weight and does one matmul; the unmerged one does three matmuls and a sum, each
# with its own rounding, and float addition is not associative. Every fp32 operation has relative error up to
# $2^{-24}$ (unit roundoff; `torch.finfo(float32).eps` = $2^{-23}$); sums over hundreds of terms, four layers of them,
# accumulate that to a few ulps of the logits' scale. The same experiment in bf16 (unit roundoff $2^{-8}$) shows the
# difference scales with the format's precision — which is how you tell rounding from a bug (a missing α/r scaling
# would be off by the whole update, orders of magnitude more).

# %%
with torch.no_grad():
    diff32 = (merged(**probe).logits - ref_logits).abs().max().item()
    m16, u16 = copy.deepcopy(merged).to(torch.bfloat16), copy.deepcopy(model).to(torch.bfloat16)
    diff16 = (m16(**probe).logits.float() - u16(**probe).logits.float()).abs().max().item()
    update = (ref_logits - plain_base(**probe).logits).abs().max().item()
scale = ref_logits.abs().max().item()
TOL = 1e-5 * scale          # stated tolerance for fp32: 1e-5 of the logits' scale
print(f"logit scale max|z| = {scale:.2f}; the adapter changes logits by up to {update:.2f}")
print(f"fp32 merged vs unmerged: max diff {diff32:.2e} = {diff32 / scale / torch.finfo(torch.float32).eps:.1f} "
      f"eps × scale; tolerance {TOL:.2e} -> {'within' if diff32 <= TOL else 'OUTSIDE'}")
print(f"bf16 merged vs unmerged: max diff {diff16:.2e} = {diff16 / diff32:.0f}× the fp32 difference")
gens_merged = answer(merged, tokenizer, heldout, TEMPLATE)
print(f"greedy answers identical on {sum(a == b for a, b in zip(gens_merged, cols['tuned']))}/{len(heldout)} "
      f"held-out prompts; exact match merged {tasks.exact_match(heldout, gens_merged):.3f} "
      f"vs unmerged {tasks.exact_match(heldout, cols['tuned']):.3f}")

# %% [markdown]
# ### What merging buys: speed
#
# Merged, each projection is one matmul; unmerged, it is $W_0x$ plus $B(Ax)$ and the adapter bookkeeping. We time
# the forward pass of a batch of held-out prompts, the two models interleaved (the machine is shared, so the ratio
# is the figure; `benchmarks/adapter_serving.py` measures the same on a wider model and `docs/BENCHMARKS.md` records
# it). `median_seconds(fn, repeats)` (from `course.timing`) is the median wall time of `repeats` calls of `fn` after
# one untimed warm-up call.

# %%
batch = tokenizer([chat_prompt(tokenizer, e.instruction, TEMPLATE) for e in heldout[:32]], return_tensors="pt",
                  padding=True, add_special_tokens=False)
with torch.no_grad():
    t_unmerged = median_seconds(lambda: model(**batch), 15)
    t_merged = median_seconds(lambda: merged(**batch), 15)
extra = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
print(f"forward of {tuple(batch['input_ids'].shape)} tokens: unmerged {t_unmerged * 1e3:.2f} ms, merged "
      f"{t_merged * 1e3:.2f} ms -> unmerged/merged = {t_unmerged / t_merged:.2f}")
print(f"the adapter adds {extra:,} parameters ({extra / base_params:.1%} of the base's); the unmerged model also "
      "launches three extra kernels per targeted layer and walks peft's adapter bookkeeping")

# %% [markdown]
# The cost of merging is flexibility: a merged model serves **one** fine-tune. To serve another you would re-merge
# (rewrite every targeted weight) or keep a copy of the base per tenant. Notebook 2 keeps the adapters unmerged and
# serves many of them from one base.

# %% [markdown]
# ## 4. Merging onto a 4-bit base
#
# With QLoRA the adapter was trained on top of NF4 weights: the model you evaluated is
# $\text{deq}(Q(W_0))\,x + sB(Ax)$ — our adapter was trained exactly so (section 1). Three ways to "merge" it,
# against that reference:
#
# - **into the 4-bit layer** (peft's `merge_and_unload` on a `Linear4bit`): dequantize, add $sBA$, **quantize
#   again** to NF4 — most entries of the update are smaller than the gap between NF4 levels, so the rounding
#   distorts it (by how much is measured below);
# - **dequantize first** (`model.dequantize()`, then merge): $\text{deq}(Q(W_0)) + sBA$ kept in fp32/bf16 —
#   the reference up to rounding, at 16/32 bits per weight instead of about four;
# - **reload the base in bf16 (or fp32), then merge** (the common recipe): $W_0 + sBA$ on the *original* weights —
#   differs from the reference by the base's quantization error, which the adapter never saw in QLoRA training.

# %% [markdown]
# ### Exercise 3
# `dequantize_and_merge(layer, adapter_name)` returns the fp32 merged weight of a LoRA layer whose base is a
# bitsandbytes `Linear4bit`: its `weight` is packed (two 4-bit codes per uint8, shape `(out·in/2, 1)`); dequantize
# it with `bitsandbytes.functional.dequantize_4bit(weight.data, weight.quant_state)` (imported as `bnbF`), then add
# `layer.scaling[adapter_name]`·$BA$ in fp32 ($A$ and $B$ may be stored in bf16, as trl's QLoRA setup stores them: cast
# them to fp32 before the product). Do **not** re-quantize.

# %% nbgrader={"grade": false, "grade_id": "dequantize_and_merge", "locked": false, "schema_version": 3, "solution": true, "task": false}
@torch.no_grad()
def dequantize_and_merge(layer, adapter_name: str = "default") -> torch.Tensor:
    """deq(W0_nf4) + (α/r)·B·A in fp32 for a LoRA layer on a bnb Linear4bit. Returns (out, in)."""
    ### BEGIN SOLUTION
    w = layer.base_layer.weight
    w0 = bnbF.dequantize_4bit(w.data, w.quant_state).to(torch.float32)
    a = layer.lora_A[adapter_name].weight.to(torch.float32)
    b = layer.lora_B[adapter_name].weight.to(torch.float32)
    return w0 + layer.scaling[adapter_name] * (b @ a)
    ### END SOLUTION


# %%
def fresh_4bit_model(training_layout=False):
    """The 4-bit base with our adapter attached, freshly loaded (no forward pass has run on it yet). With
    ``training_layout`` it keeps the layout QLoRA trained in (dequantize, then matmul in the compute dtype)."""
    qb = load_base(profile, quantize=True)
    if training_layout:
        keep_training_layout(qb)
    return PeftModel.from_pretrained(qb, ADAPTER_DIR).eval()


qmodel = fresh_4bit_model()
q_layer = qmodel.base_model.model.model.layers[0].self_attn.q_proj
print(type(q_layer.base_layer).__name__, "packed weight", tuple(q_layer.base_layer.weight.shape),
      q_layer.base_layer.weight.dtype, "-> merged", tuple(dequantize_and_merge(q_layer).shape))

# %% nbgrader={"grade": true, "grade_id": "dequantize_and_merge__reproduces_the_4bit_layer", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(11)
_qlayers = fresh_4bit_model().base_model.model.model.layers
for _name in ("self_attn.q_proj", "mlp.up_proj", "mlp.down_proj"):
    _layer = _qlayers[0].get_submodule(_name)
    _m = dequantize_and_merge(_layer)                 # before the layer's first forward (see below why)
    _x = torch.randn(5, _layer.in_features)
    with torch.no_grad():
        _y = _layer(_x)
    assert _m.shape == (_layer.out_features, _layer.in_features), f"{_name}: merged weight is (out, in) in fp32"
    _rel = ((_x @ _m.T - _y).abs().max() / _y.abs().max()).item()
    assert _rel < 0.02, (f"{_name}: x @ merged.T must reproduce the 4-bit layer with its adapter up to the kernel's "
                         f"bf16 rounding (< 2% of the output scale); relative max diff {_rel:.3f}")

# %% nbgrader={"grade": true, "grade_id": "dequantize_and_merge__no_requantization", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_qlayers = fresh_4bit_model().base_model.model.model.layers
_layer = _qlayers[1].mlp.gate_proj
_w = _layer.base_layer.weight
_m = dequantize_and_merge(_layer)
assert _m.dtype == torch.float32, "return the merged weight in fp32"
_deq = bnbF.dequantize_4bit(_w.data, _w.quant_state).float()
_delta = _layer.get_delta_weight("default").float()
assert torch.allclose(_m - _deq, _delta, atol=1e-5), \
    "merged − deq(W0) must be the whole update (α/r)·B·A: nothing lost to re-quantization, nothing unscaled"
### BEGIN HIDDEN TESTS
assert torch.allclose(_m, _deq + _delta, atol=1e-5)
assert _w.dtype == torch.uint8, "the 4-bit layer itself must be left packed"
_layer = _qlayers[1].self_attn.k_proj
_w = _layer.base_layer.weight
assert torch.allclose(dequantize_and_merge(_layer), bnbF.dequantize_4bit(_w.data, _w.quant_state).float()
                      + _layer.get_delta_weight("default").float(), atol=1e-5), "k_proj (GQA: fewer outputs)"
_qm = fresh_4bit_model()
_qm.load_adapter(ADAPTER_DIR, adapter_name="other")
_layer = _qm.base_model.model.model.layers[0].mlp.up_proj
torch.manual_seed(3)
with torch.no_grad():
    _layer.lora_B["other"].weight.copy_(torch.randn_like(_layer.lora_B["other"].weight))
_layer.scaling["other"] = 0.75                                   # another adapter, another scaling
_w = _layer.base_layer.weight
_deq = bnbF.dequantize_4bit(_w.data, _w.quant_state).float()
_want = _deq + 0.75 * (_layer.lora_B["other"].weight.float() @ _layer.lora_A["other"].weight.float())
assert torch.allclose(dequantize_and_merge(_layer, "other"), _want, atol=1e-5), \
    "merge the adapter asked for, with its own scaling (here 0.75)"
_layer.lora_A["other"].to(torch.bfloat16)
_layer.lora_B["other"].to(torch.bfloat16)
_want = _deq + 0.75 * (_layer.lora_B["other"].weight.float() @ _layer.lora_A["other"].weight.float())
_m16 = dequantize_and_merge(_layer, "other")
assert type(_m16) is torch.Tensor and _m16.dtype == torch.float32 and torch.allclose(_m16, _want, atol=1e-5), \
    "A and B stored in bf16: cast them to fp32 before the product (a bf16 product rounds the update to ~3 digits)"
### END HIDDEN TESTS

# %% [markdown]
# ### Two things the 4-bit kernels do behind your back (measured on this machine)
#
# **How a 4-bit layer is computed depends on the hardware.** On a GPU bitsandbytes computes in
# `bnb_4bit_compute_dtype` (dequantize then matmul, or a fused kernel for one-token decoding). On a CPU with
# AVX-512 BF16, bitsandbytes 0.50 uses a fused kernel that
# casts the input and the block scales to **bf16** whatever the compute dtype says — and, on the layer's **first
# inference forward**, it **repacks the weight bytes in place** into that kernel's layout
# (`quant_state.packing_format_for_cpu = True`). After that, `dequantize_4bit(weight.data, quant_state)` reads the
# repacked bytes as if they were the standard layout and returns garbage — and peft's `merge_and_unload` on a
# `Linear4bit` reads them the same way. So on such a CPU: merge **before** the model serves, or reload it first.

# %%
qm = fresh_4bit_model()
lay = qm.base_model.model.model.layers[0].self_attn.q_proj
before = dequantize_and_merge(lay)
torch.manual_seed(0)
x_probe = torch.randn(8, lay.in_features)
with torch.no_grad():
    y_4bit = lay(x_probe)                                  # the layer's first forward
repacked = getattr(lay.base_layer.weight.quant_state, "packing_format_for_cpu", False)
rel = lambda w: ((x_probe @ w.T - y_4bit).abs().max() / y_4bit.abs().max()).item()  # noqa: E731
print(f"weights repacked by the CPU kernel on first forward: {repacked}")
print(f"x @ (merged before the forward)ᵀ vs the 4-bit layer: relative max diff {rel(before):.2e} "
      f"(bf16 unit roundoff {2**-8:.2e})")
print(f"x @ (merged after the forward)ᵀ  vs the 4-bit layer: relative max diff {rel(dequantize_and_merge(lay)):.2e}")

# %% [markdown]
# Now the merges, whole-model, against **the model QLoRA trained**: the 4-bit base with its adapter, computed as in
# training (dequantize, then matmul in the compute dtype, fp32 here). Columns: max logit difference on the probe
# batch, exact match on the held-out prompts, the fraction of greedy answers identical to the reference's, and bits
# per stored weight of a projection (codes only; NF4 adds its block scales, printed below). The second row is the
# same 4-bit model served by the CPU kernel above (bf16; on a CPU without AVX-512 BF16 it *is* the reference). Every
# model is freshly loaded and merged before its first forward; the last row shows the trap at model scale.

# %%
def into_4bit_after_serving():
    m = fresh_4bit_model()
    with torch.no_grad():
        m(**probe)                                          # serve once, then merge
    return m.merge_and_unload()


def requantized():
    m = fresh_4bit_model().merge_and_unload()
    keep_training_layout(m)                                 # compute as training did: only the requantization differs
    return m


ways = {"4-bit + adapter, as trained (ref.)": lambda: fresh_4bit_model(training_layout=True),
        "4-bit + adapter, CPU serving kernel": lambda: fresh_4bit_model(),
        "merged into 4-bit (requantized)": requantized,
        "dequantize first, then merge": lambda: PeftModel.from_pretrained(
            load_base(profile, quantize=True).dequantize(), ADAPTER_DIR).merge_and_unload(),
        "bf16 reload of W0, then merge": lambda: PeftModel.from_pretrained(
            load_base(profile, dtype="bfloat16"), ADAPTER_DIR).merge_and_unload(),
        "fp32 reload of W0, then merge": lambda: merged,
        "merged into 4-bit after a forward": into_4bit_after_serving}
REF = "4-bit + adapter, as trained (ref.)"
merge_table, rows = {}, {}
for name, build in progress(list(ways.items()), desc="merges"):
    m = build().eval()
    with torch.no_grad():
        logits = m(**probe).logits.float()                  # (batch, seq, vocab)
    proj = m.get_base_model().model.layers[0].self_attn.q_proj if isinstance(m, PeftModel) else m.model.layers[0].self_attn.q_proj
    w = proj.base_layer.weight if hasattr(proj, "base_layer") else proj.weight
    rows[name] = (logits, answer(m, tokenizer, heldout, TEMPLATE),
                  w.element_size() * 8 * w.numel() / (proj.in_features * proj.out_features))
q_ref, ref_answers, _ = rows[REF]
print(f"NF4 block scales with double quantization: {nf4_bits_per_param(double_quant=True) - 4:.3f} extra bits/weight")
print(f"{'':36} {'max |Δlogit|':>12} {'exact match':>11} {'same answer':>11} {'bits/weight':>11}")
for name, (logits, gens, bits) in rows.items():
    merge_table[name] = {"dlogit": (logits - q_ref).abs().max().item(), "em": tasks.exact_match(heldout, gens),
                         "agree": sum(a == b for a, b in zip(gens, ref_answers)) / len(heldout)}
    r = merge_table[name]
    print(f"{name:36} {r['dlogit']:12.2e} {r['em']:11.3f} {r['agree']:11.3f} {bits:11.0f}")
others = min(merge_table[k]["dlogit"] for k in ("merged into 4-bit (requantized)", "bf16 reload of W0, then merge",
                                                 "fp32 reload of W0, then merge"))
print(f"logit scale max|z| = {q_ref.abs().max().item():.2f}; {len(heldout)} held-out prompts ('same answer': greedy "
      f"answer identical to the reference's); the nearest other merge is "
      f"{others / max(merge_table['dequantize first, then merge']['dlogit'], 1e-12):,.0f}× farther than dequantize-first")

# %%
# The claims of the reading below, on this run; tests/test_day5.py checks them on seeds 1 and 2.
deq = merge_table["dequantize first, then merge"]
far = ("merged into 4-bit (requantized)", "bf16 reload of W0, then merge", "fp32 reload of W0, then merge")
claims = {
    "the QLoRA adapter raises held-out exact match by ≥ 0.3 and at least halves the training loss":
        tasks.exact_match(heldout, cols["tuned"]) >= tasks.exact_match(heldout, cols["base"]) + 0.3
        and losses[-1] < 0.5 * losses[0],
    "dequantize-first reproduces the trained model (Δlogit < 1e-3, every answer the same, same exact match)":
        deq["dlogit"] < 1e-3 and deq["agree"] == 1.0 and deq["em"] == merge_table[REF]["em"],
    "requantizing and both reloads of W0 move the logits > 100× as far as dequantize-first, and > 0.5":
        all(merge_table[k]["dlogit"] > 100 * deq["dlogit"] and merge_table[k]["dlogit"] > 0.5 for k in far),
}
if repacked:                                    # the trap exists only where the CPU kernel repacks the bytes
    claims["merging after a CPU forward (repacked bytes) loses > 0.3 exact match"] = \
        merge_table["merged into 4-bit after a forward"]["em"] < merge_table[REF]["em"] - 0.3
check_claims(claims, profile)
gaps = {k: round((merge_table[REF]["em"] - merge_table[k]["em"]) * len(heldout)) for k in far}
print("exact match lost against the reference, in questions of", len(heldout), "—",
      "; ".join(f"{k}: {g}" for k, g in gaps.items()), "→",
      "at most a question or two: exact match cannot rank these merges here" if max(abs(g) for g in gaps.values()) <= 2
      else "more than two questions: on this run the scorer sees what the logits show")

# %% [markdown]
# How much of the update does re-quantizing erase? For every targeted layer (merged before any forward): the update
# that survives NF4 rounding, $\text{deq}(Q(\text{merged})) - \text{deq}(W_0)$, against the update $sBA$ itself.

# %%
errors = []
for name, mod in fresh_4bit_model().named_modules():
    if hasattr(mod, "lora_A") and hasattr(mod, "base_layer"):
        w = mod.base_layer.weight
        w0 = bnbF.dequantize_4bit(w.data, w.quant_state).float()
        m_ = dequantize_and_merge(mod)
        survived = bnbF.dequantize_4bit(*bnbF.quantize_4bit(m_, blocksize=w.quant_state.blocksize,
                                                           quant_type="nf4")).float() - w0
        errors.append(((survived - (m_ - w0)).norm() / (m_ - w0).norm()).item())
print(f"{len(errors)} layers: ‖surviving update − update‖ / ‖update‖: median {statistics.median(errors):.2f}, "
      f"min {min(errors):.2f}, max {max(errors):.2f}")

# %% [markdown]
# **Reading it.** Only dequantize-first reproduces the trained model: its logits differ by fp32 rounding and every
# greedy answer is the same. Requantizing into NF4, and reloading the original $W_0$ in bf16 or fp32, each move the
# logits by several units (compare the logit scale) — the size of the base's quantization error, on top of which the
# adapter was trained; the CPU serving kernel's bf16 rounding is far smaller. The scorer is less sensitive than the
# logits: on the tiny model's easy task most answers survive those shifts (the "same answer" column), and exact match
# differs by a question or two between the merges (the line printed after the table), which is no ranking on this
# many prompts. That is a limit of the scorer, not a licence to requantize: on the real SmolLM2 model
# (`PROFILE = "small"`) the same merges lose many more answers, the requantized one most of them, and that line says
# so. The surviving-update ratio says how much of the fine-tune a requantized merge distorts, layer by layer.

# %% [markdown]
# **Takeaways**
# - A LoRA deliverable is an adapter folder; inference is base + adapter (`PeftModel.from_pretrained`), and the base
#   is the same model with the adapter disabled — compare them on held-out prompts with a scorer, not by eye.
# - `merge_and_unload` folds $\frac{\alpha}{r}BA$ into $W_0$: same outputs up to floating-point rounding (state the
#   tolerance; it scales with the dtype), no adapter overhead, but one fine-tune per copy of the base.
# - On a 4-bit base, **dequantize first** and keep the merged model in 16/32 bits; merging back into NF4 rounds part
#   of the update away, and merging onto the original full-precision weights serves a model the adapter was not
#   trained on. On CPUs, merge before the model's first forward: bitsandbytes repacks the 4-bit bytes in place.
