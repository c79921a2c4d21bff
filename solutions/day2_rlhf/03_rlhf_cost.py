# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 2 · 3 — Why RLHF is expensive
#
# The seed says PPO-based RLHF costs "4× SFT cost easily". Check it by counting, for one PPO update:
#
# 1. **the models in memory** — policy, value model (both trained), reference and reward model (both frozen) — with
#    the Day 1 memory calculator (`course.memory`);
# 2. **the passes** — generation, forward passes without gradient, forward + backward passes — turned into FLOPs with
#    the standard $2N$ per token forward, $4N$ per token backward;
# 3. the same counts for the toy loop of notebook 2, where the value model is a head on the policy's trunk.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
from course.memory import GB, count_params, estimate, model_spec, weight_bytes
from course.plotting import plot_bars, plt

mistral = model_spec("mistral-7b")
print(f"{mistral.name}: {count_params(mistral):,} parameters")
sft_step = estimate(mistral, method="full", optimizer="adamw", seq_len=512, batch=8, grad_checkpointing=True)
print(sft_step.table())

# %% [markdown]
# ## 1. Models in memory
# InstructGPT's PPO holds four models of (roughly) the same size:
# - the **policy** $\pi_\theta$ — trained: weights, gradients, AdamW states, activations;
# - the **value model** $V_\phi$ — trained too (InstructGPT initialised it from the reward model);
# - the **reference** $\pi_\text{ref}$ — the frozen SFT model, for the KL penalty: weights only;
# - the **reward model** $r_\psi$ — frozen: weights only.
#
# SFT holds one trained model. (Activations of the frozen models' no-grad forward passes are freed layer by layer; we
# leave them out, as we leave out the generation KV cache.)
#
# ### Exercise 1 — memory of one PPO update
# Return the bytes of each of the four models and their total, with `estimate(spec, method="full", **kw).total` for a
# trained model (the `**kw` — optimizer, seq_len, batch, grad_checkpointing, ... — are passed on) and
# `weight_bytes(spec)` for a frozen one.

# %% nbgrader={"grade": false, "grade_id": "rlhf_memory", "locked": false, "schema_version": 3, "solution": true, "task": false}
def rlhf_memory(spec, **kw):
    """-> {"policy", "value", "reference", "reward", "total"}: bytes of full-fine-tuning PPO's four models."""
    ### BEGIN SOLUTION
    trained = estimate(spec, method="full", **kw).total
    frozen = weight_bytes(spec)
    out = {"policy": trained, "value": trained, "reference": frozen, "reward": frozen}
    out["total"] = sum(out.values())
    return out
    ### END SOLUTION


# %%
kw = dict(optimizer="adamw", seq_len=512, batch=8, grad_checkpointing=True)
mem = rlhf_memory(mistral, **kw)
for k, v in mem.items():
    print(f"{k:10} {v / GB:8.1f} GB")
print(f"RLHF / SFT memory: {mem['total'] / sft_step.total:.2f}×")

# %% nbgrader={"grade": true, "grade_id": "rlhf_memory__components", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_kw = dict(optimizer="adamw", seq_len=256, batch=4)
_mem = rlhf_memory(model_spec("tiny"), **_kw)
assert set(_mem) == {"policy", "value", "reference", "reward", "total"}, f"keys: {sorted(_mem)}"
_trained = estimate(model_spec("tiny"), method="full", **_kw).total
assert _mem["policy"] == _trained and _mem["value"] == _trained, \
    "policy and value model are both trained: weights + gradients + optimizer states + activations"
assert _mem["reference"] == weight_bytes(model_spec("tiny")) == _mem["reward"], \
    "the reference and the reward model are frozen: weights only"
assert _mem["total"] == 2 * _trained + 2 * weight_bytes(model_spec("tiny")), "the total is the sum of the four"

# %% nbgrader={"grade": true, "grade_id": "rlhf_memory__kwargs_and_scale", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
_a = rlhf_memory(mistral, optimizer="sgd", seq_len=128, batch=1)
_b = rlhf_memory(mistral, optimizer="adamw", seq_len=128, batch=1)
assert _b["policy"] - _a["policy"] == 8 * count_params(mistral), \
    "keyword arguments reach the calculator: AdamW adds two fp32 moments (8 bytes) per trained parameter"
