# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 1 · 5 — The PEFT family, each checked against peft
#
# LoRA is one member of a family. Here we build the others that peft ships, each from scratch on the tiny Llama
# model, and check each against peft 0.21 with the same parameters copied in:
#
# 1. **prompt tuning** — trainable "virtual token" embeddings prepended to the input;
# 2. **prefix tuning** — trainable keys and values prepended inside every attention layer;
# 3. **(IA)³** — trainable vectors that rescale keys, values and the MLP's down-projection input;
# 4. **DoRA** — LoRA split into a magnitude and a direction;
# 5. **rsLoRA** — scaling α/√r instead of α/r, and why;
# 6. **PiSSA** — LoRA initialised from the top-r SVD of the weight;
# 7. **LoRA+** — a larger learning rate for B than for A, and why that is what α was doing under Adam.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from course.loading import load_base, load_tokenizer

tok = load_tokenizer(profile)
base = load_base(profile)
cfg = base.config
batch = tok(["The capital of France is Paris.", "Two plus three is five and"], return_tensors="pt", padding=True)
print("batch", tuple(batch["input_ids"].shape), "padding per row:", (batch["attention_mask"] == 0).sum(1).tolist())
print(f"layers {cfg.num_hidden_layers}, hidden {cfg.hidden_size}, heads {cfg.num_attention_heads}, "
      f"kv heads {cfg.num_key_value_heads}, head_dim {cfg.head_dim}")

# %% [markdown]
# ## 1. Prompt tuning (Lester et al. 2021)
#
# The model stays frozen; we learn `P` vectors of the embedding width — "virtual tokens" — and put them **before**
# the input's token embeddings. The attention mask gets `P` ones in front (the virtual tokens are always
# attended to). peft's `PromptTuningConfig` does exactly this and returns logits for all `P + T` positions.
#
# ### Exercise 1
# `prompt_tuning_forward(model, prompt, input_ids, attention_mask)`: `prompt` is `(P, hidden)`; embed the ids with
# `model.get_input_embeddings()`, prepend the prompt to each row, extend the mask, call the model with
# `inputs_embeds=` and return the logits, shape `(B, P + T, vocab)`.

# %% nbgrader={"grade": false, "grade_id": "prompt_tuning_forward", "locked": false, "schema_version": 3, "solution": true, "task": false}
def prompt_tuning_forward(model, prompt, input_ids, attention_mask):
    """Logits (B, P+T, V) of `model` with the (P, hidden) `prompt` prepended to the embedded (B, T) input."""
    ### BEGIN SOLUTION
    embeds = model.get_input_embeddings()(input_ids)
    b, p = input_ids.shape[0], prompt.shape[0]
    virtual = prompt.to(embeds.dtype).unsqueeze(0).expand(b, -1, -1)
    embeds = torch.cat([virtual, embeds], dim=1)
    mask = torch.cat([torch.ones(b, p, dtype=attention_mask.dtype, device=attention_mask.device), attention_mask], dim=1)
    return model(inputs_embeds=embeds, attention_mask=mask).logits
    ### END SOLUTION


# %% [markdown]
# To compare, we build peft's prompt-tuning model, read its initialised prompt (`prompt_encoder.embedding.weight`,
# random normal by default) and feed the same prompt to our function.

# %%
from peft import PromptTuningConfig, get_peft_model

torch.manual_seed(0)
peft_prompt = get_peft_model(load_base(profile), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
prompt = peft_prompt.prompt_encoder["default"].embedding.weight.detach().clone()
with torch.no_grad():
    ref = peft_prompt(**batch).logits
    out = prompt_tuning_forward(base, prompt, **batch)
print("prompt", tuple(prompt.shape), "→ logits", tuple(out.shape))
print("max |mine - peft|:", (out - ref).abs().max().item())
print("trainable parameters:", prompt.numel(), "=", peft_prompt.get_nb_trainable_parameters()[0])

# %% nbgrader={"grade": true, "grade_id": "prompt_tuning_forward__matches_peft", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from peft import PromptTuningConfig as _PromptTuningConfig
from peft import get_peft_model as _get_peft_model

torch.manual_seed(11)
_pm = _get_peft_model(load_base(profile), _PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
_prompt = _pm.prompt_encoder["default"].embedding.weight.detach().clone()
with torch.no_grad():
    _ref = _pm(**batch).logits
    _out = prompt_tuning_forward(base, _prompt, **batch)
assert _out.shape == _ref.shape, f"logits for P + T positions, like peft: {tuple(_ref.shape)}, got {tuple(_out.shape)}"
_d = (_out - _ref).abs().max().item()
assert _d < 1e-5, f"with peft's prompt, logits must equal peft's (padded batch); max diff {_d:.2e}"
### BEGIN HIDDEN TESTS
torch.manual_seed(12)
_pm = _get_peft_model(load_base(profile), _PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=1))
_prompt = _pm.prompt_encoder["default"].embedding.weight.detach().clone()
_one = tok(["Paris"], return_tensors="pt")
with torch.no_grad():
    assert (prompt_tuning_forward(base, _prompt, **_one) - _pm(**_one).logits).abs().max() < 1e-5, "P = 1, batch of 1"
torch.manual_seed(13)
_pm = _get_peft_model(load_base(profile), _PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=9))
with torch.no_grad():
    _pm.prompt_encoder["default"].embedding.weight.mul_(50.0)   # extreme: very large virtual embeddings
    _prompt = _pm.prompt_encoder["default"].embedding.weight.detach().clone()
    _d = (prompt_tuning_forward(base, _prompt, **batch) - _pm(**batch).logits).abs().max().item()
assert _d < 1e-3, f"P = 9 with large prompt vectors: max diff {_d:.2e}"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "prompt_tuning_forward__gradient_only_to_prompt", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(14)
_frozen = load_base(profile)
for _p in _frozen.parameters():
    _p.requires_grad_(False)
_prompt = torch.randn(2, cfg.hidden_size, requires_grad=True)
prompt_tuning_forward(_frozen, _prompt, **batch).pow(2).mean().backward()
assert _prompt.grad is not None and _prompt.grad.abs().sum() > 0, "the loss must reach the prompt: it is the only trainable tensor"
### BEGIN HIDDEN TESTS
with torch.no_grad():
    _a = prompt_tuning_forward(_frozen, _prompt, **batch)[:, 2:]
    _b = prompt_tuning_forward(_frozen, _prompt + 1.0, **batch)[:, 2:]
