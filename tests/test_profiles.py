import pytest

from course import profiles
from course.paths import ROOT


def test_three_profiles_with_the_seed_lab_settings():
    assert list(profiles.PROFILES) == ["tiny", "small", "a100"]
    a100 = profiles.PROFILES["a100"]
    assert a100.model == "mistralai/Mistral-7B-v0.1"
    assert a100.dataset == "databricks/databricks-dolly-15k"
    assert (a100.lora_r, a100.lora_alpha, a100.optim, a100.epochs) == (16, 32, "paged_adamw_8bit", 1.0)
    assert a100.warmup_ratio == 0.03 and a100.lr_scheduler == "cosine"
    tiny = profiles.PROFILES["tiny"]
    assert not tiny.needs_hub and tiny.device == "cpu"
    small = profiles.PROFILES["small"]
    assert not small.needs_hub and small.device == "cpu" and small.source == "small"
    assert small.dataset == tiny.dataset


def test_step_and_eval_budgets_come_from_the_profile():
    tiny, small = profiles.get_profile("tiny"), profiles.get_profile("small")
    assert tiny.steps(150) == 150 and tiny.eval_count(200) == 200          # tiny: the notebook's own numbers
    assert small.steps(150) == small.max_train_steps and small.steps(5) == 5 and small.steps(0) == 1
    assert small.eval_count(200) == small.max_eval_examples
    assert tiny.lr(1e-2) == 1e-2 and small.lr(1e-2) == 1e-2 * small.lr_scale < 1e-2     # tiny's rates, gentler on a real model
    assert tiny.sweep_steps(40) == 40 and small.sweep_steps(40) == small.max_sweep_steps < small.steps(40)   # Day 3 sweeps
    assert tiny.batch(24) == 24 and small.batch(24) == small.max_batch < 24 and small.batch(2) == 2 and small.batch(0) == 1


def test_default_is_tiny_and_environment_overrides(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert profiles.get_profile().name == "tiny"
    assert profiles.get_profile("a100").name == "a100"
    monkeypatch.setenv("COURSE_PROFILE", "small")
    assert profiles.get_profile("a100").name == "small"
    monkeypatch.setenv("COURSE_PROFILE", "nope")
    with pytest.raises(KeyError, match="unknown profile 'nope'"):
        profiles.get_profile()


def test_readme_shows_the_profile_table():
    assert profiles.table() in (ROOT / "README.md").read_text(), "README's profile table is stale: paste `course profiles`"


def test_spread_keeps_every_kind_and_everything_within_budget():
    from course.profiles import spread

    rows = [(kind, i) for kind in "abc" for i in range(10)]        # listed kind by kind, as the tiny world does
    assert spread(rows, 30) is rows and spread(rows, 99) is rows       # within budget: all of them, untouched
    six = spread(rows, 6)
    assert len(six) == 6 and len(set(six)) == 6 and {k for k, _ in six} == set("abc")   # the first 6 are all "a"
    assert spread(rows, 1) == [rows[0]] and spread([], 3) == []


def test_eval_items_is_every_item_on_tiny_and_a_spread_within_budget_elsewhere():
    rows = [(kind, i) for kind in "abcd" for i in range(40)]
    tiny, small = profiles.get_profile("tiny"), profiles.get_profile("small")
    assert tiny.eval_items(rows) is rows and tiny.eval_items(rows, scale=4) is rows
    budget = small.eval_count(len(rows))
    assert budget < len(rows)
    cut, fit = small.eval_items(rows), small.eval_items(rows, scale=4)
    assert len(cut) == budget and len(fit) == 4 * budget and len(set(fit)) == 4 * budget
    assert {k for k, _ in cut} == set("abcd") and cut == profiles.spread(rows, budget)
    assert small.eval_items(rows[:3]) == rows[:3]                     # under budget: all of them


def test_claims_raise_only_on_a_profile_that_asserts_them(capsys):
    from course.notebook import check_claims, claim_checker

    tiny, small = profiles.get_profile("tiny"), profiles.get_profile("small")
    assert tiny.asserts_claims and not small.asserts_claims and not profiles.get_profile("a100").asserts_claims
    assert claim_checker(small)(False, "a claim") is None and "WARNING: a claim" in capsys.readouterr().out
    check_claims({"c1": True, "c2": False}, small)
    out = capsys.readouterr().out
    assert "holds   c1" in out and "FAILS   c2" in out and "WARNING" in out
    assert claim_checker(tiny)(True, "holds here") is None and "ok: holds here" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="a claim"):
        claim_checker(tiny)(False, "a claim")
    with pytest.raises(AssertionError, match="c2"):
        check_claims({"c1": True, "c2": False}, tiny)


def test_spread_by_key_keeps_every_kind_of_an_interleaved_list():
    rows = [(kind, i) for i in range(60) for kind in ("wrong", "curt", "rambling")]   # interleaved, as pairs are
    assert {k for k, _ in profiles.spread(rows, 24)} != {"wrong", "curt", "rambling"}   # the stride aliases
    cut = profiles.spread(rows, 24, key=lambda r: r[0])
    assert len(cut) == 24 and {k for k, _ in cut} == {"wrong", "curt", "rambling"}
    assert profiles.spread(rows, 999, key=lambda r: r[0]) is rows                     # within budget: untouched


def test_sft_policy_takes_the_tiny_budget_and_the_profile_scales_it(monkeypatch):
    """Callers pass the tiny model's steps and learning rate; ``sft_policy`` applies the profile's budget once."""
    import torch

    from course import rlhf, training

    seen = {}

    def fake_train_sft(model, tokenizer, examples, *, lora, max_steps, learning_rate, seed):
        seen.update(max_steps=max_steps, learning_rate=learning_rate, seed=seed)
        return model, None

    monkeypatch.setattr(training, "train_sft", fake_train_sft)
    monkeypatch.setattr(rlhf, "load_base", lambda p: torch.nn.Linear(2, 2))
    monkeypatch.setattr(rlhf, "_profile", lambda p: profiles.get_profile(p) if isinstance(p, str) else p)
    for name in ("tiny", "small"):
        p = profiles.get_profile(name)
        model = rlhf.sft_policy(name, None, [], steps=30, seed=3, learning_rate=2e-3)
        assert seen == {"max_steps": p.steps(30), "learning_rate": p.lr(2e-3), "seed": 3}
        assert not model.training and not any(t.requires_grad for t in model.parameters())
    assert profiles.get_profile("small").steps(30) < 30 and profiles.get_profile("small").lr(2e-3) < 2e-3
