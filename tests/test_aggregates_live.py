"""Aggregates from live traffic: two in-process aiohttp services on a real Redis.

``front`` calls ``back`` through a traced client session; the caller's service travels
in our tracestate entry, so the map shows front -> back. With sampling off, no trace
is stored, yet every request still counts in the aggregates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import asynctrace
from asynctrace.aiohttp import client_trace_config, middleware
from asynctrace.export import InMemoryExporter
from asynctrace.store import TraceStore
from asynctrace.tracer import Tracer, reset_tracer

SESSION = web.AppKey("session", aiohttp.ClientSession)
BACK = web.AppKey("back", str)


async def _back(request: web.Request) -> web.Response:
    if request.query.get("fail"):
        raise web.HTTPInternalServerError()
    return web.json_response({"ok": True})


async def _front(request: web.Request) -> web.Response:
    query = "?fail=1" if request.query.get("fail") else ""
    async with request.app[SESSION].get(request.app[BACK] + "/work" + query) as response:
        return web.json_response({"status": response.status})


async def _session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        app[SESSION] = session
        yield


@pytest.fixture
async def front(redis_url: str) -> AsyncIterator[TestServer]:
    back_app = web.Application(middlewares=[middleware(service="back")])
    back_app.router.add_get("/work", _back)
    back = TestServer(back_app, host="127.0.0.1")
    await back.start_server()
    front_app = web.Application(middlewares=[middleware(service="front")])
    front_app[BACK] = str(back.make_url(""))
    front_app.cleanup_ctx.append(_session)
    front_app.router.add_get("/checkout", _front)
    server = TestServer(front_app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()
        await back.close()


@pytest.fixture
async def live(redis_url: str) -> AsyncIterator[Tracer]:
    tracer = asynctrace.configure(service="front", redis_url=redis_url, sample_rate=0.0)
    try:
        yield tracer
    finally:
        await asynctrace.shutdown()
        reset_tracer()


async def test_unsampled_requests_still_count_and_calls_make_an_edge(
    live: Tracer, front: TestServer, redis_url: str
) -> None:
    async with aiohttp.ClientSession() as client:
        for number in range(6):
            params = {"fail": "1"} if number == 0 else {}
            async with client.get(front.make_url("/checkout"), params=params) as response:
                assert response.status == 200
    assert await asynctrace.flush()

    async with TraceStore.from_url(redis_url) as store:
        rows = {(row.service, row.operation): row.current for row in await store.stats()}
        edges = await store.service_map()
        stored = await store.recent_traces()
        failed = await store.get_trace(stored[0].trace_id) if stored else None

    assert rows[("front", "GET /checkout")].count == 6
    assert rows[("back", "GET /work")].count == 6
    assert rows[("back", "GET /work")].errors == 1
    ((caller, callee, calls, errors),) = [
        (edge.caller, edge.callee, edge.stats.count, edge.stats.errors) for edge in edges
    ]
    assert (caller, callee, calls, errors) == ("front", "back", 6, 1)
    # Only the failed request is stored as a trace: each service's whole local
    # subtree of it (tail sampling, sampling.kept=error), as the client span saw the
    # 500 too.
    assert {row.status for row in stored} == {"error"}
    assert failed is not None
    assert {span.service for span in failed.spans} == {"front", "back"}
    assert {span.tags["sampling.kept"] for span in failed.spans} == {"error"}
    (back,) = [span for span in failed.spans if span.service == "back"]
    assert back.tags["peer.service"] == "front"
    stats = live.stats()
    assert stats.aggregate_only == 2 * 5  # the ok requests' local roots and server spans
    assert stats.tail_kept == len(failed.spans)
    assert stats.dropped == 0


async def test_an_exporter_without_aggregates_never_sees_unsampled_ok_spans() -> None:
    exporter = InMemoryExporter()
    asynctrace.configure(service="solo", exporter=exporter, sample_rate=0.0)
    try:
        async with asynctrace.span("job"):
            pass
        assert await asynctrace.flush()
        assert exporter.spans == []
        assert asynctrace.stats().unsampled == 1
        assert asynctrace.stats().aggregate_only == 0
    finally:
        await asynctrace.shutdown()
        reset_tracer()
