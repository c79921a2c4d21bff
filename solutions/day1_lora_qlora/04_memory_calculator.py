# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 1 · 4 — A memory calculator: why 70B needs eight A100s to fine-tune, and QLoRA needs one
#
# Seed §3.1: *"A 70B model needs ~140GB for weights, ~280GB for fp32 AdamW state, ~10–50GB for activations.
# That's ~500GB peak — eight A100 80GBs."* And §3.3: QLoRA *"fine-tune[s] 70B on a single A100 80GB"*.
# You build the calculator that checks both claims: weights, gradients, optimizer states, LoRA adapters,
# activations with and without gradient checkpointing. The course ships a fuller one (`course memory`, built on
# `course.memory`); we compare against it at the end.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import math

from course.memory import A100_80GB, GB, GiB

print(f"1 GB = {GB:,} bytes (the seed's unit) · A100 80GB = 80 GiB = {A100_80GB:,} bytes = {A100_80GB / GB:.2f} GB")

# %% [markdown]
# ## 1. What a training step holds, per parameter
#
# | component | full fine-tune | LoRA | QLoRA |
# |---|---|---|---|
# | base weights | bf16: 2 B | bf16: 2 B (frozen) | NF4 + double-quant scales: 4.127 bits (frozen) |
# | adapter weights | – | fp32: 4 B per LoRA param | fp32: 4 B per LoRA param |
# | gradients | bf16: 2 B per param | fp32: 4 B per LoRA param | fp32: 4 B per LoRA param |
# | optimizer | fp32 master copy 4 B + AdamW's two fp32 moments 8 B = 12 B per param | moments only, per LoRA param | same |
#
# Full fine-tuning in **mixed precision** computes in bf16 but updates an **fp32 master copy** of the weights
# (tiny updates vanish when added to bf16 weights): 2 + 2 + 4 + 8 = **16 B/param**, the standard figure (ZeRO
# counts the master copy with the optimizer states: K = 12). 8-bit AdamW shrinks the moments to 2 B + one fp32
# absmax per 256 values each. Adapters are fp32 already (peft up-casts them), so LoRA needs no master copy; frozen
# weights need no gradient and no optimizer state — that is the whole saving. QLoRA's bits are notebook 3's.

# %% [markdown]
# ### Exercise 1
# `memory_breakdown(n_params, method, n_lora=0, optimizer="adamw")` returns a dict of bytes with keys
# `weights`, `lora`, `gradients`, `optimizer`, `total` (no activations yet), following the table. For QLoRA,
# treat **all** `n_params` as NF4 (a simplification: real QLoRA keeps embeddings and norms in bf16).
# `optimizer` is `"adamw"` or `"adamw_8bit"`. For full fine-tuning, `master_weights=True` (the default) adds the
# fp32 master copy, counted under `optimizer` (or, if you prefer, under its own key `master_weights`: the tests
# accept either); `master_weights=False` is pure-bf16 training (12 B/param with AdamW).

# %% nbgrader={"grade": false, "grade_id": "memory_breakdown", "locked": false, "schema_version": 3, "solution": true, "task": false}
def memory_breakdown(n_params: int, method: str, n_lora: int = 0, optimizer: str = "adamw",
                     master_weights: bool = True) -> dict:
    """Bytes of weights, LoRA adapters, gradients, optimizer states and their total for one training step."""
    ### BEGIN SOLUTION
    opt_per_param = {"adamw": 8, "adamw_8bit": 2 * (1 + 4 / 256)}[optimizer]
    if method == "full":
        master = 4 if master_weights else 0                                    # fp32 copy for mixed precision
        out = {"weights": 2 * n_params, "lora": 0, "gradients": 2 * n_params,
               "optimizer": math.ceil(opt_per_param * n_params) + master * n_params}
    else:
        bits = 16 if method == "lora" else 4 + 8 / 64 + 32 / (64 * 256)
        out = {"weights": math.ceil(n_params * bits / 8), "lora": 4 * n_lora, "gradients": 4 * n_lora,
               "optimizer": math.ceil(opt_per_param * n_lora)}
    out["total"] = sum(out.values())
    return out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "memory_breakdown__full", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_m = memory_breakdown(1_000_000, "full")
