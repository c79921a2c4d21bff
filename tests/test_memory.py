"""The training-memory calculator (course.memory) and ``course memory``."""

import json

import pytest

from course import memory as M
from course.cli import main
from course.paths import TINY_BASE


def test_known_parameter_counts_match_transformers():
    # Totals of the published models (what transformers builds from each config; checked by
    # test_counts_equal_transformers_meta_models below).
    assert M.count_params(M.model_spec("mistral-7b")) == 7_241_732_096
    assert M.count_params(M.model_spec("llama-2-7b")) == 6_738_415_616
    assert M.count_params(M.model_spec("llama-2-70b")) == 68_976_648_192


@pytest.mark.parametrize("name", ["mistral-7b", "llama-2-7b", "llama-3-8b", "tiny"])
def test_counts_equal_transformers_meta_models(name):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    spec = M.model_spec(name)
    cfg = LlamaConfig.from_pretrained(TINY_BASE) if name == "tiny" else LlamaConfig(**M.KNOWN_CONFIGS[name])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    assert M.count_params(spec) == sum(p.numel() for p in model.parameters())


def test_lora_params_gqa_aware():
    spec = M.model_spec("mistral-7b")
    assert spec.kv_dim == 1024
    assert M.lora_params(spec, 16) == 41_943_040          # the seed's "~30M" made exact
    assert M.lora_params(spec, 16, ("q_proj", "v_proj")) == 32 * 16 * ((4096 + 4096) + (4096 + 1024))
    assert M.lora_params(spec, 8) == 41_943_040 // 2
    with pytest.raises(ValueError, match="unknown target"):
        M.lora_params(spec, 16, ("qkv",))


def test_lora_params_equal_peft_on_tiny():
    from peft import LoraConfig, get_peft_model

    from course.loading import load_base

    model = get_peft_model(load_base("tiny"), LoraConfig(r=4, target_modules=list(M.LLAMA_PROJECTIONS)))
    trainable, _ = model.get_nb_trainable_parameters()
    assert M.lora_params(M.model_spec("tiny"), 4) == trainable


def test_config_json_path_and_folder(tmp_path):
    cfg = dict(M.KNOWN_CONFIGS["llama-2-7b"], tie_word_embeddings=True)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    by_folder, by_file = M.model_spec(tmp_path), M.model_spec(tmp_path / "config.json")
    assert by_folder == by_file
    assert M.count_params(by_folder) == 6_738_415_616 - 32000 * 4096   # tied head is not counted twice
    with pytest.raises(ValueError, match="unknown model"):
        M.model_spec("gpt-99")


def test_nf4_bits_per_param():
    assert M.nf4_bits_per_param(double_quant=False) == 4.5
    assert M.nf4_bits_per_param(double_quant=True) == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))
    assert 4.12 < M.nf4_bits_per_param() < 4.13


def test_seed_story_70b_full_vs_qlora():
    spec = M.model_spec("llama-2-70b")
    full = M.estimate(spec, "full", optimizer="adamw", seq_len=1024, batch=1)
    n = M.count_params(spec)
    assert full.components["weights"] == 2 * n
    assert full.components["gradients"] == 2 * n
    assert full.components["optimizer_states"] == 8 * n          # two fp32 moments
    assert full.gpus_needed(M.A100_80GB) > 1
    q = M.estimate(spec, "qlora", optimizer="paged_adamw_8bit", seq_len=1024, batch=1, grad_checkpointing=True)
    assert q.fits(M.A100_80GB)
    assert q.trainable == M.lora_params(spec, 16)
    assert q.components["weights"] < full.components["weights"] / 3


def test_estimate_components_respond_to_settings():
    spec = M.model_spec("mistral-7b")
    base = M.estimate(spec, "lora", seq_len=512, batch=2)
    assert M.estimate(spec, "lora", seq_len=1024, batch=2).components["activations"] == 2 * base.components["activations"]
    ckpt = M.estimate(spec, "lora", seq_len=512, batch=2, grad_checkpointing=True)
    assert ckpt.components["activations"] < base.components["activations"] / 5
    assert M.estimate(spec, "lora", r=32).components["lora_adapters"] == 2 * base.components["lora_adapters"]
    eight = M.estimate(spec, "lora", optimizer="adamw_8bit")
    assert eight.components["optimizer_states"] < base.components["optimizer_states"] / 3
    assert M.estimate(spec, "full", master_weights=True).components["master_weights"] == 4 * M.count_params(spec)
    with pytest.raises(ValueError, match="unknown method"):
        M.estimate(spec, "prefix")
    with pytest.raises(ValueError, match="unknown optimizer"):
        M.estimate(spec, "full", optimizer="lion")
    assert "total" in base.table() and "activations" in base.table()


def test_tiny_nf4_weight_bytes_match_bitsandbytes_model():
    from course.loading import load_base

    model = load_base("tiny", quantize=True)          # NF4 + double quant; non-projection params in fp32
    measured = M.measured_weight_bytes(model)
    estimated = M.weight_bytes(M.model_spec("tiny"), "qlora", weight_dtype="fp32", double_quant=True)
    assert abs(estimated - measured) / measured < 0.05, (estimated, measured)
    # and the quantized model really is smaller than the fp32 one by about the projections' 28/32
    assert measured < M.weight_bytes(M.model_spec("tiny"), "full", weight_dtype="fp32")


def test_cli_memory(capsys):
    assert main(["memory", "--model", "llama-2-70b", "--method", "qlora", "--grad-checkpointing"]) == 0
    out = capsys.readouterr().out
    assert "optimizer_states" in out and "fits one: yes" in out
    assert main(["memory", "--model", "tiny", "--method", "full", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"] == M.count_params(M.model_spec("tiny")) and d["total"] == sum(d["components"].values())
    assert main(["memory", "--model", str(TINY_BASE / "config.json"), "--method", "lora"]) == 0
    assert main(["memory", "--model", "nope"]) == 2
