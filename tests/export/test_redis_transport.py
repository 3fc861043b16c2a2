"""RedisExporter's two transports: commands packed onto a pooled connection, and the
redis-py pipeline for clients it cannot pack for. Both write the same data."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import hiredis
import pytest
import redis.asyncio as aioredis
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection, ConnectionPool

from asynctrace import _ratelimit
from asynctrace.export import RedisCommandError, RedisExporter, redis_exporter
from asynctrace.export._guarded import PART_SPANS, part_id
from asynctrace.model import Span, decode_span, encode_span

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
# Recent enough to stay in the trace index, which trims entries older than a day.
NOW_MS = time.time() * 1000.0 - 60_000.0


class OtherConnection(Connection):
    """A connection class the exporter does not know: it must use the pipeline."""


def finished(
    span_id: str,
    *,
    trace_id: str = TRACE,
    parent: str | None = None,
    status: str = "ok",
    duration: float = 5.0,
    tags: dict[str, str] | None = None,
) -> Span:
    return Span.from_dict(
        {
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "service": "orders",
            "operation": "GET /orders/{id}",
            "kind": "server",
            "startTime": NOW_MS + int(span_id, 16) % 1000,
            "duration": duration,
            "status": status,
            "tags": tags or {},
        }
    )


def mixed_batch(count: int) -> list[Span]:
    """Several traces, local roots and children, slow and error spans."""
    return [
        finished(
            f"{n + 1:016x}",
            trace_id=f"{n % 9 + 1:032x}",
            parent=None if n % 4 == 0 else "a000000000000001",
            status="error" if n % 7 == 0 else "ok",
            duration=2500.0 if n % 11 == 0 else 3.5,
        )
        for n in range(count)
    ]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def snapshot(client: Any) -> dict[str, object]:
    """Every key with its type, content and whether it expires."""
    out: dict[str, object] = {}
    for key in sorted(await client.keys("*")):
        kind = (await client.type(key)).decode()
        if kind == "list":
            value: object = await client.lrange(key, 0, -1)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(await client.smembers(key))
        else:
            value = kind
        out[key.decode()] = (kind, value, await client.ttl(key) > 0)
    return out


def test_clients_of_redis_py_connections_are_packed_for_and_others_are_not(
    redis_url: str,
) -> None:
    assert redis_exporter._speaks_packed_resp(aioredis.Redis.from_url(redis_url))
    assert redis_exporter._speaks_packed_resp(aioredis.Redis.from_url("rediss://localhost/0"))
    assert not redis_exporter._speaks_packed_resp(fakeredis.FakeAsyncRedis())
    other = ConnectionPool.from_url(redis_url, connection_class=OtherConnection)
    assert not redis_exporter._speaks_packed_resp(aioredis.Redis.from_pool(other))
    assert not redis_exporter._speaks_packed_resp(object())


async def test_both_transports_write_the_same_keys_and_values(
    client: aioredis.Redis, redis_url: str
) -> None:
    spans = mixed_batch(120)
    guarded = RedisExporter(redis_url)
    await guarded.export(spans)
    await guarded.shutdown()
    written_guarded = await snapshot(client)
    guards = [key for key in written_guarded if key.startswith("trace:batch:")]
    # 120 spans: parts of PART_SPANS (whole traces), each guarded by its own key, the
    # first by the batch's id.
    batch = redis_exporter.batch_id(spans)
    parts = range(len(guards))
    assert len(guards) >= 120 // PART_SPANS
    assert guards == sorted(f"trace:batch:{part_id(batch, number)}" for number in parts)
    for guard in guards:
        del written_guarded[guard]

    await client.flushdb()
    packed = RedisExporter(redis_url, idempotent=False)
    await packed.export(spans)
    await packed.shutdown()
    written_packed = await snapshot(client)

    await client.flushdb()
    pool = ConnectionPool.from_url(redis_url, connection_class=OtherConnection)
    other_client = aioredis.Redis.from_pool(pool)
    piped = RedisExporter(client=other_client)
    await piped.export(spans)
    await other_client.aclose()
    written_piped = await snapshot(client)

    fake = fakeredis.FakeAsyncRedis()
    faked = RedisExporter(client=fake)
    await faked.export(spans)
    written_fake = await snapshot(fake)
    await fake.aclose()

    assert written_guarded == written_packed == written_piped == written_fake
    stored = [key for key in written_packed if not key.startswith("trace:agg:")]
    assert len(stored) == 9 + 3  # trace lists, slow, errors day, index
    assert len(written_packed) > len(stored)  # and the aggregates
    assert written_packed[f"trace:{1:032x}"] == (
        "list",
        [encode_span(s).encode() for s in spans if s.trace_id == f"{1:032x}"],
        True,
    )


async def test_the_pipeline_transport_is_one_pipeline_execute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    original = Pipeline.execute

    async def counting_execute(self: Pipeline, raise_on_error: bool = True) -> list[object]:
        nonlocal calls
        calls += 1
        return await original(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", counting_execute)
    monkeypatch.setattr(redis_exporter, "_SLICE_S", 0.0)  # many slices, still one execute
    fake = fakeredis.FakeAsyncRedis()
    await RedisExporter(client=fake).export(mixed_batch(300))
    assert calls == 1
    assert await fake.llen(f"trace:{1:032x}") == 34
    await fake.aclose()


async def test_a_batch_written_in_many_slices_is_still_one_round_trip_in_order(
    client: aioredis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = 0
    waits = 0
    last = ""
    original_send = Connection.send_packed_command
    original_read = Connection.read_response

    async def send(self: Connection, *args: Any, **kwargs: Any) -> None:
        nonlocal writes, last
        writes += 1
        last = "write"
        await original_send(self, *args, **kwargs)

    async def read(self: Connection, *args: Any, **kwargs: Any) -> Any:
        nonlocal waits, last
        waits += last == "write"
        last = "read"
        return await original_read(self, *args, **kwargs)

    exporter = RedisExporter(redis_url, idempotent=False)
    await exporter.export([finished("f000000000000001", trace_id="f" * 32)])  # connect first
    monkeypatch.setattr(redis_exporter, "_SLICE_S", 0.0)  # yield after every check
    monkeypatch.setattr(redis_exporter, "_WRITE_EVERY_S", 0.0)  # and write every slice
    monkeypatch.setattr(Connection, "send_packed_command", send)
    monkeypatch.setattr(Connection, "read_response", read)
    one_big_trace = [finished(f"{n + 1:016x}") for n in range(100)]
    await exporter.export(one_big_trace)
    monkeypatch.undo()
    await exporter.shutdown()
    assert writes > 3
    assert waits == 1
    stored = [decode_span(raw).span_id for raw in await client.lrange(f"trace:{TRACE}", 0, -1)]
    assert stored == [span.span_id for span in one_big_trace]


async def test_the_loop_runs_other_tasks_while_a_batch_is_encoded(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_exporter, "_SLICE_S", 0.0)
    turns = 0
    done = False

    async def other_task() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    exporter = RedisExporter(redis_url)
    await exporter.export(mixed_batch(1))  # connect first: only encoding is watched
    watcher = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    before = turns
    await exporter.export(mixed_batch(200))
    done = True
    await watcher
    await exporter.shutdown()
    assert turns - before > 5


@pytest.mark.parametrize("transport", ["packed", "pipeline"])
async def test_refused_commands_raise_and_leave_the_connection_usable(
    client: aioredis.Redis, redis_url: str, transport: str
) -> None:
    if transport == "packed":
        exporter = RedisExporter(redis_url)
    else:
        pool = ConnectionPool.from_url(redis_url, connection_class=OtherConnection)
        exporter = RedisExporter(client=aioredis.Redis.from_pool(pool))
    await client.set(f"trace:{TRACE}", "not a list")
    with pytest.raises(RedisCommandError, match=r"1 of .* failed.*WRONGTYPE"):
        await exporter.export([finished("a000000000000001"), finished("b" * 16, trace_id="e" * 32)])
    # Every reply was read: the next batch on the same connection gets its own replies.
    await client.delete(f"trace:{TRACE}")
    await exporter.export([finished("a000000000000002")])
    assert await client.llen(f"trace:{TRACE}") == 1
    assert await client.llen(f"trace:{'e' * 32}") == 1
    await exporter.shutdown()
    if exporter._given_client is not None:
        await exporter._given_client.aclose()


@pytest.fixture(params=["hiredis", "each"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which way the packed transport reads replies: from redis-py's hiredis parser in
    one loop, or ``read_response`` for each (any other parser)."""
    if request.param == "each":
        monkeypatch.setattr(redis_exporter, "_hiredis_parser_of", lambda connection: None)
    return str(request.param)


