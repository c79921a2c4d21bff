# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 5 · 2 — Many adapters on one base: hot-swapping, mixed batches, an adapter server
#
# The seed's "solid → exceptional" list: *train multiple LoRA adapters for different tasks; demonstrate hot-swapping
# at inference.* Its interview question: *how would you serve 100 different LoRA adapters in production?* And its
# decision table (§6): *per-tenant customization → LoRA adapters per tenant; hot-swap at serving.* This notebook:
#
# 1. trains three small adapters on the profile's base (the tiny Llama; SmolLM2-135M on `small`), one per task
#    family — three "tenants" — and reads what each does to generated text, merged and hot-swapped;
# 2. switches between them with `set_adapter` / `load_adapter` and with `hotswap_adapter`, and measures swap
#    latency against reloading the model;
# 3. runs **mixed-adapter batches** — one batch, a different adapter per row (`adapter_names=`) — and checks each row
#    equals that adapter run alone;
# 4. builds a small **adapter server** (exercise), then does the memory and latency math for 100 adapters on a 7B
#    base, and reads how S-LoRA, Punica and vLLM do it;
# 5. places per-tenant adapters against RAG.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
import tempfile
import time
from pathlib import Path

import torch
from peft import PeftModel
from peft.utils.hotswap import hotswap_adapter

from course.generation import answer, chat_prompt, generate, stop_token_ids
from course.loading import load_base, load_tokenizer
from course.memory import GB, MiB, count_params, lora_params, model_spec
from course.timing import median_seconds
from course.tinyworld import tasks
from course.training import lora_config, train_sft

TEMPLATE = "chatml"
TENANTS = ["capital", "antonym", "sound"]        # one tenant per task family
tokenizer = load_tokenizer(profile)

# %% [markdown]
# ## 1. Three task adapters
#
# Every adapter gets the **same** LoRA configuration (r=8, α=16, all seven projections): same shapes, same scaling.
# That is what lets one base hold them side by side, batch them together, and hot-swap one into another's slot.
# 30 steps each (`profile.steps(30)`: the profile's training budget caps it), on one family's training prompts, at a
# learning rate chosen for the tiny model and scaled by `profile.lr` (a pretrained model needs a gentler one);
# saved to disk as a deployment would receive them.

# %%
ADAPTER_ROOT = Path(tempfile.mkdtemp(prefix="day5-tenants-"))
ADAPTERS = {}
STEPS = profile.steps(30)
for fam in TENANTS:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    trained, losses = train_sft(load_base(profile), tokenizer, tasks.examples("train", [fam]), template=TEMPLATE,
                                lora=lora_config(r=8, alpha=16), max_steps=STEPS, batch_size=8,
                                learning_rate=profile.lr(1e-2),
                                scheduler="constant", activation_checkpointing=False)
    ADAPTERS[fam] = ADAPTER_ROOT / fam
    trained.save_pretrained(ADAPTERS[fam])
    size = (ADAPTERS[fam] / "adapter_model.safetensors").stat().st_size
    print(f"{fam:8} {STEPS} steps in {time.perf_counter() - t0:4.1f} s, loss {losses[0]:.2f} -> {losses[-1]:.2f}, "
          f"adapter {size:,} bytes")

# %% [markdown]
# One `PeftModel`, one base, three named adapters: `PeftModel.from_pretrained` loads the first, `load_adapter` adds
# the others next to it, `set_adapter` chooses which one runs.

# %%
model = PeftModel.from_pretrained(load_base(profile), ADAPTERS["capital"], adapter_name="capital").eval()
for fam in TENANTS[1:]:
    model.load_adapter(ADAPTERS[fam], adapter_name=fam)
print("adapters:", list(model.peft_config), "· active:", model.active_adapter)
lora_numel = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
base_numel = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
print(f"base {base_numel:,} parameters + {len(TENANTS)} adapters × {lora_numel // len(TENANTS):,}")

# %% [markdown]
# Each adapter on each family's held-out prompts (exact match), and the base for reference. On `tiny` every tenant is
# good at its own task and at nothing else — which is why a request must reach **its** tenant's adapter. On `small`
# the pretrained base already answers some prompts (first row) and an adapter's one-sentence answer form carries over
# to other families, so tenants overlap; the last line says whether each is still best on its own family.

