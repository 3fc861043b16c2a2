"""Recurring hot hours of the week: the detector behind ``store.patterns``.

Input is one duration ``Histogram`` per (week, hour of the week) of one service and
operation; output is the hours that are slow *week after week*, in words. It is a
pure function, so tests and ``python -m benchmarks patterns`` feed it synthetic
weeks directly. The evidence grows with the data; there is no per-hour minimum of
requests (``fewest_requests`` is the floor the test itself implies):

1. **Typical, per week.** Each week's typical median, upper quartile and p95 are
   those of its requests outside its slowest tenth of hours of the week (so a hot
   spot does not raise its own bar, and a slow week or a deploy does not hide a
   spike in the other weeks). A request is *over* when its bucket is above them.
2. **Recurrence.** The hour is *hot in a week* when at least half of that week's
   requests in it are over the week's upper quartile; it goes on only when hot in at
   least ``min_weeks`` weeks and in at least ``min_share`` of the weeks it had
   requests in.
3. **Evidence, pooled over the weeks.** The requests over the p95 in that hour (all
   weeks together) are compared with what the rest of each week predicts (a thin
   week leans on the route's share): the binomial upper tail must be at most
   ``false_alarm_rate / 168`` (Bonferroni over the hours of the week). Without the
   week of the largest excess it must still be at most 0.01: not one bad week.
4. **A clear effect.** The median of the hour's requests in its hot weeks, each
   divided by its week's typical median, is at least ``factor``.

One bad hour, one slow week or a step change (slow from some hour on) is never a
weekly pattern. ``docs/patterns.md`` has the calibration.

Adjacent flagged hours are reported as one spot ("Mondays 09:00-11:00 UTC", with an
en dash in the sentence).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from asynctrace.analysis._units import format_ms
from asynctrace.histogram import GROWTH, Histogram, bucket_of, bucket_value

__all__ = [
    "DAY_NAMES",
    "HOURS_PER_WEEK",
    "HotSpot",
    "PatternGuard",
    "binomial_tail",
    "fewest_requests",
    "hot_spots",
    "hour_of_week_label",
]

HOURS_PER_WEEK = 7 * 24
_EN_DASH = "\u2013"  # typography for ranges; spelled as an escape for linters
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The slowest tenth of hours of the week (by median) is left out of the typical p95.
_TRIMMED_SHARE = 0.1
# A week's own share over counts as much as this many requests at the route's share:
# a thin week leans on the route, a busy one on itself.
_PRIOR_REQUESTS = 50.0
# The weeks left when the strongest is set aside must still show the hour this clearly.
_WITHOUT_ONE_WEEK_P_VALUE = 0.01


@dataclass(frozen=True, slots=True)
class PatternGuard:
    """When a recurring slow hour is reported; see the module docstring.

    ``false_alarm_rate`` bounds the chance that one route without a weekly pattern
    has an hour passing the pooled evidence test (step 3) by chance alone.
    """

    factor: float = 2.0
    min_weeks: int = 3
    min_share: float = 0.75
    false_alarm_rate: float = 0.01

    def __post_init__(self) -> None:
        if self.min_weeks < 1:
            raise ValueError("min_weeks must be at least 1")
        if self.factor <= 1.0 or not 0.0 < self.min_share <= 1.0:
            raise ValueError("factor must be > 1 and min_share in (0, 1]")
        if not 0.0 < self.false_alarm_rate < 1.0:
            raise ValueError("false_alarm_rate must be in (0, 1)")

    @property
    def hour_p_value(self) -> float:
        """The p-value one hour of the week must reach (Bonferroni over 168 hours)."""
        return self.false_alarm_rate / HOURS_PER_WEEK


@dataclass(frozen=True, slots=True)
class HotSpot:
    """Hours of the week ``first_hour`` ..< ``end_hour`` (0 = Monday 00:00 UTC) that are
    slow week after week: ``p95_ms`` there (all weeks merged) against the
    ``typical_p95_ms``, hot in ``weeks_hot`` of the last ``weeks`` weeks, and
    ``requests_over`` of its ``requests`` (all weeks) over the typical p95 (without
    ``requests``, as when built by hand, the sentence leaves the count out)."""

    operation: str
    first_hour: int
    end_hour: int
    p95_ms: float
    typical_p95_ms: float
    weeks_hot: int
    weeks: int
    requests: int = 0
    requests_over: int = 0

    @property
    def sentence(self) -> str:
        """E.g. "GET /orders/{id}: Mondays 09:00-10:00 UTC, p95 5,100 ms vs 400 ms typical,
        in 4 of the last 4 weeks, 46 of 48 requests over 400 ms"."""
        text = (
            f"{self.operation}: {_span_label(self.first_hour, self.end_hour)} UTC, "
            f"p95 {format_ms(self.p95_ms)} vs {format_ms(self.typical_p95_ms)} typical, "
            f"in {self.weeks_hot} of the last {self.weeks} weeks"
        )
        if self.requests:
            text += (
                f", {self.requests_over:,} of {self.requests:,} requests "
                f"over {format_ms(self.typical_p95_ms)}"
            )
        return text


