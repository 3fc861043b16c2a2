from __future__ import annotations

import math
import random
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest

from asynctrace.analysis import HotSpot, PatternGuard, format_ms, hot_spots
from asynctrace.analysis.patterns import HOURS_PER_WEEK, binomial_tail, fewest_requests
from asynctrace.histogram import Histogram

OPERATION = "GET /orders/{id}"
MONDAY_9 = 9
SAMPLES = 30


def _weeks(
    slow: AbstractSet[tuple[int, int]] = frozenset(),
    *,
    weeks: int = 4,
    seed: int = 1,
    typical_ms: float = 400.0,
    slow_ms: float = 5000.0,
    noise: float = 0.25,
) -> dict[tuple[int, int], Histogram]:
    """Per (week, hour of week): SAMPLES lognormal durations around typical or slow."""
    rng = random.Random(seed)
    cells: dict[tuple[int, int], Histogram] = {}
    for week in range(weeks):
        for hour in range(HOURS_PER_WEEK):
            median = slow_ms if (week, hour) in slow else typical_ms
            cells[(week, hour)] = Histogram.of(
                rng.lognormvariate(0, noise) * median for _ in range(SAMPLES)
            )
    return cells


def test_a_monday_morning_spike_in_every_week_is_found_and_named() -> None:
    cells = _weeks({(week, MONDAY_9) for week in range(4)})
    (spot,) = hot_spots(cells, operation=OPERATION, weeks=4)
    assert (spot.first_hour, spot.end_hour) == (9, 10)
    assert spot.weeks_hot == 4
    assert spot.sentence.startswith("GET /orders/{id}: Mondays 09:00\u201310:00 UTC, p95 ")
    assert spot.sentence.endswith(
        f"typical, in 4 of the last 4 weeks, {spot.requests_over} of 120 requests over "
        f"{format_ms(spot.typical_p95_ms)}"
    )
    assert spot.requests_over >= 110
    assert 5000 < spot.p95_ms < 15000
    assert 300 < spot.typical_p95_ms < 800


def test_a_spike_in_three_of_four_weeks_is_still_found() -> None:
    cells = _weeks({(week, MONDAY_9) for week in (0, 1, 3)})
    (spot,) = hot_spots(cells, operation=OPERATION, weeks=4)
    assert spot.weeks_hot == 3
    assert "in 3 of the last 4 weeks" in spot.sentence


def test_adjacent_hot_hours_make_one_spot() -> None:
    cells = _weeks({(week, hour) for week in range(4) for hour in (9, 10)})
    (spot,) = hot_spots(cells, operation=OPERATION, weeks=4)
    assert "Mondays 09:00\u201311:00 UTC" in spot.sentence


@pytest.mark.parametrize("seed", range(5))
def test_noise_is_not_flagged(seed: int) -> None:
    assert hot_spots(_weeks(seed=seed, noise=0.5), operation=OPERATION, weeks=4) == []


def test_a_single_bad_hour_is_not_flagged() -> None:
    assert hot_spots(_weeks({(2, MONDAY_9)}), operation=OPERATION, weeks=4) == []


def test_one_slow_week_is_not_flagged() -> None:
    slow_week = {(1, hour) for hour in range(HOURS_PER_WEEK)}
    assert hot_spots(_weeks(slow_week), operation=OPERATION, weeks=4) == []


def test_two_of_four_weeks_is_not_a_pattern() -> None:
    cells = _weeks({(week, MONDAY_9) for week in (0, 2)})
    assert hot_spots(cells, operation=OPERATION, weeks=4) == []


def test_fewer_weeks_than_the_guard_asks_for_flag_nothing() -> None:
    cells = _weeks({(week, MONDAY_9) for week in range(2)}, weeks=2)
    assert hot_spots(cells, operation=OPERATION, weeks=2) == []


