"""asynctrace.redis against fakeredis and the session's real redis-server."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

import asynctrace
import asynctrace.redis
from asynctrace import _ratelimit
from asynctrace.export import InMemoryExporter, RedisExporter
from asynctrace.model import Span
from asynctrace.tracer import Tracer, reset_tracer


async def exported(exporter: InMemoryExporter) -> list[Span]:
    assert await asynctrace.flush()
    return list(exporter.spans)


async def test_commands_are_child_spans_without_values(
    tracer: Tracer, exporter: InMemoryExporter, redis: aioredis.Redis
) -> None:
    cache = asynctrace.redis.instrument(redis)
    with asynctrace.span("load cart") as parent:
        await cache.set("cart:17", "secret-value")
        assert await cache.get("cart:17") == b"secret-value"
        await cache.delete("cart:17", "cart:18", "cart:19")

    spans = await exported(exporter)
    commands = [span for span in spans if span.kind == "client"]
    assert cache is redis
    assert [span.operation for span in commands] == ["redis SET", "redis GET", "redis DEL"]
    assert {span.parent_span_id for span in commands} == {parent.span_id}
    assert [span.tags["db.redis.key_count"] for span in commands] == ["1", "1", "3"]
    assert all(span.tags["db.system"] == "redis" for span in commands)
    assert all("secret" not in str(span.to_dict()) for span in commands)
    assert all("cart" not in str(span.to_dict()) for span in commands)


async def test_pipeline_is_one_span_with_its_length(
    tracer: Tracer, exporter: InMemoryExporter, redis: aioredis.Redis
) -> None:
    cache = asynctrace.redis.instrument(redis)
    with asynctrace.span("warm up") as parent:
        async with cache.pipeline(transaction=False) as pipe:
            pipe.set("a", "1")
            pipe.incr("a")
            pipe.mget("a", "b")
            assert await pipe.execute() == [True, 2, [b"2", None]]

    (pipeline,) = [span for span in await exported(exporter) if span.kind == "client"]
    assert pipeline.operation == "redis PIPELINE"
    assert pipeline.parent_span_id == parent.span_id
    assert pipeline.tags["db.redis.pipeline_length"] == "3"
    assert (
        pipeline.tags["db.redis.commands"] == "SET INCRBY MGET"
    )  # redis-py sends incr() as INCRBY
    assert pipeline.tags["db.redis.key_count"] == "4"


async def test_command_error_is_recorded_and_reraised(
    tracer: Tracer, exporter: InMemoryExporter, redis: aioredis.Redis
) -> None:
    cache = asynctrace.redis.instrument(redis)
    await redis.set("name", "x")
    with asynctrace.span("bad"), pytest.raises(ResponseError):
        await cache.incr("name")

    (command,) = [span for span in await exported(exporter) if span.kind == "client"]
    assert (command.operation, command.status) == ("redis INCRBY", "error")


async def test_commands_outside_any_span_and_other_clients_are_not_traced(
    tracer: Tracer, exporter: InMemoryExporter, redis: aioredis.Redis
) -> None:
    cache = asynctrace.redis.instrument(redis)
    assert asynctrace.redis.instrument(cache) is cache  # again: no second wrapper
    await cache.set("k", "v")
    other = aioredis.Redis(connection_pool=redis.connection_pool)
    with asynctrace.span("request"):
        await other.get("k")
        await cache.get("k")

    operations = [span.operation for span in await exported(exporter)]
    assert operations == ["redis GET", "request"]


async def test_exporter_sharing_an_instrumented_client_is_never_traced(
    redis: aioredis.Redis,
) -> None:
    # On fakeredis the exporter writes through the client's pipeline(), the path the
    # instrumentation wraps; on a real server through its pool's connections.
    shared = asynctrace.redis.instrument(redis)
    # configure() inside a span: the export task must still run outside it.
    with asynctrace.span("startup"):
        asynctrace.configure(service="orders", exporter=RedisExporter(client=shared))
    try:
        with asynctrace.span("request") as request:
            await shared.get("k")
            async with asyncio.timeout(10):
                # Inside the span: the flush's own commands must not become its children.
                assert await asynctrace.flush()
        assert await asynctrace.flush()
        stored = await shared.lrange(f"trace:{request.trace_id}", 0, -1)
    finally:
        await asynctrace.shutdown()
        reset_tracer()
    operations = sorted(Span.from_dict(json.loads(raw)).operation for raw in stored)
    assert operations == ["redis GET", "request"]


async def test_internal_failure_leaves_commands_alone(
    tracer: Tracer,
    exporter: InMemoryExporter,
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracing bug")

    cache = asynctrace.redis.instrument(redis)
    monkeypatch.setattr(asynctrace.redis, "store_span", broken)
    with asynctrace.span("request"):
        await cache.set("k", "v")
        assert await cache.get("k") == b"v"
        async with cache.pipeline(transaction=False) as pipe:
            pipe.get("k")
            assert await pipe.execute() == [b"v"]

    assert [span.operation for span in await exported(exporter)] == ["request"]
    assert _ratelimit.internal_error_count() == 3
