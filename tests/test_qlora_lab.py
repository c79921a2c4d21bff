"""scripts/qlora_lab.py end to end on the real small model (SmolLM2-135M), through the code the a100 profile runs.

A few steps on short sequences: eval loss before/after, adapter + tokenizer saved, a fresh 4-bit base + the saved
adapter reloaded (same logits), generation, the dequantize-first merge saved with the tokenizer and reloaded.
"""

import json
import os
import subprocess
import sys

import pytest

from course.paths import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import qlora_lab  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_lab_on_small_trains_saves_reloads_generates_merges(small_profile, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "scripts" / "qlora_lab.py"), "--profile", "small", "--threads", "1",
           "--output-dir", str(out), "--max-steps", "2", "--max-train-examples", "16", "--eval-examples", "4",
           "--generate", "1", "--max-seq-len", "64", "--no-eval"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT, env=ENV)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    r = json.loads(lines[-1][len("RESULT "):])
    assert r["profile"] == "small" and r["global_step"] == 2 and r["trainable"] == 4_884_480
    assert r["chat_template"] == "own", "SmolLM2-Instruct keeps its own ChatML template"
    assert r["eval_examples"] == 4 and r["eval_loss_after"] < r["eval_loss_before"], (r["eval_loss_before"],
                                                                                       r["eval_loss_after"])
    for f in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
              "chat_template.jinja"):
        assert f in r["adapter_files"], f"adapter folder lacks {f}: {r['adapter_files']}"
    assert r["reload_max_abs_logit_diff"] < 1e-4, "a fresh base + the saved adapter must compute what was trained"
    assert len(r["generations"]) == 1 and r["generations"][0].strip()
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= set(r["merged_files"])
    cfg = json.loads((out / "merged" / "config.json").read_text())
    assert "quantization_config" not in cfg, "the merged model must be a plain (dequantized) checkpoint"
    assert r["merged_max_abs_logit_diff"] < 1e-3 and r["merged_same_next_token"], r["merged_max_abs_logit_diff"]
    assert r["merged_into_original_max_abs_logit_diff"] > 10 * r["merged_max_abs_logit_diff"], \
        "merging into the original base (not the 4-bit weights trained on) should be measurably worse"


def test_a_cuda_profile_without_cuda_stops_with_a_clear_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="trains on a CUDA GPU.*--profile small"):
        qlora_lab.main(["--profile", "a100"])


def test_sanity_bands_warn_only_on_full_size(capsys):
    outside = {"1": 4.0, "2": 3.5, "3": 2.0}
    r = qlora_lab.sanity_bands(outside, full_size=True, log=lambda *a: None)
    assert r["initial_loss"] == 4.0 and r["final_loss"] == 2.0 and len(r["warnings"]) == 2
    assert "outside the seed's ~2.0-3.0 band" in capsys.readouterr().err
    inside = {str(i): v for i, v in enumerate([2.5] + [1.8] * 8 + [1.2], 1)}
    assert qlora_lab.sanity_bands(inside, full_size=True, log=lambda *a: None)["warnings"] == []
    assert qlora_lab.sanity_bands(outside, full_size=False, log=lambda *a: None)["warnings"] == []
    assert capsys.readouterr().err == ""
