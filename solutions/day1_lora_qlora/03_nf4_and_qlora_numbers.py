# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 1 · 3 — QLoRA's numbers: NF4 from scratch, double quantization, paged optimizers
#
# QLoRA (Dettmers et al. 2023) = LoRA on a frozen base stored in 4 bits. Its three pieces (seed §3.3):
# **NF4**, a 4-bit data type whose 16 levels are quantiles of a normal distribution; **double quantization** of the
# per-block scales; **paged optimizers**. We build NF4 from scratch, check what exactly agrees with bitsandbytes on
# CPU (and why a natural version disagrees on about one weight in ten million), join it to LoRA in a `QLoRALinear`
# layer equal to bitsandbytes' `Linear4bit` + peft, measure NF4 against FP4 and uniform INT4 on normal weights and
# on a real model's, and compute the bits per parameter.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import math
from collections import OrderedDict

import bitsandbytes as bnb
import bitsandbytes.functional as bnbf
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from scipy.stats import norm

from course.kbit import keep_training_layout

from course.plotting import plot_bars, plt

torch.manual_seed(0)

# %% [markdown]
# ## 1. The 16 NF4 levels
#
# Idea: if weights are $\approx \mathcal N(0,\sigma)$, put the quantization levels where the probability mass is —
# at quantiles of $\mathcal N(0,1)$ — so each level is used about equally often, then rescale to $[-1, 1]$.
# Two details make NF4 what it is:
# 1. **An exact zero.** Zero must be representable (padding, sparse weights). So the levels are built asymmetrically:
#    8 positive quantiles of the upper half and 7 negative ones of the lower half, plus 0 — 16 values.
# 2. **Clipping the tails.** $\Phi^{-1}(1) = \infty$, so the outermost quantile is taken at probability `offset` =
#    0.9677083 instead of 1 (QLoRA's choice: ≈ the midpoint of the two outermost quantiles of 16 and 15 bins).
#
# Recipe (what bitsandbytes' `create_normal_map` does): positive part $\Phi^{-1}$ at 9 probabilities evenly
# spaced from `offset` down to 0.5, dropping the last one (0.5 → 0): 8 values; negative part $-\Phi^{-1}$ at 8
# probabilities from `offset` to 0.5, dropping the last: 7 values; add 0; sort; divide by the largest.
#
# ### Exercise 1
# `nf4_levels(offset)` returns the 16 sorted levels as a float32 tensor (use `torch.linspace` and
# `scipy.stats.norm.ppf`).

# %% nbgrader={"grade": false, "grade_id": "nf4_levels", "locked": false, "schema_version": 3, "solution": true, "task": false}
def nf4_levels(offset: float = 0.9677083) -> torch.Tensor:
    """The 16 NF4 levels, sorted, in [-1, 1], with an exact 0. Shape (16,), float32."""
    ### BEGIN SOLUTION
    positive = norm.ppf(torch.linspace(offset, 0.5, 9)[:-1].numpy()).tolist()      # 8 values
    negative = (-norm.ppf(torch.linspace(offset, 0.5, 8)[:-1].numpy())).tolist()   # 7 values
    levels = torch.tensor(positive + [0.0] + negative, dtype=torch.float32).sort().values
    return levels / levels.max()
    ### END SOLUTION


# %%
levels = nf4_levels()
published = bnbf.get_4bit_type("nf4", device="cpu")     # the table printed in the QLoRA paper, as bitsandbytes ships it
print("from scratch:", [round(v, 4) for v in levels.tolist()])
print("bitsandbytes:", [round(v, 4) for v in published.tolist()])
print("max |difference|:", (levels - published).abs().max().item())
print("negative levels:", int((levels < 0).sum()), "· zero:", int((levels == 0).sum()), "· positive:", int((levels > 0).sum()))

# %% nbgrader={"grade": true, "grade_id": "nf4_levels__shape_and_zero", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_lv = nf4_levels()
assert _lv.shape == (16,) and _lv.dtype == torch.float32, "16 levels, float32"
assert _lv[0] == -1 and _lv[-1] == 1, "normalised so the extreme levels are -1 and 1"
assert (_lv == 0).sum() == 1 and torch.all(_lv[1:] > _lv[:-1]), "sorted, strictly increasing, with exactly one exact zero"
### BEGIN HIDDEN TESTS
assert (_lv < 0).sum() == 7 and (_lv > 0).sum() == 8, "asymmetric: 7 negative, 8 positive"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "nf4_levels__equal_bitsandbytes", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_ref = bnbf.get_4bit_type("nf4", device="cpu")
_d = (nf4_levels() - _ref).abs().max().item()
assert _d < 1e-6, f"the levels must equal bitsandbytes' NF4 table (the QLoRA paper's) to 1e-6; max diff {_d:.2e}"
### BEGIN HIDDEN TESTS
_ref2 = bnbf.create_normal_map(offset=0.99, use_extra_value=True)
_ref2 = _ref2[_ref2 != 0]
_mine2 = nf4_levels(0.99)
assert (_mine2[_mine2 != 0] - _ref2).abs().max() < 1e-6, "the offset parameter must be used"
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Blockwise absmax quantization (block size 64)
#
# A tensor is flattened and cut into blocks of 64 values. Each block stores its **absmax** $m_b = \max|w|$ (fp32)
# and, for each value, the index of the level nearest to $w/m_b \in [-1,1]$ — 4 bits. Dequantizing is
# $\hat w = \text{level}[\text{index}]\cdot m_b$. Per-block scales keep one outlier from crushing the resolution of the
# whole tensor. (bitsandbytes packs two 4-bit indices per byte, first index in the high nibble; we keep the indices
# unpacked as `uint8` for clarity and unpack bnb's to compare.)
#
# ### Exercise 2 — quantize
# `quantize_blockwise(w, levels, blocksize=64)` → `(indices, absmax)`: indices `uint8` of shape `(w.numel(),)`,
# absmax float32 of shape `(w.numel() // blocksize,)`. Assume `w.numel()` is a multiple of `blocksize`. To give
# bitsandbytes' codes, do what it does: scale by `w * (1.0 / absmax)`, then pick the nearest level by comparing with
# the 15 **midpoints** between neighbouring levels, a value exactly at a midpoint going to the **lower** level
# (bnb tests `x > midpoint`; `torch.searchsorted` counts the midpoints below `x`). Comparing distances
# `|x − level|` instead is not the same in float32: at an exact midpoint the two rounded distances differ.

