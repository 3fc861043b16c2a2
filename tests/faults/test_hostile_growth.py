"""Writers that would grow a trace or a span without bound: a ``traceparent`` reused
by every request, and an import file with a 5 MB tag and 200,000 tags. Both are held
to the limits a live span has, and what is left out is counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

import asynctrace
from asynctrace import keys
from asynctrace.aiohttp import middleware
from asynctrace.cli import main
from asynctrace.export import RedisExporter
from asynctrace.export._trace_cap import TraceSpanCap
from asynctrace.model import (
    DEFAULT_LIMITS,
    DROPPED_LOGS_TAG,
    DROPPED_TAGS_TAG,
    TRUNCATED_TAG,
    TRUNCATION_MARK,
    decode_span,
)
from asynctrace.store import TraceStore
from asynctrace.tracer import reset_tracer
from tests.faults.hostile_data import T0, span_json

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]

REUSED = "7e" * 16
CAP = 20
REQUESTS = 30


@pytest.fixture
async def capped_app(
    aiohttp_client: ClientFactory, redis_url: str
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    exporter = RedisExporter(redis_url, max_spans_per_trace=CAP)
    asynctrace.configure(service="victim", exporter=exporter)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application(middlewares=[middleware()])
    app.router.add_get("/", hello)
    try:
        yield await aiohttp_client(app)
    finally:
        await asynctrace.shutdown()
        reset_tracer()


async def test_a_reused_traceparent_grows_its_trace_only_to_the_cap(
    capped_app: TestClient[web.Request, web.Application], redis_url: str
) -> None:
    headers = {"traceparent": f"00-{REUSED}-00f067aa0ba902b7-01"}
    for _ in range(REQUESTS):
        response = await capped_app.get("/", headers=headers)
        assert response.status == 200
    assert await asynctrace.flush(timeout_s=10.0)
    async with aioredis.Redis.from_url(redis_url) as client:
        assert await client.llen(keys.trace_key(REUSED)) == CAP
    assert asynctrace.stats().over_trace_limit == REQUESTS - CAP
    # Every request still counts in the aggregates.
    async with TraceStore.from_url(redis_url) as store:
        [row] = await store.stats("victim")
    assert row.current.count == REQUESTS


def test_the_cap_remembers_a_bounded_number_of_traces() -> None:
    cap = TraceSpanCap(2, remembered=3)
    assert [cap.admit("busy") for _ in range(3)] == [True, True, False]
    for number in range(10):
        assert cap.admit(f"other {number}")
        assert cap.admit("busy") is False  # written again: stays remembered, stays full
        assert cap.remembered_traces() <= 6
    assert cap.over_limit == 11


def test_import_holds_each_span_to_the_limits_of_a_live_span(
    redis_url: str, tmp_path: Path
) -> None:
    trace_id = "1f" * 16
    line = span_json(
        trace_id,
        "0000000000000001",
        None,
        operation="o" * 10_000,
        tags={"blob": "x" * 5_000_000, **{f"t{number}": "v" for number in range(200_000)}},
        logs=[{"timestamp": T0, "message": "m" * 5000, "level": "info"}] * 1000,
    )
    source = tmp_path / "spans.jsonl"
    source.write_text(line + "\n")
    result = CliRunner().invoke(main, ["--redis-url", redis_url, "import", str(source)])
    assert result.exit_code == 0, result.output
    with redis.Redis.from_url(redis_url) as client:
        [raw] = client.lrange(keys.trace_key(trace_id), 0, -1)
    assert len(raw) < 1_500_000  # a 9 MB line, stored as a live span's worth
    span = decode_span(raw)
    limits = DEFAULT_LIMITS
    longest = limits.max_string_length + len(TRUNCATION_MARK)
    assert span.operation == "o" * limits.max_string_length + TRUNCATION_MARK
    assert span.tags["blob"] == "x" * limits.max_string_length + TRUNCATION_MARK
    assert span.tags[DROPPED_TAGS_TAG] == str(200_001 - limits.max_tags)
    assert span.tags[DROPPED_LOGS_TAG] == str(1000 - limits.max_logs)
    assert span.tags[TRUNCATED_TAG] == "true"
    assert len(span.tags) == limits.max_tags + 3
    assert len(span.logs) == limits.max_logs
    assert all(len(log.message) <= longest for log in span.logs)
    assert json.loads(raw)["traceId"] == trace_id


async def test_reading_stops_at_max_spans_and_counts_the_rest(redis_url: str) -> None:
    trace_id = "2f" * 16
    entries = [span_json(trace_id, "0000000000000001", None)] + [
        span_json(trace_id, f"{number:016x}", "0000000000000001") for number in range(2, 2600)
    ]

    def write() -> None:
        with redis.Redis.from_url(redis_url) as client:
            client.rpush(keys.trace_key(trace_id), *entries)

    await asyncio.to_thread(write)
    async with TraceStore.from_url(redis_url) as store:
        whole = await store.get_trace(trace_id)
        part = await store.get_trace(trace_id, max_spans=1500)
    assert whole is not None
    assert part is not None
    assert (len(whole.spans), whole.unread_entries, whole.is_truncated) == (2599, 0, False)
    assert (len(part.spans), part.unread_entries, part.is_truncated) == (1500, 1099, True)


def test_logs_of_a_truncated_trace_say_so_on_stderr(redis_url: str) -> None:
    trace_id = "3f" * 16
    entries = [
        span_json(
            trace_id,
            f"{number:016x}",
            None if number == 1 else "0000000000000001",
            logs=[{"timestamp": T0, "message": f"line {number}", "level": "info"}],
        )
        for number in range(1, keys.MAX_TRACE_SPANS + 6)
    ]
    with redis.Redis.from_url(redis_url) as client:
        client.rpush(keys.trace_key(trace_id), *entries)
    result = CliRunner().invoke(main, ["--redis-url", redis_url, "logs", "--json", trace_id])
    assert result.exit_code == 0
    assert result.stderr == "TRUNCATED: 5 more stored entries of this trace not read\n"
    assert len(result.stdout.splitlines()) == keys.MAX_TRACE_SPANS