# %%
heldout = tasks.examples("heldout", TENANTS)
score_table = {}
with model.disable_adapter():
    score_table["(base)"] = tasks.exact_match_by_family(heldout, answer(model, tokenizer, heldout, TEMPLATE))
for name in TENANTS:
    model.set_adapter(name)
    score_table[name] = tasks.exact_match_by_family(heldout, answer(model, tokenizer, heldout, TEMPLATE))
print("adapter \\ family " + "".join(f"{f:>9}" for f in TENANTS))
for name, row in score_table.items():
    print(f"{name:16} " + "".join(f"{row[f]:9.2f}" for f in TENANTS))
own_best = all(score_table[f][f] > max(score_table[m][f] for m in score_table if m != f) for f in TENANTS)
print(f"each adapter scores highest on its own family: {own_best}; best score off its family: "
      f"{max(score_table[m][f] for m in TENANTS for f in TENANTS if m != f):.2f}")

# %% [markdown]
# ## 2. Switching adapters, and what it costs
#
# - `set_adapter(name)` flips which adapter each LoRA layer uses: no weights move.
# - `load_adapter(path, name)` reads an adapter from disk and adds new LoRA modules (then `delete_adapter` frees it).
# - `hotswap_adapter(model, path, adapter_name)` (peft ≥ 0.14) copies a new adapter's weights **into an existing
#   slot in place** — no new modules, so a `torch.compile`d model is not recompiled. It requires a compatible adapter
#   (same targets; ranks and scalings that fit, see `prepare_model_for_compiled_hotswap` for mixed ranks).
# - Reloading: a fresh base from disk plus the adapter — what you would do without adapters at all.
#
# First, that a hot-swap is exact: a one-slot model gets the `antonym` weights swapped into its `default` slot and
# must then compute exactly what the three-adapter model computes with `antonym` active.

# %%
probe = tokenizer([chat_prompt(tokenizer, e.instruction, TEMPLATE) for e in heldout[::9]], return_tensors="pt",
                  padding=True, add_special_tokens=False)
one_slot = PeftModel.from_pretrained(load_base(profile), ADAPTERS["capital"]).eval()   # slot "default"
hotswap_adapter(one_slot, str(ADAPTERS["antonym"]), adapter_name="default", torch_device="cpu")
model.set_adapter("antonym")
with torch.no_grad():
    print("max |hot-swapped − loaded 'antonym'| =", (one_slot(**probe).logits - model(**probe).logits).abs().max().item())

# %% [markdown]
# ### What an adapter does to the text
#
# Prompts in words the adapters never trained on: a held-out key in a new phrasing, and one question outside every
# family. Each goes through the base (adapters disabled), the `capital` adapter, that adapter **merged** into a fresh
# copy of the base (`merge_and_unload`: $W_0 + sBA$, no LoRA modules left), and the one-slot model before and after
# `hotswap_adapter` puts `capital` into the slot that holds `antonym`. Greedy decoding, `profile.max_new_tokens`
# tokens. On `small` this is SmolLM2-135M-Instruct answering in English; on `tiny`, the tiny Llama.

# %%
_cap, _ant = tasks.examples("heldout", ["capital"])[0].key, tasks.examples("heldout", ["antonym"])[0].key
DEMO = [f"Tell me the capital of {_cap}.", f"What word is the opposite of {_ant}?", "Tell me one fact about the Moon."]
demo_prompts = [chat_prompt(tokenizer, q, TEMPLATE) for q in DEMO]
demo_enc = tokenizer(demo_prompts, return_tensors="pt", padding=True, add_special_tokens=False)
n_new = profile.max_new_tokens
model.set_adapter("capital")
with model.disable_adapter():
    demo = {"base": generate(model, tokenizer, demo_prompts, n_new)}
demo["+ capital adapter"] = generate(model, tokenizer, demo_prompts, n_new)
merged = PeftModel.from_pretrained(load_base(profile), ADAPTERS["capital"]).merge_and_unload().eval()
demo["capital merged"] = generate(merged, tokenizer, demo_prompts, n_new)
with torch.no_grad():
    merge_gap = (merged(**demo_enc).logits - model(**demo_enc).logits).abs().max().item()
