"""TraceStore against data laid out exactly as the exporter writes it.

Data is written with raw Redis commands built from ``encode_span`` and
``IndexEntry.encode`` (the exporter's pipeline, reproduced in ``_export``), so these
tests pin the data contract of ``keys.py`` rather than the exporter's code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from asynctrace import keys
from asynctrace.errors import AsynctraceError, InvalidQueryError, StoreUnavailableError
from asynctrace.model import IndexEntry, Span, encode_span, utc_day
from asynctrace.store import TraceStore, TraceSummary
from asynctrace.testing import RedisServer, free_port

T0 = 1_764_236_400_000.0  # 2025-11-27 09:40 UTC, epoch ms
SLOW_THRESHOLD_MS = 1000.0

TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"  # gateway -> orders -> payments, fails
TRACE_B = "0af7651916cd43dd8448eb211c80319c"  # newest, one fast service
TRACE_C = "c0ffee00c0ffee00c0ffee00c0ffee00"  # root not traced: starts in inventory
TRACE_D = "d00dfeedd00dfeedd00dfeedd00dfeed"  # another trace, mixed into lists


def _span(
    trace_id: str,
    span_id: str,
    parent: str | None,
    *,
    service: str,
    operation: str,
    start: float,
    duration: float,
    error: str = "",
    kind: str = "server",
) -> Span:
    """An ended span, as the tracer would hand it to the exporter."""
    logs = [{"timestamp": start, "message": error, "level": "error"}] if error else []
    return Span.from_dict(
        {
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "service": service,
            "operation": operation,
            "kind": kind,
            "startTime": start,
            "endTime": start + duration,
            "duration": duration,
            "status": "error" if error else "ok",
            "tags": {"error": "true"} if error else {},
            "logs": logs,
        }
    )


async def _export(
    client: aioredis.Redis,
    span: Span,
    *,
    is_local_root: bool | None = None,
    prefix: str = keys.DEFAULT_PREFIX,
) -> None:
    """Write one finished span the way the exporter does: one pipeline, same keys."""
    local_root = span.parent_span_id is None if is_local_root is None else is_local_root
    pipe = client.pipeline(transaction=False)
    trace_key = keys.trace_key(span.trace_id, prefix=prefix)
    pipe.rpush(trace_key, encode_span(span))
    pipe.expire(trace_key, keys.TRACE_TTL_S)
    if local_root and span.duration > SLOW_THRESHOLD_MS:
        slow = keys.slow_key(prefix=prefix)
        pipe.zadd(slow, {span.trace_id: span.duration}, gt=True)
        pipe.zremrangebyrank(slow, 0, -(keys.SLOW_KEEP + 1))
    if span.is_error:
        errors = keys.errors_key(utc_day(span.start_time), prefix=prefix)
        pipe.sadd(errors, span.trace_id)
        pipe.expire(errors, keys.ERRORS_TTL_S)
    if local_root or span.is_error:
        pipe.zadd(keys.index_key(prefix=prefix), {IndexEntry.of(span).encode(): span.start_time})
    await pipe.execute()


def _trace_a() -> list[tuple[Span, bool | None]]:
    """Three services; the card charge fails in payments and orders reports it."""
    return [
        (_span(TRACE_A, "a000000000000001", None, service="gateway",
               operation="GET /checkout", start=T0, duration=1500.0), None),
        (_span(TRACE_A, "a000000000000002", "a000000000000001", service="gateway",
               operation="POST orders", start=T0 + 5, duration=1300.0, kind="client"), None),
        (_span(TRACE_A, "a000000000000003", "a000000000000002", service="orders",
               operation="POST /orders", start=T0 + 10, duration=1200.0), True),
        (_span(TRACE_A, "a000000000000004", "a000000000000003", service="orders",
               operation="db.insert", start=T0 + 12, duration=30.0, kind="internal"), None),
        (_span(TRACE_A, "a000000000000005", "a000000000000003", service="orders",
               operation="charge card", start=T0 + 15, duration=1100.0, kind="internal",
               error="PaymentError: card declined"), None),
        (_span(TRACE_A, "a000000000000006", "a000000000000005", service="payments",
               operation="POST /charge", start=T0 + 20, duration=1000.0,
               error="CardDeclined: insufficient funds"), True),
    ]  # fmt: skip


async def _populate(client: aioredis.Redis) -> None:
    for span, is_local_root in _trace_a():
        await _export(client, span, is_local_root=is_local_root)
    await _export(
        client,
        _span(TRACE_B, "b000000000000001", None, service="search",
              operation="GET /search", start=T0 + 5000, duration=80.0),
    )  # fmt: skip
    # TRACE_C entered traced code from an untraced caller: no true root anywhere.
    await _export(
        client,
        _span(TRACE_C, "c000000000000001", "ffffffffffffffff", service="inventory",
              operation="reserve stock", start=T0 + 2000, duration=300.0),
        is_local_root=True,
    )  # fmt: skip


@pytest.fixture
def unused_port() -> int:
    """A local port nobody listens on (picked outside the event loop)."""
    return free_port()


@pytest.fixture
async def unreachable_store(unused_port: int) -> AsyncIterator[TraceStore]:
    """A store whose every Redis command would fail: proves validation comes first."""
    client = aioredis.Redis(host="127.0.0.1", port=unused_port, retry=Retry(NoBackoff(), 0))
    try:
        yield TraceStore(client)
    finally:
        await client.aclose()


# -- get_trace ----------------------------------------------------------------------------


async def test_get_trace_round_trips_what_the_exporter_wrote(redis: aioredis.Redis) -> None:
    await _populate(redis)

    trace = await TraceStore(redis).get_trace(TRACE_A)

    assert trace is not None
    assert trace.trace_id == TRACE_A
    assert [s.span_id for s in trace.spans] == [s.span_id for s, _ in _trace_a()]
    assert trace.root.span_id == "a000000000000001"
    assert trace.is_complete
    assert trace.services == ("gateway", "orders", "payments")
    assert trace.has_errors
    assert trace.total_duration == 1500.0
    assert trace.corrupt_entries == 0
    assert [c.span_id for c in trace.children_of(trace.root)] == ["a000000000000002"]


async def test_get_trace_skips_corrupt_entries_and_spans_of_other_traces(
    redis: aioredis.Redis,
) -> None:
    await _populate(redis)
    key = keys.trace_key(TRACE_A)
    await redis.rpush(key, "{not json", json.dumps({"traceId": "zz", "spanId": 1}))
    stray = _span(TRACE_D, "d000000000000001", None, service="x", operation="y",
                  start=T0, duration=1.0)  # fmt: skip
    await redis.rpush(key, encode_span(stray))

    trace = await TraceStore(redis).get_trace(TRACE_A)

    assert trace is not None
    assert trace.corrupt_entries == 3
    assert len(trace.spans) == len(_trace_a())
    assert all(s.trace_id == TRACE_A for s in trace.spans)


async def test_get_trace_keeps_spans_whose_parent_is_missing_as_orphans(
    redis: aioredis.Redis,
) -> None:
    spans = [span for span, _ in _trace_a() if span.span_id != "a000000000000002"]
    for span in spans:
        await _export(redis, span)

    trace = await TraceStore(redis).get_trace(TRACE_A)

    assert trace is not None
    assert trace.root.span_id == "a000000000000001"
    assert [s.span_id for s in trace.orphans] == ["a000000000000003"]
    assert not trace.is_complete
    assert len(trace.spans) == len(spans)


async def test_get_trace_reads_entries_written_by_the_seed_tracer(redis: aioredis.Redis) -> None:
    seed_root = {
        "traceId": TRACE_B, "spanId": "b000000000000001", "parentSpanId": "",
        "service": "search", "operation": "GET /search", "startTime": 1764236400123,
        "endTime": 1764236400623, "duration": 500, "status": "ok",
        "tags": {"http.status_code": 200}, "logs": [], "sampled": True, "host": {"pid": 7},
    }  # fmt: skip
    seed_child = {
        "traceId": TRACE_B, "spanId": "b000000000000002", "parentSpanId": "b000000000000001",
        "service": "search", "operation": "es.query", "startTime": 1764236400200,
        "endTime": 1764236400400, "status": "error",
        "logs": [{"timestamp": 1764236400390, "message": "timeout", "level": "error"}],
    }  # fmt: skip
    await redis.rpush(keys.trace_key(TRACE_B), json.dumps(seed_root), json.dumps(seed_child))

    trace = await TraceStore(redis).get_trace(TRACE_B)

    assert trace is not None
    assert trace.corrupt_entries == 0
    root, child = trace.spans
    assert root.parent_span_id is None
    assert root.kind == "internal"
    assert root.start_time == 1764236400123.0
    assert root.tags == {"http.status_code": "200"}
    assert child.duration == 200.0
    assert child.status == "error"
    assert trace.children_of(root) == (child,)


async def test_get_trace_accepts_an_upper_case_id(redis: aioredis.Redis) -> None:
    await _populate(redis)

    trace = await TraceStore(redis).get_trace(TRACE_A.upper())

    assert trace is not None
    assert trace.trace_id == TRACE_A


async def test_get_trace_returns_none_for_a_missing_trace(redis: aioredis.Redis) -> None:
    assert await TraceStore(redis).get_trace(TRACE_D) is None


async def test_get_trace_returns_none_when_no_entry_decodes(redis: aioredis.Redis) -> None:
    await redis.rpush(keys.trace_key(TRACE_D), "garbage", "[]")

    assert await TraceStore(redis).get_trace(TRACE_D) is None


@pytest.mark.parametrize(
    "trace_id",
    [
        "",
        "abc",
        "0" * 32,
        "g" * 32,
        TRACE_A + "0",
        TRACE_A[:-1],
        f" {TRACE_A[1:]}",
        "slow",
        "errors:2025-11-27",
        "*",
        "4bf92f3577b34da6a3ce929d0e0e473\n",
        "４bf92f3577b34da6a3ce929d0e0e4736",  # a full-width digit  # noqa: RUF001
    ],
)
async def test_get_trace_rejects_invalid_ids_before_touching_redis(
    unreachable_store: TraceStore, trace_id: str
) -> None:
    with pytest.raises(InvalidQueryError, match="32 hex digits") as caught:
        await unreachable_store.get_trace(trace_id)
    if trace_id:
        assert trace_id not in str(caught.value)  # user input is never echoed


async def test_get_trace_rejects_a_non_string_id(unreachable_store: TraceStore) -> None:
    bad: Any = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    with pytest.raises(InvalidQueryError):
        await unreachable_store.get_trace(bad)


async def test_get_trace_on_a_key_of_another_type_is_a_query_error(
    redis: aioredis.Redis,
) -> None:
    await redis.set(keys.trace_key(TRACE_D), "not a list")

    with pytest.raises(AsynctraceError, match="WRONGTYPE") as caught:
        await TraceStore(redis).get_trace(TRACE_D)
    assert not isinstance(caught.value, StoreUnavailableError)


# -- slow and error traces ------------------------------------------------------------------


async def test_slow_traces_are_slowest_first_with_the_outermost_duration(
    redis: aioredis.Redis,
) -> None:
    await _populate(redis)
    for index, duration in enumerate((1200.0, 4000.0, 2500.0)):
        trace_id = f"{index + 1:032x}"
        await _export(
            redis,
            _span(trace_id, "e000000000000001", None, service="s", operation="o",
                  start=T0, duration=duration),
        )  # fmt: skip

    store = TraceStore(redis)

    # TRACE_A's local roots were 1500, 1200 (orders) and 1000 ms: ZADD GT keeps 1500.
    assert await store.slow_traces() == [
        (f"{2:032x}", 4000.0),
        (f"{3:032x}", 2500.0),
        (TRACE_A, 1500.0),
        (f"{1:032x}", 1200.0),
    ]
    assert await store.slow_traces(limit=2) == [(f"{2:032x}", 4000.0), (f"{3:032x}", 2500.0)]


async def test_slow_traces_skip_members_that_are_not_trace_ids(redis: aioredis.Redis) -> None:
    await redis.zadd(keys.slow_key(), {"../../etc": 9000.0, TRACE_A.upper(): 1500.0})
    store = TraceStore(redis)

    assert await store.slow_traces() == [(TRACE_A, 1500.0)]
    assert store.skipped_index_entries == 1


@pytest.mark.parametrize("limit", [0, -1, 1001, True, 2.5, "10"])
async def test_slow_traces_reject_a_limit_out_of_range(
    unreachable_store: TraceStore, limit: Any
) -> None:
    with pytest.raises(InvalidQueryError, match="limit"):
        await unreachable_store.slow_traces(limit=limit)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.recent_traces(since=1e16),
        lambda s: s.search(since=1e15),
        lambda s: s.search(until=1e17),
    ],
)
async def test_trace_queries_reject_times_past_year_9999_before_any_io(
    unreachable_store: TraceStore, call: Any
) -> None:
    with pytest.raises(InvalidQueryError, match="within the years 1970 to 9999"):
        await call(unreachable_store)


async def test_error_traces_lists_the_day_sorted(redis: aioredis.Redis) -> None:
    await _populate(redis)
    await _export(
        redis,
        _span(TRACE_D, "d000000000000001", None, service="s", operation="o",
              start=T0 + 1, duration=5.0, error="boom"),
    )  # fmt: skip
    await _export(
        redis,
        _span(TRACE_B, "b000000000000009", None, service="s", operation="o",
              start=T0 + 86_400_000, duration=5.0, error="next day"),
    )  # fmt: skip
    store = TraceStore(redis)

    assert await store.error_traces(day="2025-11-27") == sorted([TRACE_A, TRACE_D])
    assert await store.error_traces(day="2025-11-28") == [TRACE_B]
    assert await store.error_traces(day="2025-11-26") == []


async def test_error_traces_default_to_today_utc(redis: aioredis.Redis) -> None:
    now_ms = time.time() * 1000.0
    for later_ms in (0.0, 60_000.0):  # the test may straddle midnight UTC
        await redis.sadd(keys.errors_key(utc_day(now_ms + later_ms)), TRACE_D)

    assert await TraceStore(redis).error_traces() == [TRACE_D]


async def test_error_traces_skip_members_that_are_not_trace_ids(redis: aioredis.Redis) -> None:
    await redis.sadd(keys.errors_key("2025-11-27"), TRACE_A, "nope", b"\xff\xfe")
    store = TraceStore(redis)

    assert await store.error_traces("2025-11-27") == [TRACE_A]
    assert store.skipped_index_entries == 2


@pytest.mark.parametrize(
    "day",
    ["", "2025-13-01", "2025-02-30", "25-11-27", "2025-11-27x", "2025/11/27",
     "2025-1-27", "*", "2025-11-27:*", "２０２５-11-27"],  # noqa: RUF001
)  # fmt: skip
async def test_error_traces_reject_a_malformed_day(unreachable_store: TraceStore, day: str) -> None:
    with pytest.raises(InvalidQueryError, match="YYYY-MM-DD"):
        await unreachable_store.error_traces(day=day)


# -- recent traces and search ----------------------------------------------------------------


def _row_a() -> TraceSummary:
    return TraceSummary(
        trace_id=TRACE_A,
        operation="GET /checkout",
        service="gateway",
        services=("gateway", "orders", "payments"),
        duration=1500.0,
        status="error",
        start_time=T0,
        # The latest-starting real message names where the trace failed first.
        error="CardDeclined: insufficient funds",
    )


def _row_b() -> TraceSummary:
    return TraceSummary(
        trace_id=TRACE_B,
        operation="GET /search",
        service="search",
        services=("search",),
        duration=80.0,
        status="ok",
        start_time=T0 + 5000,
        error="",
    )


def _row_c() -> TraceSummary:
    return TraceSummary(
        trace_id=TRACE_C,
        operation="reserve stock",
        service="inventory",
        services=("inventory",),
        duration=300.0,
        status="ok",
        start_time=T0 + 2000,
        error="",
    )


async def test_recent_traces_group_entries_of_one_trace_across_services(
    redis: aioredis.Redis,
) -> None:
    await _populate(redis)

    rows = await TraceStore(redis).recent_traces()

    # TRACE_A has four index entries (three local roots, one more error span): one row,
    # named after its true root; TRACE_C has no root entry: named after its earliest.
    assert rows == [_row_b(), _row_c(), _row_a()]


async def test_recent_traces_take_the_earliest_entry_when_the_root_entry_is_gone(
    redis: aioredis.Redis,
) -> None:
    for span, is_local_root in _trace_a()[1:]:
        await _export(redis, span, is_local_root=is_local_root)

    (row,) = await TraceStore(redis).recent_traces()

    assert (row.service, row.operation, row.duration) == ("orders", "POST /orders", 1200.0)
    assert row.services == ("orders", "payments")


async def test_recent_traces_honour_limit_and_since(redis: aioredis.Redis) -> None:
    await _populate(redis)
    store = TraceStore(redis)

    assert await store.recent_traces(limit=1) == [_row_b()]
    assert await store.recent_traces(since=T0 + 1000) == [_row_b(), _row_c()]
    assert await store.recent_traces(since=T0 + 10_000) == []


async def test_recent_traces_read_only_the_newest_scan_limit_entries(
    redis: aioredis.Redis,
) -> None:
    await _populate(redis)

    rows = await TraceStore(redis, scan_limit=2).recent_traces()

    assert [row.trace_id for row in rows] == [TRACE_B, TRACE_C]


async def test_recent_traces_skip_and_count_corrupt_index_entries(
    redis: aioredis.Redis,
) -> None:
    await _populate(redis)
    await redis.zadd(keys.index_key(), {"garbage": T0 + 1, "[1,2,3]": T0 + 2, "{}": T0 + 3})
    store = TraceStore(redis)

    assert await store.recent_traces() == [_row_b(), _row_c(), _row_a()]
    assert store.skipped_index_entries == 3


@pytest.mark.parametrize(
    "arguments",
    [{"limit": 0}, {"limit": 1001}, {"limit": None}, {"since": -1.0},
     {"since": float("nan")}, {"since": float("inf")}, {"since": "yesterday"}],
)  # fmt: skip
async def test_recent_traces_reject_invalid_arguments(
    unreachable_store: TraceStore, arguments: dict[str, Any]
) -> None:
    with pytest.raises(InvalidQueryError):
        await unreachable_store.recent_traces(**arguments)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [TRACE_B, TRACE_C, TRACE_A]),
        ({"service": "payments"}, [TRACE_A]),
        ({"service": "pay"}, []),
        ({"service": ""}, [TRACE_B, TRACE_C, TRACE_A]),
        ({"operation": "checkout"}, [TRACE_A]),
        ({"operation": "CHARGE"}, [TRACE_A]),
        ({"operation": "Reserve"}, [TRACE_C]),
        ({"status": "error"}, [TRACE_A]),
        ({"status": "ok"}, [TRACE_B, TRACE_C]),
        ({"min_duration_ms": 1000}, [TRACE_A]),
        ({"min_duration_ms": 300.0}, [TRACE_C, TRACE_A]),
        ({"text": "INSUFFICIENT"}, [TRACE_A]),
        ({"text": "search"}, [TRACE_B]),
        ({"text": TRACE_C.upper()}, [TRACE_C]),
        ({"text": TRACE_C[:8]}, []),
        ({"since": T0 + 1000}, [TRACE_B, TRACE_C]),
        ({"limit": 2}, [TRACE_B, TRACE_C]),
        ({"status": "ok", "min_duration_ms": 100}, [TRACE_C]),
        ({"service": "orders", "text": "declined", "status": "error"}, [TRACE_A]),
        ({"service": "search", "status": "error"}, []),
    ],
)
async def test_search_applies_every_filter(
    redis: aioredis.Redis, filters: dict[str, Any], expected: list[str]
) -> None:
    await _populate(redis)

    rows = await TraceStore(redis).search(**filters)

    assert [row.trace_id for row in rows] == expected


async def test_search_returns_the_same_rows_as_the_listing(redis: aioredis.Redis) -> None:
    await _populate(redis)

    assert await TraceStore(redis).search(service="gateway") == [_row_a()]


@pytest.mark.parametrize(
    "arguments",
    [{"status": "failed"}, {"status": "ERROR"}, {"min_duration_ms": -5},
     {"min_duration_ms": float("nan")}, {"min_duration_ms": "1s"}, {"limit": 0},
     {"limit": 5000}, {"since": -1}, {"service": 7}, {"operation": ["GET"]},
     {"text": "x" * 1001}],
)  # fmt: skip
async def test_search_rejects_invalid_arguments(
    unreachable_store: TraceStore, arguments: dict[str, Any]
) -> None:
    with pytest.raises(InvalidQueryError):
        await unreachable_store.search(**arguments)


# -- construction, prefix, read-only ------------------------------------------------------------


async def test_a_custom_prefix_reads_only_its_own_keys(redis: aioredis.Redis) -> None:
    await _export(
        redis,
        _span(TRACE_D, "d000000000000001", None, service="s", operation="o",
              start=T0, duration=2000.0, error="boom"),
        prefix="app1:",
    )  # fmt: skip
    mine = TraceStore(redis, prefix="app1:")

    assert await TraceStore(redis).get_trace(TRACE_D) is None
    assert (await mine.get_trace(TRACE_D)) is not None
    assert await mine.slow_traces() == [(TRACE_D, 2000.0)]
    assert await mine.error_traces("2025-11-27") == [TRACE_D]
    assert [row.trace_id for row in await mine.recent_traces()] == [TRACE_D]


@pytest.mark.parametrize("scan_limit", [0, keys.INDEX_MAX_ENTRIES + 1, True])
async def test_constructor_rejects_a_scan_limit_out_of_range(scan_limit: Any) -> None:
    client = fakeredis.FakeAsyncRedis()
    try:
        with pytest.raises(ValueError, match="scan_limit"):
            TraceStore(client, scan_limit=scan_limit)
    finally:
        await client.aclose()


async def test_a_client_answering_str_works_as_well_as_bytes(redis_url: str) -> None:
    async with aioredis.Redis.from_url(redis_url, decode_responses=True) as client:
        await _populate(client)
        store = TraceStore(client)

        trace = await store.get_trace(TRACE_A)
        assert trace is not None
        assert len(trace.spans) == len(_trace_a())
        assert await store.slow_traces() == [(TRACE_A, 1500.0)]
        assert await store.error_traces("2025-11-27") == [TRACE_A]
        assert await store.recent_traces() == [_row_b(), _row_c(), _row_a()]


async def test_queries_only_ever_read(redis_url: str) -> None:
    async with aioredis.Redis.from_url(redis_url) as admin:
        await _populate(admin)
        await admin.config_resetstat()
        async with TraceStore.from_url(redis_url) as store:
            await store.get_trace(TRACE_A)
            await store.slow_traces()
            await store.error_traces()
            await store.recent_traces()
            await store.search(text="declined")
        stats: dict[str, Any] = await admin.info("commandstats")

        used = sorted(name.removeprefix("cmdstat_") for name in stats)
        # redis-py has no typed COMMAND INFO (command_info() is not implemented).
        described: dict[str, Any] = await admin.execute_command(  # type: ignore[no-untyped-call]
            "COMMAND", "INFO", *used
        )

    writes = [name for name in used if "write" in described[name]["flags"]]
    assert writes == []
    assert {"lrange", "zrevrange", "smembers", "zrevrangebyscore"} <= set(used)


# -- URLs, outages, restarts --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://user:s3cret@localhost:6379/0",
        "redis://:s3cret@localhost:notaport/0",
        "redis://:s3cret@localhost:6379/0?socket_timeout=s3cret",
        "redis://localhost:6379/0?password=s3cret&socket_timeout=s3cret",
        "user:s3cret@localhost:6379",
        "redis://:s3cret@[::1/0",
        "",
    ],
)
def test_from_url_rejects_a_malformed_url_without_echoing_the_password(url: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        TraceStore.from_url(url)
    assert "s3cret" not in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_an_unreachable_redis_raises_store_unavailable_naming_host_and_port(
    unused_port: int,
) -> None:
    async with TraceStore.from_url(f"redis://:s3cret@127.0.0.1:{unused_port}/0") as store:
        with pytest.raises(StoreUnavailableError) as caught:
            await store.get_trace(TRACE_A)

    message = str(caught.value)
    assert f"127.0.0.1:{unused_port}" in message
    assert "s3cret" not in message
    assert "\n" not in message
    assert "ConnectionError" in message


@pytest.fixture(params=["from_url", "given client"])
async def outage_store(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[TraceStore]:
    """A store built by ``from_url``, then one over redis-py's default ``from_url`` client.

    The default client has no retries, so the second case tests the store's own.
    """
    if request.param == "from_url":
        async with TraceStore.from_url(redis_url) as store:
            yield store
    else:
        async with aioredis.Redis.from_url(redis_url) as client:
            yield TraceStore(client)


@pytest.fixture
async def writer(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """The test's own writer; it retries once, so its stale connection is not the point."""
    async with aioredis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 1)) as client:
        yield client


