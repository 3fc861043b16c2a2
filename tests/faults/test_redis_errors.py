"""A slow Redis (through a local proxy) and a Redis answering errors: batches in
flight keep up where one at a time would drop; OOM, READONLY and NOAUTH each give
one clear log line, without a traceback, however often they repeat."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aioredis

from asynctrace.export import ExportQueue, RedisExporter
from asynctrace.model import Span
from asynctrace.testing import RedisServer, free_port
from tests.faults.proxy import RedisProxy


def spans(first: int, count: int) -> list[Span]:
    now_ms = time.time() * 1000.0
    return [
        Span.from_dict(
            {
                "traceId": f"{number + 1:032x}",
                "spanId": f"{number + 1:016x}",
                "parentSpanId": None,
                "service": "faults",
                "operation": "GET /work",
                "kind": "server",
                "startTime": now_ms,
                "endTime": now_ms + 1.0,
                "duration": 1.0,
                "status": "ok",
                "tags": {},
                "logs": [],
            }
        )
        for number in range(first, first + count)
    ]


@pytest.mark.parametrize("max_in_flight", [1, 4])
async def test_a_slow_redis_keeps_batches_in_flight_and_logs_drops(
    own_redis: RedisServer, max_in_flight: int, caplog: pytest.LogCaptureFixture
) -> None:
    # 400 spans/s against 200 ms per reply, in batches of 50: one batch at a time
    # writes 250 spans/s at most, so its backlog outgrows a queue of 200.
    async with RedisProxy(own_redis.port, reply_delay_s=0.2) as proxy:
        queue = ExportQueue(
            RedisExporter(proxy.url),
            max_queue=200,
            batch_size=50,
            max_delay_s=0.05,
            max_in_flight=max_in_flight,
        )
        # Warm-up: the pool opens its connections (each handshake is slow too).
        for span in spans(0, 200):
            queue.append(span)
        assert await queue.flush(timeout_s=10)
        most_in_flight = made = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        with caplog.at_level(logging.WARNING, logger="asynctrace"):
            while made < 1200:  # 3 s at 400 spans/s, however late the loop's turns
                due = min(1200, int((loop.time() - started) * 400))
                for span in spans(200 + made, due - made):
                    queue.append(span)
                made = due
                stats = queue.stats()
                assert stats.exported + stats.dropped + stats.queued == 200 + made
                most_in_flight = max(most_in_flight, stats.in_flight)
                await asyncio.sleep(0.05)  # the producer's pace
            assert await queue.flush(timeout_s=10)
        stats = queue.stats()
        assert stats.exported + stats.dropped == 1400
        drop_lines = [r.getMessage() for r in caplog.records if "spans dropped" in r.getMessage()]
        await queue.shutdown(timeout_s=1)
    if max_in_flight == 1:
        assert stats.dropped > 0
        assert most_in_flight <= 50
        assert len(drop_lines) == 1  # one line per minute at most
    else:
        assert stats.dropped == 0
        assert most_in_flight > 50  # more than one batch waited for its reply at once
        assert drop_lines == []


async def export_with_logs(
    url: str, caplog: pytest.LogCaptureFixture, *, rounds: int = 3
) -> tuple[list[str], ExportQueue]:
    queue = ExportQueue(RedisExporter(url, timeout_s=2), batch_size=10)
    with caplog.at_level(logging.WARNING, logger="asynctrace"):
        for number in range(rounds):
            for span in spans(number * 10, 10):
                queue.append(span)
            await queue.flush(timeout_s=5)
        await queue.shutdown(timeout_s=0.5)
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "\n" not in record.getMessage()
    return [record.getMessage() for record in caplog.records], queue


async def test_out_of_memory_is_one_line_and_the_batches_are_dropped(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = aioredis.Redis.from_url(own_redis.url)
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", "1")
    try:
        lines, queue = await export_with_logs(own_redis.url, caplog)
    finally:
        await admin.config_set("maxmemory", "0")
        await admin.aclose()
    refused = [line for line in lines if line.startswith("asynctrace: a batch was refused")]
    assert len(refused) == 1
    assert "OutOfMemoryError: command not allowed when used memory" in refused[0]
    stats = queue.stats()
    assert (stats.exported, stats.dropped) == (0, 30)
    assert stats.last_error is not None
    assert "OutOfMemoryError" in stats.last_error


async def test_a_read_only_replica_is_one_line_and_the_batches_are_dropped(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = aioredis.Redis.from_url(own_redis.url)
    # No master listens there: a replica all the same, refusing writes.
    await admin.replicaof("127.0.0.1", free_port())
    try:
        lines, queue = await export_with_logs(own_redis.url, caplog)
    finally:
        await admin.replicaof("NO", "ONE")
        await admin.aclose()
    refused = [line for line in lines if line.startswith("asynctrace: a batch was refused")]
    assert len(refused) == 1
    assert "ReadOnlyError: You can't write against a read only replica" in refused[0]
    assert queue.stats().dropped == 30


async def test_a_missing_password_is_one_line_and_the_spans_wait_for_redis(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = aioredis.Redis.from_url(own_redis.url)
    await admin.config_set("requirepass", "s3cret")
    try:
        lines, queue = await export_with_logs(own_redis.url, caplog)
    finally:
        await admin.config_set("requirepass", "")
        await admin.aclose()
    retried = [line for line in lines if line.startswith("asynctrace: export failed")]
    assert retried == [
        "asynctrace: export failed, will retry: ConnectionError: Redis refused the "
        "connection: authentication required or failed (NOAUTH); check the password "
        "in the Redis URL"
    ]
    assert "s3cret" not in " ".join(lines)
    stats = queue.stats()
    # Queued while refused (retried, not dropped), until shutdown counted them.
    assert (stats.exported, stats.dropped, stats.queued) == (0, 30, 0)
