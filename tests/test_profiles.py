import pytest

from course import profiles
from course.paths import ROOT


def test_three_profiles_with_the_seed_lab_settings():
    assert list(profiles.PROFILES) == ["tiny", "laptop", "a100"]
    a100 = profiles.PROFILES["a100"]
    assert a100.model == "mistralai/Mistral-7B-v0.1"
    assert a100.dataset == "databricks/databricks-dolly-15k"
    assert (a100.lora_r, a100.lora_alpha, a100.optim, a100.epochs) == (16, 32, "paged_adamw_8bit", 1.0)
    assert a100.warmup_ratio == 0.03 and a100.lr_scheduler == "cosine"
    tiny = profiles.PROFILES["tiny"]
    assert not tiny.needs_hub and tiny.device == "cpu"


def test_default_is_tiny_and_environment_overrides(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert profiles.get_profile().name == "tiny"
    assert profiles.get_profile("a100").name == "a100"
    monkeypatch.setenv("COURSE_PROFILE", "laptop")
    assert profiles.get_profile("a100").name == "laptop"
    monkeypatch.setenv("COURSE_PROFILE", "nope")
    with pytest.raises(KeyError, match="unknown profile 'nope'"):
        profiles.get_profile()


def test_readme_shows_the_profile_table():
    assert profiles.table() in (ROOT / "README.md").read_text(), "README's profile table is stale: paste `course profiles`"
