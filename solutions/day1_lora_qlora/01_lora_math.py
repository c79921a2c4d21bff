# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 1 · 1 — LoRA's math, and its numbers made exact
#
# Reading for today: Hu et al. 2021 (LoRA), Dettmers et al. 2023 (QLoRA).
#
# A full fine-tune changes every weight matrix $W_0 \in \mathbb{R}^{d\times k}$ by some $\Delta W$. LoRA's bet
# (seed §3.2): **fine-tuning updates have low intrinsic rank**, so write the update as a product of two thin
# matrices and train only those:
#
# $$W_\text{eff} = W_0 + \frac{\alpha}{r}\, B A,\qquad A \in \mathbb{R}^{r\times k},\; B \in \mathbb{R}^{d\times r},\; r \ll \min(d,k)$$
#
# $$y = W_0 x + \frac{\alpha}{r}\, B (A x)$$
#
# In this notebook: the shapes and the forward pass, why the adapted model starts *exactly* at the base model,
# what the scaling $\alpha/r$ does (and rsLoRA's $\alpha/\sqrt r$), merge math, and the parameter counts —
# where the seed's rounded figures ("122×", "~30M", "~100MB") are replaced by exact ones computed here.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import math

import torch

torch.manual_seed(0)

# %% [markdown]
# ## 1. Shapes and the forward pass
#
# `nn.Linear` stores its weight as `(out_features, in_features)` = `(d, k)` and computes $y = x W_0^\top$ for a
# row-vector batch $x$ of shape `(n, k)`. $A$ maps the input down to $r$ dimensions, $B$ maps back up to $d$.
# A small example with every shape printed:

# %%
d, k, r, alpha = 6, 4, 2, 4
W0 = torch.randn(d, k)
A = torch.randn(r, k)
B = torch.randn(d, r)
x = torch.randn(3, k)                                  # a batch of 3 inputs, shape (n, k)

y_two_paths = x @ W0.T + (alpha / r) * (x @ A.T) @ B.T  # (n,k)(k,d) + (n,k)(k,r)(r,d) -> (n, d)
W_eff = W0 + (alpha / r) * B @ A                        # (d, k)
print("A", tuple(A.shape), "B", tuple(B.shape), "BA", tuple((B @ A).shape), "y", tuple(y_two_paths.shape))
print("rank of BA:", torch.linalg.matrix_rank(B @ A).item(), "(at most r =", r, ")")
print("two paths == merged weight:", torch.allclose(y_two_paths, x @ W_eff.T, atol=1e-6))

# %% [markdown]
# The two lines compute the same thing: the adapter can run **beside** the frozen weight (training; serving many
# adapters on one base) or be **merged** into it (one matrix, no extra latency). Merging is just
# $W_0 \leftarrow W_0 + \frac{\alpha}{r}BA$, and un-merging subtracts the same matrix.
#
# ### Exercise 1 — the update ΔW
# Write `lora_delta(A, B, alpha, r, rslora=False)` returning $\Delta W = \text{scale}\cdot BA$ with
# scale $=\alpha/r$, or $\alpha/\sqrt r$ when `rslora=True` (rank-stabilised LoRA, Kalajdzievski 2023; peft's
# `use_rslora=True`).

# %% nbgrader={"grade": false, "grade_id": "lora_delta", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lora_delta(A, B, alpha, r, rslora=False):
    """ΔW = scale · B @ A. A: (r, k), B: (d, r) -> (d, k). scale = α/r, or α/√r with rsLoRA."""
    ### BEGIN SOLUTION
    scale = alpha / math.sqrt(r) if rslora else alpha / r
    return scale * (B @ A)
    ### END SOLUTION


# %%
dW = lora_delta(A, B, alpha, r)
print("ΔW shape", tuple(dW.shape), "· merged forward equals two-path forward:",
      torch.allclose(x @ (W0 + dW).T, y_two_paths, atol=1e-6))

