"""Recurring hot hours of the week: the detector behind ``store.patterns``.

Input is one duration ``Histogram`` per (week, hour of the week) of one service and
operation; output is the hours whose p95 is high *week after week*, in words. It is
a pure function, so tests feed it synthetic weeks directly.

The guard against false alarms (``PatternGuard``), all of which must hold:

1. **Enough samples.** A (week, hour) cell counts only with at least
   ``min_samples`` requests; a p95 of three requests is noise.
2. **A clear effect.** The typical p95 is the median of the p95s of every counted
   cell; a cell is *hot* when its p95 is at least ``factor`` times that.
3. **Recurrence.** An hour of the week is flagged when it is hot in at least
   ``min_weeks`` weeks and in at least ``min_share`` of the weeks it has enough
   samples in. One bad hour (one week) or one slow week (every hour, once) never
   qualifies; neither does anything with fewer than ``min_weeks`` weeks of data.

Adjacent flagged hours are reported as one spot ("Mondays 09:00-11:00 UTC", with an
en dash in the sentence).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from asynctrace.analysis._units import format_ms
from asynctrace.histogram import Histogram

__all__ = [
    "DAY_NAMES",
    "HOURS_PER_WEEK",
    "HotSpot",
    "PatternGuard",
    "hot_spots",
    "hour_of_week_label",
]

HOURS_PER_WEEK = 7 * 24
_EN_DASH = "\u2013"  # typography for ranges; spelled as an escape for linters
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class PatternGuard:
    """When a recurring slow hour is reported; see the module docstring."""

    min_samples: int = 20
    factor: float = 2.0
    min_weeks: int = 3
    min_share: float = 0.75

    def __post_init__(self) -> None:
        if self.min_samples < 1 or self.min_weeks < 1:
            raise ValueError("min_samples and min_weeks must be at least 1")
        if self.factor <= 1.0 or not 0.0 < self.min_share <= 1.0:
            raise ValueError("factor must be > 1 and min_share in (0, 1]")


@dataclass(frozen=True, slots=True)
class HotSpot:
    """Hours of the week ``first_hour`` ..< ``end_hour`` (0 = Monday 00:00 UTC) that are
    slow week after week: ``p95_ms`` there (all weeks merged) against the
    ``typical_p95_ms``, hot in ``weeks_hot`` of the last ``weeks`` weeks."""

    operation: str
    first_hour: int
    end_hour: int
    p95_ms: float
    typical_p95_ms: float
    weeks_hot: int
    weeks: int

    @property
    def sentence(self) -> str:
        """E.g. "GET /orders/{id}: Mondays 09:00-10:00 UTC, p95 5,100 ms vs 400 ms typical,
        in 4 of the last 4 weeks"."""
        return (
            f"{self.operation}: {_span_label(self.first_hour, self.end_hour)} UTC, "
            f"p95 {format_ms(self.p95_ms)} vs {format_ms(self.typical_p95_ms)} typical, "
            f"in {self.weeks_hot} of the last {self.weeks} weeks"
        )


def hot_spots(
    cells: Mapping[tuple[int, int], Histogram],
    *,
    operation: str,
    weeks: int,
    guard: PatternGuard = PatternGuard(),  # frozen, so sharing is safe
) -> list[HotSpot]:
    """The recurring hot spots in ``cells``, keyed ``(week, hour_of_week)``.

    ``week`` is 0 for the latest week up to ``weeks - 1``; ``hour_of_week`` is
    0..167 from Monday 00:00 UTC. Returns spots in hour-of-week order; empty when
    nothing passes the guard.
    """
    p95s: dict[tuple[int, int], float] = {}
    for key, histogram in cells.items():
        if histogram.total >= guard.min_samples:
            p95 = histogram.quantile(0.95)
            if p95 is not None:
                p95s[key] = p95
    if not p95s:
        return []
    typical = statistics.median(p95s.values())
    threshold = guard.factor * typical
    flagged: dict[int, int] = {}
    for hour in range(HOURS_PER_WEEK):
        present = [week for week in range(weeks) if (week, hour) in p95s]
        hot = [week for week in present if p95s[(week, hour)] >= threshold]
        if len(hot) >= guard.min_weeks and len(hot) >= guard.min_share * len(present):
            flagged[hour] = len(hot)
    spots: list[HotSpot] = []
    for first, end in _runs(sorted(flagged)):
        merged = Histogram().merge(
            *(
                cells[(week, hour)]
                for week in range(weeks)
                for hour in range(first, end)
                if (week, hour) in cells
            )
        )
        p95 = merged.quantile(0.95)
        spots.append(
            HotSpot(
                operation=operation,
                first_hour=first,
                end_hour=end,
                p95_ms=p95 if p95 is not None else threshold,
                typical_p95_ms=typical,
                weeks_hot=min(flagged[hour] for hour in range(first, end)),
                weeks=weeks,
            )
        )
    return spots


def _runs(hours: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive hours as ``(first, end)`` ranges."""
    runs: list[tuple[int, int]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + 1)
        else:
            runs.append((hour, hour + 1))
    return runs


def hour_of_week_label(hour: int) -> str:
    """``Monday 09:00`` for hour of week 9."""
    return f"{DAY_NAMES[hour // 24]} {hour % 24:02d}:00"


def _span_label(first: int, end: int) -> str:
    day, start = divmod(first, 24)
    end_day, stop = divmod(end, 24)
    if end_day == day or (end_day == day + 1 and stop == 0):
        stop_hour = 24 if end_day != day else stop
        return f"{DAY_NAMES[day]}s {start:02d}:00{_EN_DASH}{stop_hour:02d}:00"
    return f"{DAY_NAMES[day]}s {start:02d}:00 {_EN_DASH} {DAY_NAMES[end_day % 7]}s {stop:02d}:00"