assert _m["weights"] == 2_000_000 and _m["gradients"] == 2_000_000, "bf16 weights and gradients: 2 bytes each per parameter"
assert _m["optimizer"] + _m.get("master_weights", 0) == 12_000_000, \
    "mixed-precision AdamW: fp32 master copy (4 B) + two fp32 moments (8 B) = 12 bytes per trainable parameter"
assert _m["total"] == 16_000_000 and _m["lora"] == 0, "the standard 16 bytes per parameter"
### BEGIN HIDDEN TESTS
_b = memory_breakdown(1_000_000, "full", master_weights=False)
assert _b["optimizer"] + _b.get("master_weights", 0) == 8_000_000 and _b["total"] == 12_000_000, \
    "master_weights=False: pure bf16 training, the moments only (12 B/param in all)"
_e = memory_breakdown(256, "full", optimizer="adamw_8bit")
assert _e["optimizer"] + _e.get("master_weights", 0) == 4 * 256 + 2 * 256 + 8, "master copy + 2 uint8 states + 2 fp32 absmax per 256"
_e0 = memory_breakdown(256, "full", optimizer="adamw_8bit", master_weights=False)
assert _e0["optimizer"] + _e0.get("master_weights", 0) == 2 * 256 + 8, "2 uint8 states + 2 fp32 absmax per 256"
assert memory_breakdown(1000, "lora", n_lora=10)["total"] == memory_breakdown(1000, "lora", n_lora=10, master_weights=False)["total"], \
    "fp32 adapters need no master copy"
_f = memory_breakdown(1000, "full", n_lora=10)
assert _f["lora"] == 0 and _f["total"] == 16_000, "full fine-tuning has no adapters: n_lora changes nothing"
_z = memory_breakdown(0, "full")
assert _z["total"] == 0, "no parameters, no memory"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "memory_breakdown__lora_and_qlora", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_l = memory_breakdown(1_000_000, "lora", n_lora=10_000)
assert _l["weights"] == 2_000_000, "LoRA keeps the frozen base in bf16"
assert _l["lora"] == 40_000 and _l["gradients"] == 40_000 and _l["optimizer"] == 80_000, \
    "only the 10,000 fp32 adapter parameters get gradients (4 B) and AdamW states (8 B)"
_q = memory_breakdown(16_384, "qlora", n_lora=100)
assert _q["weights"] == 16_384 * 4.126953125 / 8, "NF4 with double quantization: 4 + 8/64 + 32/(64·256) bits per weight"
### BEGIN HIDDEN TESTS
assert _q["total"] == _q["weights"] + 400 + 400 + 800
assert memory_breakdown(1000, "lora", n_lora=256, optimizer="adamw_8bit")["optimizer"] == 2 * 256 + 8
_q8 = memory_breakdown(16_384, "qlora", n_lora=512, optimizer="adamw_8bit")
assert _q8["optimizer"] == 2 * 512 + 16 and _q8["gradients"] == 4 * 512, "QLoRA with 8-bit AdamW: the optimizer applies here too"
assert memory_breakdown(16_384, "qlora")["lora"] == 0 and memory_breakdown(16_384, "qlora")["optimizer"] == 0, \
    "n_lora = 0: no adapter, nothing to optimise"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "memory_breakdown__agrees_with_course_memory", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
from course import memory as _M