# %% nbgrader={"grade": true, "grade_id": "lora_delta__shape_and_scale", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_A, _B = torch.ones(2, 3), torch.ones(5, 2)
_d = lora_delta(_A, _B, alpha=8, r=2)
assert tuple(_d.shape) == (5, 3), f"ΔW must have W0's shape (d, k) = (5, 3), got {tuple(_d.shape)}"
assert torch.allclose(_d, torch.full((5, 3), 8.0)), "each entry of B@A is r = 2 here, times α/r = 4 gives 8"
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(1)
_A, _B = torch.randn(4, 7, generator=_g), torch.randn(9, 4, generator=_g)
assert torch.allclose(lora_delta(_A, _B, alpha=16, r=4), 4.0 * _B @ _A, atol=1e-6), "scale is α/r = 16/4"
assert torch.allclose(lora_delta(_A, _B, alpha=4, r=4), _B @ _A, atol=1e-6), "α = r means scale 1"
assert type(lora_delta(_A, _B, alpha=4, r=4)) is torch.Tensor, "return a plain torch.Tensor"
assert torch.allclose(lora_delta(_A, _B, alpha=8, r=16), 0.5 * _B @ _A, atol=1e-6), "α < r: 8/16 = 0.5 (true division)"
_A1, _B1 = torch.randn(1, 7, generator=_g), torch.randn(9, 1, generator=_g)
assert torch.allclose(lora_delta(_A1, _B1, alpha=2, r=1), 2.0 * _B1 @ _A1, atol=1e-6), "r = 1: a rank-one update"
assert torch.count_nonzero(lora_delta(_A, torch.zeros(9, 4), alpha=16, r=4)) == 0, "B = 0 (LoRA's init): ΔW = 0"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "lora_delta__rslora", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_A, _B = torch.ones(4, 3), torch.ones(5, 4)
assert torch.allclose(lora_delta(_A, _B, alpha=8, r=4, rslora=True), torch.full((5, 3), 16.0)), \
    "rsLoRA scales by α/√r: 8/2 = 4, times (B@A)_ij = r = 4, gives 16"
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(2)
_A, _B = torch.randn(16, 6, generator=_g), torch.randn(3, 16, generator=_g)
assert torch.allclose(lora_delta(_A, _B, alpha=32, r=16, rslora=True), 8.0 * _B @ _A, atol=1e-5), "α/√r = 32/4 = 8"
assert torch.allclose(lora_delta(_A, _B, alpha=32, r=16, rslora=False), 2.0 * _B @ _A, atol=1e-5), \
    "without rslora the scale stays α/r"
assert type(lora_delta(_A, _B, alpha=32, r=16, rslora=True)) is torch.Tensor, "return a plain torch.Tensor"
for _r in (1, 9, 64):       # α/√r at several ranks, not only where √r happens to equal r/4
    _A, _B = torch.randn(_r, 5, generator=_g), torch.randn(6, _r, generator=_g)
    assert torch.allclose(lora_delta(_A, _B, alpha=12, r=_r, rslora=True), 12 / math.sqrt(_r) * (_B @ _A),
                          atol=1e-5), f"rsLoRA at r={_r}: α/√r"
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Why the adapted model starts exactly at the base model
#
# peft (and the paper) initialise $A$ with Kaiming-uniform (`kaiming_uniform_(A, a=√5)`, nn.Linear's own default)
# and $B = 0$. Then $BA = 0$: at step 0 the adapted model **is** the base model, bit for bit, so the first loss is
# the base model's loss and training moves away from a known-good point. Why not both zero? Because then
# $\partial L/\partial A = \text{scale}\cdot B^\top(\ldots) = 0$ and $\partial L/\partial B = \text{scale}\cdot(\ldots)(Ax)^\top = 0$:
# nothing would ever move. With $A \neq 0$, $B$ gets a gradient on step 1 and $A$ starts moving on step 2.

