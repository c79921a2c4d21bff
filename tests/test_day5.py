"""Day 5 (adapters in use): structure of the sources and planted bugs; the reference merge, 4-bit merge, mixed-batch
generation, adapter server and serving-memory math on inputs the notebooks do not use (random adapters, other
model specs); the bitsandbytes CPU repacking behaviour the lesson warns about; the benchmark script.
Full autograde + mutants: tests/test_days_autograde.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from course.authoring.reference import solution_namespace
from course.paths import ROOT, SOLUTIONS

DAY = "day5_adapters_serving"
SOURCES = sorted((SOLUTIONS / DAY).glob("[0-9][0-9]_*.py"))
NB1, NB2 = SOLUTIONS / DAY / "01_inference_and_merging.py", SOLUTIONS / DAY / "02_many_adapters.py"




def test_two_notebooks():
    assert [s.stem for s in SOURCES] == ["01_inference_and_merging", "02_many_adapters", "03_model_merging"]



def _random_peft(seed=0, names=("a", "b", "c"), alphas=(16, 8, 32), scale=0.5):
    """The tiny base with several random (non-zero) LoRA adapters of one shape and different scalings."""
    from peft import LoraConfig, get_peft_model

    from course.loading import load_base

    torch.manual_seed(seed)
    model = get_peft_model(load_base("tiny"), LoraConfig(r=4, lora_alpha=alphas[0], target_modules="all-linear"),
                           adapter_name=names[0])
    for n, a in zip(names[1:], alphas[1:]):
        model.add_adapter(n, LoraConfig(r=4, lora_alpha=a, target_modules="all-linear"))
    with torch.no_grad():
        for pn, p in model.named_parameters():
            if "lora_B" in pn:
                p.normal_(0, scale)
    return model.eval()


def test_reference_merged_weight_equals_peft_merge_per_adapter():
    import copy

    ns = solution_namespace(NB1, {"merged_weight"}, "import torch\n")
    model = _random_peft()
    for name in ("b", "c"):
        model.set_adapter(name)
        merged = copy.deepcopy(model).merge_and_unload()
        for i, layer in enumerate(model.base_model.model.model.layers):
            for sub in ("self_attn.k_proj", "mlp.gate_proj"):
                got = ns["merged_weight"](layer.get_submodule(sub), name)
                want = merged.model.layers[i].get_submodule(sub).weight
                assert torch.allclose(got, want, atol=1e-6), (name, i, sub)


def test_reference_dequantize_and_merge_and_the_cpu_repacking_trap():
    """The reference reproduces a fresh 4-bit LoRA layer; and the bitsandbytes behaviour the lesson describes (on a
    CPU with AVX-512 BF16 the first inference forward repacks the bytes, after which dequantize_4bit is wrong)
    is still real — if bitsandbytes stops repacking, this says the lesson's warning needs revisiting."""
    import bitsandbytes.functional as bnbF
    from peft import LoraConfig, get_peft_model

    from course.loading import load_base

    ns = solution_namespace(NB1, {"dequantize_and_merge"}, "import torch\nimport bitsandbytes.functional as bnbF\n")
    torch.manual_seed(3)
    model = get_peft_model(load_base("tiny", quantize=True), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for pn, p in model.named_parameters():
            if "lora_B" in pn:
                p.normal_(0, 0.2)
    model.eval()
    layer = model.base_model.model.model.layers[2].mlp.down_proj
    merged = ns["dequantize_and_merge"](layer)
    w = layer.base_layer.weight
    assert torch.allclose(merged, bnbF.dequantize_4bit(w.data, w.quant_state).float()
                          + layer.get_delta_weight("default").float(), atol=1e-5)
    x = torch.randn(6, layer.in_features)
    with torch.no_grad():
        y = layer(x)
    assert ((x @ merged.T - y).abs().max() / y.abs().max()).item() < 0.02
    if getattr(w.quant_state, "packing_format_for_cpu", False):
        after = ns["dequantize_and_merge"](layer)
        assert ((x @ after.T - y).abs().max() / y.abs().max()).item() > 0.1, \
            "bitsandbytes no longer corrupts dequantize_4bit after a CPU forward: update the lesson's warning"


def test_reference_server_equals_single_adapter_on_random_adapters():
    from course.generation import chat_prompt, generate, stop_token_ids
    from course.loading import load_tokenizer
    from course.tinyworld import tasks

    prelude = ("import torch\nfrom course.generation import chat_prompt, stop_token_ids\nTEMPLATE = 'chatml'\n")
    ns = solution_namespace(NB2, {"generate_mixed", "adapter_server"}, prelude)
    tok = load_tokenizer("tiny")
    model = _random_peft(seed=1)
    server = ns["AdapterServer"](model, tok, max_batch=5, max_new_tokens=10)
    for t in ("a", "b", "c"):
        server.tenants[t] = t
    ex = tasks.examples("heldout", ["units", "addition"])[::9]
    reqs = [(["a", None, "b", "c"][i % 4], e.instruction) for i, e in enumerate(ex)]
    got = server.answer(reqs)
    assert server.batches == -(-len(reqs) // 5)
    for (t, instr), g in zip(reqs, got):
        prompt = chat_prompt(tok, instr, "chatml")
        if t is None:
            with model.disable_adapter():
                want = generate(model, tok, [prompt], 10)[0]
        else:
            model.set_adapter(t)
            want = generate(model, tok, [prompt], 10)[0]
        assert g == want, (t, instr, g, want)
    assert len({g for g in got}) > 3, "random adapters should answer differently (else this test proves little)"
    assert stop_token_ids(tok)


@pytest.mark.parametrize("name,n,r,slots", [("llama-3-8b", 100, 16, 8), ("llama-2-70b", 7, 64, 32), ("tiny", 3, 8, 1)])
def test_reference_serving_memory_against_course_memory(name, n, r, slots):
    from course.memory import count_params, estimate, lora_params, model_spec

    ns = solution_namespace(NB2, {"serving_memory"},
                            "from course.memory import count_params, lora_params, model_spec\n")
    m = ns["serving_memory"](name, n_adapters=n, r=r, gpu_slots=slots)
    spec = model_spec(name)
    one = lora_params(spec, r) * 2
    assert m["adapter"] == one == estimate(spec, "lora", r=r, adapter_dtype="bf16").components["lora_adapters"]
    assert m["base"] == count_params(spec) * 2
    assert m["gpu"] == m["base"] + min(slots, n) * one and m["host"] == n * one
    assert m["all_resident"] == m["base"] + n * one


@pytest.mark.slow
def test_benchmark_prints_swap_and_merge_figures():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "adapter_serving.py"), "--repeats", "2",
                          "--batch", "4", "--seq", "8"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    for line in ("set_adapter (loaded)", "hotswap_adapter (disk -> slot)", "reload base + adapter",
                 "ratio unmerged / merged:", "ratio per-adapter / mixed:"):
        assert line in out.stdout, line
    diff = float(out.stdout.split("max |Δlogit| ")[1].split(")")[0])
    assert diff < 1e-3, "merged and unmerged forward must agree to fp32 rounding"


def _run_nb1(seed: int) -> dict:
    """Run notebook 1's code cells on tiny with this SEED (timing cells left out); return its merge table."""
    import json
    import os

    from course.authoring.reference import code_cells

    cells = [src for _, src in code_cells(NB1) if "median_seconds(" not in src]
    cells[0] = cells[0].replace("SEED = 0", f"SEED = {seed}")
    assert f"SEED = {seed}" in cells[0]
    tail = ('import json\nprint("RESULT " + json.dumps({"table": merge_table, "losses": [losses[0], losses[-1]], '
            '"tuned_em": tasks.exact_match(heldout, cols["tuned"]), "base_em": tasks.exact_match(heldout, cols["base"]), "repacked": bool(repacked)}))')
    script = "import matplotlib\nmatplotlib.use('Agg')\n" + "\n\n".join(cells) + "\n" + tail + "\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COURSE_THREADS": "1", "COURSE_PROFILE": "tiny",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"rc {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_qlora_adapter_and_merge_comparison_on_seeds(seed):
    """Notebook 1's lesson on seeds 1 and 2 (seed 0 is the notebook's own run: its cell after the merge table asserts
    the same claims on tiny, and runs here too): the adapter trained by QLoRA on the 4-bit base helps; dequantize-first is the
    only merge that reproduces the trained model (fp32 rounding, every greedy answer the same) while requantizing and
    reloading the original W0 (bf16 or fp32) move the logits by orders of magnitude more; merging after a CPU forward
    (repacked bytes) is garbage where the CPU repacks."""
    r = _run_nb1(seed)
    t = r["table"]
    ref, deq = t["4-bit + adapter, as trained (ref.)"], t["dequantize first, then merge"]
    print(f"seed {seed}: base EM {r['base_em']:.3f} -> tuned {r['tuned_em']:.3f}; " +
          "; ".join(f"{k}: {v['dlogit']:.2e} / {v['em']:.3f} / {v['agree']:.3f}" for k, v in t.items()))
    assert r["tuned_em"] >= r["base_em"] + 0.3, r
    assert r["losses"][1] < 0.5 * r["losses"][0], r["losses"]
    assert ref["dlogit"] == 0.0 and ref["agree"] == 1.0
    assert deq["dlogit"] < 1e-3 and deq["agree"] == 1.0 and deq["em"] == ref["em"], t
    for other in ("merged into 4-bit (requantized)", "bf16 reload of W0, then merge", "fp32 reload of W0, then merge"):
        assert t[other]["dlogit"] > 100 * deq["dlogit"] and t[other]["dlogit"] > 0.5, (other, t)
    if r["repacked"]:                                # the trap only exists on CPUs with AVX-512 BF16
        assert t["merged into 4-bit after a forward"]["em"] < ref["em"] - 0.3, t