# %% nbgrader={"grade": false, "grade_id": "quantize_blockwise", "locked": false, "schema_version": 3, "solution": true, "task": false}
def quantize_blockwise(w: torch.Tensor, levels: torch.Tensor, blocksize: int = 64):
    """w: any shape, numel divisible by blocksize -> (indices (numel,) uint8, absmax (numel/blocksize,) float32)."""
    ### BEGIN SOLUTION
    blocks = w.reshape(-1, blocksize).float()                                  # (n_blocks, blocksize)
    absmax = blocks.abs().max(dim=1).values                                    # (n_blocks,)
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38)[:, None])).clamp(-1, 1)   # in [-1, 1]
    midpoints = (levels[1:] + levels[:-1]) / 2                                  # 15 decision boundaries
    indices = torch.searchsorted(midpoints, scaled.reshape(-1).contiguous())    # midpoints below x; a tie goes down
    return indices.to(torch.uint8), absmax
    ### END SOLUTION


# %% [markdown]
# ### Exercise 3 — dequantize
# `dequantize_blockwise(indices, absmax, levels, shape, blocksize=64)` → the float32 tensor of `shape`.

# %% nbgrader={"grade": false, "grade_id": "dequantize_blockwise", "locked": false, "schema_version": 3, "solution": true, "task": false}
def dequantize_blockwise(indices, absmax, levels, shape, blocksize: int = 64):
    """indices (numel,) uint8, absmax (numel/blocksize,) -> float32 tensor of `shape`."""
    ### BEGIN SOLUTION
    values = levels[indices.long()].reshape(-1, blocksize)                     # (n_blocks, blocksize)
    return (values * absmax[:, None]).reshape(shape)
    ### END SOLUTION


# %%
def unpack_bnb(packed: torch.Tensor, n: int) -> torch.Tensor:
    """bitsandbytes' packed uint8 (two 4-bit indices per byte, high nibble first) -> (n,) uint8 indices."""
    flat = packed.reshape(-1)
    return torch.stack([flat >> 4, flat & 0xF], dim=1).reshape(-1)[:n]


w = torch.randn(256, 512) * 0.02                       # a weight-like matrix: N(0, 0.02)
idx, absmax = quantize_blockwise(w, levels)
w_hat = dequantize_blockwise(idx, absmax, levels, w.shape)
packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
w_bnb = bnbf.dequantize_4bit(packed, state)
print("indices equal bnb's:", torch.equal(idx, unpack_bnb(packed, w.numel())),
      "· absmax equal:", torch.equal(absmax, state.absmax),
      "· dequantized max |diff|:", (w_hat - w_bnb).abs().max().item())
print(f"storage: {packed.numel()} bytes of 4-bit codes for {w.numel()} weights + {absmax.numel()} fp32 absmax; "
      f"mean |error| {(w_hat - w).abs().mean().item():.2e} on weights of std {w.std().item():.4f}")

# %% [markdown]
# **What exactly equals bitsandbytes, and why.** The levels, the per-block absmax, the 4-bit codes and the
# dequantized tensor are identical — codes included, because we decide with bnb's rule: compare with the
# float32 midpoints, a tie goes down. The "obvious" nearest level, `argmin |x − level|`, computes two rounded
# float32 distances; at a value *exactly* on a midpoint they are not equal, and the argmin sends some midpoints up.
# How often does a real weight land exactly on a midpoint? Count it on 2²⁴ random weights:

# %%
w_many = torch.randn(2**24) * 0.02
blocks_many = w_many.reshape(-1, 64)
scaled_many = (blocks_many * (1.0 / blocks_many.abs().max(1).values[:, None])).reshape(-1)
midpoints = (levels[1:] + levels[:-1]) / 2
on_midpoint = torch.isin(scaled_many, midpoints)
argmin_codes = (midpoints[:, None] - levels[None]).abs().argmin(1)                 # what argmin does at each midpoint
argmin_wrong = argmin_codes != torch.arange(15)                                    # bnb sends midpoint i to level i
hits = scaled_many[on_midpoint]
n_wrong = int(argmin_wrong[torch.searchsorted(midpoints, hits)].sum()) if hits.numel() else 0
packed_many, state_many = bnbf.quantize_4bit(w_many, blocksize=64, quant_type="nf4")
same_codes = torch.equal(quantize_blockwise(w_many, levels)[0], unpack_bnb(packed_many, w_many.numel()))
print(f"midpoints argmin sends up instead of down: {int(argmin_wrong.sum())} of 15")
print(f"weights exactly on a midpoint after scaling: {on_midpoint.sum().item()} of {w_many.numel():,}; "
      f"argmin would differ from bnb at {n_wrong} of them (1 in {w_many.numel() / max(n_wrong, 1):,.0f} weights "
      f"→ ≈ {7e9 * n_wrong / w_many.numel():,.0f} weights of a 7B model)")
print(f"the midpoint rule's codes equal bnb's on all {w_many.numel():,}: {same_codes}")

# %% [markdown]
# So "bit-exact" holds for the midpoint rule on every value we tried (the random weights above; each midpoint and
# its float32 neighbours in the tests); an argmin implementation differs only on weights that sit exactly on a
# midpoint, at the rate printed above (`tests/test_day1.py` measures it again on 2²⁶ weights), each off by one
# level. Harmless for accuracy — but "bit-exact" is a claim to state precisely.



