"""One contract, run against every SpanExporter asynctrace ships."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import fakeredis
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from asynctrace import keys
from asynctrace.export import InMemoryExporter, OTLPExporter, RedisExporter, SpanExporter
from asynctrace.model import Span, spans_of
from asynctrace.receiver import TRACES_PATH, create_app
from asynctrace.testing import RedisServer

Reader = Callable[[str], Awaitable[list[Span]]]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def finished(span_id: str, parent: str | None = None) -> Span:
    return Span.from_dict(
        {
            "traceId": TRACE,
            "spanId": span_id,
            "parentSpanId": parent,
            "service": "svc",
            "operation": f"op-{span_id}",
            "startTime": 1764236400000.0,
            "duration": 5.0,
            "status": "ok",
        }
    )


@pytest.fixture(params=["memory", "redis-fake", "redis-real", "otlp-to-receiver"])
async def exporter_and_reader(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[tuple[SpanExporter, Reader]]:
    if request.param == "memory":
        memory = InMemoryExporter()

        async def read_memory(trace_id: str) -> list[Span]:
            return [span for span in memory.spans if span.trace_id == trace_id]

        yield memory, read_memory
        return

    redis: aioredis.Redis
    if request.param == "otlp-to-receiver":
        # OTLPExporter into `asynctrace receive`, which writes to the real Redis.
        redis = aioredis.Redis.from_url(redis_server.url)
        await redis.flushdb()
        receiver = TestServer(create_app(RedisExporter(client=redis)), host="127.0.0.1")
        await receiver.start_server()
        otlp = OTLPExporter(str(receiver.make_url(TRACES_PATH)))

        async def read_received(trace_id: str) -> list[Span]:
            spans, corrupt = spans_of(await redis.lrange(keys.trace_key(trace_id), 0, -1))
            assert corrupt == 0
            return spans

        yield otlp, read_received
        await otlp.shutdown()
        await receiver.close()
        await redis.aclose()
        return
    if request.param == "redis-fake":
        redis = fakeredis.FakeAsyncRedis()
    else:
        redis = aioredis.Redis.from_url(redis_server.url)
        await redis.flushdb()
    exporter = RedisExporter(client=redis)

    async def read_redis(trace_id: str) -> list[Span]:
        spans, corrupt = spans_of(await redis.lrange(keys.trace_key(trace_id), 0, -1))
        assert corrupt == 0
        return spans

    yield exporter, read_redis
    await redis.aclose()


async def test_exported_spans_can_be_read_back_in_order(
    exporter_and_reader: tuple[SpanExporter, Reader],
) -> None:
    exporter, read = exporter_and_reader
    batch: Sequence[Span] = [finished("a000000000000001"), finished("a000000000000002")]
    await exporter.export(batch)
    await exporter.export([finished("a000000000000003", "a000000000000001")])
    back = await read(TRACE)
    assert [span.to_dict() for span in back] == [
        span.to_dict() for span in [*batch, finished("a000000000000003", "a000000000000001")]
    ]


async def test_exporting_nothing_is_harmless(
    exporter_and_reader: tuple[SpanExporter, Reader],
) -> None:
    exporter, read = exporter_and_reader
    await exporter.export([])
    assert await read(TRACE) == []


async def test_shutdown_is_idempotent(exporter_and_reader: tuple[SpanExporter, Reader]) -> None:
    exporter, _ = exporter_and_reader
    await exporter.shutdown()
    await exporter.shutdown()


def test_shipped_exporters_satisfy_the_protocol() -> None:
    assert isinstance(InMemoryExporter(), SpanExporter)
    assert isinstance(RedisExporter("redis://127.0.0.1:1/0"), SpanExporter)
