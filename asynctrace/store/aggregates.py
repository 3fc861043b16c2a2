"""Aggregate queries: per-operation stats, weekly patterns and the service map.

They enumerate each hour's (service, operation) pairs or edges from that hour's index
SET and read the hashes in pipelines: bounded by hours x pairs, never KEYS or SCAN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from asynctrace import keys
from asynctrace.analysis.changes import StepChange, step_change
from asynctrace.analysis.patterns import HOURS_PER_WEEK, HotSpot, PatternGuard, hot_spots
from asynctrace.errors import InvalidQueryError
from asynctrace.histogram import Histogram
from asynctrace.store._connection import _score_pairs, _StoreConnection, _text
from asynctrace.store._validate import (
    _valid_filter,
    _valid_number,
    _valid_time,
    _valid_weeks,
)

__all__ = [
    "DEFAULT_SLOW_THRESHOLD_MS",
    "EdgeStats",
    "OperationStats",
    "PatternCell",
    "StatsRow",
    "WeeklyPattern",
]

DEFAULT_SLOW_THRESHOLD_MS = 1000.0
"""A request slower than this counts as slow in ``patterns`` (as the exporter's slow list)."""


_HOUR_MS = 3_600_000.0


_DAY_MS = 24 * _HOUR_MS


_WEEK_MS = 7 * _DAY_MS


_MAX_AGGREGATE_READS = 200_000


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Requests of one service and operation (or one edge) over a period.

    ``seconds`` is the length of the period the counts cover; quantiles and
    ``max_ms`` are milliseconds, None without requests. Quantiles come from the
    merged duration histogram (within 4.8 %, see ``asynctrace.histogram``); ``max_ms``
    is exact (None for edges, which keep no maximum).
    """

    count: int
    errors: int
    seconds: float
    histogram: Histogram
    max_ms: float | None = None

    @property
    def error_rate(self) -> float:
        """Share of requests that failed, 0..1 (0 without requests)."""
        return self.errors / self.count if self.count else 0.0

    @property
    def rate_per_s(self) -> float:
        """Requests per second over the period."""
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50_ms(self) -> float | None:
        return self._quantile(0.50)

    @property
    def p95_ms(self) -> float | None:
        return self._quantile(0.95)

    @property
    def p99_ms(self) -> float | None:
        return self._quantile(0.99)

    def _quantile(self, q: float) -> float | None:
        value = self.histogram.quantile(q)
        if value is None or self.max_ms is None:
            return value
        # A bucket's representative value may exceed the largest sample in it.
        return min(value, self.max_ms)


@dataclass(frozen=True, slots=True)
class StatsRow:
    """One service and operation: this period, and the period of the same length
    before it (None when it had no requests) for the change."""

    service: str
    operation: str
    current: OperationStats
    previous: OperationStats | None


@dataclass(frozen=True, slots=True)
class EdgeStats:
    """Calls from ``caller`` to ``callee`` over a period, timed at the callee."""

    caller: str
    callee: str
    stats: OperationStats


@dataclass(frozen=True, slots=True)
class PatternCell:
    """One hour of the week, all weeks merged: requests, p95 (ms) and slow requests."""

    count: int
    p95_ms: float | None
    slow: int


@dataclass(frozen=True, slots=True)
class WeeklyPattern:
    """The hour-of-week grid of one service and operation, and its recurring hot spots.

    ``cells`` has 168 entries, hour of the week 0 (Monday 00:00 UTC) first;
    ``start_ms``..``end_ms`` (epoch ms) are the whole hours it covers, ``weeks`` long.
    ``slow`` counts requests of at least ``slow_threshold_ms`` (judged by duration
    bucket, so exact except within 4.8 % of the threshold).
    """

    service: str
    operation: str
    weeks: int
    start_ms: float
    end_ms: float
    slow_threshold_ms: float
    cells: tuple[PatternCell, ...]
    hot_spots: tuple[HotSpot, ...]


class _AggregateQueries(_StoreConnection):
    """The aggregate queries of ``TraceStore``."""

    async def stats(
        self,
        service: str | None = None,
        since: float | None = None,
        *,
        until: float | None = None,
        now: float | None = None,
    ) -> list[StatsRow]:
        """Requests, errors and latency per service and operation, busiest first.

        ``since``/``until`` are epoch ms (default: the 24 h up to ``now``, which
        defaults to the clock). Aggregates are per UTC hour, so the period starts at
        the start of ``since``'s hour. Each row also holds the period of the same
        number of hours just before, for the change. Reads at most 2 x hours x pairs
        keys, pipelined; raises ``InvalidQueryError`` for bad arguments.
        """
        service = _valid_filter(service, "service")
        start, end = _period(since, until, now, default_ms=_DAY_MS)
        hours = _hours(start, end)
        previous_start = start - len(hours) * _HOUR_MS
        previous_hours = _hours(previous_start, start)
        current = await self._operation_totals(hours, service)
        previous = await self._operation_totals(previous_hours, service) if current else {}
        seconds = (end - start) / 1000.0
        rows = [
            StatsRow(
                service=pair[0],
                operation=pair[1],
                current=total.stats(seconds),
                previous=previous[pair].stats(len(previous_hours) * 3600.0)
                if pair in previous
                else None,
            )
            for pair, total in current.items()
        ]
        rows.sort(key=lambda row: (-row.current.count, row.service, row.operation))
        return rows

    async def patterns(
        self,
        service: str,
        operation: str,
        weeks: int = 4,
        *,
        now: float | None = None,
        slow_threshold_ms: float = DEFAULT_SLOW_THRESHOLD_MS,
        guard: PatternGuard | None = None,
    ) -> WeeklyPattern:
        """The hour-of-week grid of the last ``weeks`` weeks (1..5) up to the end of
        ``now``'s hour, and the hot spots that recur (see ``asynctrace.analysis.patterns``).

        Reads one aggregate hash per hour (at most 840), pipelined.
        """
        checked_service = _valid_filter(service, "service")
        checked_operation = _valid_filter(operation, "operation")
        if checked_service is None or checked_operation is None:
            raise InvalidQueryError("patterns needs a service and an operation")
        weeks = _valid_weeks(weeks)
        checked_threshold = _valid_number(slow_threshold_ms, "slow_threshold_ms")
        threshold = DEFAULT_SLOW_THRESHOLD_MS if checked_threshold is None else checked_threshold
        now_ms = _now_ms(now)
        # Up to the end of the current hour: the grid shows this hour so far too.
        end = (now_ms // _HOUR_MS + 1) * _HOUR_MS
        start = end - weeks * _WEEK_MS
        hours = _hours(start, end)
        pair = keys.pair_member(checked_service, checked_operation)
        replies = await self._pipelined(
            [("HGETALL", keys.aggregate_key(hour, pair, prefix=self._prefix)) for hour in hours]
        )
        by_week: dict[tuple[int, int], Histogram] = {}
        merged: list[Histogram] = [Histogram() for _ in range(HOURS_PER_WEEK)]
        for hour, reply in zip(hours, replies, strict=True):
            total = _Total.of(reply)
            if total.count == 0:
                continue
            hour_ms = keys.hour_start_ms(hour)
            week = int((end - hour_ms - 1) // _WEEK_MS)
            hour_of_week = _hour_of_week(hour_ms)
            histogram = Histogram(total.buckets)
            by_week[(week, hour_of_week)] = histogram
            merged[hour_of_week] = merged[hour_of_week].merge(histogram)
        cells = tuple(
            PatternCell(
                count=histogram.total,
                p95_ms=histogram.quantile(0.95),
                slow=histogram.count_at_least(threshold),
            )
            for histogram in merged
        )
        spots = hot_spots(
            by_week, operation=checked_operation, weeks=weeks, guard=guard or PatternGuard()
        )
        return WeeklyPattern(
            service=checked_service,
            operation=checked_operation,
            weeks=weeks,
            start_ms=start,
            end_ms=end,
            slow_threshold_ms=threshold,
            cells=cells,
            hot_spots=tuple(spots),
        )

    async def step_changes(
        self,
        service: str | None = None,
        *,
        days: int = 7,
        now: float | None = None,
    ) -> list[StepChange]:
        """The routes whose p95 changed from one hour on and stayed, over the last
        ``days`` (1..35) days up to the end of ``now``'s hour, each with its sentence
        (see ``asynctrace.analysis.changes``); latest change first.

        Reads one aggregate hash per hour and route, pipelined and bounded as ``stats``.
        """
        service = _valid_filter(service, "service")
        if not 1 <= days <= keys.AGGREGATE_TTL_S // 86_400:
            raise InvalidQueryError("days must be 1 to 35")
        end = (_now_ms(now) // _HOUR_MS + 1) * _HOUR_MS
        start = end - days * _DAY_MS
        hours = _hours(start, end)
        indexes = await self._pipelined(
            [("SMEMBERS", keys.operation_index_key(hour, prefix=self._prefix)) for hour in hours]
        )
        wanted: list[tuple[int, str, tuple[str, str]]] = []
        for number, members in enumerate(indexes):
            for member in members or ():
                text = _text(member)
                pair = keys.parse_pair_member(text)
                if pair is not None and (service is None or pair[0] == service):
                    wanted.append((number, text, pair))
        _check_bounded(len(wanted))
        replies = await self._pipelined(
            [
                ("HGETALL", keys.aggregate_key(hours[number], text, prefix=self._prefix))
                for number, text, _ in wanted
            ]
        )
        by_pair: dict[tuple[str, str], list[Histogram]] = {}
        for (number, _, pair), reply in zip(wanted, replies, strict=True):
            series = by_pair.setdefault(pair, [Histogram() for _ in hours])
            series[number] = Histogram(_Total.of(reply).buckets)
        changes = [
            change
            for (name, operation), series in sorted(by_pair.items())
            if (change := step_change(series, operation=operation, start_ms=start, service=name))
            is not None
        ]
        changes.sort(key=lambda change: -change.changed_at_ms)
        return changes

    async def service_map(
        self,
        since: float | None = None,
        *,
        until: float | None = None,
        now: float | None = None,
    ) -> list[EdgeStats]:
        """Calls between services (caller → callee) over a period, busiest first.

        ``since``/``until`` as in ``stats``. An edge is counted from the callee's
        server span when the caller's service travelled with the request.
        """
        start, end = _period(since, until, now, default_ms=_DAY_MS)
        hours = _hours(start, end)
        await self._ensure_layout()
        # Each hour's edge set, or its shards on Redis Cluster.
        sources = [
            (hour, stored)
            for hour in hours
            for stored in self._stored_keys(keys.edge_index_key(hour, prefix=self._prefix))
        ]
        indexes = await self._pipelined([("SMEMBERS", stored) for _, stored in sources])
        wanted: list[tuple[str, str]] = []
        for (hour, _), members in zip(sources, indexes, strict=True):
            wanted.extend((hour, _text(member)) for member in members or ())
        _check_bounded(len(wanted))
        replies = await self._pipelined(
            [("HGETALL", keys.edge_key(hour, pair, prefix=self._prefix)) for hour, pair in wanted]
        )
        totals: dict[tuple[str, str], _Total] = {}
        for (_, member), reply in zip(wanted, replies, strict=True):
            pair = keys.parse_pair_member(member)
            if pair is None:
                self._skipped_index_entries += 1
                continue
            totals.setdefault(pair, _Total()).add(_Total.of(reply))
        seconds = (end - start) / 1000.0
        edges = [
            EdgeStats(caller=caller, callee=callee, stats=total.stats(seconds, with_max=False))
            for (caller, callee), total in totals.items()
        ]
        edges.sort(key=lambda edge: (-edge.stats.count, edge.caller, edge.callee))
        return edges

    async def _operation_totals(
        self, hours: Sequence[str], service: str | None
    ) -> dict[tuple[str, str], _Total]:
        """Every (service, operation) of ``hours`` with its summed counts and maximum."""
        prefix = self._prefix
        await self._ensure_layout()
        # Each hour's pair set and maxima, or their shards on Redis Cluster.
        sets: list[tuple[str, ...]] = []
        tops: list[tuple[str, ...]] = []
        set_hours: list[str] = []
        for hour in hours:
            for stored in self._stored_keys(keys.operation_index_key(hour, prefix=prefix)):
                sets.append(("SMEMBERS", stored))
                set_hours.append(hour)
            for stored in self._stored_keys(keys.max_key(hour, prefix=prefix)):
                tops.append(("ZRANGE", stored, "0", "-1", "WITHSCORES"))
        replies = await self._pipelined(sets + tops)
        wanted: list[tuple[str, str, tuple[str, str]]] = []
        maxima: dict[tuple[str, str], float] = {}
        for hour, members in zip(set_hours, replies[: len(sets)], strict=True):
            for member in members or ():
                text = _text(member)
                pair = keys.parse_pair_member(text)
                if pair is None:
                    self._skipped_index_entries += 1
                elif service is None or pair[0] == service:
                    wanted.append((hour, text, pair))
        for reply in replies[len(sets) :]:
            for member, score in _score_pairs(reply):
                pair = keys.parse_pair_member(member)
                if pair is not None:
                    maxima[pair] = max(score, maxima.get(pair, 0.0))
        _check_bounded(len(wanted))
        hashes = await self._pipelined(
            [("HGETALL", keys.aggregate_key(hour, text, prefix=prefix)) for hour, text, _ in wanted]
        )
        totals: dict[tuple[str, str], _Total] = {}
        for (_, _, pair), reply in zip(wanted, hashes, strict=True):
            totals.setdefault(pair, _Total()).add(_Total.of(reply))
        for pair, total in totals.items():
            total.max_ms = maxima.get(pair)
        return {pair: total for pair, total in totals.items() if total.count > 0}


class _Total:
    """Counts summed over hours while reading; becomes an ``OperationStats``."""

    __slots__ = ("buckets", "count", "errors", "max_ms")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.buckets: dict[int, int] = {}
        self.max_ms: float | None = None

    @classmethod
    def of(cls, reply: object) -> _Total:
        """The counts of one aggregate hash (HGETALL reply); corrupt fields are skipped."""
        total = cls()
        if not isinstance(reply, dict):
            return total
        for raw_field, raw_value in reply.items():
            field, value = _text(raw_field), _text(raw_value)
            if not value.isdigit():
                continue
            amount = int(value)
            if field == "n":
                total.count = amount
            elif field == "e":
                total.errors = amount
            elif field.startswith("b") and field[1:].isdigit():
                total.buckets[int(field[1:])] = amount
        return total

    def add(self, other: _Total) -> None:
        self.count += other.count
        self.errors += other.errors
        for index, amount in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + amount

    def stats(self, seconds: float, *, with_max: bool = True) -> OperationStats:
        return OperationStats(
            count=self.count,
            errors=self.errors,
            seconds=seconds,
            histogram=Histogram(dict(self.buckets)),
            max_ms=self.max_ms if with_max else None,
        )


def _now_ms(now: float | None) -> float:
    checked = _valid_time(now, "now")
    return time.time() * 1000.0 if checked is None else checked


def _period(
    since: float | None, until: float | None, now: float | None, *, default_ms: float
) -> tuple[float, float]:
    """``(start, end)`` epoch ms: ``start`` at its hour's start, at most 35 days back."""
    end = _valid_time(until, "until")
    if end is None:
        end = _now_ms(now)
    begin = _valid_time(since, "since")
    if begin is None:
        begin = end - default_ms
    if begin >= end:
        raise InvalidQueryError("since must be before until")
    oldest = end - keys.AGGREGATE_TTL_S * 1000.0 - _HOUR_MS
    return (max(begin, oldest) // _HOUR_MS) * _HOUR_MS, end


def _hours(start: float, end: float) -> list[str]:
    """The UTC hours (``keys.hour_of``) from ``start`` up to, not including, ``end``."""
    first = int(start // _HOUR_MS)
    last = math.ceil(end / _HOUR_MS)
    return [keys.hour_of(number * _HOUR_MS) for number in range(first, last)]


def _hour_of_week(hour_ms: float) -> int:
    # The Unix epoch began on a Thursday (hour of week 72).
    return int((hour_ms // _HOUR_MS + 72) % HOURS_PER_WEEK)


def _check_bounded(reads: int) -> None:
    if reads > _MAX_AGGREGATE_READS:
        raise InvalidQueryError(
            f"the period holds {reads} aggregate keys, more than {_MAX_AGGREGATE_READS}: "
            "ask for a shorter period or one service"
        )