# %%
A0 = torch.empty(r, k)
torch.nn.init.kaiming_uniform_(A0, a=math.sqrt(5))
B0 = torch.zeros(d, r, requires_grad=True)
A0.requires_grad_(True)
y0 = x @ (W0 + lora_delta(A0, B0, alpha, r)).T             # (n, d)
print("max |y_adapted - y_base| at init:", (y0 - x @ W0.T).abs().max().item())
y0.pow(2).sum().backward()
print("‖∂L/∂B‖ =", round(B0.grad.norm().item(), 4), "(non-zero: B moves first) · ‖∂L/∂A‖ =", A0.grad.norm().item(),
      "(zero until B ≠ 0)")

# %% [markdown]
# ## 3. α/r as a knob
#
# The update's size is proportional to $\alpha/r$. The seed's convention $\alpha = 2r$ keeps the scale at 2 for any
# $r$; fixing α instead (e.g. α = 16) shrinks the update as r grows. rsLoRA argues $\alpha/r$ shrinks it *too much*
# for large r: with $A$ random, $\|BAx\|$ grows like $\sqrt r$, not $r$, so $\alpha/\sqrt r$ keeps the update's
# size stable across ranks. A measurement with random $A$ (Kaiming) and random $B$ on a 256×256 layer:

# %%
def update_norm(r, alpha, rslora, d=256, k=256, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    A_ = torch.empty(r, k)
    torch.nn.init.kaiming_uniform_(A_, a=math.sqrt(5), generator=g)
    B_ = torch.randn(d, r, generator=g) / math.sqrt(d)
    x_ = torch.randn(n, k, generator=g)
    return (x_ @ lora_delta(A_, B_, alpha, r, rslora).T).norm(dim=1).mean().item()


print(f"{'r':>4} {'α/r (α=2r)':>11} {'α/r (α=16)':>11} {'‖ΔWx‖ α=16':>12} {'‖ΔWx‖ rsLoRA α=16':>18}")
for rr in (4, 8, 16, 64, 256):
    print(f"{rr:>4} {2 * rr / rr:>11.3f} {16 / rr:>11.3f} {update_norm(rr, 16, False):>12.3f} {update_norm(rr, 16, True):>18.3f}")

# %% [markdown]
# With fixed α the update fades as r grows; with α/√r it stays roughly flat. In practice: pick r for capacity,
# keep α = 2r (the seed's Lab 02: r = 16, α = 32), and retune the learning rate if you change either — α and the
# learning rate trade off (for Adam, scaling α by c is close to scaling the adapter's learning rate by c).
# At inference α/r is just a constant folded into the merged weight or multiplied into the adapter path; serving
# code must use the same α and r the adapter was trained with, or the update is applied at the wrong strength.
#
# ## 4. Counting trainable parameters
#
# ### Exercise 2 — one matrix
# `lora_param_count(d, k, r)`: the parameters in $A$ and $B$ for one $d\times k$ weight.

# %% nbgrader={"grade": false, "grade_id": "lora_param_count", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lora_param_count(d, k, r):
    """Trainable parameters of a rank-r LoRA adapter on a d×k weight. Shapes: A (r, k), B (d, r)."""
    ### BEGIN SOLUTION
    return r * k + d * r
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "lora_param_count__seed_example", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert lora_param_count(4096, 4096, 16) == 131_072, "4096×4096 at r=16 has r·(d+k) = 131,072 LoRA parameters"
### BEGIN HIDDEN TESTS
assert lora_param_count(8192, 8192, 16) == 262_144
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "lora_param_count__rectangular", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert lora_param_count(1024, 4096, 16) == 16 * (4096 + 1024), "A is (r, k) and B is (d, r): r·k + d·r"
### BEGIN HIDDEN TESTS
assert lora_param_count(10, 3, 2) == 26
assert lora_param_count(14336, 4096, 8) == 8 * (14336 + 4096)
assert lora_param_count(7, 5, 1) == 12
assert type(lora_param_count(7, 5, 1)) is int, "a parameter count is an int"
assert lora_param_count(1, 1, 1) == 2, "the smallest adapter: one A entry, one B entry"
### END HIDDEN TESTS

# %% [markdown]
# The seed's example: a 4096×4096 weight at r = 16. The seed rounds this to "16M vs 131k, 122× fewer";
# the exact figures are:

# %%
full_update = 4096 * 4096
lora_update = lora_param_count(4096, 4096, 16)
print(f"full ΔW: {full_update:,} parameters · LoRA r=16: {lora_update:,} · ratio {full_update / lora_update:g}×")
print(f"(the seed's '122×' is 16M / 131k = {16e6 / 131e3:.1f} after rounding both; exact: d·k / (r·(d+k)) = 4096 / (2·16) = {4096 / 32:g})")

# %% [markdown]
# ### Exercise 3 — a whole model from its config
# Count the LoRA parameters of a Llama-style decoder from its HF `config.json` (a dict). Each block has seven
# projections; with **grouped-query attention** (GQA) the k and v projections are narrower than the hidden size:
# their output width is `num_key_value_heads · head_dim` (head_dim = `hidden_size / num_attention_heads` when the
# config does not give it). Shapes as (in, out):
#
# | module | in | out |
# |---|---|---|
# | q_proj | hidden | heads·head_dim |
# | k_proj, v_proj | hidden | kv_heads·head_dim |
# | o_proj | heads·head_dim | hidden |
# | gate_proj, up_proj | hidden | intermediate |
# | down_proj | intermediate | hidden |
#
# `targets` lists the projection names that get an adapter; a config without `num_key_value_heads` has none of
# GQA (kv_heads = heads).

# %%
ALL_SEVEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Mistral-7B-v0.1's config.json (the fields that matter here)
MISTRAL_7B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 32000}