del merged
demo["one slot: antonym"] = generate(one_slot, tokenizer, demo_prompts, n_new)
hotswap_adapter(one_slot, str(ADAPTERS["capital"]), adapter_name="default", torch_device="cpu")
demo["one slot: hot-swapped capital"] = generate(one_slot, tokenizer, demo_prompts, n_new)
for i, q in enumerate(DEMO):
    print(f"{q}")
    for row, texts in demo.items():
        print(f"   {row:30} {texts[i]!r}")
in_form = {row: [any(tasks.FAMILIES[f].parse(t) for f in TENANTS) for t in texts] for row, texts in demo.items()}
for row, texts in demo.items():
    print(f"{row:30} answers in a family's sentence form: {in_form[row]} · mean length "
          f"{sum(len(t.split()) for t in texts) / len(texts):.1f} words")
print(f"merged vs unmerged: max |Δ logit| = {merge_gap:.2e}; same text: {demo['capital merged'] == demo['+ capital adapter']}; "
      f"hot-swapped slot = loaded adapter: {demo['one slot: hot-swapped capital'] == demo['+ capital adapter']}")
assert merge_gap < 1e-3, "merging W0 + sBA in float32 computes what the unmerged adapter computes"

# %% [markdown]
# Read the rows. An adapter changes *how* the model answers: in a family's one-sentence form (the flags above). How
# far that reaches depends on the base: the tiny model knows nothing but its tiny world, so the `capital` adapter
# answers even the Moon question with a capital; SmolLM2 keeps what it knew and answers the Moon question in a
# sentence of its own, shorter than the base's. The merge changes nothing but where the update
# lives (logit gap printed), and a hot-swap turns one tenant's slot into another's without a reload.
#
# Now the latencies (median of repeats; the machine is shared, so read the orders of magnitude).
# `benchmarks/adapter_serving.py` measures the same on a wider model and `docs/BENCHMARKS.md` records it.
# `median_seconds(fn, repeats)` (from `course.timing`, as in notebook 1) is the median wall time of `repeats` calls
# of `fn` after one untimed warm-up call.

# %%
def load_then_delete():
    model.load_adapter(ADAPTERS["sound"], adapter_name="extra")
    model.delete_adapter("extra")


swap_cycle = iter(TENANTS * 1000)
latency = {
    "set_adapter (already loaded)": median_seconds(lambda: model.set_adapter(next(swap_cycle)), 50),
    "hotswap_adapter (from disk, in place)": median_seconds(
        lambda: hotswap_adapter(one_slot, str(ADAPTERS[next(swap_cycle)]), adapter_name="default",
                                torch_device="cpu"), 5),
    "load_adapter + delete_adapter": median_seconds(load_then_delete, 5),
    "reload base + adapter from disk": median_seconds(
        lambda: PeftModel.from_pretrained(load_base(profile), ADAPTERS["sound"]), 3),
}
reload_s = latency["reload base + adapter from disk"]
for what, s in latency.items():
    print(f"{what:40} {s * 1e3:9.3f} ms   ({reload_s / s:8.1f}× faster than reloading)")

# %% [markdown]
# On the tiny model the base is a few megabytes, so even a reload is quick (SmolLM2 on `small` is 0.5 GB in fp32); what carries over to real sizes is the
# ordering. Reloading moves the whole base, loading or hot-swapping moves one adapter, `set_adapter` moves nothing —
# §5 puts bytes on it for a 7B base. A request that needs a different adapter should never wait for a base reload.
#
# ## 3. Mixed-adapter batches
#
# `set_adapter` serves one tenant at a time: a batch whose requests belong to three tenants would run three times.
# peft can instead take **one adapter name per row**: `model.generate(..., adapter_names=[...])` (and
# `model(..., adapter_names=...)`); the special name `"__base__"` means "no adapter" for that row. Inside each LoRA
# layer peft splits the batch by adapter and adds each sub-batch's $sB(Ax)$ to the shared base output $W_0x$, so
# the expensive part — the base matmul — is done once for the whole batch.
#
# ### Exercise 4
# `generate_mixed(model, tokenizer, prompts, adapter_names, max_new_tokens)`: greedy-generate one completion per
# already-rendered prompt, row `i` with adapter `adapter_names[i]`, in **one** `model.generate` call. Tokenize with
# padding on the **left** (generation appends on the right; restore the tokenizer's `padding_side` after) and
# `add_special_tokens=False`; stop at `stop_token_ids(tokenizer)`, pad with `tokenizer.pad_token_id`; return only the
# new text of each row, decoded with `skip_special_tokens=True` and stripped — exactly what `course.generation.generate`
# returns for a single adapter.

