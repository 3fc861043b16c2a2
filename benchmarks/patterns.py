"""Scenario 7, weekly patterns: the hot-spot detector's detection and false-alarm rates.

Seeded and reproducible; no Redis. Synthetic routes are made as the store would hand
them to ``hot_spots``: one duration histogram per (week, hour of the week), four
weeks. Each route has Poisson traffic with a daily cycle (busy from 08:00 to 20:00
UTC) and quiet weekends, lognormal latencies (median 20-500 ms, sigma 0.25-0.6, up to
20 % slower at the busiest hours), and, at random, the things that are *not* weekly
patterns: single bad hours (3-10x, about two a week), one slow week (1.5-3x, a
quarter of the routes) and a deploy that makes the route slower from some hour on and
stays (1.5-4x, a quarter of the routes).

- Detection: routes with a real weekly spike (1 or 2 hours, the same hours every
  week, in all 4 weeks), by the expected requests per hour *at the spike's hours*
  and by the spike's effect on latency (median and p95 times the effect). Found
  means a reported spot covers a spike hour.
- False alarms: routes without a weekly spike, traffic from a few requests a day to
  500 an hour (log-uniform mean rate); any reported spot is a false alarm.
- Step changes: the same spike-free routes; how often ``step_change`` names the
  deploy when there is one, and names something when there is none.

The full run takes a few minutes on one core; ``--quick`` makes a handful of routes
per row (the numbers are then only a smoke test).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from asynctrace.analysis.changes import step_change
from asynctrace.analysis.patterns import HOURS_PER_WEEK, fewest_requests, hot_spots
from asynctrace.histogram import BUCKET_COUNT, MIN_MS, Histogram, bucket_bounds
from benchmarks.options import Options
from benchmarks.report import ScenarioResult, Table, Target

__all__ = ["NAME", "run"]

NAME = "patterns"
TITLE = "10. Weekly patterns: detection of weekly spikes and false alarms (seeded simulation)"
SEED = 20261205
WEEKS = 4
LEVELS = (1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0)
EFFECTS = (1.5, 2.0, 3.0, 5.0, 10.0)
OPERATION = "GET /simulated"
# The bucket bounds as natural logs, for numpy's searchsorted (bisect_right, as bucket_of).
_LOG_UPPER = np.log([bucket_bounds(index)[1] for index in range(BUCKET_COUNT - 1)])
_LOG_MIN = math.log(MIN_MS)


@dataclass(frozen=True, slots=True)
class _Route:
    """What one synthetic route hides, so the scenario can score the detector."""

    cells: dict[tuple[int, int], Histogram]
    spike_hours: frozenset[int]
    has_slow_week: bool
    is_slow_now: bool  # the slow week is the latest one: a slowdown that has not ended
    step_hour: int | None  # hours since the start of the 4 weeks, None without a step
    step_factor: float


def _profile() -> npt.NDArray[np.float64]:
    """Relative traffic per hour of the week: busy 08-20 UTC, weekends at 40 %."""
    hours = np.arange(HOURS_PER_WEEK)
    hour_of_day = hours % 24
    day = hours // 24
    daily = 0.15 + 1.85 * np.exp(-(((hour_of_day - 14.0) / 5.0) ** 2))
    weekly = np.where(day >= 5, 0.4, 1.0)
    profile: npt.NDArray[np.float64] = daily * weekly
    return profile / float(profile.mean())


_PROFILE = _profile()


def _make_route(
    rng: np.random.Generator,
    *,
    mean_rate: float | None = None,
    spike_rate: float | None = None,
    effect: float = 1.0,
    only: str | None = None,
    skipped_week: int | None = None,
) -> _Route:
    """One route; with ``spike_rate`` the spike's hours see that many requests an hour.
    ``only`` ("bad hour", "slow week", "step change") makes that the route's one
    departure from normal instead of the random mix; ``skipped_week`` (0 = oldest) is
    a week without the spike."""
    sigma = rng.uniform(0.25, 0.6)
    median = math.exp(rng.uniform(math.log(20.0), math.log(500.0)))
    spike_hours: frozenset[int] = frozenset()
    if spike_rate is not None:
        first = int(rng.integers(HOURS_PER_WEEK))
        length = 1 if rng.random() < 0.7 else 2
        spike_hours = frozenset((first + offset) % HOURS_PER_WEEK for offset in range(length))
        scale = spike_rate / float(np.mean([_PROFILE[hour] for hour in spike_hours]))
    else:
        assert mean_rate is not None
        scale = mean_rate
    rates = np.tile(_PROFILE * scale, WEEKS)  # oldest week first
    load = np.tile(_PROFILE / _PROFILE.max(), WEEKS)
    medians = median * (1.0 + 0.2 * load)
    if only is None:
        # Single bad hours: about two a week.
        bad = rng.random(WEEKS * HOURS_PER_WEEK) < 2.0 / HOURS_PER_WEEK
        medians = np.where(bad, medians * rng.uniform(3.0, 10.0, bad.shape), medians)
    elif only == "bad hour":
        medians[int(rng.integers(WEEKS * HOURS_PER_WEEK))] *= rng.uniform(3.0, 10.0)
    has_slow_week = rng.random() < 0.25 if only is None else only == "slow week"
    is_slow_now = False
    if has_slow_week:
        week = int(rng.integers(WEEKS))
        is_slow_now = week == WEEKS - 1
        medians[week * HOURS_PER_WEEK : (week + 1) * HOURS_PER_WEEK] *= rng.uniform(1.5, 3.0)
    step_hour: int | None = None
    step_factor = 1.0
    if (rng.random() < 0.25) if only is None else only == "step change":
        # A deploy on a weekday 08:00-18:00, any week but the last day.
        week = int(rng.integers(WEEKS))
        step_hour = week * HOURS_PER_WEEK + int(rng.integers(5)) * 24 + int(rng.integers(8, 18))
        step_hour = min(step_hour, WEEKS * HOURS_PER_WEEK - 24)
        step_factor = float(rng.uniform(1.5, 4.0))
        medians[step_hour:] *= step_factor
    for hour in spike_hours:
        for week in range(WEEKS):
            if week != skipped_week:
                medians[week * HOURS_PER_WEEK + hour] *= effect
    counts = rng.poisson(rates)
    total = int(counts.sum())
    cell_of = np.repeat(np.arange(counts.size), counts)
    logs = np.log(medians)[cell_of] + sigma * rng.standard_normal(total)
    buckets = np.where(logs < _LOG_MIN, 0, np.searchsorted(_LOG_UPPER, logs, side="right")).astype(
        np.int64
    )
    keys, amounts = np.unique(cell_of * BUCKET_COUNT + buckets, return_counts=True)
    per_cell: dict[int, dict[int, int]] = {}
    for key, amount in zip(keys.tolist(), amounts.tolist(), strict=True):
        cell, bucket = divmod(key, BUCKET_COUNT)
        per_cell.setdefault(cell, {})[bucket] = amount
    cells = {
        # Week 0 is the latest, as the store numbers them.
        (WEEKS - 1 - cell // HOURS_PER_WEEK, cell % HOURS_PER_WEEK): Histogram(bucket_counts)
        for cell, bucket_counts in per_cell.items()
    }
    return _Route(cells, spike_hours, has_slow_week, is_slow_now, step_hour, step_factor)


def _hourly(route: _Route) -> list[Histogram]:
    """The route's hours in time order, oldest first (what ``step_change`` reads)."""
    return [
        route.cells.get((WEEKS - 1 - hour // HOURS_PER_WEEK, hour % HOURS_PER_WEEK), Histogram())
        for hour in range(WEEKS * HOURS_PER_WEEK)
    ]


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}% ({part}/{whole})" if whole else "n/a"


def _upper_95(part: int, whole: int) -> float:
    """One-sided 95 % upper bound of a rate seen as ``part`` of ``whole`` (Clopper-Pearson
    by bisection on the binomial tail)."""
    if whole == 0:
        return 1.0
    low, high = part / whole, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        tail = sum(
            math.comb(whole, k) * middle**k * (1 - middle) ** (whole - k) for k in range(part + 1)
        )
        low, high = (middle, high) if tail > 0.05 else (low, middle)
    return high


def run(options: Options) -> ScenarioResult:
    rng = np.random.default_rng(SEED)
    per_row = 4 if options.quick else 100
    free_routes = 40 if options.quick else 2000
    alone_routes = 5 if options.quick else 300
    started = time.perf_counter()
    found: dict[tuple[float, float], tuple[int, int]] = {}
    extra_spots = 0
    spike_routes = 0
    for level in LEVELS:
        for effect in EFFECTS:
            hits = 0
            for _ in range(per_row):
                route = _make_route(rng, spike_rate=level, effect=effect)
                spots = hot_spots(route.cells, operation=OPERATION, weeks=WEEKS)
                covered = {hour for spot in spots for hour in range(spot.first_hour, spot.end_hour)}
                hits += bool(covered & route.spike_hours)
                extra_spots += sum(
                    1
                    for spot in spots
                    if not set(range(spot.first_hour, spot.end_hour)) & route.spike_hours
                )
                spike_routes += 1
            found[(level, effect)] = (hits, per_row)
    bands = ((0.0, 1.0), (1.0, 4.0), (4.0, 32.0), (32.0, 501.0))
    alarms: dict[str, list[int]] = {"all": [0, 0]}
    for low, high in bands:
        alarms[f"{low:g}-{high:g} req/h"] = [0, 0]
    alarms["with a slow week"] = [0, 0]
    alarms["with a step change"] = [0, 0]
    steps_named = steps_total = steps_false = no_step_total = slow_now_named = slow_now = 0
    for _ in range(free_routes):
        mean_rate = math.exp(rng.uniform(math.log(0.1), math.log(500.0)))
        route = _make_route(rng, mean_rate=mean_rate)
        spots = hot_spots(route.cells, operation=OPERATION, weeks=WEEKS)
        kinds = ["all"]
        kinds.append(
            next(f"{low:g}-{high:g} req/h" for low, high in bands if low <= mean_rate < high)
        )
        if route.has_slow_week:
            kinds.append("with a slow week")
        if route.step_hour is not None:
            kinds.append("with a step change")
        for kind in kinds:
            alarms[kind][0] += bool(spots)
            alarms[kind][1] += 1
        change = step_change(_hourly(route), operation=OPERATION, start_ms=0.0)
        if route.step_hour is not None:
            steps_total += 1
            steps_named += change is not None and abs(change.hour - route.step_hour) <= 24
        elif route.is_slow_now:
            # Slow for the last days and not over yet: a step so far, whatever comes.
            slow_now += 1
            slow_now_named += change is not None
        else:
            no_step_total += 1
            steps_false += change is not None
    # Each kind of noise alone: none of them may ever be called a weekly pattern.
    alone: dict[str, list[int]] = {}
    for kind in ("bad hour", "slow week", "step change"):
        counts = alone.setdefault(kind, [0, 0])
        for _ in range(alone_routes):
            mean_rate = math.exp(rng.uniform(math.log(1.0), math.log(500.0)))
            route = _make_route(rng, mean_rate=mean_rate, only=kind)
            counts[0] += bool(hot_spots(route.cells, operation=OPERATION, weeks=WEEKS))
            counts[1] += 1
    # Most weeks, not all: the spike missing in one of the four.
    three_of_four: dict[float, list[int]] = {}
    for level in (4.0, 16.0, 64.0):
        counts = three_of_four.setdefault(level, [0, 0])
        for _ in range(per_row):
            route = _make_route(
                rng, spike_rate=level, effect=3.0, skipped_week=int(rng.integers(WEEKS))
            )
            spots = hot_spots(route.cells, operation=OPERATION, weeks=WEEKS)
            covered = {hour for spot in spots for hour in range(spot.first_hour, spot.end_hour)}
            counts[0] += bool(covered & route.spike_hours)
            counts[1] += 1
    elapsed = time.perf_counter() - started

    table = Table(
        TITLE,
        ["requests/h at the spike", *(f"{effect:g}x" for effect in EFFECTS)],
    )
    for level in LEVELS:
        table.rows.append(
            [f"{level:g}"]
            + [f"{100.0 * found[(level, e)][0] / found[(level, e)][1]:.0f}%" for e in EFFECTS]
        )
    table.notes.append(
        f"share of routes whose spike (same hour, 4 of 4 weeks) was found; {per_row} routes "
        "per cell, sigma 0.25-0.6, with bad hours, slow weeks and step changes mixed in"
    )
    for kind, (alarmed, total) in alarms.items():
        table.notes.append(
            f"false alarms, routes without a spike, {kind}: {_share(alarmed, total)}"
        )
    table.notes.append(
        "a 3x spike in 3 of 4 weeks found: "
        + ", ".join(
            f"at {level:g} req/h {_share(found_, total)}"
            for level, (found_, total) in three_of_four.items()
        )
    )
    for kind, (alarmed, total) in alone.items():
        table.notes.append(
            f"called a weekly pattern, routes whose only noise is one {kind} (1-500 req/h): "
            f"{_share(alarmed, total)}"
        )
    table.notes.append(
        f"spots reported away from the spike on routes with one: {extra_spots} in "
        f"{spike_routes} routes"
    )
    table.notes.append(
        f"step changes named within a day of the deploy: {_share(steps_named, steps_total)}; "
        f"named without a deploy: {_share(steps_false, no_step_total)}; routes whose "
        f"latest week is slow (not over yet) named: {_share(slow_now_named, slow_now)}"
    )
    table.notes.append(
        f"floor: an hour needs at least {fewest_requests()} requests over the weeks, "
        f"all of them slow; {elapsed:.0f} s for "
        f"{spike_routes + free_routes + 3 * alone_routes + 3 * per_row} routes"
    )

    at_4 = [
        found[(level, effect)]
        for level in LEVELS
        if level >= 4
        for effect in EFFECTS
        if effect >= 3
    ]
    hit, total = sum(h for h, _ in at_4), sum(t for _, t in at_4)
    worst = min(h / t for h, t in at_4)
    alarmed, checked = alarms["all"]
    upper = _upper_95(alarmed, checked)
    targets = [
        Target(
            "a >= 3x spike in 4 of 4 weeks found at >= 4 requests/h in >= 95 % of routes",
            f"{100.0 * hit / total:.1f}% overall, worst cell {100.0 * worst:.0f}%",
            None if options.quick else worst >= 0.95,
        ),
        Target(
            "false alarms on spike-free routes <= 1 %",
            f"{_share(alarmed, checked)}, 95 % upper bound {100.0 * upper:.2f}%",
            None if options.quick else upper <= 0.01,
        ),
    ]
    data = {
        "seed": SEED,
        "routes_per_cell": per_row,
        "spike_free_routes": free_routes,
        "detection": {
            f"{level:g}": {f"{e:g}": found[(level, e)][0] / found[(level, e)][1] for e in EFFECTS}
            for level in LEVELS
        },
        "false_alarms": {kind: {"alarmed": a, "routes": t} for kind, (a, t) in alarms.items()},
        "false_alarm_upper_95": upper,
        "three_of_four_weeks_3x": {
            f"{level:g}": found_ / total for level, (found_, total) in three_of_four.items()
        },
        "noise_alone": {kind: {"alarmed": a, "routes": t} for kind, (a, t) in alone.items()},
        "spots_away_from_spike": extra_spots,
        "steps": {
            "named": steps_named,
            "total": steps_total,
            "false": steps_false,
            "without": no_step_total,
        },
        "fewest_requests": fewest_requests(),
        "seconds": elapsed,
    }
    return ScenarioResult(NAME, table, targets, data)
