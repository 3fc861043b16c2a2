"""store.stats, store.patterns and store.service_map over aggregates the exporter wrote.

Everything runs on the session's real redis-server; the clock is injected (``now=``),
so no test waits. ``NOW`` is the next Monday 12:30 UTC (``week_clock``): the weekday
and hour are fixed, and the data stays within the aggregates' lifetime on any date.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator, Sequence

import fakeredis
import pytest
import redis.asyncio as aioredis

from asynctrace import keys
from asynctrace.errors import InvalidQueryError
from asynctrace.export import RedisExporter
from asynctrace.histogram import RELATIVE_ERROR, bucket_of
from asynctrace.model import Span
from asynctrace.store import OperationStats, TraceStore
from tests.week_clock import HOUR_MS, next_monday_1230_ms, utc_text

NOW = next_monday_1230_ms()
OPERATIONS = [("orders", "GET /orders/{id}"), ("orders", "POST /orders"), ("auth", "verify")]


def _span(
    number: int,
    *,
    service: str,
    operation: str,
    start: float,
    duration: float,
    status: str = "ok",
    kind: str = "server",
    parent: str | None = None,
    tags: dict[str, str] | None = None,
) -> Span:
    return Span.from_dict(
        {
            "traceId": f"{number + 1:032x}",
            "spanId": f"{number + 1:016x}",
            "parentSpanId": parent,
            "service": service,
            "operation": operation,
            "kind": kind,
            "startTime": start,
            "duration": duration,
            "status": status,
            "tags": tags or {},
        }
    )


def _generated(count: int, *, seed: int = 8, hours: float = 50.0) -> list[Span]:
    rng = random.Random(seed)
    spans = []
    for number in range(count):
        service, operation = rng.choice(OPERATIONS)
        spans.append(
            _span(
                number,
                service=service,
                operation=operation,
                start=NOW - rng.random() * hours * HOUR_MS,
                duration=rng.lognormvariate(4, 1.2),
                status="error" if rng.random() < 0.1 else "ok",
            )
        )
    return spans


async def _export(redis_url: str, spans: Sequence[Span]) -> None:
    exporter = RedisExporter(redis_url)
    try:
        for first in range(0, len(spans), 500):
            await exporter.export(spans[first : first + 500])
    finally:
        await exporter.shutdown()


def _exact(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _assert_matches(found: OperationStats, spans: list[Span]) -> None:
    durations = [span.duration for span in spans]
    assert found.count == len(spans)
    assert found.errors == sum(span.status == "error" for span in spans)
    for q, value in ((0.5, found.p50_ms), (0.95, found.p95_ms), (0.99, found.p99_ms)):
        exact = _exact(durations, q)
        assert value is not None
        assert abs(value - exact) / exact <= RELATIVE_ERROR + 1e-9, q


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[TraceStore]:
    async with TraceStore.from_url(redis_url) as store:
        yield store


async def test_stats_match_exact_counts_and_quantiles_of_generated_spans(
    redis_url: str, store: TraceStore
) -> None:
    spans = _generated(3000)
    await _export(redis_url, spans)

    rows = await store.stats(since=NOW - 24 * HOUR_MS, now=NOW)

    start = (NOW - 24 * HOUR_MS) // HOUR_MS * HOUR_MS  # whole hours
    previous_start = start - 25 * HOUR_MS
    assert {(row.service, row.operation) for row in rows} == set(OPERATIONS)
    for row in rows:
        mine = [s for s in spans if (s.service, s.operation) == (row.service, row.operation)]
        current = [s for s in mine if s.start_time >= start]
        before = [s for s in mine if previous_start <= s.start_time < start]
        _assert_matches(row.current, current)
        assert row.current.max_ms == max(s.duration for s in current)
        assert row.current.rate_per_s == pytest.approx(len(current) / ((NOW - start) / 1000))
        assert row.previous is not None
        _assert_matches(row.previous, before)
    counts = [row.current.count for row in rows]
    assert counts == sorted(counts, reverse=True)


async def test_stats_of_one_service_read_only_its_operations(
    redis_url: str, store: TraceStore
) -> None:
    await _export(redis_url, _generated(300))
    rows = await store.stats("auth", now=NOW)
    assert [(row.service, row.operation) for row in rows] == [("auth", "verify")]


async def test_aggregates_take_the_hour_of_the_start_time(
    redis_url: str, store: TraceStore
) -> None:
    long_ago = NOW - 20 * 24 * HOUR_MS
    await _export(redis_url, [_span(1, service="a", operation="op", start=long_ago, duration=5)])
    assert await store.stats(now=NOW) == []
    (row,) = await store.stats(since=long_ago - HOUR_MS, until=long_ago + HOUR_MS)
    assert row.current.count == 1


async def test_only_local_roots_and_server_spans_are_counted(
    redis_url: str, store: TraceStore
) -> None:
    root = _span(1, service="a", operation="job", start=NOW - 1000, duration=9, kind="internal")
    child = _span(
        2,
        service="a",
        operation="db",
        start=NOW - 900,
        duration=1,
        kind="client",
        parent=root.span_id,
    )
    await _export(redis_url, [root, child])
    assert [row.operation for row in await store.stats(now=NOW)] == ["job"]


async def test_aggregate_keys_follow_the_layout_and_expire_after_35_days(
    redis_url: str,
) -> None:
    start = NOW - 1000
    await _export(
        redis_url,
        [_span(1, service="orders", operation="GET /orders/{id}", start=start, duration=5)],
    )
    hour = keys.hour_of(start)
    assert hour == utc_text(NOW, "%Y-%m-%dT12")
    key = f'trace:agg:{hour}:op:["orders","GET /orders/\\u007bid\\u007d"]'
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await client.hgetall(key) == {"n": "1", f"b{bucket_of(5)}": "1"}
        assert await client.smembers(f"trace:agg:{hour}:ops") == {
            '["orders","GET /orders/\\u007bid\\u007d"]'
        }
        expire_at = await client.expiretime(key)
        hour_end = (start // HOUR_MS + 1) * HOUR_MS / 1000
        assert expire_at == hour_end + keys.AGGREGATE_TTL_S
        assert (
            await client.zscore(
                f"trace:agg:{hour}:max", '["orders","GET /orders/\\u007bid\\u007d"]'
            )
            == 5.0
        )
    finally:
        await client.aclose()


async def test_the_service_map_counts_calls_from_the_callers_named_in_tracestate(
    redis_url: str, store: TraceStore
) -> None:
    spans = []
    for number in range(40):
        server = _span(
            number,
            service="payments",
            operation="charge",
            start=NOW - 60_000,
            duration=100 + number,
            status="error" if number < 4 else "ok",
            parent="a" * 16,
        )
        server.tracestate = "asynctrace=checkout,rojo=1"
        spans.append(server)
    spans.append(
        _span(
            99,
            service="auth",
            operation="verify",
            start=NOW - 60_000,
            duration=3,
            parent="b" * 16,
            tags={"peer.service": "gateway"},
        )
    )
    await _export(redis_url, spans)

    edges = await store.service_map(now=NOW)

    assert [(edge.caller, edge.callee, edge.stats.count) for edge in edges] == [
        ("checkout", "payments", 40),
        ("gateway", "auth", 1),
    ]
    assert edges[0].stats.errors == 4
    assert edges[0].stats.error_rate == pytest.approx(0.1)
    p95 = edges[0].stats.p95_ms
    assert p95 is not None
    assert abs(p95 - 137) / 137 <= RELATIVE_ERROR


async def test_unsampled_requests_count_in_aggregates_but_store_no_trace(
    redis_url: str, store: TraceStore
) -> None:
    ok = _span(1, service="a", operation="op", start=NOW - 1000, duration=5)
    ok.is_sampled = False
    failed = _span(2, service="a", operation="op", start=NOW - 1000, duration=5, status="error")
    failed.is_sampled = False
    await _export(redis_url, [ok, failed])
    (row,) = await store.stats(now=NOW)
    assert (row.current.count, row.current.errors) == (2, 1)
    assert await store.get_trace(ok.trace_id) is None
    assert await store.get_trace(failed.trace_id) is not None


async def test_patterns_grid_counts_every_hour_of_the_week(
    redis_url: str, store: TraceStore
) -> None:
    # Monday 09:xx UTC of each of the last 4 weeks: slow; Tuesday 10:xx: fast.
    monday_9 = NOW - 3.25 * HOUR_MS
    tuesday_10 = NOW - 6 * 24 * HOUR_MS - 2.25 * HOUR_MS
    spans = []
    number = 0
    for week in range(4):
        for sample in range(25):
            for start, duration in ((monday_9, 5000.0 + sample), (tuesday_10, 400.0)):
                number += 1
                spans.append(
                    _span(
                        number,
                        service="orders",
                        operation="GET /orders/{id}",
                        start=start - week * 7 * 24 * HOUR_MS,
                        duration=duration,
                    )
                )
    await _export(redis_url, spans)

    pattern = await store.patterns("orders", "GET /orders/{id}", weeks=4, now=NOW)

    assert len(pattern.cells) == 168
    assert pattern.cells[9].count == 100
    assert pattern.cells[9].slow == 100
    assert pattern.cells[24 + 10].count == 100
    assert pattern.cells[24 + 10].slow == 0
    assert sum(cell.count for cell in pattern.cells) == 200
    assert pattern.end_ms == (NOW // HOUR_MS + 1) * HOUR_MS


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.stats(since=NOW, until=NOW - 1), "since must be before until"),
        (lambda s: s.stats(since=-1), "since must be"),
        (lambda s: s.patterns("a", "b", weeks=6), "weeks"),
        (lambda s: s.patterns("", "b"), "service and an operation"),
        (lambda s: s.step_changes(days=0), "days must be 1 to 35"),
        (lambda s: s.step_changes(days=36), "days must be 1 to 35"),
    ],
)
async def test_bad_aggregate_queries_are_refused_before_any_io(
    store: TraceStore, call: object, message: str
) -> None:
    with pytest.raises(InvalidQueryError, match=message):
        await call(store)  # type: ignore[operator]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.service_map(since=1e15, until=1e16),
        lambda s: s.service_map(now=1e17),
        lambda s: s.stats(since=1e15, until=1e16),
        lambda s: s.stats(until=253_402_300_800_000.0),  # 10000-01-01T00:00Z
        lambda s: s.patterns("orders", "GET /orders/{id}", now=1e17),
        lambda s: s.patterns("orders", "GET /orders/{id}", now=1.7976931348623157e308),
    ],
)
async def test_times_past_year_9999_are_an_invalid_query_not_a_crash(
    store: TraceStore, call: object
) -> None:
    with pytest.raises(InvalidQueryError, match="within the years 1970 to 9999"):
        await call(store)  # type: ignore[operator]


async def test_the_last_hour_of_year_9999_and_the_epoch_are_still_answered(
    store: TraceStore,
) -> None:
    last_ms = 253_402_300_800_000.0 - 1.0
    assert await store.service_map(since=last_ms - HOUR_MS, until=last_ms) == []
    assert await store.stats(since=0, until=HOUR_MS) == []
    pattern = await store.patterns("orders", "GET /orders/{id}", weeks=1, now=last_ms)
    assert pattern.end_ms == 253_402_300_800_000.0
    assert sum(cell.count for cell in pattern.cells) == 0


async def test_the_pipeline_transport_writes_the_same_aggregates() -> None:
    # fakeredis gets redis-py's Pipeline instead of packed RESP: same commands.
    client = fakeredis.FakeAsyncRedis()
    spans = _generated(300)
    try:
        await RedisExporter(client=client).export(spans)
        rows = await TraceStore(client).stats(since=NOW - 60 * HOUR_MS, now=NOW)
    finally:
        await client.aclose()
    for row in rows:
        mine = [s for s in spans if (s.service, s.operation) == (row.service, row.operation)]
        _assert_matches(row.current, mine)
        assert row.current.max_ms == max(s.duration for s in mine)


async def test_maxima_and_counts_add_up_across_batches(redis_url: str, store: TraceStore) -> None:
    spans = [
        _span(n, service="a", operation="op", start=NOW - 1000 - n, duration=float(n % 7) + 1)
        for n in range(50)
    ]
    for span in spans:
        await _export(redis_url, [span])
    (row,) = await store.stats(now=NOW)
    _assert_matches(row.current, spans)
    assert row.current.max_ms == 7.0


async def test_the_aggregate_lifetime_is_configurable(redis_url: str) -> None:
    ten_days = 10 * 24 * 3600
    exporter = RedisExporter(redis_url, aggregate_ttl_s=ten_days)
    start = NOW - 1000
    try:
        await exporter.export([_span(1, service="a", operation="op", start=start, duration=5)])
    finally:
        await exporter.shutdown()
    client = aioredis.Redis.from_url(redis_url)
    try:
        key = keys.aggregate_key(keys.hour_of(start), keys.pair_member("a", "op"))
        hour_end = (start // HOUR_MS + 1) * HOUR_MS / 1000
        assert await client.expiretime(key) == hour_end + ten_days
    finally:
        await client.aclose()


async def test_hours_older_than_the_lifetime_are_not_kept(
    redis_url: str, store: TraceStore
) -> None:
    # Kept for a lifetime after their hour: an import of older spans leaves nothing.
    # The lifetime runs on Redis's real clock, so "older" is counted from the present.
    long_ago = time.time() * 1000.0 - 40 * 24 * HOUR_MS
    await _export(redis_url, [_span(1, service="a", operation="op", start=long_ago, duration=5)])
    assert await store.stats(since=long_ago - HOUR_MS, until=long_ago + HOUR_MS) == []


async def test_search_until_keeps_one_hour_of_traces(redis_url: str, store: TraceStore) -> None:
    # Hot-hour links of the dashboard search one past hour: since <= start < until.
    hour = time.time() * 1000.0 // HOUR_MS * HOUR_MS - 3 * HOUR_MS
    spans = [
        _span(n, service="a", operation="op", start=hour + offset, duration=5)
        for n, offset in enumerate((-1.0, 0.0, HOUR_MS - 1, HOUR_MS))
    ]
    await _export(redis_url, spans)
    found = await store.search(service="a", since=hour, until=hour + HOUR_MS)
    assert sorted(row.trace_id for row in found) == [spans[1].trace_id, spans[2].trace_id]


def test_an_invalid_peer_service_tag_makes_no_edge() -> None:
    from asynctrace.export.aggregates import caller_of
    from asynctrace.model import Span

    server = Span(
        "4bf92f3577b34da6a3ce929d0e0e4736", "a" * 16, None, "orders", "GET /", kind="server"
    )
    server.tags["peer.service"] = "evil\n\u202e"
    assert caller_of(server) is None
    server.tags["peer.service"] = "api-gateway"
    assert caller_of(server) == "api-gateway"
