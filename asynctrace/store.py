"""Read-only queries over the traces the exporter keeps in Redis.

The store reads exactly the keys of ``keys.py`` and never writes. Every argument
that could end up in a key (a trace id, a day) is validated first, so input from a
person never reaches Redis unchecked. Listing and search read one bounded window of
the trace index (``ZREVRANGEBYSCORE ... LIMIT``), never KEYS or SCAN, and group its
entries per trace in memory. Corrupt stored data is skipped and counted, never fatal:
a half-written span must not hide the rest of a trace from the person debugging it.

The aggregate queries (``stats``, ``patterns``, ``service_map``) enumerate each
hour's (service, operation) pairs or edges from that hour's index SET and read the
hashes in pipelines: bounded by hours x pairs, never KEYS or SCAN.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asynctrace import keys
from asynctrace.analysis.patterns import HOURS_PER_WEEK, HotSpot, PatternGuard, hot_spots
from asynctrace.errors import AsynctraceError, InvalidQueryError, StoreUnavailableError
from asynctrace.histogram import Histogram
from asynctrace.ids import is_valid_trace_id
from asynctrace.model import IndexEntry, SpanDecodeError, Trace, spans_of, utc_day

__all__ = [
    "DEFAULT_SCAN_LIMIT",
    "DEFAULT_SLOW_THRESHOLD_MS",
    "EdgeStats",
    "OperationStats",
    "PatternCell",
    "StatsRow",
    "TraceStore",
    "TraceSummary",
    "WeeklyPattern",
]

_T = TypeVar("_T")

DEFAULT_SCAN_LIMIT = 10_000
"""How many index entries listing and search read at most (newest first)."""

_MAX_QUERY_LIMIT = 1000
DEFAULT_SLOW_THRESHOLD_MS = 1000.0
"""A request slower than this counts as slow in ``patterns`` (as the exporter's slow list)."""
_HOUR_MS = 3_600_000.0
_DAY_MS = 24 * _HOUR_MS
_WEEK_MS = 7 * _DAY_MS
# Time arguments are epoch ms from 1970 up to the end of year 9999: UTC hours and
# days are named with datetime, which has no year 10000.
_END_OF_9999_MS = 253_402_300_800_000.0
# Aggregate reads go to Redis in pipelines of this many commands, and one query reads
# at most _MAX_AGGREGATE_READS keys (hours x pairs), so a query stays bounded.
_PIPELINE_CHUNK = 5000
_MAX_AGGREGATE_READS = 200_000
_MAX_FILTER_LENGTH = 1000
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _client_options() -> dict[str, Any]:
    """Socket and retry settings for clients the store creates itself (``from_url``).

    A query is asked by a person waiting at a terminal or a page: fail within
    seconds rather than hang, and ride over a Redis restart with quick retries
    (redis-py's ``from_url`` gives connections no retry at all unless one is passed).
    Query-string options in the URL still win; redis-py gives them priority.
    """
    return {
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 30,
        "retry": Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries=2),
    }


