"""course.notebook.quiet(): the hub is switched off for local profiles only, and never against the user."""

import os

import pytest

from course.notebook import quiet


@pytest.fixture
def clean_env(monkeypatch):
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "COURSE_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_local_profiles_go_offline(clean_env, name):
    quiet(name)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_a_hub_profile_leaves_the_hub_alone(clean_env):
    quiet("a100")
    assert "HF_HUB_OFFLINE" not in os.environ and "HF_DATASETS_OFFLINE" not in os.environ
    clean_env.setenv("COURSE_PROFILE", "a100")
    quiet()                                      # the notebook's parameters cell says tiny, the environment a100
    assert "HF_HUB_OFFLINE" not in os.environ


def test_the_users_setting_wins(clean_env):
    clean_env.setenv("HF_HUB_OFFLINE", "0")
    quiet("tiny")
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    clean_env.setenv("HF_HUB_OFFLINE", "1")
    quiet("a100")
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_the_makefile_does_not_force_offline():
    from course.paths import ROOT

    make = (ROOT / "Makefile").read_text()
    assert "export HF_HUB_OFFLINE" not in make and "export HF_DATASETS_OFFLINE" not in make


def test_cuda_profile_without_cuda_is_a_clear_error(monkeypatch):
    import torch

    from course.loading import DeviceMissing, require_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceMissing, match="--profile small"):
        require_device("a100")
    assert require_device("tiny").name == "tiny"


def test_use_cpu_follows_the_model():
    import torch

    from course.training import use_cpu

    assert use_cpu(torch.nn.Linear(2, 2)) is True
    if torch.cuda.is_available():
        assert use_cpu(torch.nn.Linear(2, 2).cuda()) is False
