"""OpenTelemetry services and asynctrace services in one trace, through ``asynctrace receive``.

frontend (OpenTelemetry SDK) -> checkout (asynctrace) -> inventory (OpenTelemetry SDK):
W3C headers go both ways, the OpenTelemetry services export with the real
``opentelemetry-exporter-otlp-proto-http`` exporter (protobuf) to the receiver, and
checkout exports natively; all of it lands in the session's redis-server as one
trace, which ``asynctrace show`` analyses. The test is synchronous: the CLI runs its
own event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)

import asynctrace
from asynctrace.aiohttp import client_trace_config, setup
from asynctrace.cli import main
from asynctrace.export import RedisExporter
from asynctrace.receiver import TRACES_PATH, create_app
from asynctrace.store import TraceStore
from asynctrace.testing import free_port
from asynctrace.tracer import reset_tracer

_PROPAGATOR = TraceContextTextMapPropagator()
_SLOW_S = 0.25  # makes the bottleneck; never waited on as synchronisation


@dataclass
class _OtelService:
    """An aiohttp service traced by hand with the OpenTelemetry SDK, as a user would."""

    name: str
    provider: TracerProvider
    downstream: str | None = None
    is_slow: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        tracer = self.provider.get_tracer("interop-test")
        parent = _PROPAGATOR.extract(request.headers)
        with tracer.start_as_current_span(
            f"GET {request.path}", context=parent, kind=SpanKind.SERVER
        ) as server:
            server.set_attribute("http.method", "GET")
            server.set_attribute("http.status_code", 200)
            if self.downstream is not None:
                with tracer.start_as_current_span("HTTP GET checkout", kind=SpanKind.CLIENT):
                    headers: dict[str, str] = {}
                    _PROPAGATOR.inject(headers)
                    async with (
                        aiohttp.ClientSession() as session,
                        session.get(self.downstream, headers=headers) as response,
                    ):
                        await response.read()
            with tracer.start_as_current_span("query stock") as query:
                query.add_event("cache miss", {"cache.key": "sku-1"})
                if self.is_slow:
                    await asyncio.sleep(_SLOW_S)
        return web.Response(text=self.name)


def _provider(name: str, endpoint: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


@dataclass(frozen=True)
class _Outcome:
    trace_id: str
    shown: str


def _run_scenario(redis_url: str, slow: str) -> _Outcome:
    # The SDK's setup blocks (resource detection joins threads): done before the loop.
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}{TRACES_PATH}"
    inventory = _OtelService("inventory", _provider("inventory", endpoint))
    inventory.is_slow = slow == "inventory"
    frontend = _OtelService("frontend", _provider("frontend", endpoint))

    async def scenario() -> str:
        receiver = TestServer(create_app(RedisExporter(redis_url)), host="127.0.0.1", port=port)
        await receiver.start_server()
        asynctrace.configure(service="checkout", redis_url=redis_url)

        async def checkout_handler(request: web.Request) -> web.Response:
            async with (
                aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session,
                session.get(str(inventory_server.make_url("/stock"))) as response,
            ):
                await response.read()
            async with asynctrace.span("price cart"):
                if slow == "checkout":
                    await asyncio.sleep(_SLOW_S)
            return web.Response(text="checkout")

        checkout = web.Application()
        setup(checkout, service="checkout")
        checkout.router.add_get("/checkout", checkout_handler)
        inventory_app = web.Application()
        inventory_app.router.add_get("/stock", inventory.handle)
        async with (
            TestServer(inventory_app, host="127.0.0.1") as inventory_server,
            TestServer(checkout, host="127.0.0.1") as checkout_server,
        ):
            frontend.downstream = str(checkout_server.make_url("/checkout"))
            frontend_app = web.Application()
            frontend_app.router.add_get("/", frontend.handle)
            async with (
                TestServer(frontend_app, host="127.0.0.1") as frontend_server,
                aiohttp.ClientSession() as session,
                session.get(frontend_server.make_url("/")) as response,
            ):
                assert response.status == 200
                trace_id = response.headers.get("X-Trace-ID")
            # The SDK's exporter is synchronous (requests) and runs in its own thread.
            for service in (frontend, inventory):
                assert await asyncio.to_thread(service.provider.force_flush, 10_000)
                await asyncio.to_thread(service.provider.shutdown)
            assert await asynctrace.flush()
            await asynctrace.shutdown()
        await receiver.close()
        assert trace_id is None  # the frontend is not asynctrace: read the id from Redis
        async with TraceStore.from_url(redis_url) as store:
            (summary,) = await store.recent_traces(limit=10)
        return summary.trace_id

    try:
        trace_id = asyncio.run(scenario())
    finally:
        reset_tracer()
    shown = CliRunner().invoke(
        main, ["--redis-url", redis_url, "show", trace_id], env={"COLUMNS": "120"}
    )
    assert shown.exit_code == 0, shown.output
    return _Outcome(trace_id, shown.stdout)


@pytest.mark.parametrize("slow", ["inventory", "checkout"])
def test_otel_and_asynctrace_services_form_one_trace(redis_url: str, slow: str) -> None:
    outcome = _run_scenario(redis_url, slow)

    async def read() -> asynctrace.model.Trace | None:
        async with TraceStore.from_url(redis_url) as store:
            return await store.get_trace(outcome.trace_id)

    trace = asyncio.run(read())
    assert trace is not None
    # The client span is named for the host and port it called.
    by_name = {(span.service, span.operation.split(":")[0]): span for span in trace.spans}
    assert len(by_name) == len(trace.spans) == 8
    assert sorted(by_name) == [
        ("checkout", "GET /checkout"),
        ("checkout", "HTTP GET 127.0.0.1"),
        ("checkout", "price cart"),
        ("frontend", "GET /"),
        ("frontend", "HTTP GET checkout"),
        ("frontend", "query stock"),
        ("inventory", "GET /stock"),
        ("inventory", "query stock"),
    ]
    front = by_name["frontend", "GET /"]
    front_call = by_name["frontend", "HTTP GET checkout"]
    checkout = by_name["checkout", "GET /checkout"]
    checkout_call = by_name["checkout", "HTTP GET 127.0.0.1"]
    stock = by_name["inventory", "GET /stock"]
    # Exact parent links across both kinds of service, both ways.
    assert front.parent_span_id is None
    assert front_call.parent_span_id == front.span_id
    assert checkout.parent_span_id == front_call.span_id
    assert checkout_call.parent_span_id == checkout.span_id
    assert stock.parent_span_id == checkout_call.span_id
    assert by_name["inventory", "query stock"].parent_span_id == stock.span_id
    assert [front.kind, front_call.kind, checkout.kind, stock.kind] == [
        "server",
        "client",
        "server",
        "server",
    ]
    assert stock.tags["http.status_code"] == "200"
    assert [log.message for log in by_name["inventory", "query stock"].logs] == [
        "cache miss cache.key=sku-1"
    ]
    assert trace.root is front
    # The bottleneck is named whichever kind of service it is in.
    assert f"{slow} is the bottleneck" in outcome.shown