def test_a_few_requests_an_hour_are_enough_when_every_week_says_the_same() -> None:
    cells = _weeks()
    for week in range(4):
        cells[(week, MONDAY_9)] = Histogram.of([9000.0] * 3)
    (spot,) = hot_spots(cells, operation=OPERATION, weeks=4)
    assert spot.sentence.endswith(
        "in 4 of the last 4 weeks, 12 of 12 requests over " + (format_ms(spot.typical_p95_ms))
    )


def test_the_floor_is_a_few_slow_requests_in_most_weeks() -> None:
    assert fewest_requests() == 4  # at a 5 % share over the typical p95
    assert fewest_requests(share=0.03) == 3
    cells = _weeks()
    for week in (0, 1):
        cells[(week, MONDAY_9)] = Histogram.of([9000.0])
    for week in (2, 3):
        del cells[(week, MONDAY_9)]
    assert hot_spots(cells, operation=OPERATION, weeks=4) == []


def test_the_readme_states_the_floor_the_detector_computes() -> None:
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert f"needs at least {fewest_requests()} requests in that hour over the weeks" in readme
    assert f"({fewest_requests(share=0.03)} when the route's share over its p95 is 3 %)" in (readme)


def test_a_route_with_a_few_requests_a_day_flags_nothing() -> None:
    rng = random.Random(7)
    for seed in range(20):
        rng.seed(seed)
        cells: dict[tuple[int, int], Histogram] = {}
        for week in range(4):
            for _ in range(21):  # three a day
                hour = rng.randrange(HOURS_PER_WEEK)
                sample = Histogram.of([400.0 * rng.lognormvariate(0, 0.6)])
                cells[(week, hour)] = cells.get((week, hour), Histogram()).merge(sample)
        assert hot_spots(cells, operation=OPERATION, weeks=4) == []


def test_the_tail_is_the_binomial_one() -> None:
    assert binomial_tail(2, 2, 0.5) == pytest.approx(0.25)
    assert binomial_tail(1, 4, 0.5) == 1.0  # not above the mean
    assert binomial_tail(4, 4, 0.05) == pytest.approx(0.05**4)
    assert binomial_tail(3, 10, 0.1) == pytest.approx(
        1 - sum(math.comb(10, k) * 0.1**k * 0.9 ** (10 - k) for k in range(3))
    )


def test_a_small_effect_is_not_flagged() -> None:
    cells = _weeks({(week, MONDAY_9) for week in range(4)}, slow_ms=600.0)
    assert hot_spots(cells, operation=OPERATION, weeks=4) == []


def test_the_guard_is_adjustable_and_checked() -> None:
    cells = _weeks({(week, MONDAY_9) for week in range(4)}, slow_ms=700.0)
    assert hot_spots(cells, operation=OPERATION, weeks=4) == []
    assert hot_spots(cells, operation=OPERATION, weeks=4, guard=PatternGuard(factor=1.5))
    with pytest.raises(ValueError, match="factor"):
        PatternGuard(factor=1.0)
    with pytest.raises(ValueError, match="false_alarm_rate"):
        PatternGuard(false_alarm_rate=0.0)


def test_no_data_flags_nothing() -> None:
    assert hot_spots({}, operation=OPERATION, weeks=4) == []


@pytest.mark.parametrize(
    ("first", "end", "label"),
    [
        (23, 24, "Mondays 23:00\u201324:00"),
        (23, 26, "Mondays 23:00 \u2013 Tuesdays 02:00"),
        (167, 168, "Sundays 23:00\u201324:00"),
    ],
)
def test_spots_name_their_hours(first: int, end: int, label: str) -> None:
    spot = HotSpot("op", first, end, 2500.0, 40.0, 3, 4)
    assert spot.sentence == (
        f"op: {label} UTC, p95 2,500 ms vs 40 ms typical, in 3 of the last 4 weeks"
    )
    counted = HotSpot("op", first, end, 2500.0, 40.0, 3, 4, requests=48, requests_over=46)
    assert counted.sentence == f"{spot.sentence}, 46 of 48 requests over 40 ms"