assert not torch.allclose(_a, _b), "changing the prompt must change the logits of the real tokens (they attend to it)"
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Prefix tuning (Li & Liang 2021)
#
# Prefix tuning goes one level deeper: instead of input vectors, it learns `P` **keys and values for every layer**,
# placed in front of the real tokens' keys and values — exactly like a KV cache of `P` earlier tokens. peft stores
# one `(P, L·2·H_kv·D)` table and reshapes it: for a Llama model (grouped-query attention) it uses the
# **key/value** head count `H_kv` and `head_dim` D, views the table as `(P, 2L, H_kv, D)` and gives layer `l`
# keys from slot `2l` and values from slot `2l + 1`, each as `(B, H_kv, P, D)`. It then wraps them in a
# `DynamicCache` and passes it as the cache (transformers 5.24 calls the argument `cache=`; peft 0.21 still uses
# the deprecated name `past_key_values`), with `P` ones prepended to the attention mask; the model gives the real
# tokens positions `P, P+1, …` because the cache already holds `P` entries.
#
# ### Exercise 2
# `prefix_past_key_values(prefix, n_layers, n_kv_heads, head_dim, batch_size)` returns the list of `(key, value)`
# pairs, one per layer, each `(batch_size, n_kv_heads, P, head_dim)`, laid out as peft lays them out.

# %% nbgrader={"grade": false, "grade_id": "prefix_past_key_values", "locked": false, "schema_version": 3, "solution": true, "task": false}
def prefix_past_key_values(prefix, n_layers, n_kv_heads, head_dim, batch_size):
    """(P, n_layers·2·n_kv_heads·head_dim) table → [(key, value)] per layer, each (B, n_kv_heads, P, head_dim)."""
    ### BEGIN SOLUTION
    p = prefix.shape[0]
    table = prefix.view(p, n_layers, 2, n_kv_heads, head_dim)
    pairs = []
    for layer in range(n_layers):
        key = table[:, layer, 0].permute(1, 0, 2).unsqueeze(0).expand(batch_size, -1, -1, -1)
        value = table[:, layer, 1].permute(1, 0, 2).unsqueeze(0).expand(batch_size, -1, -1, -1)
        pairs.append((key, value))
    return pairs
    ### END SOLUTION


# %% [markdown]
# ### Exercise 3
# `prefix_tuning_forward(model, prefix, input_ids, attention_mask)`: build the pairs for this model's config, wrap
# them in `DynamicCache(pairs)`, pass it as `cache=`, prepend `P` ones to the mask and return the logits,
# shape `(B, T, vocab)`.

# %% nbgrader={"grade": false, "grade_id": "prefix_tuning_forward", "locked": false, "schema_version": 3, "solution": true, "task": false}
def prefix_tuning_forward(model, prefix, input_ids, attention_mask):
    """Logits (B, T, V) with per-layer key/value prefixes taken from the (P, L·2·H_kv·D) `prefix` table."""
    ### BEGIN SOLUTION
    c = model.config
    b, p = input_ids.shape[0], prefix.shape[0]
    pairs = prefix_past_key_values(prefix, c.num_hidden_layers, c.num_key_value_heads, c.head_dim, b)
    mask = torch.cat([torch.ones(b, p, dtype=attention_mask.dtype, device=attention_mask.device), attention_mask], dim=1)
    return model(input_ids=input_ids, attention_mask=mask, cache=DynamicCache(pairs)).logits
    ### END SOLUTION


# %%
from peft import PrefixTuningConfig