# %% nbgrader={"grade": true, "grade_id": "quantize_blockwise__matches_bitsandbytes", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(11)
_w = torch.randn(64, 128) * 0.05
_lv = bnbf.get_4bit_type("nf4", device="cpu")
_idx, _am = quantize_blockwise(_w, _lv)
_packed, _st = bnbf.quantize_4bit(_w, blocksize=64, quant_type="nf4")
assert _idx.shape == (_w.numel(),) and _am.shape == (_w.numel() // 64,), "one index per weight, one absmax per block of 64"
assert torch.equal(_am, _st.absmax), "absmax must equal bitsandbytes' per-block absmax exactly"
assert torch.equal(_idx, unpack_bnb(_packed, _w.numel())), "indices must equal bitsandbytes' 4-bit codes exactly"
### BEGIN HIDDEN TESTS
_w2 = torch.randn(3, 4096) * 0.01
_w2[0, 5] = 1.0                                                  # an outlier only affects its own block
_idx2, _am2 = quantize_blockwise(_w2, _lv)
_p2, _s2 = bnbf.quantize_4bit(_w2, blocksize=64, quant_type="nf4")
assert torch.equal(_am2, _s2.absmax) and torch.equal(_idx2, unpack_bnb(_p2, _w2.numel()))
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "quantize_blockwise__nearest_level", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_lv = bnbf.get_4bit_type("nf4", device="cpu")
_w = torch.tensor([1.0, -1.0, 0.0, 0.55] + [0.01] * 60)             # one block, absmax 1
_idx, _am = quantize_blockwise(_w, _lv)
assert _am.tolist() == [1.0], "absmax of the block is max |w| = 1"
assert _idx[0] == 15 and _idx[1] == 0 and _idx[2] == 7, "±1 map to the end levels, 0 to the exact zero (index 7)"
assert _idx[3] == 13, "0.55 is nearest to level 13 (0.5626), not to the level below it, 12 (0.4407)"
### BEGIN HIDDEN TESTS
_w = torch.tensor([-2.0, -0.3, 0.07, 0.9] + [0.0] * 60)
_idx, _am = quantize_blockwise(_w, _lv)
_expect = (_w[:4, None] / 2.0 - _lv[None]).abs().argmin(1)
assert _am.tolist() == [2.0] and torch.equal(_idx[:4].long(), _expect), "absmax is |−2| = 2; nearest levels"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "quantize_blockwise__midpoints_go_down", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_lv = bnbf.get_4bit_type("nf4", device="cpu")
_mid = (_lv[1:] + _lv[:-1]) / 2
_w = torch.cat([torch.tensor([1.0]), _mid, torch.zeros(48)])          # one block, absmax 1, every midpoint once
_idx, _ = quantize_blockwise(_w, _lv)
assert torch.equal(_idx[1:16].long(), torch.arange(15)), \
    f"a value exactly at the midpoint between levels i and i+1 goes to the lower one, i (bnb: x > midpoint); got {_idx[1:16].tolist()}"
### BEGIN HIDDEN TESTS
_p, _ = bnbf.quantize_4bit(_w, blocksize=64, quant_type="nf4")
assert torch.equal(_idx, unpack_bnb(_p, 64)), "at the midpoints your codes must still equal bitsandbytes'"
_up = torch.nextafter(_mid, torch.tensor(2.0))                       # one float32 step above each midpoint
_w2 = torch.cat([torch.tensor([-1.0]), _up, torch.zeros(48)])
_idx2, _ = quantize_blockwise(_w2, _lv)
assert torch.equal(_idx2[1:16].long(), torch.arange(1, 16)), "just above a midpoint: the upper level"
_w3 = torch.cat([2 * _mid, torch.tensor([2.0]), torch.zeros(48)])    # absmax 2: the scaled values are the midpoints
_p3, _ = bnbf.quantize_4bit(_w3, blocksize=64, quant_type="nf4")
assert torch.equal(quantize_blockwise(_w3, _lv)[0], unpack_bnb(_p3, 64)), "scaled midpoints too (w · (1/absmax))"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "dequantize_blockwise__matches_bitsandbytes", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(12)
_w = torch.randn(32, 256) * 0.03
_lv = bnbf.get_4bit_type("nf4", device="cpu")
_packed, _st = bnbf.quantize_4bit(_w, blocksize=64, quant_type="nf4")
_mine = dequantize_blockwise(unpack_bnb(_packed, _w.numel()), _st.absmax, _lv, _w.shape)
_ref = bnbf.dequantize_4bit(_packed, _st)
assert _mine.shape == _w.shape, "dequantized tensor has the original shape"
assert torch.equal(_mine, _ref), f"must equal bitsandbytes' dequantize_4bit exactly; max diff {(_mine - _ref).abs().max():.2e}"

# %% nbgrader={"grade": true, "grade_id": "dequantize_blockwise__per_block_scale", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_lv = bnbf.get_4bit_type("nf4", device="cpu")
_idx = torch.tensor([15] * 64 + [0] * 64, dtype=torch.uint8)
_out = dequantize_blockwise(_idx, torch.tensor([2.0, 3.0]), _lv, (2, 64))
assert torch.equal(_out[0], torch.full((64,), 2.0)) and torch.equal(_out[1], torch.full((64,), -3.0)), \
    "each block of 64 is multiplied by its own absmax: level 1.0 × 2 and level -1.0 × 3"
### BEGIN HIDDEN TESTS
_idx = torch.tensor([7, 8] * 32 + [14, 1] * 32 + [3] * 64, dtype=torch.uint8)
_am = torch.tensor([0.5, 4.0, 0.25])
_out = dequantize_blockwise(_idx, _am, _lv, (96, 2))
assert torch.equal(_out.reshape(3, 64), _lv[_idx.long()].reshape(3, 64) * _am[:, None])
### END HIDDEN TESTS

# %% [markdown]
# ## 3. QLoRA from scratch: NF4 storage + a LoRA path
#
# Now join the quantizer to notebook 2's LoRA. A QLoRA linear layer keeps its frozen weight **only** as NF4:
# two 4-bit codes per byte (first code in the high nibble, as bitsandbytes stores them) and one fp32 absmax per
# block. In every forward it dequantizes the codes to the **compute dtype** (bf16 in the QLoRA paper), runs the
# matmul there, and adds the LoRA path $s\,B A x$ computed in the adapters' own higher precision (fp32), with
# $s = \alpha / r$. Gradients reach only $A$ and $B$: codes and scales are buffers, not parameters.
#
# The library version is bitsandbytes' `Linear4bit` (NF4, here without double quantization) wrapped by peft's
# LoRA. Its forward, which we copy operation for operation:
# `base = F.linear(x.to(cd), dequant(W).to(cd), bias.to(cd)).to(x.dtype)`,
# `lora = lora_B(lora_A(x.to(fp32))) · s` (fp32), returning `(base + lora).to(x.dtype)` (peft 0.21).
#
# ### Exercise 5 — pack two codes per byte
# `pack_nibbles(indices)`: `(n,)` uint8 codes in 0..15 (n even) → `(n // 2,)` uint8 with byte
# $i$ = `indices[2i] << 4 | indices[2i+1]` — the inverse of `unpack_bnb` above.

# %% nbgrader={"grade": false, "grade_id": "pack_nibbles", "locked": false, "schema_version": 3, "solution": true, "task": false}
def pack_nibbles(indices: torch.Tensor) -> torch.Tensor:
    """(n,) uint8 codes 0..15, n even -> (n // 2,) uint8; byte i = codes[2i] << 4 | codes[2i + 1]."""
    ### BEGIN SOLUTION
    pairs = indices.to(torch.uint8).reshape(-1, 2)                  # (n/2, 2): neighbours share a byte
    return (pairs[:, 0] << 4) | pairs[:, 1]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "pack_nibbles__equals_bitsandbytes", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(13)
_w = torch.randn(16, 64) * 0.1
_p, _ = bnbf.quantize_4bit(_w, blocksize=64, quant_type="nf4")
_mine = pack_nibbles(unpack_bnb(_p, _w.numel()))
assert type(_mine) is torch.Tensor and _mine.dtype == torch.uint8 and _mine.shape == (_w.numel() // 2,), \
    "one uint8 byte per two codes, shape (n // 2,)"
assert torch.equal(_mine, _p.reshape(-1)), "the bytes must equal bitsandbytes' packed weight (high nibble first)"
### BEGIN HIDDEN TESTS
_p2, _ = bnbf.quantize_4bit(torch.randn(2, 4096) * 3.0, blocksize=64, quant_type="nf4")
assert torch.equal(pack_nibbles(unpack_bnb(_p2, 8192)), _p2.reshape(-1)), "a larger tensor, other scale"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "pack_nibbles__every_byte", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_codes = torch.tensor([15, 0, 0, 15, 7, 8], dtype=torch.uint8)
assert pack_nibbles(_codes).tolist() == [0xF0, 0x0F, 0x78], "byte = first code · 16 + second code: 0xF0, 0x0F, 0x78"
### BEGIN HIDDEN TESTS
_all = torch.arange(256, dtype=torch.uint8)
_codes = torch.stack([_all >> 4, _all & 0xF], 1).reshape(-1)
assert torch.equal(pack_nibbles(_codes), _all), "every one of the 256 byte values round-trips"
assert pack_nibbles(torch.tensor([9, 4], dtype=torch.uint8)).tolist() == [0x94], "two codes: one byte"
assert torch.equal(unpack_bnb(pack_nibbles(_codes), 512), _codes), "unpack_bnb(pack_nibbles(c)) == c"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 6 — `QLoRALinear`
# `QLoRALinear(linear, r, alpha, compute_dtype=torch.bfloat16, blocksize=64)` takes an `nn.Linear` and keeps:
# - buffers `packed` (`pack_nibbles` of your `quantize_blockwise` codes, blocks of `blocksize`), `absmax`,
#   `levels` (`nf4_levels()`), `bias` (a copy, or `None`) — no parameter for the base;
# - parameters `lora_A` (r, in), fp32, initialised like peft (`kaiming_uniform_(a=√5)`), and `lora_B` (out, r),
#   zeros — so a fresh layer computes exactly the quantized base; `scaling` = α / r.
#
# `dequantized_weight()` returns the (out, in) weight in `compute_dtype` (unpack → `dequantize_blockwise` with
# the layer's block size → cast). `forward(x)` takes `x` of shape (..., in) in any float dtype and follows the
# library's forward written above, bias included. Keep the two paths separate: adding $sBA$ to the bf16
# weight first would round a small update away.

# %% nbgrader={"grade": false, "grade_id": "qlora_linear", "locked": false, "schema_version": 3, "solution": true, "task": false}
class QLoRALinear(torch.nn.Module):
    """Frozen NF4 base (packed codes + absmax) + trainable fp32 LoRA. forward: (..., in) -> (..., out), x's dtype."""

    def __init__(self, linear: torch.nn.Linear, r: int, alpha: float, compute_dtype=torch.bfloat16,
                 blocksize: int = 64):
        super().__init__()
        ### BEGIN SOLUTION
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = compute_dtype
        self.blocksize = blocksize
        self.scaling = alpha / r
        levels = nf4_levels()
        indices, absmax = quantize_blockwise(linear.weight.detach(), levels, blocksize)
        self.register_buffer("packed", pack_nibbles(indices))                  # (in·out/2,) uint8
        self.register_buffer("absmax", absmax)                                  # (in·out/blocksize,) fp32
        self.register_buffer("levels", levels)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.lora_A = torch.nn.Parameter(torch.empty(r, self.in_features))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))             # as nn.Linear (and peft) do
        self.lora_B = torch.nn.Parameter(torch.zeros(self.out_features, r))    # B = 0: starts at the base
        ### END SOLUTION

    def dequantized_weight(self) -> torch.Tensor:
        """(out, in) base weight in compute_dtype, decoded from the packed NF4 codes."""
        ### BEGIN SOLUTION
        indices = unpack_bnb(self.packed, 2 * self.packed.numel())
        shape = (self.out_features, self.in_features)
        w = dequantize_blockwise(indices, self.absmax, self.levels, shape, self.blocksize)
        return w.to(self.compute_dtype)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        cd = self.compute_dtype
        bias = None if self.bias is None else self.bias.to(cd)
        base = F.linear(x.to(cd), self.dequantized_weight(), bias).to(x.dtype)          # frozen 4-bit path
        lora = (x.to(self.lora_A.dtype) @ self.lora_A.t() @ self.lora_B.t()) * self.scaling   # fp32 path
        return (base + lora).to(x.dtype)                      # added in fp32, rounded once
        ### END SOLUTION