# %% nbgrader={"grade": false, "grade_id": "generate_mixed", "locked": false, "schema_version": 3, "solution": true, "task": false}
@torch.no_grad()
def generate_mixed(model, tokenizer, prompts: list[str], adapter_names: list[str], max_new_tokens: int = 24) -> list[str]:
    """One generate call; row i uses adapter adapter_names[i] ("__base__" = none). n prompts -> n answers."""
    ### BEGIN SOLUTION
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    out = model.generate(**enc, adapter_names=list(adapter_names), max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)
    new = out[:, enc["input_ids"].shape[1]:]
    return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    ### END SOLUTION


# %% [markdown]
# The check that matters: every row of a mixed batch equals that adapter run **alone** (one prompt, no padding).

# %%
def alone(model, tokenizer, prompt, adapter_name, max_new_tokens=24):
    """The reference: one prompt, its adapter active (or all adapters disabled for "__base__")."""
    if adapter_name == "__base__":
        with model.disable_adapter():
            return generate(model, tokenizer, [prompt], max_new_tokens)[0]
    model.set_adapter(adapter_name)
    return generate(model, tokenizer, [prompt], max_new_tokens)[0]


mix = tasks.examples("heldout", TENANTS)[::11]
names = [(TENANTS + ["__base__"])[i % 4] for i in range(len(mix))]
prompts = [chat_prompt(tokenizer, e.instruction, TEMPLATE) for e in mix]
mixed = generate_mixed(model, tokenizer, prompts, names)
single = [alone(model, tokenizer, p, n) for p, n in zip(prompts, names)]
for e, n, m in list(zip(mix, names, mixed))[:4]:
    print(f"[{n:8}] {e.instruction!r:46} -> {m!r}")
print(f"mixed batch of {len(prompts)} rows, {len(set(names))} adapters: rows equal to the adapter alone: "
      f"{sum(a == b for a, b in zip(mixed, single))}/{len(prompts)}")

# %% nbgrader={"grade": true, "grade_id": "generate_mixed__rows_equal_single_adapter", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_ex = tasks.examples("heldout", ["capital", "sound", "antonym"])[1::13]
_names = [["sound", "__base__", "capital", "antonym"][i % 4] for i in range(len(_ex))]
_prompts = [chat_prompt(tokenizer, e.instruction, TEMPLATE) for e in _ex]
_got = generate_mixed(model, tokenizer, _prompts, _names)
assert isinstance(_got, list) and len(_got) == len(_prompts), "one answer per prompt, in order"
for _p, _n, _g in zip(_prompts, _names, _got):
    _want = alone(model, tokenizer, _p, _n)
    assert _g == _want, f"row with adapter {_n!r}: got {_g!r}, but that adapter alone answers {_want!r}"

# %% nbgrader={"grade": true, "grade_id": "generate_mixed__one_call_and_tokenizer_restored", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_calls = []
_orig_generate = model.generate
model.generate = lambda *a, **k: (_calls.append(k.get("adapter_names")), _orig_generate(*a, **k))[1]
_side = tokenizer.padding_side
tokenizer.padding_side = "right"
try:
    _p = [chat_prompt(tokenizer, "What is the capital of Chile?", TEMPLATE),
          chat_prompt(tokenizer, "Give the antonym of hot.", TEMPLATE)]
    _got = generate_mixed(model, tokenizer, _p, ["antonym", "capital"], max_new_tokens=8)
finally:
    del model.generate                                  # back to the class's method
    _restored = tokenizer.padding_side
    tokenizer.padding_side = _side
assert len(_calls) == 1, f"one model.generate call for the whole batch, not {len(_calls)}"
assert _calls[0] is not None and list(_calls[0]) == ["antonym", "capital"], \
    "pass the per-row adapter names to model.generate as adapter_names="
assert _restored == "right", "restore the tokenizer's padding side after tokenizing"
### BEGIN HIDDEN TESTS
assert _got == [alone(model, tokenizer, _p[0], "antonym", 8), alone(model, tokenizer, _p[1], "capital", 8)]
### END HIDDEN TESTS