torch.manual_seed(0)
peft_prefix = get_peft_model(load_base(profile), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
pc = peft_prefix.peft_config["default"]
prefix = peft_prefix.prompt_encoder["default"].embedding.weight.detach().clone()
print(f"peft provisions token_dim={pc.token_dim} = {pc.num_attention_heads} kv heads × {cfg.head_dim}; "
      f"table {tuple(prefix.shape)} = (P, {pc.num_layers}·2·{pc.token_dim})")
with torch.no_grad():
    ref = peft_prefix(**batch).logits
    out = prefix_tuning_forward(base, prefix, **batch)
print("logits", tuple(out.shape), "max |mine - peft|:", (out - ref).abs().max().item())

# %% nbgrader={"grade": true, "grade_id": "prefix_past_key_values__matches_peft_cache", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from peft import PrefixTuningConfig as _PrefixTuningConfig

torch.manual_seed(21)
_pm = _get_peft_model(load_base(profile), _PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
_table = _pm.prompt_encoder["default"].embedding.weight.detach().clone()
_cache = _pm.get_prompt(batch_size=2)
_pairs = prefix_past_key_values(_table, cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, 2)
assert len(_pairs) == cfg.num_hidden_layers, "one (key, value) pair per layer"
assert tuple(_pairs[0][0].shape) == (2, cfg.num_key_value_heads, 3, cfg.head_dim), "each (B, H_kv, P, D)"
for _l, (_k, _v) in enumerate(_pairs):
    assert torch.equal(_k, _cache.layers[_l].keys), f"layer {_l} keys differ from peft's cache"
    assert torch.equal(_v, _cache.layers[_l].values), f"layer {_l} values differ from peft's cache"

# %% nbgrader={"grade": true, "grade_id": "prefix_past_key_values__layout", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_t = torch.arange(1 * 2 * 2 * 1 * 3, dtype=torch.float32).view(1, 12)   # P=1, L=2, H=1, D=3: k0 v0 k1 v1
_pairs = prefix_past_key_values(_t, 2, 1, 3, 1)
assert _pairs[0][1].flatten().tolist() == [3.0, 4.0, 5.0], "layer 0's values follow its keys in the table"
assert _pairs[1][0].flatten().tolist() == [6.0, 7.0, 8.0], "layer 1's keys come after layer 0's key and value"
### BEGIN HIDDEN TESTS
_t = torch.arange(2 * 3 * 2 * 2 * 5, dtype=torch.float32).view(2, 3 * 2 * 2 * 5)   # P=2, L=3, H=2, D=5
_pairs = prefix_past_key_values(_t, 3, 2, 5, 1)
_v = _t.view(2, 6, 2, 5)
assert torch.equal(_pairs[1][0][0], _v[:, 2].permute(1, 0, 2)), "layer 1 keys are slot 2l = 2 of (P, 2L, H, D)"
assert torch.equal(_pairs[2][1][0], _v[:, 5].permute(1, 0, 2)), "layer 2 values are slot 2l + 1 = 5"
assert tuple(prefix_past_key_values(_t[:1], 3, 2, 5, 4)[0][1].shape) == (4, 2, 1, 5), "P = 1, batch 4"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "prefix_tuning_forward__matches_peft", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(22)
_pm = _get_peft_model(load_base(profile), _PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
_table = _pm.prompt_encoder["default"].embedding.weight.detach().clone()
with torch.no_grad():
    _ref = _pm(**batch).logits
    _out = prefix_tuning_forward(base, _table, **batch)
assert _out.shape == _ref.shape, f"logits for the T real tokens only: {tuple(_ref.shape)}, got {tuple(_out.shape)}"
_d = (_out - _ref).abs().max().item()
assert _d < 1e-5, f"with peft's prefix table, logits must equal peft's (padded batch); max diff {_d:.2e}"

# %% nbgrader={"grade": true, "grade_id": "prefix_tuning_forward__edge_cases", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
with torch.no_grad():
    _zero = prefix_tuning_forward(base, torch.zeros(2, cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim), **batch)
assert _zero.shape == batch["input_ids"].shape + (cfg.vocab_size,), "logits (B, T, vocab): the prefix has no logits"
assert torch.isfinite(_zero).all(), "an all-zero prefix (zero keys and values) is still a valid cache"
### BEGIN HIDDEN TESTS
torch.manual_seed(23)
_pm = _get_peft_model(load_base(profile), _PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=1))
_table = _pm.prompt_encoder["default"].embedding.weight.detach().clone()
_one = tok(["Paris is"], return_tensors="pt")
with torch.no_grad():
    assert (prefix_tuning_forward(base, _table, **_one) - _pm(**_one).logits).abs().max() < 1e-5, "P = 1, batch of 1"
_pads = tok(["a", "The capital of France is Paris and"], return_tensors="pt", padding=True)
torch.manual_seed(24)
_pm = _get_peft_model(load_base(profile), _PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6))
with torch.no_grad():
    _pm.prompt_encoder["default"].embedding.weight.mul_(20.0)
    _table = _pm.prompt_encoder["default"].embedding.weight.detach().clone()
    _d = (prefix_tuning_forward(base, _table, **_pads) - _pm(**_pads).logits).abs().max().item()
assert _d < 1e-3, f"heavily padded row, large prefixes: max diff {_d:.2e}"
### END HIDDEN TESTS

# %% [markdown]
# ## 3. (IA)³ (Liu et al. 2022)
#
# (IA)³ learns one vector per adapted layer and multiplies element-wise: for the attention **keys and values** it
# rescales the layer's *output* (`k_proj(x) ⊙ l`); for the MLP's **down-projection** (peft's
# `feedforward_modules`) it rescales the layer's *input* (`down_proj(x ⊙ l)`, i.e. the gated hidden activations).
# The vectors start at **ones**, so the adapted model starts exactly at the base model.
#
# ### Exercise 4
# `IA3Linear(base, feedforward)`: freeze `base`; `self.ia3_l` is an `nn.Parameter` of ones, of size `in_features`
# when `feedforward` (scale the input) and `out_features` otherwise (scale the output).

# %% nbgrader={"grade": false, "grade_id": "ia3_linear", "locked": false, "schema_version": 3, "solution": true, "task": false}
class IA3Linear(nn.Module):
    """(IA)³: base(x ⊙ l) if feedforward (l: in_features) else base(x) ⊙ l (l: out_features)."""

    def __init__(self, base: nn.Linear, feedforward: bool = False):
        super().__init__()
        ### BEGIN SOLUTION
        self.base, self.feedforward = base, feedforward
        for p in self.base.parameters():
            p.requires_grad_(False)
        size = base.in_features if feedforward else base.out_features
        self.ia3_l = nn.Parameter(torch.ones(size, dtype=base.weight.dtype, device=base.weight.device))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        if self.feedforward:
            return self.base(x * self.ia3_l)
        return self.base(x) * self.ia3_l
        ### END SOLUTION


# %% [markdown]
# Given code: wrapping modules by name (you wrote this for LoRA in notebook 2), and copying peft's vectors in.

# %% nbgrader={"grade": false, "grade_id": "wrap_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def wrap_linears(model, targets, wrap):
    """Freeze `model`; replace each nn.Linear whose last name component is in `targets` by wrap(name, module)."""
    for p in model.parameters():
        p.requires_grad_(False)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] in targets]
    for name in names:
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, wrap(name, getattr(holder, child)))
    return names


def ia3_like_peft(model, peft_model, targets, feedforward):
    """Wrap `model` with IA3Linear where peft did, with peft's (randomised) vectors copied in."""
    def wrap(name, linear):
        mine = IA3Linear(linear, feedforward=name.split(".")[-1] in feedforward)
        with torch.no_grad():
            theirs = peft_model.base_model.model.get_submodule(name).ia3_l["default"]
            theirs.uniform_(0.5, 1.5)
            mine.ia3_l.copy_(theirs.flatten())
        return mine
    return wrap_linears(model, targets, wrap)


# %%
from peft import IA3Config

IA3_TARGETS, IA3_FF = ["k_proj", "v_proj", "down_proj"], ["down_proj"]
torch.manual_seed(0)
peft_ia3 = get_peft_model(load_base(profile), IA3Config(task_type="CAUSAL_LM", target_modules=IA3_TARGETS,
                                                         feedforward_modules=IA3_FF))
mine_ia3 = load_base(profile)
with torch.no_grad():
    print("at init equals the base model:", torch.equal(peft_ia3(**batch).logits, base(**batch).logits))
ia3_like_peft(mine_ia3, peft_ia3, IA3_TARGETS, IA3_FF)
with torch.no_grad():
    print("random vectors copied in, max |mine - peft|:", (mine_ia3(**batch).logits - peft_ia3(**batch).logits).abs().max().item())
n_ia3 = sum(p.numel() for p in mine_ia3.parameters() if p.requires_grad)
print(f"trainable: {n_ia3:,} (peft {peft_ia3.get_nb_trainable_parameters()[0]:,}) — "
      f"{cfg.num_hidden_layers} × ({cfg.num_key_value_heads * cfg.head_dim} + {cfg.num_key_value_heads * cfg.head_dim} + {cfg.intermediate_size})")

# %% nbgrader={"grade": true, "grade_id": "ia3_linear__layer", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(31)
_lin = nn.Linear(12, 7)
_x = torch.randn(3, 12)
_out_l, _in_l = IA3Linear(_lin, feedforward=False), IA3Linear(_lin, feedforward=True)
assert tuple(_out_l.ia3_l.shape) == (7,) and tuple(_in_l.ia3_l.shape) == (12,), "output scaling: out_features; feedforward: in_features"
assert torch.equal(_out_l(_x), _lin(_x)) and torch.equal(_in_l(_x), _lin(_x)), "vectors of ones: exactly the base layer"
### BEGIN HIDDEN TESTS
with torch.no_grad():
    _out_l.ia3_l.copy_(torch.linspace(0.0, 2.0, 7))
    _in_l.ia3_l.copy_(torch.linspace(-1.0, 3.0, 12))