# %% [markdown]
# The library pair to check against, built from the same `nn.Linear`: bitsandbytes quantizes the weight
# itself when the layer is moved to the CPU; `copy_lora` puts our A and B into peft's layer.

# %% nbgrader={"grade": false, "grade_id": "bnb_lora_reference", "locked": true, "schema_version": 3, "solution": false, "task": false}
def bnb_lora_linear(linear, r, alpha, compute_dtype=torch.bfloat16, blocksize=64):
    """bitsandbytes Linear4bit (NF4, no double quant) holding `linear`'s weights, wrapped by peft LoRA (r, alpha).
    Returns the peft model (call it like the layer) and its LoRA layer."""
    l4 = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                           compute_dtype=compute_dtype, quant_type="nf4", compress_statistics=False)
    l4.weight = bnb.nn.Params4bit(linear.weight.detach().clone(), requires_grad=False, quant_type="nf4",
                                  blocksize=blocksize, compress_statistics=False)
    if linear.bias is not None:
        l4.bias = torch.nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
    l4 = l4.to("cpu")                                  # quantizes here
    keep_training_layout(l4)                           # no CPU inference repacking (course/kbit.py)
    model = get_peft_model(torch.nn.Sequential(OrderedDict(proj=l4)),
                           LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"], lora_dropout=0.0))
    return model, model.base_model.model.proj


def copy_lora(mine, peft_layer):
    """Copy QLoRALinear's A and B into peft's layer (same values on both sides)."""
    with torch.no_grad():
        peft_layer.lora_A["default"].weight.copy_(mine.lora_A)
        peft_layer.lora_B["default"].weight.copy_(mine.lora_B)


def forward_backward(module, x):
    """Output, and the gradients of sum(out²) with respect to the input and every trainable parameter."""
    x = x.detach().clone().requires_grad_()
    out = module(x)
    out.float().pow(2).sum().backward()
    return out.detach(), x.grad, [p.grad for p in module.parameters() if p.requires_grad]


# %%
torch.manual_seed(0)
layer = torch.nn.Linear(256, 128)
mine = QLoRALinear(layer, r=8, alpha=16)
ref, ref_layer = bnb_lora_linear(layer, r=8, alpha=16)
with torch.no_grad():
    mine.lora_B.normal_(0, 0.05)                       # a trained-looking B, so the LoRA path is not zero
copy_lora(mine, ref_layer)
x = torch.randn(4, 10, 256)
out_m, gx_m, (gA_m, gB_m) = forward_backward(mine, x)
out_r, gx_r, (gA_r, gB_r) = forward_backward(ref, x)
for name, a, b in [("output", out_m, out_r), ("grad x", gx_m, gx_r), ("grad A", gA_m, gA_r), ("grad B", gB_m, gB_r)]:
    print(f"{name:7} max |mine − bnb+peft| = {(a - b).abs().max().item():.1e}  (max |value| {b.abs().max().item():.2f})")
print("trainable:", [(n, tuple(p.shape)) for n, p in mine.named_parameters() if p.requires_grad],
      "· buffers:", {n: (str(b.dtype).split('.')[-1], tuple(b.shape)) for n, b in mine.named_buffers()})

# %% [markdown]
# Same operations in the same order give the same bits: the maximum differences above are the whole story.
# The tests allow a relative 1e-5 (fp32 summation order) and check it again at other shapes, ranks, block sizes,
# compute dtypes, with no bias and at batch 1.
#
# **Memory, piece by piece.** For one of Mistral-7B's 4096 × 4096 attention projections with r = 16, count
# the bytes each buffer and parameter of `QLoRALinear` really holds, beside `course.memory`'s formula:

# %%
from course.memory import qlora_linear_bytes

big = QLoRALinear(torch.nn.Linear(4096, 4096, bias=False), r=16, alpha=32)
held = {"codes": big.packed, "absmax": big.absmax, "lora": [big.lora_A, big.lora_B]}
formula = qlora_linear_bytes(4096, 4096, r=16)
for piece, tensors in held.items():
    n_bytes = sum(t.numel() * t.element_size() for t in (tensors if isinstance(tensors, list) else [tensors]))
    print(f"{piece:6}  held {n_bytes / 2**20:8.4f} MiB   course.memory {formula[piece] / 2**20:8.4f} MiB")
print(f"vs the same weight in bf16: {4096 * 4096 * 2 / 2**20:.1f} MiB · in fp32: {4096 * 4096 * 4 / 2**20:.1f} MiB")
del big

# %% nbgrader={"grade": true, "grade_id": "qlora_linear__storage", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(21)
_lin = torch.nn.Linear(128, 64)
_q = QLoRALinear(_lin, r=4, alpha=8)
_ref, _ = bnb_lora_linear(_lin, r=4, alpha=8)
_w4 = _ref.base_model.model.proj.base_layer.weight
assert type(_q.packed) is torch.Tensor and _q.packed.dtype == torch.uint8 and _q.packed.numel() == 128 * 64 // 2, \
    "packed: uint8, two codes per byte"
assert torch.equal(_q.packed.reshape(-1), _w4.data.reshape(-1)), "packed bytes must equal bitsandbytes' Linear4bit weight"
assert torch.equal(_q.absmax, _w4.quant_state.absmax), "absmax must equal bitsandbytes' (one fp32 per block of 64)"
_names = {n for n, _ in _q.named_buffers()}
assert {"packed", "absmax"} <= _names, "packed and absmax are buffers (saved with the module, never trained)"
### BEGIN HIDDEN TESTS
_q2 = QLoRALinear(_lin, r=2, alpha=2, blocksize=128)
_ref2, _ = bnb_lora_linear(_lin, r=2, alpha=2, blocksize=128)
_w42 = _ref2.base_model.model.proj.base_layer.weight
assert _q2.absmax.numel() == 128 * 64 // 128 and torch.equal(_q2.absmax, _w42.quant_state.absmax), "blocksize 128"
assert torch.equal(_q2.packed.reshape(-1), _w42.data.reshape(-1)), "blocksize 128: codes"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "qlora_linear__init_and_trainable", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(22)
_lin = torch.nn.Linear(64, 192)
_q = QLoRALinear(_lin, r=4, alpha=8)
_ref, _ = bnb_lora_linear(_lin, r=4, alpha=8)
_tr = {n: tuple(p.shape) for n, p in _q.named_parameters() if p.requires_grad}
assert _tr == {"lora_A": (4, 64), "lora_B": (192, 4)}, f"only lora_A (r, in) and lora_B (out, r) are trainable; got {_tr}"
assert [n for n, _ in _q.named_parameters()] == ["lora_A", "lora_B"], "the base is stored in buffers, not parameters"
assert torch.all(_q.lora_B == 0) and _q.lora_A.abs().sum() > 0 and _q.lora_A.dtype == torch.float32, "B = 0, A random, fp32"
_x = torch.randn(3, 64)
with torch.no_grad():
    assert torch.equal(_q(_x), _ref(_x)), "a fresh layer (B = 0) computes exactly bitsandbytes' 4-bit base layer"
### BEGIN HIDDEN TESTS
_lin_nb = torch.nn.Linear(128, 64, bias=False)
_q = QLoRALinear(_lin_nb, r=1, alpha=1)
_ref, _ = bnb_lora_linear(_lin_nb, r=1, alpha=1)
assert _q.bias is None and [n for n, _ in _q.named_parameters()] == ["lora_A", "lora_B"], "no bias: bias is None"
with torch.no_grad():
    assert torch.equal(_q(_x[:1].repeat(1, 2)), _ref(_x[:1].repeat(1, 2))), "no bias, r = 1, batch 1"
_lim = 1 / math.sqrt(128)
assert _q.lora_A.abs().max() <= _lim and _q.lora_A.std() > 0.4 * _lim, "kaiming_uniform_(a=√5): U(−1/√in, 1/√in)"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "qlora_linear__equals_peft", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def _check_against_peft(lin, r, alpha, cd, x, blocksize=64):
    """Forward and gradients of QLoRALinear vs bnb Linear4bit + peft LoRA, same weights, same A and B."""
    q = QLoRALinear(lin, r=r, alpha=alpha, compute_dtype=cd, blocksize=blocksize)
    ref, ref_layer = bnb_lora_linear(lin, r=r, alpha=alpha, compute_dtype=cd, blocksize=blocksize)
    with torch.no_grad():
        q.lora_B.normal_(0, 0.1)
    copy_lora(q, ref_layer)
    got, want = forward_backward(q, x), forward_backward(ref, x)
    assert got[0].shape == want[0].shape and got[0].dtype == x.dtype, "output shape (..., out) in x's dtype"
    for name, a, b in zip(["output", "grad of x", "grad of A", "grad of B"], [got[0], got[1], *got[2]],
                          [want[0], want[1], *want[2]]):
        assert a is not None and torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6 * b.abs().max().item()), \
            f"{name} differs from bnb+peft (r={r}, α={alpha}, {cd}): max diff {(a.float() - b.float()).abs().max():.2e}"


