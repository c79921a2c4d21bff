"""course.timing: the median of the timed calls, after the warm-up calls (a scripted clock, no real timings)."""

from __future__ import annotations

import itertools

import pytest

from course import timing


def test_median_of_timed_calls_after_warmup(monkeypatch):
    durations = iter([5.0, 1.0, 9.0])                       # three timed calls; the 9 s outlier does not move the median
    clock = itertools.count()
    ticks = []

    def fake_perf_counter():
        if len(ticks) % 2 == 0:                             # start of a call
            ticks.append(float(next(clock) * 100))
        else:
            ticks.append(ticks[-1] + next(durations))
        return ticks[-1]

    monkeypatch.setattr(timing.time, "perf_counter", fake_perf_counter)
    calls = []
    assert timing.median_seconds(lambda: calls.append(1), repeats=3, warmup=2) == 5.0
    assert len(calls) == 5 and len(ticks) == 6              # 2 untimed warm-up calls, 3 timed ones


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats"):
        timing.median_seconds(lambda: None, repeats=0)