async def _assert_store_serves(store: TraceStore, writer: aioredis.Redis) -> None:
    # The server keeps nothing across a restart (no persistence): write again first.
    await _populate(writer)
    trace = await store.get_trace(TRACE_A)
    assert trace is not None
    assert trace.root.operation == "GET /checkout"
    assert await store.slow_traces() == [(TRACE_A, 1500.0)]


async def test_queries_fail_during_an_outage_and_work_once_redis_is_back(
    redis_server: RedisServer, outage_store: TraceStore, writer: aioredis.Redis
) -> None:
    await _populate(writer)
    assert await outage_store.get_trace(TRACE_A) is not None  # a pooled live connection

    await asyncio.to_thread(redis_server.stop)
    try:
        with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{redis_server.port}"):
            await outage_store.recent_traces()
    finally:
        await asyncio.to_thread(redis_server.start)

    await _assert_store_serves(outage_store, writer)


async def test_the_first_query_after_an_unnoticed_restart_works(
    redis_server: RedisServer, outage_store: TraceStore, writer: aioredis.Redis
) -> None:
    await _populate(writer)
    assert await outage_store.get_trace(TRACE_A) is not None  # a pooled live connection

    # No query during the outage: the pooled connection is stale when the next one runs.
    await asyncio.to_thread(redis_server.stop)
    await asyncio.to_thread(redis_server.start)

    await _assert_store_serves(outage_store, writer)


async def test_aclose_leaves_a_client_it_was_given_open(redis: aioredis.Redis) -> None:
    async with TraceStore(redis) as store:
        assert await store.slow_traces() == []

    assert await redis.ping()