# %% [markdown]
# ## 4. An adapter server
#
# Put it together: a server that holds **one** base model and one adapter per tenant, takes requests
# `(tenant, instruction)` from many tenants at once, and answers them in mixed batches.
#
# ### Exercise 5
# Complete `AdapterServer`:
# - `add_tenant(tenant, adapter_dir)` loads the tenant's adapter into the shared model under the tenant's name
#   (`model.load_adapter`) and records it;
# - `answer(requests)` takes a list of `(tenant, instruction)` (tenant `None` = the plain base model), renders each
#   instruction with `chat_prompt(tokenizer, instruction, template)`, and answers **in request order**, in batches
#   of at most `max_batch` consecutive requests, each batch one `generate_mixed` call with each row's own adapter
#   (`"__base__"` for `None`). It counts its batches in `self.batches`. An unknown tenant is an error
#   (`KeyError` naming it), never silently served by someone else's adapter or the base.

# %% nbgrader={"grade": false, "grade_id": "adapter_server", "locked": false, "schema_version": 3, "solution": true, "task": false}
class AdapterServer:
    """One base model, one LoRA adapter per tenant, mixed-adapter batches across tenants."""

    BASE = "__base__"

    def __init__(self, model, tokenizer, template: str = TEMPLATE, max_batch: int = 8, max_new_tokens: int = 24):
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.max_batch, self.max_new_tokens = max_batch, max_new_tokens
        self.tenants: dict[str, str] = {}      # tenant -> adapter name inside the model
        self.batches = 0                       # generate_mixed calls made so far

    def add_tenant(self, tenant: str, adapter_dir) -> None:
        ### BEGIN SOLUTION
        self.model.load_adapter(str(adapter_dir), adapter_name=tenant)
        self.tenants[tenant] = tenant
        ### END SOLUTION

    def answer(self, requests: list[tuple[str | None, str]]) -> list[str]:
        ### BEGIN SOLUTION
        names = []
        for tenant, _ in requests:
            if tenant is None:
                names.append(self.BASE)
            elif tenant in self.tenants:
                names.append(self.tenants[tenant])
            else:
                raise KeyError(f"unknown tenant {tenant!r}; known tenants: {sorted(self.tenants)}")
        prompts = [chat_prompt(self.tokenizer, instruction, self.template) for _, instruction in requests]
        answers = []
        for i in range(0, len(prompts), self.max_batch):
            answers.extend(generate_mixed(self.model, self.tokenizer, prompts[i:i + self.max_batch],
                                          names[i:i + self.max_batch], self.max_new_tokens))
            self.batches += 1
        return answers
        ### END SOLUTION


# %%
server = AdapterServer(PeftModel.from_pretrained(load_base(profile), ADAPTERS["capital"], adapter_name="capital"),
                       tokenizer, max_batch=8)
server.tenants["capital"] = "capital"                 # loaded with the model
for fam in TENANTS[1:]:
    server.add_tenant(fam, ADAPTERS[fam])
requests = [(TENANTS[i % 3] if i % 5 else None, e.instruction) for i, e in enumerate(heldout[::7])]
t0 = time.perf_counter()
replies = server.answer(requests)
print(f"{len(requests)} requests from {len({t for t, _ in requests})} tenants (None = base) in {server.batches} "
      f"batches, {time.perf_counter() - t0:.2f} s")
for (tenant, instruction), reply in list(zip(requests, replies))[:5]:
    print(f"[{tenant!s:8}] {instruction!r:46} -> {reply!r}")

# %% nbgrader={"grade": true, "grade_id": "adapter_server__answers_equal_single_adapter", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
_srv = AdapterServer(PeftModel.from_pretrained(load_base(profile), ADAPTERS["sound"], adapter_name="sound"),
                     tokenizer, max_batch=4)
_srv.tenants["sound"] = "sound"
_srv.add_tenant("acme", ADAPTERS["capital"])          # tenant names need not be family names
_srv.add_tenant("globex", ADAPTERS["antonym"])
_ex = tasks.examples("heldout", ["capital", "antonym", "sound"])[2::8]
_who = [["acme", "globex", "sound", None, "globex", "acme"][i % 6] for i in range(len(_ex))]
_reqs = list(zip(_who, [e.instruction for e in _ex]))
_got = _srv.answer(_reqs)
_ref = {"acme": "acme", "globex": "globex", "sound": "sound", None: "__base__"}
assert len(_got) == len(_reqs), "one answer per request"
for (_t, _instr), _g in zip(_reqs, _got):
    _want = alone(_srv.model, tokenizer, chat_prompt(tokenizer, _instr, TEMPLATE), _ref[_t])
    assert _g == _want, (f"tenant {_t!r}, {_instr!r}: the server answered {_g!r}, but the tenant's adapter alone "
                         f"answers {_want!r} (wrong adapter, or answers out of order?)")