torch.manual_seed(23)
_check_against_peft(torch.nn.Linear(128, 64), 4, 8, torch.bfloat16, torch.randn(2, 7, 128))
### BEGIN HIDDEN TESTS
_check_against_peft(torch.nn.Linear(64, 256), 3, 7, torch.bfloat16, torch.randn(5, 64))            # α ≠ 2r
_check_against_peft(torch.nn.Linear(256, 32, bias=False), 1, 1, torch.float16, torch.randn(1, 256))  # r=1, batch 1
_check_against_peft(torch.nn.Linear(256, 128), 16, 4, torch.bfloat16, torch.randn(3, 256), blocksize=256)
_check_against_peft(torch.nn.Linear(64, 64), 2, 5, torch.float32, torch.randn(2, 3, 64) * 100)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "qlora_linear__compute_dtype", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(24)
_lin = torch.nn.Linear(128, 96)
_ref, _ = bnb_lora_linear(_lin, r=2, alpha=4)
_w4 = _ref.base_model.model.proj.base_layer.weight
_want = bnbf.dequantize_4bit(_w4.data, _w4.quant_state)
for _cd in (torch.bfloat16, torch.float16, torch.float32):
    _dq = QLoRALinear(_lin, r=2, alpha=4, compute_dtype=_cd).dequantized_weight()
    assert type(_dq) is torch.Tensor and _dq.dtype == _cd and _dq.shape == (96, 128), \
        f"dequantized_weight() returns the (out, in) weight in the compute dtype {_cd}"
    assert torch.equal(_dq, _want.to(_cd)), f"dequantized weight must equal bitsandbytes' (cast to {_cd})"
