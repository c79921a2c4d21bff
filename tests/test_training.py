"""course.training.train_sft: the model it returns is the plain model (no mixed-precision wrapper), in eval mode,
with the KV cache on, and computes exactly what it computes after save_pretrained / from_pretrained."""

from __future__ import annotations

import torch


def test_train_sft_returns_plain_model_equal_to_reloaded(tmp_path):
    from peft import PeftModel

    from course.generation import chat_prompt
    from course.loading import load_base, load_tokenizer
    from course.tinyworld import tasks
    from course.training import lora_config, train_sft

    tok = load_tokenizer("tiny")
    model, losses = train_sft(load_base("tiny"), tok, tasks.examples("train", ["capital"]), template="chatml",
                              lora=lora_config(r=4, alpha=8), max_steps=3, batch_size=4, activation_checkpointing=False)
    assert len(losses) == 3, "one logged loss per step"
    assert not model.training and model.config.use_cache
    assert "forward" not in model.__dict__, "accelerate's autocast wrapper must be removed"
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(load_base("tiny"), tmp_path).eval()
    enc = tok([chat_prompt(tok, "What is the capital of Peru?", "chatml")], return_tensors="pt",
              add_special_tokens=False)
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, reloaded(**enc).logits), "trained in fp32, served in fp32"