### BEGIN HIDDEN TESTS
_got2 = _srv.answer(list(reversed(_reqs)))
assert _got2 == list(reversed(_got)), "the same request gets the same answer whatever batch it lands in"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "adapter_server__batches_across_tenants", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_srv = AdapterServer(PeftModel.from_pretrained(load_base(profile), ADAPTERS["capital"], adapter_name="capital"),
                     tokenizer, max_batch=6, max_new_tokens=6)
_srv.tenants["capital"] = "capital"
_srv.add_tenant("antonym", ADAPTERS["antonym"])
_reqs = [("capital", "What is the capital of Peru?"), ("antonym", "Give the antonym of up."), (None, "Hello."),
         ("antonym", "What is the opposite of wet?"), ("capital", "Name the capital city of Kenya.")]
_srv.answer(_reqs)
assert _srv.batches == 1, f"5 requests from 3 tenants with max_batch=6 fit one mixed batch; made {_srv.batches}"
_srv.answer(_reqs * 3)
assert _srv.batches == 1 + 3, f"15 requests with max_batch=6 are 3 batches; made {_srv.batches - 1}"
try:
    _srv.answer([("capital", "What is the capital of Peru?"), ("initech", "What is the opposite of up?")])
    raise AssertionError("an unknown tenant must raise KeyError, not be served by another adapter")
except KeyError as _e:
    assert "initech" in str(_e), "the KeyError should name the unknown tenant"
### BEGIN HIDDEN TESTS
assert "antonym" in _srv.model.peft_config, "add_tenant loads the adapter into the server's model"
assert _srv.tenants.get("antonym") == "antonym"
_srv.answer([])
assert _srv.batches == 4, "no requests, no batch"
### END HIDDEN TESTS

# %% [markdown]
# ## 5. 100 adapters on a 7B base: the memory and latency math
#
# The interview question. Start from bytes. An adapter's size is Day 1's count (`course.memory.lora_params`: r·(in +
# out) per targeted projection per layer, GQA-aware) times the bytes of its dtype; the base is
# `course.memory.count_params` times its dtype. Where they live:
#
# - **resident on the GPU, always**: the base weights (one copy for every tenant) and the KV cache of the running
#   requests;
# - **resident if hot**: the adapters of tenants with requests in flight (a fixed number of GPU "slots");
# - **paged**: every other adapter, kept in host (CPU) memory — or on disk — and copied to a GPU slot on demand.
#
# ### Exercise 6
# `serving_memory(spec, n_adapters, r, gpu_slots, weight_bytes=2, adapter_bytes=2)` returns a dict of bytes:
# `"adapter"` (one adapter, all seven projections), `"base"`, `"all_resident"` (base + every adapter on the GPU),
# `"gpu"` (base + the adapters in GPU slots — never more slots than adapters) and `"host"` (every adapter kept in
# host memory, where the pager copies from).

# %% nbgrader={"grade": false, "grade_id": "serving_memory", "locked": false, "schema_version": 3, "solution": true, "task": false}
def serving_memory(spec, n_adapters: int, r: int, gpu_slots: int, weight_bytes: int = 2,
                   adapter_bytes: int = 2) -> dict[str, int]:
    """Bytes to serve n_adapters rank-r LoRA adapters (all seven projections) on one base model."""
    ### BEGIN SOLUTION
    spec = model_spec(spec)
    one = lora_params(spec, r) * adapter_bytes
    base = count_params(spec) * weight_bytes
    return {"adapter": one, "base": base, "all_resident": base + n_adapters * one,
            "gpu": base + min(gpu_slots, n_adapters) * one, "host": n_adapters * one}
    ### END SOLUTION


# %%
mistral = model_spec("mistral-7b")
mem = serving_memory(mistral, n_adapters=100, r=16, gpu_slots=8)
for k, v in mem.items():
    print(f"{k:13} {v:>16,} bytes = {v / GB:7.2f} GB = {v / MiB:10.1f} MiB")
