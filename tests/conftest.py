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


# ---------------------------------------------------------------- scheduling: the longest tests start first
# pytest-xdist's worksteal hands each worker a contiguous half of the collected list and lets an idle worker steal
# the tail of the other's queue. In file order the day autograde runs (minutes each) come late and one worker ends
# alone with them; started first, they overlap with everything else and the run ends on short tests.
# Only the ORDER changes: every collected test still runs.
HEAVY_FIRST = (
    ("test_days_autograde.py::test_reference_full_marks_and_blank_zero", 0),
    ("test_days_autograde.py::test_planted_bugs_caught", 1),
    ("test_grading_attacks.py", 2),
    ("test_browser.py", 2),
    ("test_authoring.py", 3),
)


def _schedule_rank(item) -> tuple[int, int]:
    for pattern, rank in HEAVY_FIRST:
        if pattern in item.nodeid:
            return rank, -_day_weight(item)
    return (4 if item.get_closest_marker("slow") else 5), 0


def _day_weight(item) -> int:
    """Within the autograde tests: days (or notebooks) with more solution source first, a proxy for their cost."""
    from course.authoring.layout import Layout

    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return 0
    layout = Layout.default()
    if "source" in callspec.params:
        return callspec.params["source"].stat().st_size
    day = callspec.params.get("day")
    return sum(p.stat().st_size for p in layout.sources(day)) if day else 0


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_schedule_rank)          # stable: within a rank, file order