### BEGIN HIDDEN TESTS
_q = QLoRALinear(_lin, r=2, alpha=4, compute_dtype=torch.float16)
_x = torch.randn(4, 128, dtype=torch.bfloat16)
assert _q(_x).dtype == torch.bfloat16, "the output comes back in the input's dtype"
_dq = QLoRALinear(_lin, r=2, alpha=4, blocksize=128).dequantized_weight()
_r128, _ = bnb_lora_linear(_lin, r=2, alpha=4, blocksize=128)
_w128 = _r128.base_model.model.proj.base_layer.weight
assert torch.equal(_dq, bnbf.dequantize_4bit(_w128.data, _w128.quant_state).to(torch.bfloat16)), "blocksize 128"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "qlora_linear__small_update_survives", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(25)
_lin = torch.nn.Linear(128, 64)
with torch.no_grad():
    _lin.weight.normal_(0, 1.0)                                  # a large base, a small LoRA update
_q = QLoRALinear(_lin, r=4, alpha=4)
_ref, _ref_layer = bnb_lora_linear(_lin, r=4, alpha=4)
_x = torch.randn(8, 128)
with torch.no_grad():
    _base_ref = _ref(_x)                                          # B = 0 on both sides
    _before = _q(_x)
    _q.lora_B.normal_(0, 1e-3)
    copy_lora(_q, _ref_layer)
    _delta, _delta_ref = _q(_x) - _before, _ref(_x) - _base_ref
_err = ((_delta - _delta_ref).norm() / _delta_ref.norm()).item()
assert _err < 1e-2, f"the LoRA update (≈ 1e-3 of the base) must survive in the output: relative error {_err:.2e}"