print(f"one r=16 adapter is {mem['adapter'] / mem['base']:.2%} of the base; 100 of them are "
      f"{100 * mem['adapter'] / mem['base']:.0%} of it")

# %% nbgrader={"grade": true, "grade_id": "serving_memory__mistral_100_adapters", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_m = serving_memory("mistral-7b", n_adapters=100, r=16, gpu_slots=8)
assert _m["adapter"] == 83_886_080, "Mistral-7B, r=16, seven projections: 41,943,040 parameters × 2 bytes (bf16)"
assert _m["base"] == count_params(model_spec("mistral-7b")) * 2, "the base in bf16: count_params × 2 bytes"
assert _m["all_resident"] == _m["base"] + 100 * 83_886_080, "all resident: base + 100 adapters"
### BEGIN HIDDEN TESTS
assert _m["gpu"] == _m["base"] + 8 * 83_886_080 and _m["host"] == 100 * 83_886_080
_m = serving_memory("llama-2-7b", n_adapters=10, r=8, gpu_slots=4, adapter_bytes=4)
assert _m["adapter"] == lora_params(model_spec("llama-2-7b"), 8) * 4, "adapter bytes follow adapter_bytes (fp32: 4)"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "serving_memory__slots_and_host", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_m = serving_memory(profile.model, n_adapters=3, r=8, gpu_slots=10, weight_bytes=4, adapter_bytes=4)
_one = lora_params(model_spec(profile.model), 8) * 4
assert _m["adapter"] == _one == lora_numel // len(TENANTS) * 4, \
    "this profile's adapter: the same count as the adapters trained above, × 4 bytes in fp32"
assert _m["gpu"] == _m["all_resident"] == _m["base"] + 3 * _one, "10 slots but only 3 adapters: all 3 are resident"
assert _m["host"] == 3 * _one, "host memory keeps every adapter"
### BEGIN HIDDEN TESTS
_m = serving_memory("llama-2-70b", n_adapters=1000, r=64, gpu_slots=32, weight_bytes=1)
_one = lora_params(model_spec("llama-2-70b"), 64) * 2
assert _m["base"] == count_params(model_spec("llama-2-70b")) and _m["gpu"] == _m["base"] + 32 * _one
assert _m["host"] == 1000 * _one
### END HIDDEN TESTS

# %% [markdown]
# What the bytes mean on an A100-80GB. The KV cache is what competes with adapters for GPU memory: per token it holds
# a key and a value vector per layer, $2 \cdot L \cdot d_{kv}$ numbers (with GQA $d_{kv}$ is the width of the k/v
# projections, smaller than the hidden size). Copying a cold adapter in costs its bytes over PCIe; reloading the base
# instead costs the base's bytes. The bandwidth below is an **assumption** (a practical figure for PCIe 4.0 x16), not
# a measurement:

# %%
from course.memory import A100_80GB

PCIE_BYTES_PER_S = 25e9          # assumed host->GPU bandwidth (PCIe 4.0 x16, practical)
kv_per_token = 2 * mistral.num_layers * mistral.kv_dim * 2            # K and V, every layer, bf16
print(f"Mistral-7B: {mistral.num_layers} layers, d_kv = {mistral.kv_dim} (hidden {mistral.hidden_size})")
free_after_base = A100_80GB - mem["base"]
print(f"KV cache: {kv_per_token:,} bytes per token ({kv_per_token / 2**10:.0f} KiB)")
print(f"A100-80GB after the bf16 base: {free_after_base / GB:.1f} GB free")
print(f"100 resident adapters ({100 * mem['adapter'] / GB:.2f} GB) would displace "
      f"{100 * mem['adapter'] / kv_per_token:,.0f} tokens of KV cache; 8 slots displace "
      f"{8 * mem['adapter'] / kv_per_token:,.0f}")
print(f"paging one adapter in: {mem['adapter'] / PCIE_BYTES_PER_S * 1e3:.1f} ms; moving the base: "
      f"{mem['base'] / PCIE_BYTES_PER_S:.2f} s ({mem['base'] / mem['adapter']:.0f}× more bytes)")
print(f"extra multiply-adds per token for an unmerged adapter: {lora_params(mistral, 16) / count_params(mistral):.2%} "
      "of the base's (r=16)")
