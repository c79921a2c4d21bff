"""The offline tiny world: tasks, scorers, templates, tokenizer, data files and the shipped base model."""

import json

import pytest
import torch

from course import loading, paths
from course.generation import chat_prompt, evaluate_exact_match
from course.tinyworld import corpus, preferences, tasks
from course.tinyworld.templates import END_OF_TURN, EXAMPLE_MESSAGES, RENDERED_EXAMPLE, TEMPLATES


@pytest.fixture(scope="module")
def tok():
    return loading.load_tokenizer("tiny")


@pytest.fixture(scope="module")
def base():
    return loading.load_base("tiny")


def test_at_least_six_families_with_disjoint_splits():
    assert len(tasks.FAMILIES) >= 6
    for fam in tasks.FAMILIES.values():
        s = tasks.split_keys(fam)
        assert s["train"] and s["heldout"] and not set(s["train"]) & set(s["heldout"])
        assert sorted(s["train"] + s["heldout"]) == sorted(fam.items)
    assert tasks.split_keys(tasks.FAMILIES["capital"]) == tasks.split_keys(tasks.FAMILIES["capital"])


def test_scorers_accept_the_answer_and_reject_near_misses():
    for fam in tasks.FAMILIES.values():
        key = sorted(fam.items)[0]
        right = fam.response(key)
        assert fam.score(key, right) and fam.score(key, "  " + right.replace(" ", "  ") + "\n")
        assert fam.parse(right) == (key, fam.items[key])
        assert not fam.score(key, right[:-1])                          # missing full stop
        assert not fam.score(key, right + " I hope this helps.")        # rambling
        other = next(v for v in fam.items.values() if v != fam.items[key])
        assert not fam.score(key, fam.answer.format(key=key, value=other))
    ex = tasks.examples("heldout")[:2]
    assert tasks.exact_match(ex, [ex[0].response, "no"]) == 0.5
    with pytest.raises(ValueError):
        tasks.exact_match(ex, ["only one"])


def test_dolly_record_format():
    rec = tasks.examples("train")[0].to_dolly()
    assert set(rec) == {"instruction", "context", "response", "category"}


def test_every_task_fact_is_stated_by_the_corpus_without_any_chat_format():
    text = " ".join(corpus.train_corpus())
    for fam in tasks.FAMILIES.values():
        for key in fam.items:
            assert fam.response(key)[:-1] in text or fam.response(key)[1:-1] in text, (fam.name, key)
    for marker in ("<|im_start|>", "### Instruction", "<|start_header_id|>", "?"):
        assert marker not in text


def test_preferences_differ_in_one_judged_property():
    prefs = preferences.preferences("train")
    assert {p.kind for p in prefs} == set(preferences.KINDS)
    for p in prefs:
        jc, jr = preferences.judge(p.category, p.key, p.chosen), preferences.judge(p.category, p.key, p.rejected)
        assert all(jc.values())
        broken = {"wrong": "correct", "curt": "complete", "rambling": "concise"}[p.kind]
        assert not jr[broken] and sum(jr.values()) == 2, (p, jr)
        assert preferences.prefers(p.category, p.key, p.chosen, p.rejected) == 1.0


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_each_chat_template_renders_the_documented_string(tok, name):
    assert tok.apply_chat_template(EXAMPLE_MESSAGES, chat_template=name, tokenize=False) == RENDERED_EXAMPLE[name]
    assert RENDERED_EXAMPLE[name].rstrip("\n").endswith(END_OF_TURN[name])


def test_default_template_is_chatml_and_assistant_mask_covers_the_answer(tok):
    assert tok.apply_chat_template(EXAMPLE_MESSAGES, tokenize=False) == RENDERED_EXAMPLE["chatml"]
    for name in TEMPLATES:
        enc = tok.apply_chat_template(EXAMPLE_MESSAGES, chat_template=name, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        masked = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
        assert tok.decode(masked) == EXAMPLE_MESSAGES[1]["content"] + END_OF_TURN[name], name


def test_tokenizer_round_trip(tok):
    for text in ["The capital of Peru is Lima.", "  odd   spacing\nand ünïcødé ✓ 42 ", ""]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    ids = tok("hi")["input_ids"]
    assert ids[0] == tok.bos_token_id
    for t in ("<|im_start|>", "<|im_end|>", "<|eot_id|>", "<pad>"):
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t


def test_shipped_data_files_match_the_generators():
    for split, name in (("train", "train"), ("heldout", "test")):
        rows = [json.loads(line) for line in (paths.TINY_DOLLY / f"{name}.jsonl").read_text().splitlines()]
        assert rows == [e.to_dolly() for e in tasks.examples(split)]
        prefs = [json.loads(line) for line in (paths.TINY_PREFS / f"{name}.jsonl").read_text().splitlines()]
        assert prefs == [p.as_dict() for p in preferences.preferences(split)]


def test_same_loading_code_path_reads_the_tiny_data_like_dolly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = loading.load_instruction_data("tiny")
    assert set(ds) == {"train", "test"} and len(ds["test"]) == len(tasks.examples("heldout"))
    assert set(ds["train"].column_names) == {"instruction", "context", "response", "category"}


def test_auto_classes_load_the_shipped_folder_offline(monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(paths.TINY_BASE)
    tok = AutoTokenizer.from_pretrained(paths.TINY_BASE)
    assert model.config.model_type == "llama" and model.config.num_key_value_heads < model.config.num_attention_heads
    assert model.config.vocab_size == len(tok)
    assert (paths.TINY_BASE / "model.safetensors").stat().st_size < 20 * 2**20


def test_build_info_is_recorded():
    info = json.loads((paths.TINY_BASE / "build_info.json").read_text())
    for k in ("config", "train", "heldout_perplexity", "unigram_baseline_perplexity", "build_seconds"):
        assert k in info
    assert info["train"]["seed"] == 0 and info["train"]["final_loss_mean_last_20"] > 0


@torch.no_grad()
def test_base_model_continues_corpus_text_far_better_than_unigram(base, tok):
    """Behaviour 1: held-out perplexity well below an add-one unigram baseline (measured now, not read from a file)."""
    from course.tinyworld.build_base import pack, perplexity, unigram_perplexity

    held = pack(tok, corpus.heldout_corpus(100))
    ppl = perplexity(base, held)
    uni = unigram_perplexity(pack(tok, corpus.train_corpus(1000)), held, len(tok))
    assert ppl < uni / 10, (ppl, uni)
    prompt = tok("The capital of France is", return_tensors="pt")
    out = base.generate(**prompt, max_new_tokens=2, do_sample=False)
    assert "Paris" in tok.decode(out[0, prompt["input_ids"].shape[1]:])


def test_base_model_scores_low_on_chat_format_tasks(base, tok):
    """Behaviour 2: the base never saw a chat template, so it cannot answer in one."""
    held = tasks.examples("heldout")
    em, gens = evaluate_exact_match(base, tok, held)
    assert em < 0.10, (em, gens[:5])
    assert chat_prompt(tok, "x").startswith("<|im_start|>user\n")
