"""Day 1 (LoRA math and QLoRA numbers): structure of the sources and planted bugs, the reference NF4 against
bitsandbytes on more shapes, and the LoRA-vs-peft benchmark. Full autograde + mutants: tests/test_days_autograde.py."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import jupytext
import pytest
import torch
import yaml

from course.paths import AUTOGRADER, ROOT, SOLUTIONS

DAY = "day1_lora_qlora"
SOURCES = sorted((SOLUTIONS / DAY).glob("[0-9][0-9]_*.py"))


def cells(src):
    return [(c.metadata.get("nbgrader", {}), c.source) for c in jupytext.read(src).cells if c.cell_type == "code"]


def solution_namespace(src, grade_ids, prelude=""):
    ns: dict = {}
    exec(prelude, ns)
    for meta, source in cells(src):
        if meta.get("grade_id") in grade_ids:
            exec(source, ns)
    return ns


def test_four_notebooks():
    assert [s.stem for s in SOURCES] == ["01_lora_math", "02_lora_from_scratch", "03_nf4_and_qlora_numbers",
                                         "04_memory_calculator"]


@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_exercises_have_split_tests_and_two_planted_bugs(src):
    cs = cells(src)
    exercises = [m["grade_id"] for m, _ in cs if m.get("solution") and not m.get("grade")]
    assert exercises, "every notebook has at least one exercise"
    tests = Counter(m["grade_id"].split("__")[0] for m, _ in cs if m.get("grade"))
    for ex in exercises:
        assert tests[ex] >= 2, f"{ex}: split into at least two graded checks (partial credit)"
    ids = [m["grade_id"] for m, _ in cs if "grade_id" in m]
    assert len(ids) == len(set(ids)), "grade_ids are unique"
    for m, s in cs:
        if m.get("grade"):
            assert m.get("points", 0) >= 1 and "### BEGIN SOLUTION" not in s
    mutants = yaml.safe_load((AUTOGRADER / "mutants" / DAY / f"{src.stem}.yaml").read_text())
    per_ex = Counter(m["exercise"] for m in mutants)
    solutions = {m["grade_id"]: s for m, s in cs if m.get("grade_id") in exercises}
    for ex in exercises:
        assert per_ex[ex] >= 2, f"{ex}: at least two planted bugs"
    for m in mutants:
        for r in m["replace"]:
            assert solutions[m["exercise"]].count(r["old"]) == 1, f"{m['id']}: {r['old']!r} must occur once"


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
