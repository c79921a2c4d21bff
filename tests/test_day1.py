"""Day 1 (LoRA math and QLoRA numbers): structure of the sources and planted bugs, the reference NF4 against
bitsandbytes on more shapes, and the LoRA-vs-peft benchmark. Full autograde + mutants: tests/test_days_autograde.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from course.authoring.reference import solution_namespace
from course.paths import ROOT, SOLUTIONS

DAY = "day1_lora_qlora"
SOURCES = sorted((SOLUTIONS / DAY).glob("[0-9][0-9]_*.py"))




def test_five_notebooks():
    assert [s.stem for s in SOURCES] == ["01_lora_math", "02_lora_from_scratch", "03_nf4_and_qlora_numbers",
                                         "04_memory_calculator", "05_peft_family"]



NF4_SRC = SOLUTIONS / DAY / "03_nf4_and_qlora_numbers.py"


@pytest.mark.parametrize("shape,std,seed", [((128, 64), 1.0, 0), ((7, 4096), 0.02, 1), ((2, 3, 640), 3.0, 2)])
def test_reference_nf4_equals_bitsandbytes(shape, std, seed):
    import bitsandbytes.functional as F

    ns = solution_namespace(NF4_SRC, {"nf4_levels", "quantize_blockwise", "dequantize_blockwise"},
                            "import torch\nfrom scipy.stats import norm\n")
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g) * std
    levels = ns["nf4_levels"]()
    idx, absmax = ns["quantize_blockwise"](w, levels)
    packed, state = F.quantize_4bit(w, blocksize=64, quant_type="nf4")
    assert torch.equal(absmax, state.absmax)
    flat = packed.reshape(-1)
    assert torch.equal(idx, torch.stack([flat >> 4, flat & 0xF], 1).reshape(-1)[: w.numel()])
    assert torch.equal(ns["dequantize_blockwise"](idx, absmax, levels, w.shape), F.dequantize_4bit(packed, state))


def test_reference_bits_per_param_matches_course_memory():
    from course.memory import nf4_bits_per_param

    ns = solution_namespace(NF4_SRC, {"bits_per_param"})
    assert ns["bits_per_param"](64, double_quant=True) == nf4_bits_per_param(double_quant=True)
    assert ns["bits_per_param"](64) == nf4_bits_per_param(double_quant=False)


QLORA_IDS = {"nf4_levels", "quantize_blockwise", "dequantize_blockwise", "pack_nibbles", "qlora_linear",
             "bnb_lora_reference"}
QLORA_PRELUDE = ("import math\nfrom collections import OrderedDict\nimport bitsandbytes as bnb\n"
                 "import bitsandbytes.functional as bnbf\nimport torch\nimport torch.nn.functional as F\n"
                 "from peft import LoraConfig, get_peft_model\nfrom scipy.stats import norm\n"
                 "from course.kbit import keep_training_layout\n"
                 "def unpack_bnb(packed, n):\n    flat = packed.reshape(-1)\n"
                 "    return torch.stack([flat >> 4, flat & 0xF], dim=1).reshape(-1)[:n]\n")


@pytest.fixture(scope="module")
def qlora_ns():
    from course.notebook import quiet

    quiet()
    return solution_namespace(NF4_SRC, QLORA_IDS, QLORA_PRELUDE)


@pytest.mark.parametrize("d_in,d_out,r,alpha,cd,blocksize,x_shape,x_dtype,bias,seed", [
    (192, 80, 6, 5, torch.bfloat16, 64, (2, 3, 192), torch.float32, True, 3),
    (512, 48, 2, 16, torch.float16, 128, (7, 512), torch.float32, False, 4),
    (64, 320, 1, 3, torch.bfloat16, 64, (1, 1, 64), torch.bfloat16, True, 5),     # bf16 input, r=1, one token
    (384, 64, 12, 24, torch.float32, 128, (4, 384), torch.float32, True, 6),
])
def test_reference_qlora_linear_equals_bnb_linear4bit_and_peft(qlora_ns, d_in, d_out, r, alpha, cd, blocksize,
                                                               x_shape, x_dtype, bias, seed):
    """QLoRALinear vs bitsandbytes Linear4bit (nf4) + peft LoRA on the same weights and A, B: outputs and the
    gradients of x, A, B within the notebook's tolerance (rtol 1e-5); shapes/dtypes the notebook never uses."""
    torch.manual_seed(seed)
    lin = torch.nn.Linear(d_in, d_out, bias=bias)
    with torch.no_grad():
        lin.weight.mul_(7.0)
    q = qlora_ns["QLoRALinear"](lin, r=r, alpha=alpha, compute_dtype=cd, blocksize=blocksize)
    ref, ref_layer = qlora_ns["bnb_lora_linear"](lin, r=r, alpha=alpha, compute_dtype=cd, blocksize=blocksize)
    with torch.no_grad():
        q.lora_B.normal_(0, 0.2)
    qlora_ns["copy_lora"](q, ref_layer)
    x = torch.randn(*x_shape).to(x_dtype)
    got, want = qlora_ns["forward_backward"](q, x), qlora_ns["forward_backward"](ref, x)
    assert got[0].dtype == want[0].dtype == x_dtype
    for a, b in zip([got[0], got[1], *got[2]], [want[0], want[1], *want[2]]):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6 * b.abs().max().item())
    assert [n for n, p in q.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]


