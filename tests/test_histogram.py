from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asynctrace.histogram import (
    BUCKET_COUNT,
    MAX_MS,
    MIN_MS,
    RELATIVE_ERROR,
    Histogram,
    bucket_bounds,
    bucket_of,
    bucket_value,
)

DURATIONS = st.floats(min_value=MIN_MS, max_value=MAX_MS, allow_nan=False)


def _exact_quantile(samples: list[float], q: float) -> float:
    """Nearest rank: the smallest sample with at least q of all samples at or below it."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_the_stated_error_is_under_five_percent() -> None:
    assert abs(RELATIVE_ERROR - 0.1 / 2.1) < 1e-12
    assert RELATIVE_ERROR < 0.05


@given(DURATIONS)
def test_a_duration_falls_inside_its_bucket_and_near_its_value(duration: float) -> None:
    index = bucket_of(duration)
    low, high = bucket_bounds(index)
    assert low <= duration < high
    assert abs(bucket_value(index) - duration) / duration <= RELATIVE_ERROR + 1e-12


def test_bucket_bounds_tile_the_line_without_gaps() -> None:
    for index in range(BUCKET_COUNT - 1):
        assert bucket_bounds(index)[1] == pytest.approx(bucket_bounds(index + 1)[0])
        assert bucket_of(bucket_bounds(index + 1)[0]) == index + 1


@pytest.mark.parametrize("duration", [-1.0, 0.0, math.nan, MIN_MS / 2])
def test_tiny_and_invalid_durations_count_in_bucket_zero(duration: float) -> None:
    assert bucket_of(duration) == 0


def test_huge_durations_count_in_the_overflow_bucket() -> None:
    assert bucket_of(MAX_MS * 10) == BUCKET_COUNT - 1
    assert bucket_bounds(BUCKET_COUNT - 1)[1] == math.inf


@given(st.lists(DURATIONS, min_size=1, max_size=300), st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]))
def test_quantiles_are_within_the_stated_error_of_the_exact_ones(
    samples: list[float], q: float
) -> None:
    found = Histogram.of(samples).quantile(q)
    exact = _exact_quantile(samples, q)
    assert found is not None
    assert abs(found - exact) / exact <= RELATIVE_ERROR + 1e-12


def test_merging_hour_histograms_gives_the_histogram_of_all_samples() -> None:
    rng = random.Random(8)
    hours = [[rng.lognormvariate(4, 1) for _ in range(rng.randrange(1, 200))] for _ in range(24)]
    merged = Histogram().merge(*(Histogram.of(hour) for hour in hours))
    everything = [sample for hour in hours for sample in hour]
    assert merged == Histogram.of(everything)
    for q in (0.5, 0.95, 0.99):
        exact = _exact_quantile(everything, q)
        found = merged.quantile(q)
        assert found is not None
        assert abs(found - exact) / exact <= RELATIVE_ERROR


def test_an_empty_histogram_has_no_quantile() -> None:
    assert Histogram().quantile(0.5) is None
    with pytest.raises(ValueError, match="q must be"):
        Histogram().quantile(0)


def test_slow_counts_take_whole_buckets_from_the_threshold_up() -> None:
    histogram = Histogram.of([10, 500, 900, 1100, 1200, 5000])
    assert histogram.count_at_least(1000) == 3
    assert histogram.count_at_least(0) == 6
    # Near the threshold a sample is judged by its bucket: within the stated error.
    near = Histogram.of([1000 * (1 - RELATIVE_ERROR) * 0.999, 1000 * (1 + RELATIVE_ERROR)])
    assert near.count_at_least(1000) == 1


def test_an_infinite_duration_counts_in_the_last_bucket() -> None:
    assert bucket_of(math.inf) == BUCKET_COUNT - 1