for _name in ("mistral-7b", "llama-2-70b"):
    _spec = _M.model_spec(_name)
    _n, _nl = _M.count_params(_spec), _M.lora_params(_spec, 16)
    for _method, _opt in (("full", "adamw"), ("full", "adamw_8bit"), ("lora", "adamw"), ("lora", "adamw_8bit")):
        _lib = _M.estimate(_spec, _method, optimizer=_opt, master_weights=_method == "full").components
        _me = memory_breakdown(_n, _method, n_lora=_nl, optimizer=_opt)
        assert _me["weights"] == _lib["weights"] and _me["gradients"] == _lib["gradients"], (_name, _method)
        assert _me["optimizer"] + _me.get("master_weights", 0) == _lib["optimizer_states"] + _lib.get("master_weights", 0), \
            f"{_name} {_method} {_opt}: optimizer bytes (with the fp32 master copy for full FT) differ"
    _q = _M.estimate(_spec, "qlora").components["weights"]
    _nq = _M.projection_params(_spec)                    # the library quantizes only the block projections
    _mine_q = memory_breakdown(_nq, "qlora")["weights"] + memory_breakdown(_n - _nq, "lora")["weights"]
    assert _mine_q == _q, f"{_name}: NF4 projections + bf16 rest must equal the library's QLoRA weights"

# %% [markdown]
# ## 2. Activations
#
# Backward needs the tensors each block computed on the way forward. For one Llama block on `s` tokens × `b`
# sequences (SDPA/flash attention, so no s×s score matrix is stored), counting elements:
# - the attention half: norm input and output ($2h$), q, k, v ($q + 2\,kv$), q and k after RoPE ($q + kv$),
#   the attention output ($q$), the residual sum and the second norm's input and output ($3h$):
#   $5h + 3q + 3\,kv$;
# - the MLP: gate, up, silu(gate) and the product fed to `down_proj`: $4\cdot\text{intermediate}$.
#
# So a block saves $s\,b\,(5h + 3q + 3\,kv + 4I)$ elements. Without checkpointing every block's are kept.
# **Gradient checkpointing** keeps only each block's input ($s\,b\,h$ per block) and recomputes one block at a
# time during backward, so the peak holds $L\,s\,b\,h$ plus one block's full set.
#
# ### Exercise 2
# `activation_bytes(layers, seq, batch, hidden, intermediate, q_dim, kv_dim, checkpointing, bytes_per=2)`.

# %% nbgrader={"grade": false, "grade_id": "activation_bytes", "locked": false, "schema_version": 3, "solution": true, "task": false}
def activation_bytes(layers, seq, batch, hidden, intermediate, q_dim, kv_dim, checkpointing=False, bytes_per=2):
    """Bytes of saved activations for a Llama-style decoder (see the formula above)."""
    ### BEGIN SOLUTION
    per_layer = seq * batch * (5 * hidden + 3 * q_dim + 3 * kv_dim + 4 * intermediate)
    if checkpointing:
        return (layers * seq * batch * hidden + per_layer) * bytes_per
    return layers * per_layer * bytes_per
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "activation_bytes__no_checkpointing", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert activation_bytes(1, 1, 1, 10, 20, 10, 10) == 2 * (50 + 30 + 30 + 80), "one token, one block: (5h+3q+3kv+4I) × 2 bytes"
assert activation_bytes(4, 8, 2, 10, 20, 10, 10) == 4 * 8 * 2 * 190 * 2, "linear in layers, seq and batch"
### BEGIN HIDDEN TESTS
assert activation_bytes(2, 3, 1, 8, 16, 8, 2, bytes_per=4) == 2 * 3 * (40 + 24 + 6 + 64) * 4, "GQA: kv narrower than q"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "activation_bytes__checkpointing", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert activation_bytes(4, 8, 2, 10, 20, 10, 10, checkpointing=True) == (4 * 8 * 2 * 10 + 8 * 2 * 190) * 2, \
    "checkpointing keeps each block's input (s·b·h per layer) plus one block being recomputed"
### BEGIN HIDDEN TESTS
from course import memory as _M

