"""RedisExporter against the session's real redis-server: the DESIGN.md key layout."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

import asynctrace
from asynctrace import keys
from asynctrace.export import ExportQueue, RedisCommandError, RedisExporter
from asynctrace.model import IndexEntry, Span, encode_span, spans_of, utc_day
from asynctrace.testing import RedisServer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def finished(
    span_id: str,
    *,
    parent: str | None = None,
    duration: float = 5.0,
    status: str = "ok",
    trace_id: str = TRACE,
    start: float = 1764236400000.0,
) -> Span:
    return Span.from_dict(
        {
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "service": "orders",
            "operation": "GET /orders/{id}",
            "kind": "server",
            "startTime": start,
            "duration": duration,
            "status": status,
        }
    )


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    yield client
    await client.aclose()


async def test_batch_writes_trace_list_with_ttl(client: aioredis.Redis, redis_url: str) -> None:
    exporter = RedisExporter(redis_url)
    spans = [finished("a000000000000001"), finished("a000000000000002", parent="a000000000000001")]
    await exporter.export(spans)
    await exporter.shutdown()
    key = f"trace:{TRACE}"
    assert await client.lrange(key, 0, -1) == [encode_span(s).encode() for s in spans]
    assert 86390 < await client.ttl(key) <= 86400


async def test_one_span_and_longer_traces_of_a_batch_keep_their_spans_in_order(
    client: aioredis.Redis, redis_url: str
) -> None:
    single = [finished(f"c{n:015x}", trace_id=f"{n + 1:032x}") for n in range(40)]
    longer = [finished(f"d{n:015x}", parent="d" * 16) for n in range(40)]
    batch = [span for pair in zip(single, longer, strict=True) for span in pair]
    exporter = RedisExporter(redis_url)
    await exporter.export(batch)
    await exporter.shutdown()
    assert await client.lrange(f"trace:{TRACE}", 0, -1) == [encode_span(s).encode() for s in longer]
    for span in single:
        key = f"trace:{span.trace_id}"
        assert await client.lrange(key, 0, -1) == [encode_span(span).encode()]
        assert 86390 < await client.ttl(key) <= 86400


async def test_a_batch_across_hours_counts_each_span_in_its_own_hour(
    client: aioredis.Redis, redis_url: str
) -> None:
    hour_ms = 3_600_000.0
    # The hour before this one: an hour's aggregates expire 35 days after it ends.
    first_hour = (time.time() * 1000.0 // hour_ms - 1.0) * hour_ms
    starts = [first_hour + hour_ms - 1.0, first_hour + hour_ms, first_hour, first_hour + hour_ms]
    exporter = RedisExporter(redis_url)
    await exporter.export(
        [finished(f"e{n:015x}", trace_id=f"{n + 1:032x}", start=ms) for n, ms in enumerate(starts)]
    )
    await exporter.shutdown()
    pair = keys.pair_member("orders", "GET /orders/{id}")
    for hour_start in (first_hour, first_hour + hour_ms):
        key = keys.aggregate_key(keys.hour_of(hour_start), pair)
        assert await client.hget(key, "n") == b"2"


async def test_slow_set_keeps_local_root_durations_over_threshold_and_only_top_100(
    client: aioredis.Redis, redis_url: str
) -> None:
    exporter = RedisExporter(redis_url, slow_threshold_ms=1000)
    roots = [
        finished("b000000000000001", duration=1000 + n, trace_id=f"{n + 1:032x}")
        for n in range(150)
    ]
    fast = finished("c000000000000001", duration=999, trace_id="f" * 32)
    child = finished("c000000000000002", parent="c000000000000001", duration=5000)
    await exporter.export([*roots, fast, child])
    await exporter.shutdown()
    slow = await client.zrevrange("trace:slow", 0, -1, withscores=True)
    assert len(slow) == 100
    assert slow[0] == (f"{150:032x}".encode(), 1149.0)
    assert slow[-1] == (f"{51:032x}".encode(), 1050.0)


async def test_slow_set_keeps_a_traces_largest_local_root_duration(
    client: aioredis.Redis, redis_url: str
) -> None:
    exporter = RedisExporter(redis_url)
    await exporter.export([finished("d000000000000001", duration=3000)])
    # A downstream service's entry span of the same trace is shorter: GT keeps 3000.
    downstream = finished("d000000000000002", parent="abcdefabcdefabcd", duration=2000)
    downstream.is_local_root = True
    await exporter.export([downstream])
    await exporter.shutdown()
    assert await client.zscore("trace:slow", TRACE) == 3000.0


async def test_error_spans_land_in_their_utc_day_set_for_seven_days(
    client: aioredis.Redis, redis_url: str
) -> None:
    exporter = RedisExporter(redis_url)
    await exporter.export([finished("e000000000000001", status="error")])
    await exporter.shutdown()
    key = f"trace:errors:{utc_day(1764236400000.0)}"
    assert await client.smembers(key) == {TRACE.encode()}
    assert 7 * 86400 - 10 < await client.ttl(key) <= 7 * 86400


async def test_index_holds_local_roots_and_error_spans(
    client: aioredis.Redis, redis_url: str
) -> None:
    import time

    now = time.time() * 1000
    exporter = RedisExporter(redis_url)
    root = finished("f000000000000001", start=now)
    inner_ok = finished("f000000000000002", parent="f000000000000001", start=now)
    inner_error = finished("f000000000000003", parent="f000000000000001", status="error", start=now)
    await exporter.export([root, inner_ok, inner_error])
    await exporter.shutdown()
    entries = [IndexEntry.decode(raw) for raw in await client.zrange("trace:index", 0, -1)]
    assert {entry.span_id for entry in entries} == {"f000000000000001", "f000000000000003"}


async def test_a_batch_is_one_round_trip(
    client: aioredis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A round trip is a wait for Redis: a reply read after a write. The exporter packs
    # its own commands (no Pipeline.execute), so the count is taken on the connection.
    last: dict[int, str] = {}
    round_trips = 0
    original_send = Connection.send_packed_command
    original_read = Connection.read_response

    async def send(self: Connection, *args: Any, **kwargs: Any) -> None:
        last[id(self)] = "write"
        await original_send(self, *args, **kwargs)

    async def read(self: Connection, *args: Any, **kwargs: Any) -> Any:
        nonlocal round_trips
        if last.get(id(self)) == "write":
            round_trips += 1
        last[id(self)] = "read"
        return await original_read(self, *args, **kwargs)

    exporter = RedisExporter(redis_url)
    spans = [
        finished(f"{n + 1:016x}", trace_id=f"{n % 7 + 1:032x}", status="error" if n % 5 else "ok")
        for n in range(300)
    ]
    await exporter.export(spans[:1])  # connect (its handshake is not the batch's)
    await client.flushdb()
    monkeypatch.setattr(Connection, "send_packed_command", send)
    monkeypatch.setattr(Connection, "read_response", read)
    await exporter.export(spans)
    monkeypatch.undo()
    await exporter.shutdown()
    assert round_trips == 1
    assert await client.llen(f"trace:{1:032x}") == 43


async def test_prefix_is_configurable(client: aioredis.Redis, redis_url: str) -> None:
    exporter = RedisExporter(redis_url, prefix="staging:trace:")
    await exporter.export([finished("a000000000000001", status="error", duration=2000)])
    await exporter.shutdown()
    assert await client.exists(f"staging:trace:{TRACE}", "staging:trace:slow") == 2
    assert await client.exists(f"trace:{TRACE}") == 0


async def test_refused_commands_raise_command_error(client: aioredis.Redis, redis_url: str) -> None:
    await client.set(f"trace:{TRACE}", "not a list")
    exporter = RedisExporter(redis_url)
    with pytest.raises(RedisCommandError, match="WRONGTYPE"):
        await exporter.export([finished("a000000000000001")])
    await exporter.shutdown()


async def test_unreachable_redis_raises_builtin_connection_error() -> None:
    from asynctrace.testing import free_port

    exporter = RedisExporter(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ConnectionError):
        await exporter.export([finished("a000000000000001")])
    await exporter.shutdown()


@asynccontextmanager
async def silent_redis() -> AsyncIterator[str]:
    """The URL of a TCP server that accepts connections and never answers: a hung Redis."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # kept open and never written to

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_redis_that_never_answers_fails_the_batch_within_its_timeout() -> None:
    async with silent_redis() as url:
        exporter = RedisExporter(url, timeout_s=0.2)
        try:
            for _ in range(2):  # the second batch is not stuck behind the first
                started = time.perf_counter()
                async with asyncio.timeout(5):  # a guard: export itself must give up
                    with pytest.raises(ConnectionError) as caught:
                        await exporter.export([finished("a000000000000001")])
                assert time.perf_counter() - started < 2
                assert str(caught.value) == (
                    "Redis unreachable: TimeoutError (no reply within 0.2 s)"
                )
                assert isinstance(caught.value.__cause__, TimeoutError)
        finally:
            await exporter.shutdown()