assert _a["reference"] == _b["reference"] == 2 * count_params(mistral), "frozen bf16 weights: 2 bytes per parameter"
### BEGIN HIDDEN TESTS
_c = rlhf_memory(mistral, optimizer="adamw", seq_len=1024, batch=2)
assert _c["policy"] > _b["policy"] and _c["reference"] == _b["reference"], "activations grow with tokens; frozen weights do not"
_on = rlhf_memory(mistral, optimizer="adamw", seq_len=1024, batch=2, grad_checkpointing=True)
assert _on["policy"] == estimate(mistral, method="full", optimizer="adamw", seq_len=1024, batch=2,
                                 grad_checkpointing=True).total < _c["policy"], "grad_checkpointing reaches the calculator"
_mw = rlhf_memory(mistral, optimizer="adamw", seq_len=128, batch=1, master_weights=True)
assert _mw["value"] - _b["value"] == 4 * count_params(mistral), "every keyword reaches it: fp32 master weights, 4 B/param"
_one = rlhf_memory(model_spec("tiny"), optimizer="sgd", seq_len=1, batch=1)
assert _one["total"] == 2 * estimate(model_spec("tiny"), method="full", optimizer="sgd", seq_len=1, batch=1).total \
    + 2 * weight_bytes(model_spec("tiny")), "one token, batch 1, SGD"
### END HIDDEN TESTS

# %%
plot_bars({k: v / GB for k, v in mem.items() if k != "total"} | {"SFT (one model)": sft_step.total / GB},
          title=f"{mistral.name}: memory of one PPO update vs SFT", ylabel="GB")
plt.show()

# %% [markdown]
# ## 2. Passes per update
# One PPO update on a batch of prompts:
# 1. **generate** the responses with the policy (one forward per new token, sequential — slow in wall-clock, but in
#    FLOPs about one forward pass over the response);
# 2. **score** without gradients: policy (old log-probs), value model (old values), reference, reward model —
#    4 forward passes;
# 3. for each of `ppo_epochs` epochs: policy forward + backward and value forward + backward.
#
# SFT on the same batch is 1 forward + 1 backward. A backward pass costs about twice a forward one
# (gradients with respect to activations *and* weights), so in forward-pass units SFT is $1 + 2 = 3$.
#
# ### Exercise 2 — count the passes
# Return `{"generate": 1, "forward": ..., "backward": ...}` for one PPO update (forwards include the no-grad ones
# and the training ones), and the cost relative to SFT in forward units: generate counts 1, forward 1, backward
# `backward_cost`.

# %% nbgrader={"grade": false, "grade_id": "ppo_passes", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ppo_passes(ppo_epochs):
    """-> {"generate", "forward", "backward"}: passes of one PPO update (policy + value trained, 4 no-grad scorers)."""
    ### BEGIN SOLUTION
    return {"generate": 1, "forward": 4 + 2 * ppo_epochs, "backward": 2 * ppo_epochs}
    ### END SOLUTION


def cost_vs_sft(passes, backward_cost=2.0):
    """PPO update cost / SFT step cost, in forward-pass units (SFT = 1 forward + 1 backward)."""
    ### BEGIN SOLUTION
    ppo = passes["generate"] + passes["forward"] + backward_cost * passes["backward"]
    return ppo / (1 + backward_cost)
    ### END SOLUTION


# %%
for epochs in (1, 2, 4):
    p = ppo_passes(epochs)
    print(f"ppo_epochs = {epochs}: {p}  ->  {cost_vs_sft(p):.2f}× an SFT step")

# %% nbgrader={"grade": true, "grade_id": "ppo_passes__counts", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert ppo_passes(1) == {"generate": 1, "forward": 6, "backward": 2}, \
    "one epoch: 4 no-grad forwards (policy, value, reference, reward) + policy and value forward, then both backward"
assert ppo_passes(4) == {"generate": 1, "forward": 12, "backward": 8}, "each epoch adds 2 forwards and 2 backwards"