for _name in ("mistral-7b", "llama-2-70b", "tiny"):
    _s = _M.model_spec(_name)
    for _ck in (False, True):
        _lib = _M.estimate(_s, "lora", seq_len=512, batch=3, grad_checkpointing=_ck).components["activations"]
        _me = activation_bytes(_s.num_layers, 512, 3, _s.hidden_size, _s.intermediate_size, _s.q_dim, _s.kv_dim, _ck)
        assert _me == _lib, (_name, _ck, _me, _lib)
assert activation_bytes(3, 5, 2, 8, 16, 8, 4, checkpointing=True, bytes_per=4) == \
    (3 * 5 * 2 * 8 + 5 * 2 * (40 + 24 + 12 + 64)) * 4, "fp32 activations under checkpointing: bytes_per applies to both parts"
assert activation_bytes(1, 7, 1, 8, 16, 8, 4, checkpointing=True) == (7 * 8 + 7 * (40 + 24 + 12 + 64)) * 2, \
    "one layer: its input plus its own recomputed set"
### END HIDDEN TESTS

# %% [markdown]
# ## 3. The seed's §3.1 story, recomputed
#
# Llama-2-70B's config: 80 layers, hidden 8192, intermediate 28672, 64 query heads, 8 key/value heads of 128.
# First the seed's round numbers, for a nominal 70·10⁹ parameters:

# %%
from course.memory import count_params, lora_params, model_spec

N70 = 70 * 10**9
full70 = memory_breakdown(N70, "full")
print(f"weights bf16: {full70['weights'] / GB:.0f} GB (seed: ~140GB)")
print(f"mixed-precision AdamW state: fp32 master copy {4 * N70 / GB:.0f} + two fp32 moments {8 * N70 / GB:.0f} = "
      f"{full70['optimizer'] / GB:.0f} GB — the seed's '~280GB for fp32 AdamW state' is ONE fp32 copy "
      f"({4 * N70 / GB:.0f} GB: one moment, or the master weights) or two bf16 moments")
print(f"all of it: {full70['total'] / GB:.0f} GB = {full70['total'] / N70:.0f} bytes/param before activations")
print(f"gradients bf16: {full70['gradients'] / GB:.0f} GB (not in the seed's tally)")
seed_activations = 50 * GB                                  # the top of the seed's "~10–50GB"
seed_tally = full70["weights"] + 4 * N70 + seed_activations
print(f"the seed's tally {full70['weights'] / GB:.0f} + {4 * N70 / GB:.0f} + {seed_activations / GB:.0f} GB "
      f"= {seed_tally / GB:.0f} GB (its '~500GB') → at least "
      f"{math.ceil(seed_tally / A100_80GB)} A100 80GB by memory alone; a node of eight is the seed's 'eight A100s'")

# %%
spec70 = model_spec("llama-2-70b")
n70, nl70 = count_params(spec70), lora_params(spec70, 16)
h, inter, L = spec70.hidden_size, spec70.intermediate_size, spec70.num_layers
seq, bsz = 2048, 1


def report(title, parts):
    total = sum(parts.values())
    body = " + ".join(f"{k} {v / GB:.1f}" for k, v in parts.items() if v)
    print(f"{title:<38} {body} = {total / GB:7.1f} GB → {math.ceil(total / A100_80GB):>2} × A100 80GB")
    return total