def hot_spots(
    cells: Mapping[tuple[int, int], Histogram],
    *,
    operation: str,
    weeks: int,
    guard: PatternGuard = PatternGuard(),  # frozen, so sharing is safe
) -> list[HotSpot]:
    """The recurring hot spots in ``cells``, keyed ``(week, hour_of_week)``.

    ``week`` is 0 for the latest week up to ``weeks - 1``; ``hour_of_week`` is
    0..167 from Monday 00:00 UTC; other keys are ignored. Returns spots in
    hour-of-week order; empty when nothing passes the guard. Pure; work is bounded
    by ``weeks`` x 168 histograms.
    """
    kept = {
        key: histogram
        for key, histogram in cells.items()
        if 0 <= key[0] < weeks and 0 <= key[1] < HOURS_PER_WEEK and histogram.total > 0
    }
    if weeks < guard.min_weeks:
        return []
    # Each week is judged against its own typical, so a slow week or a deploy that
    # made everything slower does not hide a spike in the other weeks.
    typicals: dict[int, _Typical] = {}
    for week in range(weeks):
        typical_week = _Typical.of({key: h for key, h in kept.items() if key[0] == week})
        if typical_week is not None:
            typicals[week] = typical_week
    if not typicals:
        return []
    # The lower median of the weeks' values: one of them, shown in the sentence.
    typical = sorted(t.p95_ms for t in typicals.values())[(len(typicals) - 1) // 2]
    counts = {key: typicals[key[0]].count(histogram) for key, histogram in kept.items()}
    week_totals: dict[int, list[int]] = {week: [0, 0] for week in typicals}
    for (week, _), (total, over, _) in counts.items():
        week_totals[week][0] += total
        week_totals[week][1] += over
    route_share = sum(over for _, over in week_totals.values()) / sum(
        total for total, _ in week_totals.values()
    )
    flagged: dict[int, int] = {}
    for hour in range(HOURS_PER_WEEK):
        present = [week for week in range(weeks) if (week, hour) in counts]
        # Hot in a week: at least half its requests over the week's upper quartile.
        hot = [week for week in present if 2 * counts[(week, hour)][2] >= counts[(week, hour)][0]]
        if len(hot) < guard.min_weeks or len(hot) < guard.min_share * len(present):
            continue
        # Per week: (requests, over, expected over from the rest of the week, which
        # leans on the route when the week is thin).
        evidence = []
        for week in present:
            total, over, _ = counts[(week, hour)]
            week_total, week_over = week_totals[week]
            rest_share = (week_over - over + _PRIOR_REQUESTS * route_share) / (
                week_total - total + _PRIOR_REQUESTS
            )
            evidence.append((total, over, total * rest_share))
        if _tail(evidence) > guard.hour_p_value:
            continue
        # Not one bad week: without the week of the largest excess it still shows.
        evidence.remove(max(evidence, key=lambda item: item[1] - item[2]))
        if _tail(evidence) > _WITHOUT_ONE_WEEK_P_VALUE:
            continue
        if _median_ratio([(kept[(week, hour)], typicals[week]) for week in hot]) < guard.factor:
            continue
        flagged[hour] = len(hot)
    spots: list[HotSpot] = []
    for first, end in _runs(sorted(flagged)):
        keys = [(week, hour) for week in range(weeks) for hour in range(first, end)]
        merged = Histogram().merge(*(kept[key] for key in keys if key in kept))
        p95 = merged.quantile(0.95)
        spots.append(
            HotSpot(
                operation=operation,
                first_hour=first,
                end_hour=end,
                p95_ms=p95 if p95 is not None else guard.factor * typical,
                typical_p95_ms=typical,
                weeks_hot=min(flagged[hour] for hour in range(first, end)),
                weeks=weeks,
                requests=merged.total,
                requests_over=_over(merged, typical),
            )
        )
    return spots


@dataclass(frozen=True, slots=True)
class _Typical:
    """One week's typical request: the median, upper quartile and p95 (ms) of its
    requests outside its slowest tenth of hours (by their median), so a hot spot does
    not raise its own bar."""

    median_ms: float
    p75_ms: float
    p95_ms: float

    @classmethod
    def of(cls, cells: Mapping[tuple[int, int], Histogram]) -> _Typical | None:
        medians = sorted(
            ((histogram.quantile(0.5) or 0.0, key) for key, histogram in cells.items()),
            reverse=True,
        )
        left_out = {key for _, key in medians[: math.floor(_TRIMMED_SHARE * len(medians))]}
        rest = Histogram().merge(*(h for key, h in cells.items() if key not in left_out))
        median, p75, p95 = rest.quantile(0.5), rest.quantile(0.75), rest.quantile(0.95)
        if median is None or p75 is None or p95 is None:
            return None
        return cls(median, p75, p95)

    def count(self, histogram: Histogram) -> tuple[int, int, int]:
        """Requests; over the p95; over the upper quartile."""
        return histogram.total, _over(histogram, self.p95_ms), _over(histogram, self.p75_ms)


def _median_ratio(pairs: Sequence[tuple[Histogram, _Typical]]) -> float:
    """The median of the requests in ``pairs``, each divided by its week's typical
    median: bucket indices are log-spaced, so dividing is shifting them."""
    shifted: dict[int, int] = {}
    for histogram, typical in pairs:
        offset = bucket_of(typical.median_ms)
        for index, count in histogram.counts.items():
            shifted[index - offset] = shifted.get(index - offset, 0) + count
    rank = (sum(shifted.values()) + 1) // 2
    seen = 0
    for shift in sorted(shifted):
        seen += shifted[shift]
        if seen >= rank:
            return float(GROWTH**shift)
    return 0.0


def _tail(evidence: Sequence[tuple[int, int, float]]) -> float:
    """The upper tail of the requests over, summed over ``(requests, over, expected)``."""
    requests = sum(item[0] for item in evidence)
    if requests == 0:
        return 1.0
    expected = sum(item[2] for item in evidence)
    return binomial_tail(sum(item[1] for item in evidence), requests, expected / requests)


def _over(histogram: Histogram, threshold_ms: float) -> int:
    """Requests whose duration bucket's value is above ``threshold_ms``."""
    return sum(
        count for index, count in histogram.counts.items() if bucket_value(index) > threshold_ms
    )


def binomial_tail(observed: int, trials: int, share: float) -> float:
    """``P(X >= observed)`` for a binomial ``X`` of ``trials`` at ``share``; 1.0 when
    ``observed`` is not above the mean (never significant, so not computed).

    Used for the sum of per-week counts at different shares (a Poisson-binomial):
    the binomial at their mean share has the larger upper tail (Hoeffding, 1956),
    so the test errs towards silence.
    """
    if observed <= trials * share:
        return 1.0
    if observed > trials or share <= 0.0:
        return 0.0
    if share >= 1.0:
        return 1.0
    log_share, log_rest = math.log(share), math.log1p(-share)
    log_trials = math.lgamma(trials + 1)
    total = 0.0
    # The terms fall from `observed` on (it is above the mean); stop when negligible.
    for count in range(observed, trials + 1):
        term = math.exp(
            log_trials
            - math.lgamma(count + 1)
            - math.lgamma(trials - count + 1)
            + count * log_share
            + (trials - count) * log_rest
        )
        total += term
        if term <= total * 1e-12:
            break
    return min(1.0, total)


def fewest_requests(guard: PatternGuard = PatternGuard(), *, share: float = 0.05) -> int:
    """The fewest requests of one hour of the week, all weeks together and every one of
    them over the typical p95, that can pass the guard when ``share`` of the route's
    requests are over it (5 % by definition of a p95; a little less, as a request is
    over only when its bucket is above the p95's): the detector's floor (README)."""
    requests = guard.min_weeks
    while binomial_tail(requests, requests, share) > guard.hour_p_value:
        requests += 1
    return requests


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