# %% [markdown]
# ## 4. NF4 vs FP4 vs uniform INT4, and which levels get used
#
# Three 4-bit codes with the same per-block absmax: **NF4** (normal quantiles), **FP4** (bitsandbytes' e2m1
# float: levels dense near 0, sparse near ±1) and uniform symmetric **INT4** (15 levels $k/7$, $k=-7..7$).
# Round-trip error on 2²⁰ weights drawn from $\mathcal N(0, 0.02)$:

# %%
fp4_levels = torch.unique(bnbf.get_4bit_type("fp4", device="cpu"))          # sorted; +0 and −0 merge: 15 levels
int4_levels = torch.arange(-7, 8, dtype=torch.float32) / 7
codes = {"NF4": levels, "FP4": fp4_levels, "INT4 (uniform)": int4_levels}
w_big = torch.randn(1024, 1024) * 0.02


def roundtrip_mse(w, lv):
    """Mean squared error of quantize → dequantize with these levels (blocks of 64, absmax). -> (mse, indices)."""
    w = w.reshape(-1, 64)
    i, m = quantize_blockwise(w, lv)
    return (dequantize_blockwise(i, m, lv, w.shape) - w).pow(2).mean().item(), i


mse = {name: roundtrip_mse(w_big, lv)[0] for name, lv in codes.items()}
fp4_bnb = bnbf.dequantize_4bit(*bnbf.quantize_4bit(w_big, blocksize=64, quant_type="fp4"))
print({k: f"{v:.3e}" for k, v in mse.items()}, "· bnb's own FP4 round trip:",
      f"{(fp4_bnb - w_big).pow(2).mean().item():.3e}")
print(f"error relative to NF4: FP4 ×{mse['FP4'] / mse['NF4']:.2f}, INT4 ×{mse['INT4 (uniform)'] / mse['NF4']:.2f}")

# %% [markdown]
# **Are the NF4 levels used equally often?** That was the design idea — but the answer is no, and the reason is
# the absmax. The levels are quantiles of $\mathcal N(0,1)$ divided by the outermost one,
# $\Phi^{-1}(0.9677) \approx 1.85$: they assume $w/m_b$ has standard deviation $1/1.85$. But the absmax of a block
# of 64 normal values is the largest of 64 draws, ≈ 2.6σ on average (printed below), so the real $w/m_b$ is narrower: inner levels
# are over-used, the outer ones under-used, and ±1 is hit only by the absmax itself (at most one value per block).

# %%
scaled_big = (w_big.reshape(-1, 64) / w_big.reshape(-1, 64).abs().max(1, keepdim=True).values).reshape(-1)
absmax_sigmas = (w_big.reshape(-1, 64).abs().max(1).values / 0.02)
print(f"NF4 assumes std(w/absmax) = 1/Φ⁻¹(0.9677) = {1 / norm.ppf(0.9677083):.3f}; measured {scaled_big.std():.3f} "
      f"(absmax of a block of 64 = {absmax_sigmas.mean():.2f}σ on average)")
usage = {name: torch.bincount(roundtrip_mse(w_big, lv)[1].long(), minlength=len(lv)).float() / w_big.numel()
         for name, lv in codes.items()}
for name, u in usage.items():
    print(f"{name:15} level usage min {u.min():.4f} · max {u.max():.3f} · uniform would be {1 / len(u):.4f}")


def usage_plot(scaled, title, ax):
    """Histogram of w/absmax with the NF4 levels (lines) and their usage (bars) overlaid."""
    ax.hist(scaled.numpy(), bins=200, density=True, alpha=0.5, label="w / absmax")
    u = torch.bincount(torch.searchsorted((levels[1:] + levels[:-1]) / 2, scaled.contiguous()), minlength=16)
    for lv in levels.tolist():
        ax.axvline(lv, color="k", lw=0.6)
    ax2 = ax.twinx()
    ax2.plot(levels.numpy(), (u.float() / u.sum()).numpy(), "o-", color="C3", label="NF4 level usage")
    ax2.axhline(1 / 16, color="C3", ls=":", lw=1)
    ax2.set_ylabel("fraction of weights", color="C3")
    ax.set(title=title, xlabel="w / absmax (NF4 levels as lines)")


fig, ax = plt.subplots(figsize=(7.5, 3.4))
usage_plot(scaled_big, "N(0, 0.02) weights, blocks of 64", ax)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### On real weights
# Normal weights are the textbook case. The profile's model gives real matrices: the shipped tiny model's
# trained projections (`tiny`), or SmolLM2-135M-Instruct's (`small`). **Caveat for `small`**: its weights come
# from a GGUF file stored in **Q4_1** (4-bit, blocks of 32, uniform levels between a per-block min and max)
# and were dequantized back to fp32 — every block of 32 holds at most 16 distinct values on a uniform grid. They
# are not the hub checkpoint's bf16 weights, and errors measured on them are errors on an already-quantized grid.

# %%
from course.loading import load_base

