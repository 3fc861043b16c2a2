"""Step changes: a route that became slower from one hour on, and stayed.

A deploy that makes ``GET /orders/{id}`` three times slower on a Tuesday is not a
weekly pattern (``asynctrace.analysis.patterns`` never names it), but it is worth
its own sentence: "p95 of GET /orders/{id} went from 400 ms to 1,200 ms on Tuesday
14:00 UTC and stayed". Input is the route's per-hour duration histograms in time
order; pure, bounded by the number of hours times the buckets in use.

The change hour is the split that best separates requests over and under the route's
median (the largest binomial log-likelihood ratio of two shares against one). It is
named only when all hold:

- the split is far beyond chance: log-likelihood ratio of at least ``_MIN_EVIDENCE``
  (a chance of about e^-20 per split, for some 800 splits);
- p95 after is at least ``factor`` times p95 before (a route that got faster is good
  news, not reported);
- it stayed: every day after the change (24-hour blocks, the last may be shorter)
  with requests has more than half of them above the old median times the square
  root of ``factor``, halfway (in log terms) to where a ``factor`` step puts it;
- there are at least 24 hours before and 12 hours after, with requests in both.

A slow week that ended, a single bad hour or a weekly spike fails "it stayed". A slow
period that has not ended yet is, from the data, a step change so far.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asynctrace.analysis._units import format_ms
from asynctrace.histogram import Histogram, bucket_value

__all__ = ["StepChange", "step_change"]

_HOUR_MS = 3_600_000.0
_MIN_BEFORE_HOURS = 24
_MIN_AFTER_HOURS = 12
_MIN_EVIDENCE = 20.0
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class StepChange:
    """From hour ``hour`` (0 = the first hour given, starting at ``start_ms`` epoch ms)
    on, p95 went from ``before_p95_ms`` to ``after_p95_ms`` and stayed. ``service`` is
    the route's service when the caller knows it (not part of the sentence)."""

    operation: str
    hour: int
    start_ms: float
    before_p95_ms: float
    after_p95_ms: float
    service: str = ""

    @property
    def changed_at_ms(self) -> float:
        """Epoch ms of the start of the hour the change began in."""
        return self.start_ms + self.hour * _HOUR_MS

    @property
    def sentence(self) -> str:
        """E.g. "p95 of GET /orders/{id} went from 400 ms to 1,200 ms on Tuesday 14:00 UTC
        and stayed"."""
        moment = datetime.fromtimestamp(self.changed_at_ms / 1000.0, UTC)
        return (
            f"p95 of {self.operation} went from {format_ms(self.before_p95_ms)} to "
            f"{format_ms(self.after_p95_ms)} on {_DAY_NAMES[moment.weekday()]} "
            f"{moment:%H}:00 UTC ({moment:%Y-%m-%d}) and stayed"
        )


def step_change(
    hours: Sequence[Histogram],
    *,
    operation: str,
    start_ms: float,
    service: str = "",
    factor: float = 1.5,
) -> StepChange | None:
    """The step change in ``hours`` (oldest first, one histogram per hour from
    ``start_ms``), or None. Pure; never raises for any histograms."""
    if factor <= 1.0:
        raise ValueError("factor must be > 1")
    median = Histogram().merge(*hours).quantile(0.5)
    if median is None:
        return None
    # Per hour: requests, and requests over the route's median.
    totals = [histogram.total for histogram in hours]
    overs = [_over(histogram, median) for histogram in hours]
    all_total, all_over = sum(totals), sum(overs)
    best: tuple[float, int] | None = None
    seen_total = seen_over = 0
    for split in range(1, len(hours)):
        seen_total += totals[split - 1]
        seen_over += overs[split - 1]
        if split < _MIN_BEFORE_HOURS or len(hours) - split < _MIN_AFTER_HOURS:
            continue
        rest_total, rest_over = all_total - seen_total, all_over - seen_over
        if seen_total == 0 or rest_total == 0:
            continue
        evidence = (
            _log_likelihood(seen_over, seen_total)
            + _log_likelihood(rest_over, rest_total)
            - _log_likelihood(all_over, all_total)
        )
        if best is None or evidence > best[0]:
            best = (evidence, split)
    if best is None or best[0] < _MIN_EVIDENCE:
        return None
    split = best[1]
    before = Histogram().merge(*hours[:split])
    after = Histogram().merge(*hours[split:])
    before_p95, after_p95 = before.quantile(0.95), after.quantile(0.95)
    before_median = before.quantile(0.5)
    if before_p95 is None or after_p95 is None or before_median is None:
        return None
    if after_p95 < factor * before_p95:
        return None
    bar = before_median * math.sqrt(factor)
    for day_start in range(split, len(hours), 24):
        day = Histogram().merge(*hours[day_start : day_start + 24])
        if day.total and 2 * _over(day, bar) <= day.total:
            return None
    return StepChange(operation, split, start_ms, before_p95, after_p95, service)


def _over(histogram: Histogram, threshold_ms: float) -> int:
    return sum(
        count for index, count in histogram.counts.items() if bucket_value(index) > threshold_ms
    )


def _log_likelihood(successes: int, trials: int) -> float:
    """The binomial log-likelihood of ``successes`` in ``trials`` at its own share."""
    total = 0.0
    for part in (successes, trials - successes):
        if part:
            total += part * math.log(part / trials)
    return total
