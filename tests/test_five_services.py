"""Five aiohttp services on loopback make one trace in a real Redis.

api-gateway -> auth, api-gateway -> orders -> payment, orders -> inventory: each its
own ``web.Application`` served by its own ``AppRunner`` on 127.0.0.1, traced only by
``middleware(service=...)`` and ``client_trace_config()``. Handlers just make their
downstream calls; spans are read back with ``TraceStore`` as the CLI would.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

import asynctrace
from asynctrace.aiohttp import client_trace_config, middleware
from asynctrace.model import Span, Trace, utc_day
from asynctrace.store import TraceStore
from asynctrace.tracer import reset_tracer

SESSION = web.AppKey("session", aiohttp.ClientSession)
DOWNSTREAM = web.AppKey("downstream", dict[str, URL])


async def call(request: web.Request, method: str, service: str, path: str) -> Any:
    """One downstream call; a failed callee fails this handler too (aiohttp answers 500)."""
    url = request.app[DOWNSTREAM][service].with_path(path)
    async with request.app[SESSION].request(method, url) as response:
        response.raise_for_status()
        return await response.json()


async def gateway_checkout(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    user = await call(request, "GET", "auth", "/verify")
    order = await call(request, "POST", "orders", f"/orders/{order_id}")
    return web.json_response({"user": user, "order": order})


async def auth_verify(request: web.Request) -> web.Response:
    return web.json_response({"user": "ada"})


async def orders_place(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    charge = await call(request, "POST", "payment", f"/charge/{order_id}")
    stock = await call(request, "POST", "inventory", f"/reserve/{order_id}")
    return web.json_response({"charge": charge, "stock": stock})


async def payment_charge(request: web.Request) -> web.Response:
    if request.match_info["order_id"] == "declined":
        raise RuntimeError("card declined")
    return web.json_response({"charged": True})


async def inventory_reserve(request: web.Request) -> web.Response:
    return web.json_response({"reserved": True})


@dataclass
class Services:
    gateway: URL
    ports: dict[str, int]


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        app[SESSION] = session
        yield


async def _serve(
    runners: list[web.AppRunner],
    name: str,
    method: str,
    path: str,
    handler: Any,
    downstream: dict[str, URL],
) -> URL:
    app = web.Application(middlewares=[middleware(service=name)])
    app.router.add_route(method, path, handler)
    app[DOWNSTREAM] = downstream
    app.cleanup_ctx.append(_client_session)
    runner = web.AppRunner(app)
    await runner.setup()
    runners.append(runner)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return URL.build(scheme="http", host=host, port=port)


def _port(url: URL) -> int:
    assert url.port is not None
    return url.port


@pytest.fixture
async def services(redis_url: str) -> AsyncIterator[Services]:
    asynctrace.configure(service="unnamed", redis_url=redis_url, max_delay_s=0.01)
    runners: list[web.AppRunner] = []
    try:
        payment = await _serve(runners, "payment", "POST", "/charge/{order_id}", payment_charge, {})
        inventory = await _serve(
            runners, "inventory", "POST", "/reserve/{order_id}", inventory_reserve, {}
        )
        auth = await _serve(runners, "auth", "GET", "/verify", auth_verify, {})
        orders = await _serve(
            runners,
            "orders",
            "POST",
            "/orders/{order_id}",
            orders_place,
            {"payment": payment, "inventory": inventory},
        )
        gateway = await _serve(
            runners,
            "api-gateway",
            "GET",
            "/checkout/{order_id}",
            gateway_checkout,
            {"auth": auth, "orders": orders},
        )
        ports = {
            name: _port(url)
            for name, url in [
                ("payment", payment),
                ("inventory", inventory),
                ("auth", auth),
                ("orders", orders),
            ]
        }
        yield Services(gateway, ports)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        await asynctrace.shutdown()
        reset_tracer()


async def checkout(
    services: Services, order_id: str, headers: dict[str, str] | None = None
) -> tuple[int, str | None]:
    """Call the gateway as an untraced outside client; (status, X-Trace-ID)."""
    async with aiohttp.ClientSession() as session:
        url = services.gateway.with_path(f"/checkout/{order_id}")
        async with session.get(url, headers=headers) as response:
            await response.read()
            return response.status, response.headers.get("X-Trace-ID")


async def stored_trace(redis_url: str, trace_id: str) -> Trace:
    assert await asynctrace.flush(timeout_s=5.0)
    async with TraceStore.from_url(redis_url) as store:
        trace = await store.get_trace(trace_id)
    assert trace is not None
    return trace


def one(trace: Trace, service: str, kind: str, operation: str) -> Span:
    (span,) = [
        span
        for span in trace.spans
        if (span.service, span.kind, span.operation) == (service, kind, operation)
    ]
    return span


def links(trace: Trace, services: Services) -> dict[str, Span]:
    """Every span of a full checkout by a short name, asserting the exact tree."""
    port = services.ports
    spans = {
        "gateway": one(trace, "api-gateway", "server", "GET /checkout/{order_id}"),
        "gateway->auth": one(trace, "api-gateway", "client", f"HTTP GET 127.0.0.1:{port['auth']}"),
        "auth": one(trace, "auth", "server", "GET /verify"),
        "gateway->orders": one(
            trace, "api-gateway", "client", f"HTTP POST 127.0.0.1:{port['orders']}"
        ),
        "orders": one(trace, "orders", "server", "POST /orders/{order_id}"),
        "orders->payment": one(trace, "orders", "client", f"HTTP POST 127.0.0.1:{port['payment']}"),
        "payment": one(trace, "payment", "server", "POST /charge/{order_id}"),
    }
    parents = {
        "gateway->auth": "gateway",
        "auth": "gateway->auth",
        "gateway->orders": "gateway",
        "orders": "gateway->orders",
        "orders->payment": "orders",
        "payment": "orders->payment",
    }
    for child, parent in parents.items():
        assert spans[child].parent_span_id == spans[parent].span_id, child
    return spans


async def test_a_checkout_across_five_services_is_one_trace(
    services: Services, redis_url: str
) -> None:
    status, trace_id = await checkout(services, "42")
    assert status == 200
    assert trace_id is not None

    trace = await stored_trace(redis_url, trace_id)
    assert len(trace.spans) == 9
    assert {span.trace_id for span in trace.spans} == {trace_id}
    assert trace.corrupt_entries == 0
    assert trace.services == ("api-gateway", "auth", "orders", "payment", "inventory")
    assert sorted(span.kind for span in trace.spans) == ["client"] * 4 + ["server"] * 5
    assert not trace.has_errors
    assert all(span.status == "ok" for span in trace.spans)
    assert all(span.tags["http.status"] == "200" for span in trace.spans)

    spans = links(trace, services)
    to_inventory = one(
        trace, "orders", "client", f"HTTP POST 127.0.0.1:{services.ports['inventory']}"
    )
    inventory = one(trace, "inventory", "server", "POST /reserve/{order_id}")
    assert to_inventory.parent_span_id == spans["orders"].span_id
    assert inventory.parent_span_id == to_inventory.span_id
    assert trace.root is spans["gateway"]
    assert spans["gateway"].parent_span_id is None
    assert spans["orders"].tags["http.path"] == "/orders/42"
    # A caller's span encloses its callee's.
    for caller, callee in (("gateway->orders", "orders"), ("orders->payment", "payment")):
        assert spans[caller].start_time <= spans[callee].start_time
        assert spans[caller].duration >= spans[callee].duration


async def test_an_error_in_payment_marks_it_and_every_caller(
    services: Services, redis_url: str
) -> None:
    days = {utc_day(time.time() * 1000)}
    status, _ = await checkout(services, "declined")
    assert status == 500
    # aiohttp's own 500 page is beyond a middleware's reach (setup() adds X-Trace-ID
    # to it); find the trace the way ops would, in the day's error index.
    assert await asynctrace.flush(timeout_s=5.0)
    days.add(utc_day(time.time() * 1000))
    async with TraceStore.from_url(redis_url) as store:
        (trace_id,) = {trace for day in days for trace in await store.error_traces(day=day)}

    trace = await stored_trace(redis_url, trace_id)
    spans = links(trace, services)
    assert trace.has_errors
    # orders stopped at the failed charge: inventory was never called.
    assert trace.services == ("api-gateway", "auth", "orders", "payment")
    assert len(trace.spans) == 7

    payment = spans["payment"]
    assert payment.status == "error"
    assert payment.tags["error.type"] == "RuntimeError"
    assert [log.message for log in payment.logs] == ["RuntimeError: card declined"]
    # Each caller up the chain is an error too: the client span by the 500 it got,
    # the server span by the exception that 500 raised in its handler.
    for name in ("payment", "orders->payment", "orders", "gateway->orders", "gateway"):
        assert spans[name].status == "error", name
        assert spans[name].tags["http.status"] == "500", name
    assert spans["orders"].tags["error.type"] == "ClientResponseError"
    assert "error.type" not in spans["orders->payment"].tags
    assert spans["auth"].status == "ok"
    assert spans["gateway->auth"].status == "ok"


@pytest.mark.parametrize("span_header", [None, ""], ids=["no X-Span-ID", "empty X-Span-ID"])
async def test_a_caller_sending_only_x_trace_id_joins_the_trace(
    services: Services, redis_url: str, span_header: str | None
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    headers = {"X-Trace-ID": trace_id.upper()}
    if span_header is not None:
        headers["X-Span-ID"] = span_header
    status, returned = await checkout(services, "7", headers)
    assert status == 200
    assert returned == trace_id  # validated, stored lowercase

    trace = await stored_trace(redis_url, trace_id)
    assert len(trace.spans) == 9
    assert {span.trace_id for span in trace.spans} == {trace_id}
    spans = links(trace, services)
    assert spans["gateway"].parent_span_id is None
    assert trace.root is spans["gateway"]