acts = activation_bytes(L, seq, bsz, h, inter, spec70.q_dim, spec70.kv_dim)
acts_ck = activation_bytes(L, seq, bsz, h, inter, spec70.q_dim, spec70.kv_dim, checkpointing=True)
print(f"Llama-2-70B: {n70:,} parameters; LoRA r=16 on all seven projections: {nl70:,}")
print(f"activations at seq {seq} × batch {bsz}: {acts / GB:.1f} GB, with gradient checkpointing {acts_ck / GB:.2f} GB\n")
f32 = memory_breakdown(n70, "full", optimizer="adamw")                         # 16 B/param: the default row
f8 = memory_breakdown(n70, "full", optimizer="adamw_8bit")
lo = memory_breakdown(n70, "lora", n_lora=nl70)
ql = memory_breakdown(n70, "qlora", n_lora=nl70, optimizer="adamw_8bit")
totals = {
    "full FT, mixed-precision AdamW": report("full FT, AdamW + fp32 master (16 B/p)", {**{k: v for k, v in f32.items() if k != "total"}, "acts": acts}),
    "full FT, 8-bit AdamW": report("full FT, 8-bit AdamW + fp32 master", {**{k: v for k, v in f8.items() if k != "total"}, "acts": acts}),
    "LoRA r=16 (bf16 base)": report("LoRA r=16, bf16 base, checkpointing", {**{k: v for k, v in lo.items() if k != "total"}, "acts": acts_ck}),
    "QLoRA r=16": report("QLoRA r=16, paged 8-bit AdamW, ckpt", {**{k: v for k, v in ql.items() if k != "total"}, "acts": acts_ck}),
}

# %% [markdown]
# Reading the table:
# - **Full fine-tuning** with standard mixed-precision AdamW (16 B/param) needs far more than the seed's "~500GB":
#   the master copy and moments alone are 12 B/param. Whether eight A100s suffice depends on sharding — next cell.
# - **LoRA on a bf16 base** removes gradients and optimizer states for the frozen weights, but the bf16 weights
#   alone (≈140 GB) still exceed one 80 GB card.
# - **QLoRA** stores the frozen weights in ≈4.127 bits: ≈36 GB, plus a few GB of adapters, their gradients and
#   optimizer states, plus checkpointed activations — one A100 80GB, with room for longer sequences. Paged
#   optimizers absorb the occasional spike.

# %% [markdown]
# ### ZeRO: sharding the 16 bytes over data-parallel GPUs
# With $N_d$ GPUs, plain data parallelism replicates all 16 B/param on each. ZeRO (Rajbhandari et al. 2020)
# shards them: **ZeRO-1** the optimizer states (master copy + moments, 12 B), **ZeRO-2** also the gradients,
# **ZeRO-3** (≈ FSDP full sharding) also the bf16 weights. Per GPU, before activations, on $N_d = 8$ and 16:

# %%
def zero_per_gpu(breakdown, stage, n_gpus):
    """Bytes per GPU of weights + gradients + optimizer state under ZeRO stage 0–3 (a breakdown dict)."""
    w, g = breakdown["weights"] + breakdown["lora"], breakdown["gradients"]
    o = breakdown["optimizer"] + breakdown.get("master_weights", 0)
    return {0: w + g + o, 1: w + g + o / n_gpus, 2: w + (g + o) / n_gpus, 3: (w + g + o) / n_gpus}[stage]


print(f"{'Llama-2-70B full FT, 16 B/param':34}" + "".join(f"{'ZeRO-' + str(z):>10}" for z in range(4)))
for n_gpus in (8, 16):
    row = [zero_per_gpu(f32, z, n_gpus) / GB for z in range(4)]
    print(f"{f'GB per GPU on {n_gpus} GPUs':34}" + "".join(f"{v:>10.1f}" for v in row)
          + f"   fits 80 GB (before activations): {[z for z in range(4) if row[z] * GB <= A100_80GB]}")
b8 = memory_breakdown(n70, "full", optimizer="adamw", master_weights=False)
print(f"pure bf16 AdamW (no master copy, 12 B/param), ZeRO-3 on 8 GPUs: {zero_per_gpu(b8, 3, 8) / GB:.1f} GB per GPU")
c8 = memory_breakdown(n70, "full", optimizer="adamw_8bit", master_weights=False)
print(f"8-bit AdamW, no master copy ({c8['total'] / n70:.2f} B/param), ZeRO-3 on 8 GPUs: {zero_per_gpu(c8, 3, 8) / GB:.1f} GB per GPU")