# Errors meaning "Redis is not there right now", as opposed to "Redis said no".
# builtins.TimeoutError (= asyncio.TimeoutError) is an OSError.
_UNAVAILABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One row of a trace listing, built from the trace's index entries.

    ``operation``, ``service``, ``duration`` and ``start_time`` come from the trace's
    true root entry when the index holds it, else from its earliest entry (the trace
    started in a service that is not traced, or its root entry aged out).
    ``services`` are the services of its entries in start order; ``status`` is
    ``"error"`` when any entry is an error and ``error`` is the first error text.
    ``duration`` is milliseconds; ``start_time`` is Unix epoch milliseconds.
    """

    trace_id: str
    operation: str
    service: str
    services: tuple[str, ...]
    duration: float
    status: str
    start_time: float
    error: str


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


@dataclass(frozen=True, slots=True)
class _Row:
    """A summary together with the entries it was built from, which search filters on."""

    summary: TraceSummary
    entries: tuple[IndexEntry, ...]


class TraceStore:
    """Queries over stored traces (one trace, the slowest, the failed, recent, search)
    and over the per-hour aggregates (stats, weekly patterns, the service map).

    Give it any client with the ``redis.asyncio`` command API (``redis.asyncio.Redis``,
    ``fakeredis.FakeAsyncRedis``), or build one with ``from_url``. Every trace query is
    one read-only Redis command; aggregate queries are pipelines of read-only ones.
    Queries raise ``InvalidQueryError`` for bad arguments (before any I/O),
    ``StoreUnavailableError`` when Redis cannot be reached or does not answer, and
    ``AsynctraceError`` when Redis rejects a command. Corrupt index
    entries and invalid ids in the slow and error sets are skipped and counted in
    ``skipped_index_entries``; corrupt span entries are counted per trace in
    ``Trace.corrupt_entries``.

    ``aclose()`` closes the client only when the store created it (``from_url``); a
    client passed in belongs to the caller.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = keys.DEFAULT_PREFIX,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
    ) -> None:
        """Wrap ``client``; no I/O happens here.

        Args:
            prefix: the key prefix the exporter writes with (``trace:``).
            scan_limit: how many of the newest index entries listing and search
                read at most; grouping and filtering happen within that window.
                Raises ``ValueError`` outside 1..``keys.INDEX_MAX_ENTRIES``.
        """
        self._client = client
        self._prefix = prefix
        self._scan_limit = _valid_scan_limit(scan_limit)
        self._owns_client = False
        self._skipped_index_entries = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = keys.DEFAULT_PREFIX,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
    ) -> TraceStore:
        """A store over a new client for ``url`` (``redis://``, ``rediss://``, ``unix://``).

        Does not connect yet. The client fails fast (2 s to connect, 5 s to answer)
        and reconnects by itself after a Redis restart. Raises ``InvalidQueryError``
        for a malformed URL; the message never contains the password.
        """
        url = _valid_url(url)
        try:
            client = aioredis.Redis.from_url(url, **_client_options())
        except (ValueError, TypeError) as exc:
            reason = _one_line(_scrub(str(exc), *_passwords_of(url)))
            raise InvalidQueryError(f"invalid Redis URL {_redacted(url)}: {reason}") from None
        store = cls(client, prefix=prefix, scan_limit=scan_limit)
        store._owns_client = True
        return store

    @property
    def skipped_index_entries(self) -> int:
        """How many corrupt index, slow or error-set members queries have skipped so far."""
        return self._skipped_index_entries

    async def aclose(self) -> None:
        """Close the client if the store created it; a client passed in is left open."""
        if self._owns_client:
            self._owns_client = False
            await self._client.aclose()

    async def __aenter__(self) -> TraceStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- queries -----------------------------------------------------------------------

    async def get_trace(self, trace_id: str) -> Trace | None:
        """The stored trace ``trace_id`` (32 hex digits, any case), or None if absent.

        Corrupt entries, and entries that belong to another trace, are skipped and
        counted in ``Trace.corrupt_entries``. None when the trace expired, was never
        stored, or none of its entries decode.
        """
        trace_id = _valid_trace_id(trace_id)
        key = keys.trace_key(trace_id, prefix=self._prefix)
        raw = await self._read("LRANGE", lambda: self._client.lrange(key, 0, -1))
        if not raw:
            return None
        spans, corrupt = spans_of(raw)
        # An entry of another trace in this list is as wrong as undecodable JSON.
        own = [span for span in spans if span.trace_id == trace_id]
        corrupt += len(spans) - len(own)
        if not own:
            return None
        return Trace.from_spans(own, corrupt_entries=corrupt)

    async def slow_traces(self, limit: int = 20) -> list[tuple[str, float]]:
        """``(trace_id, duration_ms)`` of the slowest traces kept, slowest first.

        ``limit`` is 1..1000. The exporter keeps the top 100.
        """
        limit = _valid_limit(limit)
        slow = keys.slow_key(prefix=self._prefix)
        rows = await self._read(
            "ZREVRANGE", lambda: self._client.zrevrange(slow, 0, limit - 1, withscores=True)
        )
        result: list[tuple[str, float]] = []
        for row in rows:
            # (member, score) pairs; a list under RESP3, a tuple under RESP2.
            if not isinstance(row, tuple | list) or len(row) != 2:
                self._skipped_index_entries += 1
                continue
            trace_id = self._trace_id_member(row[0])
            if trace_id is not None:
                result.append((trace_id, float(row[1])))
        return result

    async def error_traces(self, day: str | None = None) -> list[str]:
        """Sorted ids of the traces with an error span on UTC ``day`` (``YYYY-MM-DD``).

        ``day`` defaults to today (UTC); the exporter keeps each day for 7 days.
        """
        day = _today() if day is None else _valid_day(day)
        errors = keys.errors_key(day, prefix=self._prefix)
        members = await self._read("SMEMBERS", lambda: self._client.smembers(errors))
        ids = (self._trace_id_member(member) for member in members)
        return sorted(trace_id for trace_id in ids if trace_id is not None)

    async def recent_traces(
        self, limit: int = 50, since: float | None = None
    ) -> list[TraceSummary]:
        """The newest traces, one row per trace, newest first.

        Served from the newest ``scan_limit`` index entries only. ``since`` (epoch
        ms) keeps the entries that started at or after it; a trace whose root
        started earlier is then summarised from its later entries.
        """
        limit = _valid_limit(limit)
        since = _valid_time(since, "since")
        rows = await self._rows(since)
        return [row.summary for row in rows[:limit]]

    async def search(
        self,
        *,
        service: str | None = None,
        operation: str | None = None,
        status: str | None = None,
        min_duration_ms: float | None = None,
        text: str | None = None,
        since: float | None = None,
        limit: int = 50,
        until: float | None = None,
    ) -> list[TraceSummary]:
        """Recent traces matching every filter given, newest first.

        Served from the same bounded window as ``recent_traces``. None or an empty
        string means "no filter".

        Args:
            service: a service the trace crossed (exact name).
            operation: case-insensitive substring of any of the trace's indexed
                operations.
            status: ``"ok"`` or ``"error"``.
            min_duration_ms: the row's duration is at least this.
            text: case-insensitive substring of any indexed operation or error
                text, or the exact trace id.
            since: epoch ms, as in ``recent_traces``.
            until: epoch ms; only entries that started before it (a past hour).
            limit: 1..1000 rows.
        """
        service = _valid_filter(service, "service")
        operation = _valid_filter(operation, "operation")
        status = _valid_filter(status, "status")
        if status is not None and status not in ("ok", "error"):
            raise InvalidQueryError("status must be 'ok' or 'error'")
        min_duration_ms = _valid_number(min_duration_ms, "min_duration_ms")
        text = _valid_filter(text, "text")
        since = _valid_time(since, "since")
        until = _valid_time(until, "until")
        limit = _valid_limit(limit)

        operation_folded = operation.casefold() if operation is not None else None
        text_folded = text.casefold() if text is not None else None
        matches: list[TraceSummary] = []
        for row in await self._rows(since, until):
            summary = row.summary
            if service is not None and service not in summary.services:
                continue
            if status is not None and summary.status != status:
                continue
            if min_duration_ms is not None and summary.duration < min_duration_ms:
                continue
            if operation_folded is not None and not any(
                operation_folded in entry.operation.casefold() for entry in row.entries
            ):
                continue
            if text_folded is not None and not _matches_text(row, text_folded):
                continue
            matches.append(summary)
            if len(matches) == limit:
                break
        return matches

    # -- aggregates --------------------------------------------------------------------

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
        indexes = await self._pipelined(
            [("SMEMBERS", keys.edge_index_key(hour, prefix=self._prefix)) for hour in hours]
        )
        wanted: list[tuple[str, str]] = []
        for hour, members in zip(hours, indexes, strict=True):
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
        commands: list[tuple[str, ...]] = []
        for hour in hours:
            commands.append(("SMEMBERS", keys.operation_index_key(hour, prefix=prefix)))
            commands.append(("ZRANGE", keys.max_key(hour, prefix=prefix), "0", "-1", "WITHSCORES"))
        replies = await self._pipelined(commands)
        wanted: list[tuple[str, str, tuple[str, str]]] = []
        maxima: dict[tuple[str, str], float] = {}
        for index, hour in enumerate(hours):
            for member in replies[2 * index] or ():
                text = _text(member)
                pair = keys.parse_pair_member(text)
                if pair is None:
                    self._skipped_index_entries += 1
                elif service is None or pair[0] == service:
                    wanted.append((hour, text, pair))
            for member, score in _score_pairs(replies[2 * index + 1]):
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

    async def _pipelined(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        """Replies to read-only ``commands``, in order, in pipelines of bounded size."""
        replies: list[Any] = []
        for first in range(0, len(commands), _PIPELINE_CHUNK):
            chunk = commands[first : first + _PIPELINE_CHUNK]
            replies.extend(await self._read(chunk[0][0], functools.partial(self._run, chunk)))
        return replies

    async def _run(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        # A new pipeline per attempt: _read may retry, and an executed pipeline is empty.
        pipe = self._client.pipeline(transaction=False)
        try:
            for name, *arguments in commands:
                pipe.execute_command(name, *arguments)
            return list(await pipe.execute())
        finally:
            await pipe.reset()  # type: ignore[no-untyped-call]  # unannotated in redis-py

    # -- internals ---------------------------------------------------------------------

    async def _rows(self, since: float | None, until: float | None = None) -> list[_Row]:
        """Group the newest ``scan_limit`` index entries (at or after ``since``, before
        ``until``) per trace."""
        index = keys.index_key(prefix=self._prefix)
        members = await self._read(
            "ZREVRANGEBYSCORE",
            lambda: self._client.zrevrangebyscore(
                index,
                "+inf" if until is None else f"({until!r}",
                "-inf" if since is None else since,
                start=0,
                num=self._scan_limit,
            ),
        )
        entries: list[IndexEntry] = []
        for member in members:
            try:
                if not isinstance(member, str | bytes):
                    raise SpanDecodeError("not a trace index entry")
                entries.append(IndexEntry.decode(member))
            except SpanDecodeError:
                self._skipped_index_entries += 1
        return _group(entries)

    def _trace_id_member(self, member: object) -> str | None:
        """A slow or error set member as a trace id, or None (counted) when it is not one."""
        if isinstance(member, bytes):
            try:
                member = member.decode("ascii")
            except UnicodeDecodeError:
                member = None
        if isinstance(member, str):
            member = member.lower()
            if is_valid_trace_id(member):
                return member
        self._skipped_index_entries += 1
        return None

    async def _read(self, command: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run one read command, translating redis-py failures into asynctrace's errors.

        A pooled connection that Redis dropped (it restarted) fails its next command
        with a plain ConnectionError, and a client without retries (redis-py's
        ``from_url`` default) hands that failure to us. The command is a read, so one
        immediate second attempt on a fresh connection is safe, and it makes "the
        first query after a restart" work with any client.
        """
        try:
            return await call()
        except RedisConnectionError as exc:
            if type(exc) is not RedisConnectionError:  # auth, loading, pool full: final
                raise self._error(command, exc) from exc
        except (RedisError, OSError) as exc:
            raise self._error(command, exc) from exc
        try:
            return await call()
        except (RedisError, OSError) as exc:
            raise self._error(command, exc) from exc

    def _error(self, command: str, exc: BaseException) -> AsynctraceError:
        """The message names host:port and the cause, never the password, on one line."""
        where = self._where()
        redis_at = f"Redis at {where}" if where else "Redis"
        if isinstance(exc, _UNAVAILABLE):
            return StoreUnavailableError(f"{redis_at} is unavailable: {self._cause(exc)}")
        return AsynctraceError(f"{redis_at} rejected {command}: {self._cause(exc)}")

    def _connection_kwargs(self) -> dict[str, Any]:
        pool = getattr(self._client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", None)
        return kwargs if isinstance(kwargs, dict) else {}

    def _where(self) -> str:
        """``host:port`` (or the unix socket) of the client, "" when it does not say."""
        kwargs = self._connection_kwargs()
        if kwargs.get("path"):
            return f"unix:{kwargs['path']}"
        if "host" in kwargs:
            return f"{kwargs['host']}:{kwargs.get('port', 6379)}"
        return ""

    def _cause(self, exc: BaseException) -> str:
        password = self._connection_kwargs().get("password")
        return _one_line(f"{type(exc).__name__}: {_scrub(str(exc) or 'no details', password)}")


def _group(entries: Iterable[IndexEntry]) -> list[_Row]:
    """One row per trace, newest first; entries are deduplicated by span id."""
    by_trace: dict[str, dict[str, IndexEntry]] = {}
    for entry in entries:
        by_trace.setdefault(entry.trace_id, {}).setdefault(entry.span_id, entry)
    rows: list[_Row] = []
    for trace_id, spans in by_trace.items():
        ordered = tuple(sorted(spans.values(), key=lambda e: (e.start_time, e.span_id)))
        head = next((entry for entry in ordered if entry.is_root), ordered[0])
        services: dict[str, None] = {}
        for entry in ordered:
            services.setdefault(entry.service, None)
        failed = [entry for entry in ordered if entry.status == "error"]
        error = _telling_error(failed)
        summary = TraceSummary(
            trace_id=trace_id,
            operation=head.operation,
            service=head.service,
            services=tuple(services),
            duration=head.duration,
            status="error" if failed else "ok",
            start_time=head.start_time,
            error=error,
        )
        rows.append(_Row(summary, ordered))
    rows.sort(key=lambda row: (row.summary.start_time, row.summary.trace_id), reverse=True)
    return rows


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


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _score_pairs(reply: object) -> list[tuple[str, float]]:
    """``(member, score)`` of a ZRANGE WITHSCORES reply (RESP2 or RESP3, bytes or str)."""
    pairs: list[tuple[str, float]] = []
    if not isinstance(reply, list):
        return pairs
    for row in reply:
        if isinstance(row, tuple | list) and len(row) == 2:
            try:
                pairs.append((_text(row[0]), float(row[1])))
            except (TypeError, ValueError):
                continue
    return pairs


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


def _telling_error(failed: Sequence[IndexEntry]) -> str:
    """The error text that says most about where a trace failed.

    Callers of a failed service often carry only the placeholder ``"error"`` (a 5xx
    without a log line); the span that failed first started last among them, so
    prefer the latest-starting entry with a real message.
    """
    messages = [entry.error for entry in failed if entry.error and entry.error != "error"]
    if messages:
        return messages[-1]
    return next((entry.error for entry in failed if entry.error), "")


def _matches_text(row: _Row, folded: str) -> bool:
    if folded == row.summary.trace_id:
        return True
    return any(
        folded in entry.operation.casefold() or folded in entry.error.casefold()
        for entry in row.entries
    )


# -- validation: everything from a person is checked before it reaches Redis ------------


def _valid_trace_id(value: object) -> str:
    # The message never echoes the value: it may be a hostile string from a URL.
    if isinstance(value, str):
        lowered = value.lower()
        if is_valid_trace_id(lowered):
            return lowered
    raise InvalidQueryError("a trace id is 32 hex digits, not all zero")


def _valid_scan_limit(value: object) -> int:
    # A constructor argument, so ValueError (STYLE: fail fast at setup).
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= keys.INDEX_MAX_ENTRIES
    ):
        raise ValueError(f"scan_limit must be an integer from 1 to {keys.INDEX_MAX_ENTRIES}")
    return value


def _valid_url(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidQueryError("the Redis URL must be a non-empty string")
    return value


def _valid_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_QUERY_LIMIT:
        raise InvalidQueryError(f"limit must be an integer from 1 to {_MAX_QUERY_LIMIT}")
    return value


def _valid_number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidQueryError(f"{name} must be a finite number, at least 0")
    return float(value)


def _valid_time(value: object, name: str) -> float | None:
    checked = _valid_number(value, name)
    if checked is not None and checked >= _END_OF_9999_MS:
        raise InvalidQueryError(f"{name} must be epoch milliseconds within the years 1970 to 9999")
    return checked


def _valid_weeks(value: object) -> int:
    # Aggregates are kept 35 days: five whole weeks.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise InvalidQueryError("weeks must be an integer from 1 to 5")
    return value


def _valid_filter(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidQueryError(f"{name} must be a string")
    if len(value) > _MAX_FILTER_LENGTH:
        raise InvalidQueryError(f"{name} must be at most {_MAX_FILTER_LENGTH} characters")
    return value


def _valid_day(value: object) -> str:
    if isinstance(value, str) and _DAY.fullmatch(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    raise InvalidQueryError("day must be a calendar date written YYYY-MM-DD")


def _today() -> str:
    return utc_day(time.time() * 1000.0)


# -- messages: say where, never the password --------------------------------------------


def _passwords_of(url: str) -> list[str]:
    """Every password ``url`` may carry: in its user info or a ``password=`` query option."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = parse_qs(parts.query).get("password", [])
    if parts.password:
        found.extend((parts.password, unquote(parts.password)))
    return found


def _redacted(url: str) -> str:
    """``scheme://host:port`` of ``url`` without credentials, path or query."""
    if "://" not in url:
        return "(no scheme://)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable)"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ":(invalid port)"
    return f"{parts.scheme or '(no scheme)'}://{parts.hostname or ''}{port}"


def _scrub(text: str, *passwords: object) -> str:
    for password in passwords:
        if isinstance(password, str) and password:
            text = text.replace(password, "***")
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())