# %% nbgrader={"grade": false, "grade_id": "model_lora_params", "locked": false, "schema_version": 3, "solution": true, "task": false}
def model_lora_params(config, r, targets=ALL_SEVEN):
    """Trainable LoRA parameters over all layers of a Llama-style model described by an HF config dict."""
    ### BEGIN SOLUTION
    h, inter = config["hidden_size"], config["intermediate_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or h // heads
    shapes = {
        "q_proj": (h, heads * head_dim), "k_proj": (h, kv_heads * head_dim), "v_proj": (h, kv_heads * head_dim),
        "o_proj": (heads * head_dim, h), "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h),
    }
    per_layer = sum(lora_param_count(shapes[t][1], shapes[t][0], r) for t in targets)
    return config["num_hidden_layers"] * per_layer
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "model_lora_params__mistral_all_seven", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_n = model_lora_params(MISTRAL_7B, 16)
assert _n == 41_943_040, f"Mistral-7B, r=16, all seven projections with GQA (k/v width 1024) has 41,943,040; got {_n:,}"
### BEGIN HIDDEN TESTS
assert model_lora_params(MISTRAL_7B, 8) == 41_943_040 // 2, "LoRA parameters are linear in r"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "model_lora_params__gqa_and_targets", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_kv = model_lora_params(MISTRAL_7B, 16, targets=("k_proj",))
assert _kv == 32 * 16 * (4096 + 1024), f"k_proj is 4096 → 8·128 = 1024 under GQA: 32 layers × 16·(4096+1024); got {_kv:,}"
### BEGIN HIDDEN TESTS
assert model_lora_params(MISTRAL_7B, 16, targets=("q_proj", "v_proj")) == 32 * 16 * (8192 + 5120), "q and v only (the paper's choice)"
_llama2 = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32}
assert model_lora_params(_llama2, 16) == 39_976_960, "no num_key_value_heads: plain multi-head attention, kv = hidden"
_odd = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 8}
assert model_lora_params(_odd, 2, targets=("q_proj", "o_proj", "down_proj")) == 3 * 2 * ((64 + 32) * 2 + 96 + 64)
assert model_lora_params(MISTRAL_7B, 16, targets=()) == 0, "no targets: no adapter"
_null_kv = dict(_llama2, num_key_value_heads=None)          # some config.json files write null
assert model_lora_params(_null_kv, 16) == 39_976_960, "num_key_value_heads: null means no GQA"
_one = {"hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 1}
assert model_lora_params(_one, 1) == (8 + 8) * 4 + (8 + 12) * 3, "one layer, one head, r = 1"
assert type(model_lora_params(MISTRAL_7B, 16)) is int, "a parameter count is an int"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "model_lora_params__tiny_equals_peft", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
import json as _json

from peft import LoraConfig as _LoraConfig
from peft import get_peft_model as _get_peft_model

from course.loading import load_base as _load_base
from course.paths import TINY_BASE as _TINY
from course.profiles import PROFILES as _PROFILES      # the tiny model itself, whatever COURSE_PROFILE says

_cfg = _json.loads((_TINY / "config.json").read_text())
_peft = _get_peft_model(_load_base(_PROFILES["tiny"]), _LoraConfig(r=4, lora_alpha=8, target_modules=list(ALL_SEVEN)))
_trainable, _ = _peft.get_nb_trainable_parameters()
assert model_lora_params(_cfg, 4) == _trainable, f"the tiny model has GQA too; peft counts {_trainable:,}"
### BEGIN HIDDEN TESTS
_peft2 = _get_peft_model(_load_base(_PROFILES["tiny"]), _LoraConfig(r=8, target_modules=["k_proj", "down_proj"]))
assert model_lora_params(_cfg, 8, targets=("k_proj", "down_proj")) == _peft2.get_nb_trainable_parameters()[0]
### END HIDDEN TESTS

# %% [markdown]
# ### The seed's "~30M" and "~100MB", made exact
# The seed estimates "~7 matrices/layer × 32 layers ≈ 225 matrices, total adapter ≈ 30M params" and later
# "save the LoRA adapter (~100MB)". Computing it:

# %%
n_mistral = model_lora_params(MISTRAL_7B, 16)
matrices = 7 * MISTRAL_7B["num_hidden_layers"]
MiB = 2**20
print(f"adapted matrices: {matrices} (the seed's '~225' is 7 × 32 = {matrices})")
print(f"Mistral-7B LoRA r=16, all seven projections: {n_mistral:,} parameters (the seed says '~30M')")
print(f"adapter file: {n_mistral * 2 / MiB:g} MiB in bf16, {n_mistral * 4 / MiB:g} MiB in fp32 (the seed says '~100MB')")
no_gqa = dict(MISTRAL_7B, num_key_value_heads=32)
print(f"had GQA been ignored (k/v as wide as hidden): {model_lora_params(no_gqa, 16):,} — "
      f"{model_lora_params(no_gqa, 16) - n_mistral:,} too many")

# %% [markdown]
# The same count from the course's library calculator (`course memory`, built on `course.memory`), which
# reads any HF config; the total parameter count shows what fraction is trained:

# %%
from course.memory import count_params, lora_params, model_spec

spec = model_spec("mistral-7b")
print(f"course.memory: {lora_params(spec, 16):,} LoRA parameters of {count_params(spec):,} "
      f"= {100 * lora_params(spec, 16) / count_params(spec):.3f}% of Mistral-7B")
print(f"optimizer state for them with AdamW (two fp32 moments): {lora_params(spec, 16) * 8 / MiB:g} MiB "
      f"— the seed's '<1GB' holds")

# %% [markdown]
# ## Summary
# - $W_\text{eff} = W_0 + \frac{\alpha}{r}BA$, $A\in\mathbb R^{r\times k}$, $B\in\mathbb R^{d\times r}$; run beside $W_0$ or merge.
# - $B=0$, $A$ Kaiming-uniform: the adapted model starts exactly at the base, and gradients still flow.
# - α/r sets the update's strength; α = 2r by convention; rsLoRA uses α/√r to keep it rank-independent.
# - Counts: $r(d+k)$ per matrix; 128× fewer for 4096² at r = 16; Mistral-7B r = 16 on all seven projections
#   (with GQA) trains 41,943,040 parameters: 80 MiB in bf16, 160 MiB in fp32.
