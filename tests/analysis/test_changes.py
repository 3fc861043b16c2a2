from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from asynctrace.analysis.changes import StepChange, step_change
from asynctrace.histogram import Histogram

OPERATION = "GET /orders/{id}"
# 2026-11-30 00:00 UTC, a Monday: only a label here, no Redis is involved.
MONDAY_MS = 1_795_996_800_000.0
HOURS = 14 * 24
TUESDAY_14 = 24 + 14


def _hours(
    median_of: Callable[[int], float], *, per_hour: int = 12, seed: int = 1
) -> list[Histogram]:
    rng = random.Random(seed)
    return [
        Histogram.of(median_of(hour) * rng.lognormvariate(0, 0.3) for _ in range(per_hour))
        for hour in range(HOURS)
    ]


def test_a_deploy_that_stays_slower_is_named_with_its_hour() -> None:
    hours = _hours(lambda hour: 1200.0 if hour >= 7 * 24 + TUESDAY_14 else 400.0)

    change = step_change(hours, operation=OPERATION, start_ms=MONDAY_MS, service="orders")

    assert change is not None
    assert change.hour == 7 * 24 + TUESDAY_14
    assert change.service == "orders"
    assert 450 < change.before_p95_ms < 800
    assert 1400 < change.after_p95_ms < 2400
    assert change.sentence.startswith(f"p95 of {OPERATION} went from ")
    assert change.sentence.endswith(" on Tuesday 14:00 UTC (2026-12-08) and stayed")


@pytest.mark.parametrize(
    "median_of",
    [
        pytest.param(lambda hour: 400.0, id="steady"),
        pytest.param(lambda hour: 4000.0 if hour == 100 else 400.0, id="one bad hour"),
        pytest.param(lambda hour: 1200.0 if 48 <= hour < 48 + 168 else 400.0, id="a slow week"),
        pytest.param(lambda hour: 5000.0 if hour % 168 == 9 else 400.0, id="weekly spike"),
        pytest.param(lambda hour: 400.0 if hour >= 100 else 1200.0, id="got faster"),
        pytest.param(lambda hour: 400.0 * (1.2 if 9 <= hour % 24 < 18 else 1.0), id="daily"),
    ],
)
def test_what_is_not_a_step_change_is_not_named(median_of: Callable[[int], float]) -> None:
    assert step_change(_hours(median_of), operation=OPERATION, start_ms=MONDAY_MS) is None


def test_a_small_change_is_not_named_and_the_factor_is_checked() -> None:
    hours = _hours(lambda hour: 520.0 if hour >= 200 else 400.0)
    assert step_change(hours, operation=OPERATION, start_ms=MONDAY_MS) is None
    assert step_change(hours, operation=OPERATION, start_ms=MONDAY_MS, factor=1.2) is not None
    with pytest.raises(ValueError, match="factor"):
        step_change(hours, operation=OPERATION, start_ms=MONDAY_MS, factor=1.0)


def test_no_requests_and_too_short_a_history_name_nothing() -> None:
    assert step_change([Histogram()] * 48, operation=OPERATION, start_ms=MONDAY_MS) is None
    short = _hours(lambda hour: 1200.0 if hour >= 20 else 400.0)[:30]
    assert step_change(short, operation=OPERATION, start_ms=MONDAY_MS) is None


def test_the_sentence_reads_as_the_issue_asks() -> None:
    change = StepChange(OPERATION, TUESDAY_14, MONDAY_MS, 400.0, 1200.0)
    assert change.sentence == (
        f"p95 of {OPERATION} went from 400 ms to 1,200 ms on Tuesday 14:00 UTC "
        "(2026-12-01) and stayed"
    )