assert torch.allclose(_out_l(_x), _lin(_x) * torch.linspace(0.0, 2.0, 7)), "non-feedforward: base(x) ⊙ l, bias included"
assert torch.allclose(_in_l(_x), _lin(_x * torch.linspace(-1.0, 3.0, 12))), "feedforward: base(x ⊙ l)"
_out_l(_x).sum().backward()
assert _lin.weight.grad is None and _out_l.ia3_l.grad is not None, "the base layer is frozen; only l trains"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "ia3_linear__matches_peft_model", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from peft import IA3Config as _IA3Config

torch.manual_seed(32)
_pm = _get_peft_model(load_base(profile), _IA3Config(task_type="CAUSAL_LM", target_modules=IA3_TARGETS, feedforward_modules=IA3_FF))
_m = load_base(profile)
ia3_like_peft(_m, _pm, IA3_TARGETS, IA3_FF)
with torch.no_grad():
    _d = (_m(**batch).logits - _pm(**batch).logits).abs().max().item()
assert _d < 1e-5, f"k, v (output) and down_proj (input) scaled by peft's vectors: logits must match; max diff {_d:.2e}"
### BEGIN HIDDEN TESTS
torch.manual_seed(33)
_tg, _ff = ["q_proj", "o_proj", "up_proj", "gate_proj"], ["up_proj", "gate_proj"]
_pm = _get_peft_model(load_base(profile), _IA3Config(task_type="CAUSAL_LM", target_modules=_tg, feedforward_modules=_ff))
_m = load_base(profile)
ia3_like_peft(_m, _pm, _tg, _ff)
with torch.no_grad():
    _d = (_m(**batch).logits - _pm(**batch).logits).abs().max().item()
assert _d < 1e-5, f"other targets (q, o on outputs; up, gate on inputs): max diff {_d:.2e}"
assert sum(p.numel() for p in _m.parameters() if p.requires_grad) == _pm.get_nb_trainable_parameters()[0]
### END HIDDEN TESTS

# %% [markdown]
# ## 4. DoRA (Liu et al. 2024)
#
# DoRA writes the adapted weight as a **magnitude** times a **direction**: $W' = m \odot \frac{W_0 + sBA}{\lVert
# W_0 + sBA\rVert}$, where the norm is taken **per output feature** (each row of the `(out, in)` weight, peft's
# `torch.linalg.norm(weight, dim=1)`) and $m$ (one number per output feature) starts at $\lVert W_0\rVert$, so
# the layer starts at the base. peft **detaches** the norm (the paper's §4.3 memory trick): gradients flow
# through $m$, $A$ and $B$ but not through the denominator. The bias is added after scaling, unscaled.
#
# ### Exercise 5
# `DoRALinear(base, r, alpha)`: A Kaiming-uniform `(r, in)`, B zeros `(out, r)`, `s = α/r`, `self.magnitude`
# `(out,)`; `forward(x) = (m / ‖W₀ + sBA‖.detach()) ⊙ (x W₀ᵀ + s·x AᵀBᵀ) + bias`.