real = load_base(profile)
mats = [m.weight.detach().float() for n, m in real.named_modules()
        if n.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")]
flat = torch.cat([m.reshape(-1) for m in mats])
distinct = max(torch.unique(b).numel() for b in flat[: 32 * 2000].reshape(-1, 32))
print(f"profile {profile.name}: {len(mats)} projection matrices, {flat.numel():,} weights; "
      f"most distinct values in a block of 32: {distinct}" + ("  (Q4_1 origin: ≤ 16)" if distinct <= 16 else ""))
real_mse = {name: roundtrip_mse(flat, lv)[0] / flat.var().item() for name, lv in codes.items()}
print("round-trip MSE / weight variance:", {k: f"{v:.4f}" for k, v in real_mse.items()})
print(f"relative to NF4: FP4 ×{real_mse['FP4'] / real_mse['NF4']:.2f}, INT4 ×{real_mse['INT4 (uniform)'] / real_mse['NF4']:.2f}")
real_scaled = (flat.reshape(-1, 64) / flat.reshape(-1, 64).abs().max(1, keepdim=True).values.clamp(min=1e-12)).reshape(-1)
fig, ax = plt.subplots(figsize=(7.5, 3.4))
usage_plot(real_scaled, f"{profile.name} model's projection weights", ax)
fig.tight_layout()
plt.show()
del real

# %% [markdown]
# ## 5. Double quantization: bits per parameter
#
# NF4 stores 4 bits per weight **plus** one fp32 absmax per block of 64: $32/64 = 0.5$ extra bits per parameter.
# Double quantization quantizes those absmax values again, to 8 bits, in blocks of 256 with one fp32 scale each
# (after subtracting their mean). Overhead: $8/64 + 32/(64\cdot 256)$ bits.
#
# ### Exercise 4
# `bits_per_param(blocksize=64, double_quant=False, dq_blocksize=256)`: total storage bits per weight
# (4 for the code + the scale overhead).

# %% nbgrader={"grade": false, "grade_id": "bits_per_param", "locked": false, "schema_version": 3, "solution": true, "task": false}
def bits_per_param(blocksize: int = 64, double_quant: bool = False, dq_blocksize: int = 256) -> float:
    """4-bit codes + absmax overhead: 32/blocksize, or 8/blocksize + 32/(blocksize·dq_blocksize) with double quant."""
    ### BEGIN SOLUTION
    if double_quant:
        return 4 + 8 / blocksize + 32 / (blocksize * dq_blocksize)
    return 4 + 32 / blocksize
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "bits_per_param__single", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert bits_per_param(64) == 4.5, "4 bits + one fp32 absmax per 64 weights = 4 + 0.5"
### BEGIN HIDDEN TESTS
assert bits_per_param(128) == 4.25 and bits_per_param(32) == 5.0
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "bits_per_param__double_quant", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert abs(bits_per_param(64, double_quant=True) - 4.126953125) < 1e-12, "4 + 8/64 + 32/(64·256) = 4.126953125"
### BEGIN HIDDEN TESTS
assert abs(bits_per_param(128, double_quant=True, dq_blocksize=128) - (4 + 8 / 128 + 32 / (128 * 128))) < 1e-12
### END HIDDEN TESTS

# %%
single, double = bits_per_param(64) - 4, bits_per_param(64, double_quant=True) - 4
print(f"scale overhead: {single} bits/param → {double:.4f} with double quantization; saves {single - double:.4f} "
      f"bits/param (the seed's '~0.4')")
w_dq = torch.randn(4096, 1024) * 0.02
p_single, s_single = bnbf.quantize_4bit(w_dq, blocksize=64, quant_type="nf4")
p_double, s_double = bnbf.quantize_4bit(w_dq, blocksize=64, quant_type="nf4", compress_statistics=True)
measured_single = 8 * s_single.absmax.numel() * s_single.absmax.element_size() / w_dq.numel()
measured_double = 8 * (s_double.absmax.numel() * s_double.absmax.element_size()
                       + s_double.state2.absmax.numel() * s_double.state2.absmax.element_size()) / w_dq.numel()
print(f"bitsandbytes, measured on a {tuple(w_dq.shape)} matrix: {measured_single} bits/param of scales, "
      f"{measured_double:.4f} with compress_statistics=True (absmax dtype {s_double.absmax.dtype})")
print(f"70B weights: {70e9 * bits_per_param(64) / 8 / 1e9:.2f} GB in NF4, "
      f"{70e9 * bits_per_param(64, True) / 8 / 1e9:.2f} GB with double quant, vs {70e9 * 2 / 1e9:.0f} GB in bf16")

# %% [markdown]
# ## 6. Paged optimizers
#
# The third QLoRA piece is about *spikes*, not averages. With gradient checkpointing, memory use jumps while a
# long sequence's block is recomputed; if the GPU is nearly full, one long batch OOMs a run that fits on average.
# bitsandbytes' paged optimizers (`paged_adamw_8bit`, `paged_adamw_32bit`) allocate the optimizer states in
# **CUDA unified memory**: pages live on the GPU while there is room, and the driver evicts them to CPU RAM when a
# spike needs the space, paging them back when the optimizer step touches them. Nothing changes numerically.
# It matters when the optimizer state is a big, rarely touched block of memory (touched once per step) and
# peaks are rare: QLoRA of a 65–70B model on one 48–80 GB GPU. It costs PCIe traffic when paging actually
# happens; with plenty of headroom it does nothing. With LoRA the states are small anyway (r = 16 on Mistral-7B:
# two fp32 moments of 41,943,040 parameters — see notebook 1), so paging protects the *activation* peaks, not the
# optimizer's average size. On CPU there is no unified memory; the class runs (we use it here) but nothing pages.

# %%
import bitsandbytes as bnb

lin = torch.nn.Linear(256, 256)
opt = bnb.optim.PagedAdamW8bit(lin.parameters(), lr=1e-3)
lin(torch.randn(8, 256)).pow(2).mean().backward()
opt.step()
st = opt.state[lin.weight]
state_bytes = sum(v.numel() * v.element_size() for v in st.values() if torch.is_tensor(v))
print(f"8-bit AdamW state for a {tuple(lin.weight.shape)} weight: {state_bytes:,} bytes "
      f"= {state_bytes / lin.weight.numel():.3f} bytes/param (fp32 AdamW: 8) · keys {sorted(st)}")

# %% [markdown]
# ## Summary
# - NF4's 16 levels are normal quantiles (7 negative, 0, 8 positive, tails clipped at 0.9677), matching the
#   published table; blockwise absmax with bnb's midpoint rule (ties down) reproduces its codes on every value we
#   tried, while an argmin-distance version differs on weights exactly at a midpoint.
# - A QLoRA layer stores only packed codes and scales, dequantizes to the compute dtype in each forward and keeps
#   the LoRA path in fp32 beside it; built so, it equals bitsandbytes' `Linear4bit` + peft LoRA in outputs and in
#   the gradients of A and B.
# - On normal weights NF4's error is below FP4's and uniform INT4's — yet its levels are not used equally: the
#   absmax of 64 draws is wider than the 0.9677 quantile NF4 normalises by, so the inner levels do most of the work.
# - Double quantization cuts the scale overhead from 0.5 to ≈0.127 bits/param.
# - Paged optimizers move optimizer state to CPU RAM under memory spikes; they prevent OOMs, not average memory.