async def test_a_cancelled_batch_never_leaves_unread_replies_for_the_next(
    client: aioredis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    exporter = RedisExporter(redis_url)
    await exporter.export([finished("a000000000000001")])
    original_read = Connection.read_response

    async def cancelled_after_first_reply(self: Connection, *args: Any, **kwargs: Any) -> Any:
        reply = await original_read(self, *args, **kwargs)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # lands at the reader's next yield, with replies still unread
        return reply

    monkeypatch.setattr(redis_exporter, "_SLICE_S", 0.0)
    with monkeypatch.context() as patch:
        patch.setattr(Connection, "read_response", cancelled_after_first_reply)
        with pytest.raises(asyncio.CancelledError):
            await exporter.export(mixed_batch(50))
    await client.flushdb()
    await client.set(f"trace:{TRACE}", "not a list")
    # Had the connection gone back to the pool with replies unread, this batch would
    # read the old ":1" replies as its own and miss its WRONGTYPE.
    with pytest.raises(RedisCommandError, match="WRONGTYPE"):
        await exporter.export([finished("a000000000000002")])
    await exporter.shutdown()


async def test_an_error_reply_mid_batch_is_counted_and_the_rest_is_written(
    client: aioredis.Redis, redis_url: str, reader: str
) -> None:
    batch = [
        finished(f"{n + 1:016x}", trace_id=trace_id)
        # Fewer spans per trace than _CHECK_EVERY: each trace is one RPUSH.
        for n, trace_id in enumerate(["1" * 32, TRACE, "3" * 32] * 10)
    ]
    await client.set(f"trace:{TRACE}", "not a list")  # its RPUSH and EXPIRE are mid-batch
    exporter = RedisExporter(redis_url)
    with pytest.raises(RedisCommandError, match=r"^1 of \d+ Redis commands failed.*WRONGTYPE"):
        await exporter.export(batch)
    assert await client.llen("trace:" + "1" * 32) == 10
    assert await client.llen("trace:" + "3" * 32) == 10
    # Every reply was read: the next batch on the same connection gets its own.
    await client.delete(f"trace:{TRACE}")
    await exporter.export([finished("a000000000000001")])
    assert await client.llen(f"trace:{TRACE}") == 1
    await exporter.shutdown()


async def test_replies_come_from_the_hiredis_reader_when_redis_py_uses_one(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffered = 0
    original = redis_exporter._read_buffered

    async def counting(*args: Any) -> None:
        nonlocal buffered
        buffered += 1
        await original(*args)

    monkeypatch.setattr(redis_exporter, "_read_buffered", counting)
    for url in (redis_url, f"{redis_url}?protocol=2", f"{redis_url}?protocol=3"):
        exporter = RedisExporter(url, idempotent=False)
        await exporter.export(mixed_batch(40))
        await exporter.shutdown()
    # RESP3 (redis-py 8's default) only where redis-py's parser handles push messages.
    handles_push = hasattr(_AsyncHiredisParser(65536), "_hiredis_PushNotificationType")
    assert buffered == (3 if handles_push else 2)


async def test_other_parsers_get_a_read_response_per_reply(
    client: aioredis.Redis, redis_url: str
) -> None:
    pool = ConnectionPool.from_url(redis_url, parser_class=_AsyncRESP2Parser)
    python_parsed = aioredis.Redis.from_pool(pool)
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py: decorated
    assert redis_exporter._hiredis_parser_of(connection) is None
    await pool.release(connection)
    exporter = RedisExporter(client=python_parsed, idempotent=False)
    await client.set(f"trace:{TRACE}", "not a list")
    with pytest.raises(RedisCommandError, match=r"^1 of .*WRONGTYPE"):
        await exporter.export([finished("a000000000000001"), *mixed_batch(30)])
    assert await client.llen(f"trace:{1:032x}") == 4
    await python_parsed.aclose()


async def test_a_redis_that_closes_mid_reply_is_a_connection_error(reader: str) -> None:
    """The server reads the batch, answers its first command and half the second, and
    closes: the export raises ConnectionError (the queue retries the batch)."""
    seen_batch = asyncio.Event()

    async def serve(incoming: asyncio.StreamReader, outgoing: asyncio.StreamWriter) -> None:
        commands = hiredis.Reader()
        while not incoming.at_eof():
            commands.feed(await incoming.read(65536))
            while (command := commands.gets()) is not False:
                assert isinstance(command, list)
                if command[0].upper() != b"RPUSH":
                    outgoing.write(b"+OK\r\n")  # the handshake's CLIENT SETINFO
                    continue
                seen_batch.set()
                outgoing.write(b":1\r\n:")
                await outgoing.drain()
                outgoing.close()
                return

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    exporter = RedisExporter(f"redis://127.0.0.1:{port}/0?protocol=2", idempotent=False)
    try:
        with pytest.raises(ConnectionError, match="Redis unreachable"):
            await exporter.export(mixed_batch(20))
        assert seen_batch.is_set()
    finally:
        await exporter.shutdown()
        server.close()
        await server.wait_closed()


async def test_url_options_reach_the_connection(client: aioredis.Redis, redis_url: str) -> None:
    await client.acl_setuser(
        "bench", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"]
    )
    try:
        base = redis_url.removeprefix("redis://").removesuffix("/0")
        exporter = RedisExporter(f"redis://bench:s3cret@{base}/3")
        await exporter.export([finished("a000000000000001")])
        await exporter.shutdown()
        in_db3 = aioredis.Redis.from_url(f"redis://{base}/3")
        assert await in_db3.llen(f"trace:{TRACE}") == 1
        await in_db3.flushdb()
        await in_db3.aclose()
        assert await client.exists(f"trace:{TRACE}") == 0

        refused = RedisExporter(f"redis://bench:wrong@{base}/3")
        with pytest.raises(ConnectionError):
            await refused.export([finished("a000000000000001")])
        await refused.shutdown()
    finally:
        await client.acl_deluser("bench")


@pytest.mark.parametrize("transport", ["packed", "fake"])
async def test_header_bytes_that_are_not_utf8_are_stored_as_replacement_characters(
    redis_url: str, transport: str
) -> None:
    # aiohttp decodes header bytes with "surrogateescape": b"\xff" arrives as "\udcff".
    tags = {"http.user_agent": b"curl\xff\xfe".decode("utf-8", "surrogateescape")}
    span = finished("a000000000000001", tags=tags)
    reader: Any
    if transport == "packed":
        exporter = RedisExporter(redis_url)
        reader = aioredis.Redis.from_url(redis_url)
    else:
        reader = fakeredis.FakeAsyncRedis()
        exporter = RedisExporter(client=reader)
    await exporter.export([span])
    [raw] = await reader.lrange(f"trace:{TRACE}", 0, -1)
    raw.decode("utf-8")  # stored as valid UTF-8, and as valid text: no lone surrogates
    valid = {"http.user_agent": "curl\ufffd\ufffd"}
    assert decode_span(raw).tags == valid
    assert json.loads(raw)["tags"] == valid
    await exporter.shutdown()
    await reader.aclose()


async def test_a_span_that_cannot_be_encoded_is_left_out_and_counted(
    client: aioredis.Redis, redis_url: str
) -> None:
    bad = finished("a000000000000001")
    bad.tags = {"payload": object()}  # type: ignore[dict-item]  # set around the Span API
    good = finished("a000000000000002")
    before = _ratelimit.internal_error_count()
    exporter = RedisExporter(redis_url)
    await exporter.export([bad, good])
    await exporter.shutdown()
    assert [decode_span(raw).span_id for raw in await client.lrange(f"trace:{TRACE}", 0, -1)] == [
        "a000000000000002"
    ]
    assert _ratelimit.internal_error_count() == before + 1


async def test_aggregates_summed_in_chunks_equal_one_sum(
    client: aioredis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = mixed_batch(200)
    for span in spans[::3]:
        span.is_sampled = False  # unsampled: counted in the aggregates, not stored

    async def aggregates_after_export() -> dict[str, object]:
        await client.flushdb()
        exporter = RedisExporter(redis_url)
        await exporter.export(spans)
        await exporter.shutdown()
        written = await snapshot(client)
        out: dict[str, object] = {}
        for key in written:
            if key.startswith("trace:agg:"):
                kind = written[key][0]  # type: ignore[index]  # (kind, value, expires)
                out[key] = await client.hgetall(key) if kind == "hash" else written[key]
        return out

    whole = await aggregates_after_export()
    monkeypatch.setattr(redis_exporter, "_AGGREGATE_CHUNK", 7)
    assert await aggregates_after_export() == whole
    assert whole
    unsampled_ok = [s for s in spans[::3] if s.status == "ok"]
    for span in unsampled_ok:
        stored = await client.lrange(f"trace:{span.trace_id}", 0, -1)
        assert encode_span(span).encode() not in stored