# %% [markdown]
# With the standard 16 B/param, only ZeRO-3 brings 70B under 80 GB per GPU, and on eight GPUs not even that; pure
# bf16 AdamW does not fit eight either. The seed's "eight A100s" for full fine-tuning needs a much cheaper state
# (8-bit moments and no master copy, the last line — at a cost in stability), CPU offload, or a second node.

# %%
from course.plotting import plt

fig, ax = plt.subplots(figsize=(7.5, 3.6))
names = list(totals)
ax.barh(names, [totals[n] / GB for n in names])
ax.axvline(A100_80GB / GB, color="red", linestyle="--", label="one A100 80GB")
ax.axvline(8 * A100_80GB / GB, color="gray", linestyle=":", label="eight A100 80GB")
ax.set(xscale="log", xlabel="GB (log scale)", title=f"Llama-2-70B training memory, seq {seq} × batch {bsz}")
ax.legend(loc="lower right")
fig.tight_layout()

# %% [markdown]
# ## 4. The library calculator
#
# `course memory --model llama-2-70b --method qlora --grad-checkpointing` prints the same kind of table, with the
# embeddings, norms and LM head kept in bf16 under QLoRA, and the logits counted too. It accepts any HF
# `config.json`. The same estimate from Python:

# %%
from course.memory import estimate

print(estimate(spec70, "qlora", optimizer="paged_adamw_8bit", seq_len=seq, batch=bsz, grad_checkpointing=True).table())
print()
lab02 = estimate(model_spec("mistral-7b"), "qlora", optimizer="paged_adamw_8bit", seq_len=1024, batch=4,
                 grad_checkpointing=True)
print(lab02.table())
print(f"fits one A100 40GB: {lab02.fits(40 * GiB)} ({lab02.total / GB:.1f} GB)")

# %% [markdown]
# The second table is the seed's Lab 02 (Mistral-7B, QLoRA, batch 4 × 1024 tokens, gradient checkpointing on):
# comfortably inside an A100 40GB.
#
# **Estimate vs measurement.** Load the profile's model in NF4 with double quantization (bitsandbytes, CPU) and
# count the bytes it really holds — 4-bit codes, absmax, nested absmax, code tables, and the embeddings and norms
# it leaves unquantized (fp32 here, the profile's compute dtype) — beside the calculator's estimate for the same
# config. With `PROFILE = "small"` this is SmolLM2-135M-Instruct (tied embeddings, 30 layers).

# %%
from course.loading import load_base
from course.memory import measured_weight_bytes, weight_bytes

q_model = load_base(profile, quantize=True)
q_spec = model_spec(profile.model)
measured = measured_weight_bytes(q_model)
estimated = weight_bytes(q_spec, "qlora", weight_dtype="fp32", double_quant=True)
print(f"{profile.name}: {count_params(q_spec):,} parameters · estimate {estimated:,} B · measured {measured:,} B · "
      f"estimate/measured = {estimated / measured:.4f} ({100 * abs(estimated - measured) / measured:.2f} % off)")
print(f"fp32 for comparison: {weight_bytes(q_spec, 'full', weight_dtype='fp32'):,} B")
del q_model
#
# ## Summary
# - Per trainable parameter, mixed-precision AdamW costs 16 B: bf16 weight 2 + bf16 gradient 2 + fp32 master 4 +
#   two fp32 moments 8; ZeRO-1/2/3 shard the last 12, then the gradients, then everything. Freezing the base
#   removes gradient and optimizer state for all but the adapter.
# - 70B: two fp32 Adam moments are 560 GB; QLoRA's 4.127-bit weights (≈36 GB) are what make one 80 GB GPU enough.
# - Activations scale with layers × seq × batch; gradient checkpointing trades a recompute for keeping only
#   each block's input.
