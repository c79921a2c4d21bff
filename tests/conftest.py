import os

# No hub is reachable here, in CI or on the GPU machine: every test runs offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_profile():
    """The ``small`` profile with its real model in the cache: fetched and converted here if `make models` has not
    (under a file lock, so xdist workers build it once). A failure to fetch is an error, never a skip."""
    from course import models
    from course.profiles import get_profile

    models.fetch("small", log=lambda *a: None)
    return get_profile("small")