# %% nbgrader={"grade": true, "grade_id": "ppo_passes__cost_ratio", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert abs(cost_vs_sft({"generate": 1, "forward": 6, "backward": 2}) - 11 / 3) < 1e-9, \
    "(1 + 6 + 2·2) / (1 + 2) = 11/3 ≈ 3.67 — even one PPO epoch costs close to 4 SFT steps"
assert abs(cost_vs_sft({"generate": 0, "forward": 1, "backward": 1}) - 1.0) < 1e-9, "SFT itself is 1×"
### BEGIN HIDDEN TESTS
assert abs(cost_vs_sft({"generate": 1, "forward": 12, "backward": 8}, backward_cost=1.0) - 21 / 2) < 1e-9, \
    "backward_cost is a parameter"
assert ppo_passes(0) == {"generate": 1, "forward": 4, "backward": 0}, "0 epochs: only generation and the 4 scorers"
assert ppo_passes(3) == {"generate": 1, "forward": 10, "backward": 6}, "3 epochs"
assert abs(cost_vs_sft({"generate": 1, "forward": 12, "backward": 8}, backward_cost=0.0) - 13.0) < 1e-9, \
    "backward_cost = 0: forward units only, SFT = 1"
assert abs(cost_vs_sft({"generate": 1, "forward": 6, "backward": 2}, backward_cost=3.0) - 13 / 4) < 1e-9
### END HIDDEN TESTS

# %% [markdown]
# ## 3. FLOPs, and the toy loop
# The forward pass of an $N$-parameter decoder costs about $2N$ FLOPs per token. For Mistral-7B on one batch of
# 8 prompts × 512 tokens, using the counts above:

# %%
N, tokens = count_params(mistral), 8 * 512
for epochs in (1, 4):
    p = ppo_passes(epochs)
    flops = 2 * N * tokens * (p["generate"] + p["forward"] + 2 * p["backward"])
    print(f"ppo_epochs = {epochs}: {flops:.3e} FLOPs per update vs SFT {2 * N * tokens * 3:.3e}  "
          f"({cost_vs_sft(p):.2f}×)")
print(f"memory: {mem['total'] / GB:.0f} GB vs {sft_step.total / GB:.0f} GB ({mem['total'] / sft_step.total:.2f}×)")

# %% [markdown]
# Notebook 2's toy loop shares one trunk between policy and value head, so its update is: generate; 2 no-grad forwards
# of the policy trunk (log-probs and values together) and the reference, 1 of the reward model — 3 scoring passes; then
# `ppo_epochs = 2` forward + backward passes of the shared trunk. Its models in memory: policy (+ head) trained, reference
# and reward model frozen — three, not four.

# %%
toy = {"generate": 1, "forward": 3 + 2, "backward": 2}
print("toy loop (shared trunk, 2 epochs):", toy, f"-> {cost_vs_sft(toy):.2f}× an SFT step")

# %% [markdown]
# **Verdict on the seed's "4× SFT cost easily"**: by FLOPs, a single PPO epoch is already close to 4× an SFT step and
# the usual 2–4 epochs cost more (the ratios printed above); memory holds two trained models and two frozen ones, and
# the sequential generation is slower than its FLOPs suggest. "4×" is a floor, not an estimate. This is much of why
# DPO (Day 3) won: one trained model, one frozen reference, no generation, no value model:

# %%
dpo = {"generate": 0, "forward": 2, "backward": 1}          # policy forward + backward, reference forward
print("DPO step:", dpo, f"-> {cost_vs_sft(dpo):.2f}× an SFT step")

# %% [markdown]
# LoRA shrinks the memory side of PPO: policy and value as adapters on one frozen base, and the reference is that base
# with the adapters switched off.
#
# **Interview answers this notebook backs with numbers**
# - *Why is RLHF with PPO expensive?* Four models (two trained), generation in the loop, and
#   $5 + 6\cdot$`ppo_epochs` forward-units of passes per update against 3 for SFT (§2).
# - *How much memory for PPO on a 7B model?* Count it: two full fine-tuning footprints plus two frozen bf16 copies (§1).