async def test_a_hung_redis_counts_failed_batches_with_a_named_cause() -> None:
    failed = asyncio.Event()

    async def backoff(delay: float) -> None:
        failed.set()  # the queue backs off only after a batch failed
        await asyncio.sleep(0)

    async with silent_redis() as url:
        exporter = RedisExporter(url, timeout_s=0.2)
        queue = ExportQueue(exporter, batch_size=1, max_delay_s=0, sleep=backoff)
        queue.start()
        queue.append(finished("a000000000000001"))
        try:
            async with asyncio.timeout(5):
                await failed.wait()
            stats = queue.stats()
            assert stats.failed_batches >= 1
            assert stats.last_error == (
                "ConnectionError: Redis unreachable: TimeoutError (no reply within 0.2 s)"
            )
        finally:
            await queue.shutdown(timeout_s=1)


def test_the_batch_timeout_must_be_a_positive_finite_number() -> None:
    for bad in (0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="timeout_s"):
            RedisExporter("redis://localhost:1/0", timeout_s=bad)


def test_invalid_url_fails_fast_without_echoing_the_password() -> None:
    with pytest.raises(ValueError, match="invalid Redis URL") as caught:
        RedisExporter("mysql://user:hunter2@host/0")
    assert "hunter2" not in str(caught.value)