@pytest.mark.parametrize("d_in,d_out,r,blocksize", [(4096, 4096, 16, 64), (2048, 640, 8, 128)])
def test_reference_qlora_linear_memory_matches_course_memory(qlora_ns, d_in, d_out, r, blocksize):
    from course.memory import nf4_bits_per_param, qlora_linear_bytes

    q = qlora_ns["QLoRALinear"](torch.nn.Linear(d_in, d_out, bias=False), r=r, alpha=2 * r, blocksize=blocksize)
    est = qlora_linear_bytes(d_in, d_out, r, blocksize=blocksize)
    assert q.packed.numel() * q.packed.element_size() == est["codes"]
    assert q.absmax.numel() * q.absmax.element_size() == est["absmax"]
    assert sum(p.numel() * p.element_size() for p in q.parameters()) == est["lora"]
    assert (est["codes"] + est["absmax"]) * 8 == d_in * d_out * nf4_bits_per_param(False, blocksize)
    dq = qlora_linear_bytes(d_in, d_out, r, blocksize=blocksize, double_quant=True)
    assert (dq["codes"] + dq["absmax"]) * 8 == pytest.approx(d_in * d_out * nf4_bits_per_param(True, blocksize),
                                                              rel=1e-4)


@pytest.mark.slow
def test_benchmark_prints_ratio():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lora_vs_peft.py"), "--steps", "2", "--warmup", "1",
                          "--batch", "2", "--seq", "16"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ratio from-scratch / peft:" in out.stdout
    assert "trainable 155,648 (scratch) vs 155,648 (peft)" in out.stdout


@pytest.mark.slow
def test_nf4_argmin_differs_from_bitsandbytes_only_at_exact_midpoints():
    """nb3's claim, on 2^26 weights: the midpoint rule (the reference) equals bnb's codes everywhere; an argmin
    |x − level| version differs only where a scaled weight sits exactly on a float32 midpoint, about 1 in 10^7."""
    import bitsandbytes.functional as F

    ns = solution_namespace(NF4_SRC, {"quantize_blockwise"}, "import torch\n")
    lv = F.get_4bit_type("nf4", device="cpu")
    mid = (lv[1:] + lv[:-1]) / 2
    argmin_up = (mid[:, None] - lv[None]).abs().argmin(1) != torch.arange(15)    # midpoints argmin sends up
    g = torch.Generator().manual_seed(3)
    total = wrong = 0
    for _ in range(8):
        w = torch.randn(2**23, generator=g) * 0.02
        p, _ = F.quantize_4bit(w, blocksize=64, quant_type="nf4")
        flat = p.reshape(-1)
        bnb = torch.stack([flat >> 4, flat & 0xF], 1).reshape(-1)
        assert torch.equal(ns["quantize_blockwise"](w, lv)[0], bnb)
        b = w.reshape(-1, 64)
        x = (b * (1.0 / b.abs().max(1).values[:, None])).reshape(-1)
        on = torch.isin(x, mid)
        wrong += int(argmin_up[torch.searchsorted(mid, x[on])].sum())
        total += w.numel()
    assert argmin_up.any()
    assert 0 < wrong and total / wrong > 1e6, (wrong, total)      # rare, but real


@pytest.mark.slow
def test_memory_calculator_matches_real_small_model_in_nf4(small_profile):
    """#13: the calculator's QLoRA weight bytes vs what SmolLM2-135M really holds in NF4 + double quant: within 5 %."""
    from course import memory as M
    from course.loading import load_base

    model = load_base(small_profile, quantize=True)
    measured = M.measured_weight_bytes(model)
    estimated = M.weight_bytes(M.model_spec(small_profile.model), "qlora", weight_dtype="fp32", double_quant=True)
    assert abs(estimated - measured) / measured < 0.05, (estimated, measured)
    assert measured < 0.5 * M.weight_bytes(M.model_spec(small_profile.model), "full", weight_dtype="fp32")


LORA_SRC = SOLUTIONS / DAY / "02_lora_from_scratch.py"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_lora_vs_full_finetune_outcome(seed):
    """nb2 §5 on seeds 1 and 2: LoRA on the projections alone stays far from full FT at this budget; with the
    embeddings and LM head trainable LoRA r=8 matches it (within 0.15 nats of held-out loss). Seed 0 is the notebook's
    own run: its visible cell after §5 asserts the same claims (the day autograde test fails if the reference raises
    in any cell)."""
    from course.loading import load_base, load_tokenizer
    from course.profiles import get_profile
    from course.notebook import quiet

    quiet()
    # one thread: beside the other worker and the autograde kernels, two OpenMP threads spin against each other
    # (measured: 235 s for seed 1 in `make test`, 13 s alone on one thread; the losses are identical on 1 and 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prelude = ("import math\nimport torch\nfrom torch import nn\nfrom course.notebook import progress\n"
                   "TARGETS = ('q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj')\n")
        ns = solution_namespace(LORA_SRC, {"lora_linear", "inject_lora", "given_train_loop", "given_lora_vs_full"},
                                prelude, profile=get_profile("tiny"), tok=load_tokenizer("tiny"), load_base=load_base)
        full, n_full, b_full = ns["finetune"]("full", seed=seed)
        lora, n_lora, b_lora = ns["finetune"]("lora", 8, seed=seed)
        emb, _, _ = ns["finetune"]("lora+embeddings", 8, seed=seed)
    finally:
        torch.set_num_threads(threads)            # the worker's next tests run as before
    assert lora > full + 2.0, (lora, full)
    assert abs(emb - full) < 0.15, (emb, full)
    assert n_lora < 0.1 * n_full and b_lora < 0.1 * b_full
