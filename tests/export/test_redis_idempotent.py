"""A retry of a batch Redis applied but whose reply was lost changes nothing: the
per-hour aggregates stay exact and list entries are not doubled (issue 16, item 5)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from asynctrace import keys
from asynctrace.export import ExportQueue, RedisExporter
from asynctrace.export._guarded import PART_SPANS
from asynctrace.export.redis_exporter import batch_id
from asynctrace.model import Span
from asynctrace.testing import RedisServer
from tests.faults.proxy import RedisProxy

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def server_spans(count: int) -> list[Span]:
    # Started now: the aggregates' EXPIREAT is counted from the spans' hour.
    now_ms = time.time() * 1000.0
    return [
        Span.from_dict(
            {
                "traceId": f"{number + 1:032x}",
                "spanId": f"{number + 1:016x}",
                "parentSpanId": None,
                "service": "orders",
                "operation": "GET /orders/{id}",
                "kind": "server",
                "startTime": now_ms + number,
                "endTime": now_ms + 5.0 + number,
                "duration": 5.0,
                "status": "ok",
                "tags": {},
                "logs": [],
            }
        )
        for number in range(count)
    ]


async def counted(client: aioredis.Redis) -> tuple[int, int]:
    """(requests in the per-hour aggregates, entries in the trace lists)."""
    requests = entries = 0
    async for key in client.scan_iter(match="trace:agg:*:op:*"):
        requests += int(await client.hget(key, "n") or 0)
    async for key in client.scan_iter(match="trace:" + "?" * 32):
        entries += await client.llen(key)
    return requests, entries


async def test_the_same_batch_written_twice_counts_once(redis_url: str) -> None:
    spans = server_spans(40)
    exporter = RedisExporter(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await exporter.export(spans)
        await exporter.export(spans)
        assert await counted(client) == (40, 40)
        guard = keys.batch_key(batch_id(spans))
        assert 0 < await client.ttl(guard) <= keys.BATCH_GUARD_TTL_S
        await exporter.export(spans[:39])  # another batch: written
        assert await counted(client) == (79, 79)
    finally:
        await exporter.shutdown()
        await client.aclose()


@pytest.mark.parametrize("batch_size", [25, 100], ids=["one part", "several parts"])
async def test_a_retry_after_a_lost_reply_is_not_counted_twice(
    redis_server: RedisServer, redis_url: str, batch_size: int
) -> None:
    spans = server_spans(101)
    client = aioredis.Redis.from_url(redis_url)
    async with RedisProxy(redis_server.port) as proxy:
        exporter = RedisExporter(proxy.url, timeout_s=0.3)
        queue = ExportQueue(exporter, batch_size=batch_size, max_in_flight=1)
        queue.append(spans[0])
        try:
            assert await queue.flush()  # a connection, handshake done, in the pool
            proxy.drop_replies = True
            for span in spans[1:]:
                queue.append(span)
            assert not await queue.flush(timeout_s=5)  # the reply is lost: retried
            assert queue.stats().queued == 100
            # Yet Redis applied the first batch (its several parts, when it has them).
            assert await counted(client) == (1 + batch_size, 1 + batch_size)
            proxy.drop_replies = False
            async with asyncio.timeout(10):
                assert await queue.flush()
            assert await counted(client) == (101, 101)
            stats = queue.stats()
            assert (stats.exported, stats.dropped, stats.queued) == (101, 0, 0)
        finally:
            await queue.shutdown(timeout_s=1)
            await client.aclose()


async def test_an_unguarded_exporter_counts_a_retry_twice(redis_url: str) -> None:
    # What idempotent=False trades for its lower CPU cost.
    spans = server_spans(10)
    exporter = RedisExporter(redis_url, idempotent=False)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await exporter.export(spans)
        await exporter.export(spans)
        assert await counted(client) == (20, 20)
    finally:
        await exporter.shutdown()
        await client.aclose()


async def test_commands_longer_than_a_script_call_takes_are_split(redis_url: str) -> None:
    spans = [
        Span.from_dict({**span.to_dict(), "traceId": TRACE, "parentSpanId": "00f067aa0ba902b7"})
        for span in server_spans(9000)
    ]
    exporter = RedisExporter(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await exporter.export(spans)
        assert await client.llen(keys.trace_key(TRACE)) == 9000
    finally:
        await exporter.shutdown()
        await client.aclose()


def guard_keys(spans: list[Span]) -> list[bytes]:
    """The guard keys of one export of ``spans``, in the order they are written."""
    exporter = RedisExporter("redis://127.0.0.1:1")  # never connects
    guarded, slices = exporter._guarded(spans)
    written = [guarded.take_ready() for _ in slices]
    written.append(guarded.finish())
    return re.findall(rb"trace:batch:[0-9a-f]{32}", b"".join(written))


def test_a_batch_is_cut_into_the_same_parts_on_every_try() -> None:
    spans = server_spans(3 * PART_SPANS + 5)
    first_try = guard_keys(spans)
    assert len(first_try) == 4  # parts of PART_SPANS spans, and the rest
    assert first_try[0] == keys.batch_key(batch_id(spans)).encode()
    assert len(set(first_try)) == 4
    assert guard_keys(spans) == first_try
    assert guard_keys(spans[1:])[0] != first_try[0]  # another batch, other guards


def test_a_part_refused_whole_counts_all_its_commands_as_failed() -> None:
    spans = server_spans(PART_SPANS + 1)  # two parts, then the plain commands
    exporter = RedisExporter("redis://127.0.0.1:1")
    guarded, slices = exporter._guarded(spans)
    for _ in slices:
        pass
    guarded.finish()
    replies: list[object] = [0] * guarded.replies  # every part written before: no failure
    assert guarded.outcome(replies) == (0, "")
    refused = ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
    replies[0] = refused  # the first part's guard could not be set: nothing of it ran
    failed, first = guarded.outcome(replies)
    # Part 0 holds the aggregates' increments and PART_SPANS list writes (2 commands each).
    assert failed > 2 * PART_SPANS
    assert first.startswith("ResponseError: OOM")
    replies[0] = [1, b"WRONGTYPE Operation against a key holding the wrong kind of value"]
    assert guarded.outcome(replies) == (
        1,
        "WRONGTYPE Operation against a key holding the wrong kind of value",
    )
