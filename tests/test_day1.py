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


@pytest.mark.slow
def test_benchmark_prints_ratio():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lora_vs_peft.py"), "--steps", "2", "--warmup", "1",
                          "--batch", "2", "--seq", "16"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ratio from-scratch / peft:" in out.stdout
    assert "trainable 155,648 (scratch) vs 155,648 (peft)" in out.stdout