# %% nbgrader={"grade": false, "grade_id": "dora_linear", "locked": false, "schema_version": 3, "solution": true, "task": false}
class DoRALinear(nn.Module):
    """DoRA on a frozen nn.Linear. x: (..., in) -> (..., out). A: (r, in), B: (out, r), magnitude: (out,)."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16):
        super().__init__()
        ### BEGIN SOLUTION
        self.base, self.scaling = base, alpha / r
        for p in self.base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        self.magnitude = nn.Parameter(torch.linalg.norm(w.detach(), dim=1))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        w = self.base.weight
        norm = torch.linalg.norm(w + self.scaling * self.lora_B @ self.lora_A, dim=1).detach()
        out = F.linear(x, w) + self.scaling * (x @ self.lora_A.T @ self.lora_B.T)
        out = (self.magnitude / norm) * out
        if self.base.bias is not None:
            out = out + self.base.bias
        return out
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "dora_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def dora_pair(d_in, d_out, r, alpha, bias=True, seed=0):
    """A peft DoRA layer and a DoRALinear on the same weights, with peft's (randomised) A, B, m copied in."""
    torch.manual_seed(seed)
    net = nn.Sequential()
    net.add_module("proj", nn.Linear(d_in, d_out, bias=bias))
    linear = nn.Linear(d_in, d_out, bias=bias)
    linear.load_state_dict(net.proj.state_dict())
    mine = DoRALinear(linear, r=r, alpha=alpha)
    theirs = get_peft_model(net, LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"], use_dora=True)).base_model.model.proj
    with torch.no_grad():
        mag = theirs.lora_magnitude_vector["default"].weight
        init_equal = torch.allclose(mine.magnitude, mag, atol=1e-6)
        theirs.lora_B["default"].weight.normal_(std=0.5)
        mag.mul_(torch.empty_like(mag).uniform_(0.5, 1.5))
        mine.lora_A.copy_(theirs.lora_A["default"].weight)
        mine.lora_B.copy_(theirs.lora_B["default"].weight)
        mine.magnitude.copy_(mag)
    return mine, theirs, init_equal


def grads(layer, x, names):
    """Gradients of sum(layer(x)²) with respect to the named parameters."""
    layer.zero_grad()
    layer(x).pow(2).sum().backward()
    return [dict(layer.named_parameters())[n].grad.clone() for n in names]


# %%
from peft import LoraConfig

mine_d, peft_d, init_equal = dora_pair(24, 10, r=4, alpha=8)
x = torch.randn(5, 24)
print("magnitude at init equals peft's (= row norms of W0):", init_equal)
print("forward, max |mine - peft|:", (mine_d(x) - peft_d(x)).abs().max().item())
g_mine = grads(mine_d, x, ["lora_A", "lora_B", "magnitude"])
g_peft = grads(peft_d, x, ["lora_A.default.weight", "lora_B.default.weight", "lora_magnitude_vector.default.weight"])
print("gradients (A, B, m), max diff:", [f"{(a - b).abs().max().item():.1e}" for a, b in zip(g_mine, g_peft)])

# %% nbgrader={"grade": true, "grade_id": "dora_linear__init", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(41)
_lin = nn.Linear(16, 6)
_dl = DoRALinear(_lin, r=2, alpha=4)
_x = torch.randn(4, 16)
assert tuple(_dl.magnitude.shape) == (6,), "one magnitude per output feature"
assert torch.allclose(_dl(_x), _lin(_x), atol=1e-6), "with B = 0 and m = ‖W0‖ per row, DoRA starts at the base layer"
### BEGIN HIDDEN TESTS
assert torch.allclose(_dl.magnitude, _lin.weight.norm(dim=1), atol=1e-6), "m starts at the row norms of W0"
assert torch.count_nonzero(_dl.lora_B) == 0 and _dl.lora_A.abs().sum() > 0, "B zeros, A random"
assert sorted(n for n, p in _dl.named_parameters() if p.requires_grad) == ["lora_A", "lora_B", "magnitude"]
_big = nn.Linear(8, 3, bias=False)
with torch.no_grad():
    _big.weight.mul_(1e4)                               # extreme weight scale: norms must not overflow
_x = torch.randn(2, 8)
assert torch.allclose(DoRALinear(_big, r=1, alpha=1)(_x), _big(_x), rtol=1e-5), "huge weights, r = 1, no bias"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "dora_linear__matches_peft", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_mine, _theirs, _ = dora_pair(20, 12, r=4, alpha=16, seed=42)
_x = torch.randn(7, 20)
_d = (_mine(_x) - _theirs(_x)).abs().max().item()
assert _d < 1e-5, f"with peft's A, B and m copied in, outputs must equal peft's use_dora=True layer; max diff {_d:.2e}"
### BEGIN HIDDEN TESTS
_mine, _theirs, _ = dora_pair(9, 30, r=8, alpha=4, bias=False, seed=43)
_x = torch.randn(2, 5, 9)
assert (_mine(_x) - _theirs(_x)).abs().max().item() < 1e-5, "tall layer, no bias, r = 8, α = 4, 3-D input"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "dora_linear__gradients_match_peft", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_mine, _theirs, _ = dora_pair(20, 12, r=4, alpha=16, seed=44)
_x = torch.randn(7, 20)
_gm = grads(_mine, _x, ["lora_A", "lora_B", "magnitude"])
_gp = grads(_theirs, _x, ["lora_A.default.weight", "lora_B.default.weight", "lora_magnitude_vector.default.weight"])
for _name, _a, _b in zip(["A", "B", "m"], _gm, _gp):
    _d = (_a - _b).abs().max().item() / (_b.abs().max().item() + 1e-12)
    assert _d < 1e-4, f"grad of {_name} differs from peft's (relative {_d:.1e}): peft detaches ‖W0 + sBA‖"
### END HIDDEN TESTS

# %% [markdown]
# ## 5. rsLoRA (Kalajdzievski 2023)
#
# LoRA scales the update by $s = α/r$. rsLoRA uses $s = α/\sqrt{r}$. The paper's argument is about **learning**,
# not about the output at initialisation (B = 0 makes that zero either way): for the adapter to keep learning at
# the same rate as r grows, the change one gradient step makes to the adapter's output must stay Θ(1) in r.
# After one step from B = 0, $ΔB = -η\,s\,g\,(Ax)^\top$, so the output changes by
# $s\,ΔB\,Ax = -η\,s^2\,\lVert Ax\rVert^2 g$, and $\lVert Ax\rVert^2$ grows like r (r random rows of A). The change
# is ∝ $s^2 r$: constant for $s ∝ 1/\sqrt{r}$, but shrinking like $1/r$ for $s ∝ 1/r$ — so with α/r a larger rank
# learns more slowly and its extra capacity goes unused.
#
# ### Exercise 6
# `lora_scaling(alpha, r, rslora=False)` returns the scale peft uses.

# %% nbgrader={"grade": false, "grade_id": "lora_scaling", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lora_scaling(alpha: float, r: int, rslora: bool = False) -> float:
    """α/√r with rsLoRA, α/r without."""
    ### BEGIN SOLUTION
    return alpha / math.sqrt(r) if rslora else alpha / r
    ### END SOLUTION


# %% [markdown]
# The argument, measured: one plain gradient step on a random layer (k = 512) from B = 0, with the same α and
# learning rate at every rank; we print the size of the output change (mean over 16 random draws).

# %%
def first_step_change(r, rslora, k=512, d=64, alpha=16.0, lr=1e-3, seed=0, trials=16):
    """Mean ‖Δy‖ over `trials` draws after one SGD step on 0.5‖y - target‖², rank-r adapter, B = 0 at the start."""
    torch.manual_seed(seed)
    s = lora_scaling(alpha, r, rslora)
    changes = []
    for _ in range(trials):
        x, target = torch.randn(k), torch.randn(d)
        A = torch.empty(r, k)
        nn.init.kaiming_uniform_(A, a=math.sqrt(5))
        B = torch.zeros(d, r, requires_grad=True)
        (0.5 * (s * B @ (A @ x) - target).pow(2).sum()).backward()
        with torch.no_grad():
            changes.append((s * (-lr * B.grad) @ (A @ x)).norm().item())
    return sum(changes) / trials


RANKS = [4, 16, 64, 256]
change_lora = [first_step_change(r, rslora=False) for r in RANKS]
change_rs = [first_step_change(r, rslora=True) for r in RANKS]
for r, a, b in zip(RANKS, change_lora, change_rs):
    print(f"r={r:4d}  s=α/r: ‖Δy‖={a:.4f}   s=α/√r: ‖Δy‖={b:.4f}")
print(f"r 4 → 256: α/r changes {change_lora[-1] / change_lora[0]:.3f}× (1/r predicts {4 / 256:.3f}), "
      f"α/√r changes {change_rs[-1] / change_rs[0]:.2f}× (predicted 1)")

# %% nbgrader={"grade": true, "grade_id": "lora_scaling__matches_peft", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
from peft import LoraConfig as _LoraConfig


def _peft_scaling(r, alpha, rslora):
    _net = nn.Sequential()
    _net.add_module("proj", nn.Linear(8, 8))
    _pm = _get_peft_model(_net, _LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"], use_rslora=rslora))
    return _pm.base_model.model.proj.scaling["default"]


assert math.isclose(lora_scaling(16, 4, rslora=True), _peft_scaling(4, 16, True)), "rsLoRA: α/√r = 16/2 = 8"
assert math.isclose(lora_scaling(16, 4), _peft_scaling(4, 16, False)), "LoRA: α/r = 4"
### BEGIN HIDDEN TESTS
for _r, _a in [(1, 8), (9, 3), (64, 16), (7, 0.5)]:
    assert math.isclose(lora_scaling(_a, _r, rslora=True), _peft_scaling(_r, _a, True)), f"rsLoRA at r={_r}, α={_a}"
    assert math.isclose(lora_scaling(_a, _r, rslora=False), _peft_scaling(_r, _a, False)), f"LoRA at r={_r}, α={_a}"
assert lora_scaling(0, 5, rslora=True) == 0.0, "α = 0 switches the adapter off"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "lora_scaling__rank_stable_step", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_rs = [first_step_change(_r, rslora=True, seed=5) for _r in (8, 128)]
assert 0.5 < _rs[1] / _rs[0] < 2.0, f"with α/√r the first step's output change stays Θ(1) in r: {_rs}"
### BEGIN HIDDEN TESTS
_pl = [first_step_change(_r, rslora=False, seed=5) for _r in (8, 128)]
assert 0.03 < _pl[1] / _pl[0] < 0.12, f"with α/r it shrinks like 1/r (16× in r → ~1/16): {_pl}"
### END HIDDEN TESTS

# %% [markdown]
# ## 6. PiSSA (Meng et al. 2024)
#
# PiSSA starts LoRA from the **principal** part of the weight instead of from zero. With the SVD $W = U S V^\top$
# (`torch.linalg.svd(W, full_matrices=False)`), take the top r singular triplets and split each singular value
# evenly: $A = \sqrt{S_r/s}\,V_r^\top$ `(r, in)`, $B = U_r\sqrt{S_r/s}$ `(out, r)` — divided by the scaling s so
# that $sBA = U_r S_r V_r^\top$. The frozen base becomes the **residual** $W_\text{res} = W - sBA$, so the model
# still computes W at the start, while A and B hold the directions that matter most.
#
# ### Exercise 7
# `pissa_init(weight, r, alpha)` returns `(A, B, W_res)` for an `(out, in)` weight, scaling α/r, as peft computes them.

# %% nbgrader={"grade": false, "grade_id": "pissa_init", "locked": false, "schema_version": 3, "solution": true, "task": false}
def pissa_init(weight, r, alpha):
    """PiSSA: A (r, in), B (out, r) from the top-r SVD of the (out, in) weight; W_res = W - (α/r)·BA."""
    ### BEGIN SOLUTION
    scaling = alpha / r
    w = weight.detach().float()
    U, S, Vh = torch.linalg.svd(w, full_matrices=False)
    Sr = S[:r] / scaling
    A = torch.diag(torch.sqrt(Sr)) @ Vh[:r]
    B = U[:, :r] @ torch.diag(torch.sqrt(Sr))
    residual = w - scaling * B @ A
    return A.to(weight.dtype), B.to(weight.dtype), residual.to(weight.dtype)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "pissa_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def peft_pissa_layer(d_in, d_out, r, alpha, seed=0):
    """(original weight, peft's PiSSA-initialised LoRA layer) for a random nn.Linear."""
    torch.manual_seed(seed)
    net = nn.Sequential()
    net.add_module("proj", nn.Linear(d_in, d_out))
    w0 = net.proj.weight.detach().clone()
    cfg_ = LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"], init_lora_weights="pissa")
    return w0, get_peft_model(net, cfg_).base_model.model.proj


# %%
w0, peft_pissa = peft_pissa_layer(48, 32, r=4, alpha=8)
A, B, W_res = pissa_init(w0, r=4, alpha=8)
pA, pB = peft_pissa.lora_A["default"].weight, peft_pissa.lora_B["default"].weight
print("max |sBA mine - peft|:", (B @ A - pB @ pA).abs().max().item() * 2)
print("max |W_res mine - peft|:", (W_res - peft_pissa.base_layer.weight).abs().max().item())


def top_energy(w, r):
    """Share of ‖W‖² held by the top-r singular directions."""
    sv = torch.linalg.svdvals(w.detach().float())
    return (sv[:r] ** 2).sum().item() / (sv ** 2).sum().item()


w_q = base.model.layers[0].self_attn.q_proj.weight
print(f"share of ‖W‖² in the top 8 directions: tiny model's layer-0 q_proj {tuple(w_q.shape)} "
      f"{100 * top_energy(w_q, 8):.1f}%, a random matrix of that shape {100 * top_energy(torch.randn_like(w_q), 8):.1f}%")

# %% nbgrader={"grade": true, "grade_id": "pissa_init__matches_peft", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_w0, _pl = peft_pissa_layer(40, 24, r=3, alpha=6, seed=51)
_A, _B, _Wr = pissa_init(_w0, r=3, alpha=6)
_pA, _pB = _pl.lora_A["default"].weight, _pl.lora_B["default"].weight
assert tuple(_A.shape) == (3, 40) and tuple(_B.shape) == (24, 3), "A (r, in), B (out, r)"
assert torch.allclose(_B @ _A, _pB @ _pA, atol=1e-5), "BA must equal peft's (the top-r part of W, divided by s)"
assert torch.allclose(_Wr, _pl.base_layer.weight, atol=1e-5), "the residual W - sBA must equal peft's new base weight"
### BEGIN HIDDEN TESTS
assert torch.allclose(_A.norm(dim=1), _pA.norm(dim=1), atol=1e-5), "√(S_r/s) on each side: A's row norms equal peft's"
assert torch.allclose(_B.norm(dim=0), _pB.norm(dim=0), atol=1e-5), "√(S_r/s) on each side: B's column norms equal peft's"
for _din, _dout, _r, _a in [(16, 48, 5, 20), (12, 12, 12, 3), (30, 10, 1, 1)]:     # tall, full rank, r = 1
    _w0, _pl = peft_pissa_layer(_din, _dout, r=_r, alpha=_a, seed=_r)
    _A, _B, _Wr = pissa_init(_w0, r=_r, alpha=_a)
    assert torch.allclose(_Wr, _pl.base_layer.weight, atol=1e-5), f"residual at ({_dout}, {_din}), r={_r}, α={_a}"
    assert torch.allclose(_B @ _A, _pl.lora_B["default"].weight @ _pl.lora_A["default"].weight, atol=1e-5)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "pissa_init__forward_unchanged", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(52)
_w = torch.randn(20, 36)
_x = torch.randn(5, 36)
_A, _B, _Wr = pissa_init(_w, r=6, alpha=12)
assert torch.allclose(_x @ _Wr.T + 2.0 * _x @ _A.T @ _B.T, _x @ _w.T, atol=1e-4), "residual + sBA must give back W"
assert _Wr.abs().max() < _w.abs().max(), "the principal part moved into A and B: the residual is smaller than W"
### BEGIN HIDDEN TESTS
_A, _B, _Wr = pissa_init(_w, r=20, alpha=20)
assert _Wr.abs().max() < 1e-4, "at full rank the residual is (numerically) zero"
_wd = _w.double() * 1e3
_A, _B, _Wr = pissa_init(_wd, r=4, alpha=8)
assert _A.dtype == torch.float64 and (_Wr + 2.0 * _B @ _A - _wd).abs().max() < 1e-5 * _wd.abs().max(), "keeps dtype; large weights"
### END HIDDEN TESTS

# %% [markdown]
# ## 7. LoRA+ (Hayou et al. 2024)
#
# LoRA+ gives B a learning rate `ratio ×` A's (the paper suggests ratios around 16). peft's
# `create_loraplus_optimizer(model, optimizer_cls, lr=, loraplus_lr_ratio=)` builds the groups: `lora_B` weights
# **and every trainable 1-D parameter** (such as DoRA's magnitude) at `lr · ratio`, the other trainable
# parameters (`lora_A`) at `lr`.
#
# ### Exercise 8
# `loraplus_groups(model, lr, ratio)` returns the optimizer parameter groups
# `[{"params": [...], "lr": lr}, {"params": [...], "lr": lr * ratio}]` over the **trainable** parameters only.

# %% nbgrader={"grade": false, "grade_id": "loraplus_groups", "locked": false, "schema_version": 3, "solution": true, "task": false}
def loraplus_groups(model, lr, ratio):
    """Two param groups: A-side at lr; lora_B and 1-D parameters at lr·ratio. Trainable parameters only."""
    ### BEGIN SOLUTION
    slow, fast = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (fast if "lora_B" in name or p.ndim == 1 else slow).append(p)
    return [{"params": slow, "lr": lr}, {"params": fast, "lr": lr * ratio}]
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "loraplus_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def lr_by_param(groups):
    """{id(param): lr} over non-empty parameter groups."""
    return {id(p): g["lr"] for g in groups for p in g["params"]}


# %%
from peft.optimizers import create_loraplus_optimizer

lp_model = get_peft_model(load_base(profile), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
peft_opt = create_loraplus_optimizer(lp_model, torch.optim.AdamW, lr=2e-4, loraplus_lr_ratio=16)
mine_groups = loraplus_groups(lp_model, lr=2e-4, ratio=16)
print("learning rates per group:", sorted({g["lr"] for g in mine_groups}),
      "· same as peft for every parameter:", lr_by_param(mine_groups) == lr_by_param(peft_opt.param_groups))

# %% [markdown]
# **Why B?** With Adam, an update's size does not depend on the gradient's scale. Multiply α by c and write
# $B' = cB$: the output $c\,s\,BA = s\,B'A$ is unchanged, A's gradient is the same, and B's Adam step of size ≈ η
# becomes a step of ≈ cη in $B'$. With B = 0 at the start, training with **α·c** is therefore training with **B's
# learning rate × c** (A's unchanged) — up to Adam's ε. Tuning α under Adam was already tuning the B/A
# learning-rate ratio; LoRA+ makes that knob explicit. Measured below (plain SGD has no such equivalence):

# %%
def train_adapter(alpha, lr_a, lr_b, opt="adam", steps=40, seed=0):
    """Train a rank-4 LoRA adapter on a fixed random regression; return the learned update s·BA."""
    torch.manual_seed(seed)
    x, y = torch.randn(64, 32), torch.randn(64, 24)
    A = nn.Parameter(torch.empty(4, 32))
    nn.init.kaiming_uniform_(A, a=math.sqrt(5))
    B = nn.Parameter(torch.zeros(24, 4))
    s = alpha / 4
    cls = torch.optim.Adam if opt == "adam" else torch.optim.SGD
    o = cls([{"params": [A], "lr": lr_a}, {"params": [B], "lr": lr_b}])
    for _ in range(steps):
        o.zero_grad()
        (s * x @ A.T @ B.T - y).pow(2).mean().backward()
        o.step()
    return (s * B @ A).detach()


c = 8.0
for opt in ("adam", "sgd"):
    big_alpha = train_adapter(alpha=8 * c, lr_a=1e-2, lr_b=1e-2, opt=opt)
    fast_b = train_adapter(alpha=8, lr_a=1e-2, lr_b=c * 1e-2, opt=opt)
    rel = ((big_alpha - fast_b).norm() / fast_b.norm()).item()
    print(f"{opt}: ‖ΔW(α×{c:g}) − ΔW(lr_B×{c:g})‖ / ‖ΔW‖ = {rel:.2e}")

# %% nbgrader={"grade": true, "grade_id": "loraplus_groups__matches_peft", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from peft.optimizers import create_loraplus_optimizer as _create_loraplus_optimizer

_pm = _get_peft_model(load_base(profile), _LoraConfig(r=4, lora_alpha=8, target_modules=["k_proj", "down_proj"]))
_groups = loraplus_groups(_pm, lr=1e-3, ratio=8)
_ref = lr_by_param(_create_loraplus_optimizer(_pm, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=8).param_groups)
assert lr_by_param(_groups) == _ref, "every trainable parameter must get the learning rate peft's LoRA+ gives it"
_B = _pm.base_model.model.model.layers[0].mlp.down_proj.lora_B["default"].weight
assert lr_by_param(_groups)[id(_B)] == 8e-3, "B's learning rate is ratio × lr"

# %% nbgrader={"grade": true, "grade_id": "loraplus_groups__dora_and_frozen", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_pm = _get_peft_model(load_base(profile), _LoraConfig(r=2, lora_alpha=4, target_modules=["o_proj"], use_dora=True))
_frozen = {id(p) for p in _pm.parameters() if not p.requires_grad}
assert not _frozen & set(lr_by_param(loraplus_groups(_pm, lr=5e-4, ratio=2))), "frozen weights stay out of the optimizer"
### BEGIN HIDDEN TESTS
_groups = loraplus_groups(_pm, lr=5e-4, ratio=2)
_ref = lr_by_param(_create_loraplus_optimizer(_pm, torch.optim.AdamW, lr=5e-4, loraplus_lr_ratio=2).param_groups)
assert lr_by_param(_groups) == _ref, "DoRA: the 1-D magnitude vectors go with B, at lr · ratio"
assert len(lr_by_param(_groups)) == sum(1 for p in _pm.parameters() if p.requires_grad), "trainable parameters only"
_groups = loraplus_groups(_pm, lr=5e-4, ratio=1)
assert {g["lr"] for g in _groups} == {5e-4}, "ratio 1 is plain LoRA"
### END HIDDEN TESTS

# %% [markdown]
# ## 8. The family side by side: one task, one budget
#
# Each method above, in peft's implementation, trained by the same loop (`course.peft_compare`): AdamW (LoRA+
# through `create_loraplus_optimizer`), completion-only loss on the tiny world's training tasks, the same steps,
# batch and data order, three seeds — each at **its own learning rate**, chosen by a sweep on training examples set
# aside (`benchmarks/peft_family.py --sweep`; the table in docs/BENCHMARKS.md). rsLoRA's α/√r and LoRA+'s ratio
# change the effective step size, so a shared learning rate would compare step sizes, not methods.
#
# Columns: trainable parameters; **peak memory measured** as the rise of the process's resident-set high-water mark
# during the steps (gradients, optimizer state, activations above the loaded model — allocator noise included);
# CPU milliseconds per step; held-out exact match of greedy decoding (computed in one teacher-forced pass: greedy
# decoding returns the answer exactly when every answer position's argmax is the answer token) and held-out loss.
# A budget that fits this notebook: 30 steps of 8 examples.

# %%
from course.notebook import progress
from course.peft_compare import format_table, lora_family, splits, summarize_runs, train_method
from course.plotting import plot_bars, plt

from dataclasses import replace

# tiny: 30 steps x batch 8, seeds 0-2, 219 held-out tasks; the profile caps each (small: 12 x 4, seed 0, 24 tasks)
TABLE_STEPS, TABLE_BATCH, TABLE_SEEDS = profile.steps(30), profile.per_device_batch_size, profile.seeds(3)
train_data, _, heldout_data = splits(tok, profile.eval_count(219))
family = [replace(m, lr=profile.lr(m.lr)) for m in lora_family()]     # rates swept on tiny, scaled by the profile
runs = [train_method(m, seed, TABLE_STEPS, TABLE_BATCH, train_data, heldout_data, base=profile)
        for m in progress(family, desc=f"methods × {len(TABLE_SEEDS)} seed(s)") for seed in TABLE_SEEDS]
table = summarize_runs(runs)
print(f"{TABLE_STEPS} steps × batch {TABLE_BATCH}, seeds {TABLE_SEEDS}, {len(heldout_data[0])} held-out tasks; "
      "mean ± 95% t-interval over seeds")
print(format_table(table))
print("learning rates:", {m.name: float(f"{m.lr:.3g}") for m in family})

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, key, label in [(axes[0], "em", "held-out exact match"), (axes[1], "heldout_loss", "held-out loss")]:
    plot_bars({n: r[key] for n, r in table.items()}, errors={n: r[key + "_ci"] for n, r in table.items()},
              title=f"{label} (mean ± 95% CI, {len(TABLE_SEEDS)} seed(s))", ax=ax)
    ax.tick_params(axis="x", rotation=70)
fig.tight_layout()
plt.show()

# %% [markdown]
# **What the table shows, checked per seed below** (only these; `tests/test_peft_family.py` asserts them on the
# same three seeds):
# - prompt and prefix tuning, the two methods that leave every weight untouched and only add inputs, end with the
#   highest held-out loss on every seed and almost no exact answers at this budget;
# - PiSSA, which starts from the weight's principal components, answers more held-out tasks exactly than plain
#   LoRA r=16 on every seed: at 30 steps it is simply further along;
# - what tiny **cannot** separate: the LoRA ranks (1, 4, 16) and LoRA against the full fine-tune — their held-out
#   losses differ by less than the seed-to-seed spread (the intervals overlap), so no ranking among them is claimed;
# - memory and time (printed, not asserted: measured under whatever load the machine has): on the tiny model
#   activations and allocator noise dominate both columns; DoRA, which recomputes the weight's norm every step,
#   is the one LoRA variant that stands out in them here.

# %%
def per_seed(name, key):
    return [r[key] for r in table[name]["runs"]]


input_only = ["prompt tuning P=16", "prefix tuning P=16"]
others = [n for n in table if n not in input_only]
worst = [min(per_seed(n, "heldout_loss")[i] for n in input_only) > max(per_seed(n, "heldout_loss")[i] for n in others)
         for i in range(len(TABLE_SEEDS))]
print("prompt/prefix tuning: highest held-out loss on each seed:", worst)
print("PiSSA r=16 EM > LoRA r=16 EM on each seed:",
      [a > b for a, b in zip(per_seed("PiSSA r=16", "em"), per_seed("LoRA r=16", "em"))],
      per_seed("PiSSA r=16", "em"), per_seed("LoRA r=16", "em"))
for a, b in [("LoRA r=1", "LoRA r=16"), ("LoRA r=4", "LoRA r=16"), ("full fine-tune", "LoRA r=16")]:
    ra, rb = table[a], table[b]
    if len(TABLE_SEEDS) < 2:              # one seed (the small profile): no interval, so no overlap to test
        print(f"held-out loss {a} {ra['heldout_loss']:.3f} vs {b} {rb['heldout_loss']:.3f} (one seed: no interval)")
        continue
    overlap = abs(ra["heldout_loss"] - rb["heldout_loss"]) < ra["heldout_loss_ci"] + rb["heldout_loss_ci"]
    print(f"held-out loss {a} {ra['heldout_loss']:.3f} ± {ra['heldout_loss_ci']:.3f} vs {b} "
          f"{rb['heldout_loss']:.3f} ± {rb['heldout_loss_ci']:.3f}: intervals overlap {overlap}")

# %% [markdown]
# **On a pretrained model.** The claims above are the tiny profile's. One run on `PROFILE="small"`
# (SmolLM2-135M-Instruct; 12 steps × batch 4, seed 0, 22 held-out tasks, tiny's learning rates × 0.1; measured
# 2026-12-02, about 10 CPU minutes) kept the first — prompt and prefix tuning end with the highest held-out loss
# (0.858, 1.957) — and reversed the second: PiSSA answered fewer held-out tasks exactly than LoRA r=16 (0.591 vs
# 0.727). The full fine-tune reached the lowest held-out loss (0.216 vs LoRA r=16's 0.483); with one seed no interval,
# so no ranking is claimed. Re-run with `PROFILE="small"` to see the table.

# %% [markdown]
# ## Summary
# - **Prompt tuning**: P trainable embeddings before the input; **prefix tuning**: P trainable keys and values in
#   every layer, laid out `(P, 2L, H_kv, D)` and passed as a cache; both leave every weight frozen.
# - **(IA)³**: one vector per layer — k, v outputs and the down-projection's input — starting at ones.
# - **DoRA**: magnitude × direction, the norm per output row and detached, as peft computes it.
# - **rsLoRA**: α/√r keeps the first step's effect constant in r; α/r shrinks it like 1/r.
# - **PiSSA**: A, B from the top-r SVD, the base replaced by the residual; the forward is unchanged at the start.
# - **LoRA+**: B learns `ratio ×` faster; under Adam, raising α is the same as raising B's learning rate.
# - **Side by side** on the tiny world at a notebook's budget: input-only methods (prompt, prefix) trail; PiSSA is
#   ahead of plain LoRA early; ranks and full fine-tuning are not separable here.