for n in (100, 1000, 10_000):
    m = serving_memory(mistral, n_adapters=n, r=16, gpu_slots=8)
    fits = "fits" if m["all_resident"] <= A100_80GB else "does NOT fit"
    print(f"{n:6} adapters all resident: {m['all_resident'] / GB:8.1f} GB -> {fits} on one A100-80GB; "
          f"with 8 slots: {m['gpu'] / GB:.1f} GB on the GPU, {m['host'] / GB:.1f} GB in host memory")

# %% [markdown]
# Read the printout: for 100 adapters at r=16 the bytes alone fit next to the base, but every resident adapter
# costs KV cache — i.e. batch size and throughput — and at thousands of tenants they no longer fit at all. Paging
# into a handful of GPU slots costs milliseconds per cold adapter, on the order of one decoding step; reloading or
# re-merging a 7B base per tenant costs seconds. The hard part is not memory but **compute in a mixed batch**: with many different adapters in one batch,
# a loop over adapters (what peft does on CPU above) launches one small matmul pair per adapter per layer.

# %% [markdown]
# **How the serving systems do it**
# - **Punica** (Chen et al. 2023, *Punica: Multi-Tenant LoRA Serving*): a CUDA kernel, **SGMV** (segmented gather
#   matrix-vector multiplication), computes $B_i(A_i x)$ for every request's own adapter $i$ in one launch; the base
#   matmul stays one batched GEMM. Requests for different adapters share a batch at little extra latency.
# - **S-LoRA** (Sheng et al. 2023, *S-LoRA: Serving Thousands of Concurrent LoRA Adapters*): all adapters in host
#   memory; the ones needed by the running batch are fetched into **Unified Paging** — one GPU memory pool, in pages,
#   shared by adapter weights (of different ranks) and the KV cache, so neither fragments the other; custom kernels
#   for heterogeneous ranks on non-contiguous memory; tensor parallelism for adapters. Thousands of adapters on one
#   GPU.
# - **vLLM multi-LoRA**: `LLM(model, enable_lora=True, max_loras=…, max_lora_rank=…, max_cpu_loras=…)`; each request
#   carries a `LoRARequest(name, id, path)`. `max_loras` adapters can be in one batch (GPU slots), `max_cpu_loras` are
#   cached in host memory (LRU), others load from disk; Punica-style kernels compute the mixed batch; the adapters'
#   slots are preallocated at `max_lora_rank`.
#
# Our `AdapterServer` is the same design in miniature: one base, tenant → adapter routing, mixed batches. It lacks
# paging (all adapters stay resident), continuous batching (a batch waits for its longest answer), and the fused
# kernel.

# %% [markdown]
# ## 6. Per-tenant adapters vs RAG (seed §6)
#
# The seed's table says *per-tenant customization → LoRA adapters per tenant; hot-swap at serving* — and also *add
# new factual knowledge → RAG (most cases)*, *personalization → usually prompt + retrieval*. The line between them:
#
# - An adapter changes **behaviour**: format, style, a task's procedure, a domain's vocabulary — what our three
#   tenants learned (the facts were already in the base; each adapter taught a way of answering). It is trained
#   offline, costs a training run per change, and serves at a small extra compute per token (computed in §5) with
#   the batching above.
# - RAG changes **what the model reads**: facts that change weekly, per-tenant documents, anything needing a
#   citation or deletion (a tenant leaves → delete their index; an adapter that memorised their data must be
#   retrained away). It costs retrieval latency and prompt tokens on every request, and no training.
# - Many products need both: a tenant adapter for tone, format and task, retrieval for the tenant's current facts.
#   Choose an adapter per tenant when the customization is stable, behavioural, and worth a training run; when it is
#   knowledge, or changes faster than you can retrain, retrieve it.

# %% [markdown]
# **Takeaways**
# - Adapters with one configuration share one base: once loaded, `set_adapter` switches without moving any weights;
#   `hotswap_adapter` replaces a slot's weights in place; reloading the base is the slow path.
# - Mixed batches (`adapter_names=`) serve many tenants in one forward pass, each row equal to its adapter alone.
# - 100 r=16 adapters on a 7B base fit in GPU memory next to it, but they cost KV cache; page cold ones from host
#   memory (S-LoRA), compute mixed batches with fused kernels (Punica), or use vLLM's multi-LoRA, which does both.