class SignallingRedisExporter(RedisExporter):
    """Sets ``wrote`` after each successful batch, so tests wait on events, not time."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(redis_url)
        self.wrote = asyncio.Event()

    async def export(self, spans: Sequence[Span]) -> None:
        await super().export(spans)
        self.wrote.set()


async def test_app_survives_redis_down_at_start_killed_and_restarted(
    redis_server: RedisServer, client: aioredis.Redis
) -> None:
    exporter = SignallingRedisExporter(redis_server.url)
    asynctrace.configure(service="orders", exporter=exporter, max_queue=100, max_delay_s=0)
    tracer = asynctrace.get_tracer()
    assert tracer is not None
    assert tracer.queue is not None
    tracer.queue._backoff_max_s = 0.05  # keep retries quick; the logic is what is tested
    try:
        await redis_server.stop_async()
        for number in range(250):  # no exception reaches the app while Redis is down
            async with asynctrace.span(f"request-{number}"):
                pass
        assert not await asynctrace.flush(timeout_s=2)
        stats = asynctrace.stats()
        assert stats.queued <= 100
        assert stats.dropped >= 150
        assert stats.failed_batches >= 1
        assert stats.last_error is not None
        assert "ConnectionError" in stats.last_error

        await redis_server.start_async()
        exporter.wrote.clear()
        async with asyncio.timeout(20):  # a guard: the worker resumes on its own
            await exporter.wrote.wait()
        assert await asynctrace.flush(timeout_s=10)
        operations = set()
        for raw in await client.zrange("trace:index", 0, -1):
            operations.add(IndexEntry.decode(raw).operation)
        assert operations == {f"request-{n}" for n in range(150, 250)}
        assert asynctrace.stats().dropped == 150
    finally:
        await redis_server.start_async()
        await asynctrace.shutdown()


async def test_configure_with_redis_url_exports_readable_traces(
    redis_url: str, client: aioredis.Redis
) -> None:
    asynctrace.configure(service="orders", redis_url=redis_url)
    try:

        @asynctrace.traced
        async def load_user(uid: str) -> str:
            return uid

        async with asynctrace.span("GET /users/{id}") as root:
            await load_user("42")
        assert await asynctrace.flush()
        spans, corrupt = spans_of(await client.lrange(f"trace:{root.trace_id}", 0, -1))
        assert corrupt == 0
        assert sorted(span.operation for span in spans) == [
            "GET /users/{id}",
            "test_configure_with_redis_url_exports_readable_traces.<locals>.load_user",
        ]
        raw = json.loads(await client.lindex(f"trace:{root.trace_id}", -1))
        assert list(raw) == [
            "traceId", "spanId", "parentSpanId", "service", "operation", "kind",
            "startTime", "endTime", "duration", "status", "tags", "logs",
        ]  # fmt: skip
    finally:
        await asynctrace.shutdown()
