"""A retry of a batch Redis applied but whose reply was lost changes nothing: the
per-hour aggregates stay exact and list entries are not doubled (issue 16, item 5)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from asynctrace import keys
from asynctrace.export import ExportQueue, RedisExporter
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


async def test_a_retry_after_a_lost_reply_is_not_counted_twice(
    redis_server: RedisServer, redis_url: str
) -> None:
    spans = server_spans(101)
    client = aioredis.Redis.from_url(redis_url)
    async with RedisProxy(redis_server.port) as proxy:
        exporter = RedisExporter(proxy.url, timeout_s=0.3)
        queue = ExportQueue(exporter, batch_size=25, max_in_flight=1)
        queue.append(spans[0])
        try:
            assert await queue.flush()  # a connection, handshake done, in the pool
            proxy.drop_replies = True
            for span in spans[1:]:
                queue.append(span)
            assert not await queue.flush(timeout_s=5)  # the reply is lost: retried
            assert queue.stats().queued == 100
            assert await counted(client) == (26, 26)  # yet Redis applied the batch
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
