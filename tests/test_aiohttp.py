"""The aiohttp integration against real in-process apps: middleware, setup() and client."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler, Middleware
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient
from yarl import URL

import asynctrace
from asynctrace import _ratelimit
from asynctrace import aiohttp as traced_aiohttp
from asynctrace.aiohttp import client_trace_config, middleware, setup
from asynctrace.export import InMemoryExporter
from asynctrace.export.aggregates import aggregate_commands
from asynctrace.ids import is_valid_span_id, is_valid_trace_id
from asynctrace.model import Limits, Span
from asynctrace.propagation import extract
from asynctrace.tracer import Tracer, reset_tracer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACE_ID_OF_SEED = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID_OF_SEED = "b7ad6b7169203331"


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def echo_headers(request: web.Request) -> web.Response:
    """The request headers the server received, names lowercased."""
    return web.json_response({name.lower(): value for name, value in request.headers.items()})


def app_with(
    routes: Mapping[str, Handler] | None = None,
    *,
    middlewares: list[Middleware] | None = None,
    **options: Any,
) -> web.Application:
    """An app with ``middleware(**options)`` (unless middlewares are given) and GET routes."""
    app = web.Application(
        middlewares=middlewares if middlewares is not None else [middleware(**options)]
    )
    for path, handler in (routes or {"/": ok}).items():
        app.router.add_get(path, handler)
    return app


async def exported(exporter: InMemoryExporter) -> list[Span]:
    await asynctrace.flush()
    return list(exporter.spans)


async def only_span(exporter: InMemoryExporter) -> Span:
    (span,) = await exported(exporter)
    return span


def by_kind(spans: list[Span], kind: str) -> list[Span]:
    return [span for span in spans if span.kind == kind]


# -- server span: names, tags, statuses ------------------------------------------------


async def test_server_span_is_named_after_the_route_template_with_http_tags(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def order(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"]})

    client = await aiohttp_client(app_with({"/orders/{id}": order}))
    response = await client.get("/orders/42?card=4111111111111111")
    assert response.status == 200

    span = await only_span(exporter)
    assert span.operation == "GET /orders/{id}"
    assert span.kind == "server"
    assert span.status == "ok"
    assert span.parent_span_id is None
    assert span.service == "test-service"
    assert span.tags == {
        "http.method": "GET",
        "http.path": "/orders/42",
        "http.route": "/orders/{id}",
        "http.status": "200",
        "http.host": f"127.0.0.1:{client.port}",
        "net.peer.ip": "127.0.0.1",
    }
    assert response.headers["X-Trace-ID"] == span.trace_id


async def test_a_request_without_host_header_has_no_host_tag_and_no_name_lookup(
    tracer: Tracer, exporter: InMemoryExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_lookup(name: str = "") -> str:
        raise AssertionError("socket.getfqdn() blocks the event loop")

    # aiohttp before the fix of aio-libs/aiohttp#9308 called it for request.host.
    monkeypatch.setattr(socket, "getfqdn", no_lookup)
    server = TestServer(app_with())
    await server.start_server()
    try:
        # HTTP/1.0 needs no Host header; aiohttp's own client always sends one.
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        async with asyncio.timeout(5):
            reply = await reader.read()
        writer.close()
        await writer.wait_closed()
    finally:
        await server.close()

    assert reply.split(b"\r\n", 1)[0].endswith(b" 200 OK")
    span = await only_span(exporter)
    assert "http.host" not in span.tags
    assert span.tags["http.path"] == "/"
    assert span.status == "ok"
    assert _ratelimit.internal_error_count() == 0


async def test_service_option_names_the_spans_of_that_app(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(app_with(service="orders"))
    await client.get("/")
    assert (await only_span(exporter)).service == "orders"


async def test_unmatched_requests_share_one_name_per_method(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(app_with({"/orders/{id}": ok}))
    assert (await client.get("/wp-admin/1")).status == 404
    assert (await client.get("/wp-admin/2")).status == 404
    assert (await client.post("/orders/1")).status == 405
    assert (await client.request("PROPFIND", "/pot")).status == 404

    spans = await exported(exporter)
    assert [span.operation for span in spans] == [
        "GET (unmatched)",
        "GET (unmatched)",
        "POST (unmatched)",
        "HTTP (unmatched)",  # a made-up method must not grow the operation names
    ]
    assert all("http.route" not in span.tags for span in spans)
    assert spans[3].tags["http.method"] == "PROPFIND"
    assert [span.tags["http.status"] for span in spans] == ["404", "404", "405", "404"]
    assert all(span.status == "error" for span in spans)


async def test_catch_all_route_names_unusual_methods_http(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    app = web.Application(middlewares=[middleware()])
    app.router.add_route("*", "/any/{name}", ok)
    client = await aiohttp_client(app)
    await client.put("/any/x")
    await client.request("PURGE", "/any/y")
    spans = await exported(exporter)
    assert [span.operation for span in spans] == ["PUT /any/{name}", "HTTP /any/{name}"]


async def test_sub_application_routes_are_named_with_their_prefix(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    api = web.Application()
    api.router.add_get("/orders/{id}", ok)
    app = web.Application(middlewares=[middleware()])
    app.add_subapp("/api/v1", api)
    client = await aiohttp_client(app)
    assert (await client.get("/api/v1/orders/9")).status == 200
    span = await only_span(exporter)
    assert span.operation == "GET /api/v1/orders/{id}"
    assert span.tags["http.route"] == "/api/v1/orders/{id}"


async def test_tiny_span_limits_are_respected_and_drops_counted(
    exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    asynctrace.configure(exporter=exporter, limits=Limits(max_tags=3, max_string_length=12))
    try:
        client = await aiohttp_client(app_with({"/a-rather-long-path": ok}))
        response = await client.get("/a-rather-long-path")
        assert response.status == 200
        span = await only_span(exporter)
    finally:
        await asynctrace.shutdown()
        reset_tracer()
    assert response.headers["X-Trace-ID"] == span.trace_id
    assert span.tags["http.method"] == "GET"
    assert span.tags["http.path"].startswith("/a-rather-lo")
    assert span.tags["asynctrace.truncated"] == "true"
    assert int(span.tags["asynctrace.dropped_tags"]) >= 1
    assert _ratelimit.internal_error_count() == 0


async def test_tag_keys_longer_than_the_string_limit_are_clipped_on_the_status_too(
    exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    asynctrace.configure(exporter=exporter, limits=Limits(max_string_length=8))
    try:
        client = await aiohttp_client(app_with({"/a": ok}))
        assert (await client.get("/a")).status == 200
        span = await only_span(exporter)
    finally:
        await asynctrace.shutdown()
        reset_tracer()
    assert "http.status" not in span.tags
    assert span.tags["http.sta…[truncated]"] == "200"


async def test_a_route_template_longer_than_the_string_limit_is_clipped(
    exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    # Path, method and host fit in 20 characters; only the route template does not.
    asynctrace.configure(exporter=exporter, limits=Limits(max_string_length=20))
    try:
        app = web.Application(middlewares=[middleware()])
        app.router.add_get("/{organisation_identifier}", ok)
        client = await aiohttp_client(app)
        assert (await client.get("/x")).status == 200
        span = await only_span(exporter)
    finally:
        await asynctrace.shutdown()
        reset_tracer()
    assert span.tags["http.path"] == "/x"
    assert span.tags["http.route"] == "/{organisation_ident…[truncated]"
    assert span.tags["asynctrace.truncated"] == "true"


async def test_redirect_raised_as_http_exception_is_ok_and_carries_trace_id(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def old(request: web.Request) -> web.Response:
        raise web.HTTPFound("/new")

    client = await aiohttp_client(app_with({"/old": old}))
    response = await client.get("/old", allow_redirects=False)
    assert response.status == 302

    span = await only_span(exporter)
    assert span.status == "ok"
    assert span.tags["http.status"] == "302"
    assert "error" not in span.tags
    assert span.logs == []
    assert response.headers["X-Trace-ID"] == span.trace_id


async def test_not_found_raised_is_an_error_by_status_not_a_crash(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound(text="no such order")

    client = await aiohttp_client(app_with({"/orders/{id}": missing}))
    response = await client.get("/orders/7")
    assert response.status == 404
    assert await response.text() == "no such order"

    span = await only_span(exporter)
    assert span.status == "error"
    assert span.tags["http.status"] == "404"
    assert "error.type" not in span.tags
    assert span.logs == []  # no exception log for control flow
    assert response.headers["X-Trace-ID"] == span.trace_id


async def test_handler_exception_is_recorded_and_reraised_unchanged(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    raised = ValueError("card declined")
    seen: list[BaseException] = []

    async def pay(request: web.Request) -> web.Response:
        raise raised

    @web.middleware
    async def outer(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            seen.append(exc)
            raise

    client = await aiohttp_client(app_with({"/pay": pay}, middlewares=[outer, middleware()]))
    response = await client.get("/pay")
    assert response.status == 500
    assert seen == [raised]
    assert seen[0].__traceback__ is not None

    span = await only_span(exporter)
    assert span.status == "error"
    assert span.tags["http.status"] == "500"
    assert span.tags["error.type"] == "ValueError"
    assert [(log.level, log.message) for log in span.logs] == [
        ("error", "ValueError: card declined")
    ]


async def test_handler_returning_no_response_is_a_500_error_not_an_internal_failure(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def forgot(request: web.Request) -> web.Response:
        return None  # type: ignore[return-value]  # the bug under test

    client = await aiohttp_client(app_with({"/forgot": forgot}))
    assert (await client.get("/forgot")).status == 500
    span = await only_span(exporter)
    assert span.status == "error"
    assert span.tags["http.status"] == "500"
    assert _ratelimit.internal_error_count() == 0


@pytest.mark.parametrize(
    ("error_status", "status", "expected"),
    [(400, 399, "ok"), (400, 400, "error"), (500, 404, "ok"), (500, 503, "error")],
)
async def test_error_status_option_sets_the_error_threshold(
    tracer: Tracer,
    exporter: InMemoryExporter,
    aiohttp_client: AiohttpClient,
    error_status: int,
    status: int,
    expected: str,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status)

    client = await aiohttp_client(app_with({"/": answer}, error_status=error_status))
    assert (await client.get("/")).status == status
    assert (await only_span(exporter)).status == expected


@pytest.mark.parametrize(
    "options",
    [
        {"error_status": 99},
        {"error_status": 1000},
        {"error_status": "500"},
        {"error_status": True},
        {"service": ""},
        {"service": 42},
        {"exclude_paths": "/health"},
        {"exclude_paths": ["health"]},
        {"exclude_paths": [None]},
    ],
)
def test_invalid_options_are_refused_at_construction(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each option has its own message
        middleware(**options)  # type: ignore[arg-type]  # wrong types on purpose
    if "error_status" in options:
        with pytest.raises(ValueError):  # noqa: PT011
            client_trace_config(error_status=options["error_status"])  # type: ignore[arg-type]  # wrong type on purpose
    with pytest.raises(ValueError):  # noqa: PT011
        setup(web.Application(), **options)  # type: ignore[arg-type]  # wrong types on purpose


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        middleware("orders")  # type: ignore[call-arg]  # positional on purpose
    with pytest.raises(TypeError):
        client_trace_config(500)  # type: ignore[call-arg]  # positional on purpose


@pytest.mark.parametrize("with_setup", [False, True], ids=["middleware", "setup"])
async def test_excluded_paths_are_served_untraced(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient, with_setup: bool
) -> None:
    if with_setup:
        app = app_with({"/health": ok, "/": ok}, middlewares=[])
        setup(app, exclude_paths=["/health"])
    else:
        app = app_with({"/health": ok, "/": ok}, exclude_paths=["/health"])
    client = await aiohttp_client(app)
    health = await client.get("/health")
    assert health.status == 200
    assert "X-Trace-ID" not in health.headers
    await client.get("/")
    assert [span.operation for span in await exported(exporter)] == ["GET /"]


async def test_requests_on_one_keep_alive_connection_are_separate_traces(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(app_with())
    first = await client.get("/")
    await first.read()
    second = await client.get("/")
    await second.read()
    spans = await exported(exporter)
    assert len({span.trace_id for span in spans}) == 2
    assert all(span.parent_span_id is None for span in spans)


# -- X-Trace-ID on every response: setup() ------------------------------------------------


async def test_setup_puts_trace_id_on_aiohttp_own_500_page(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application()
    app.router.add_get("/crash", crash)
    setup(app, service="orders")
    client = await aiohttp_client(app)
    response = await client.get("/crash")
    assert response.status == 500

    span = await only_span(exporter)
    assert span.service == "orders"
    assert span.status == "error"
    assert response.headers["X-Trace-ID"] == span.trace_id


async def test_without_setup_aiohttp_own_500_page_has_no_trace_id(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    client = await aiohttp_client(app_with({"/crash": crash}))
    response = await client.get("/crash")
    assert response.status == 500
    # The limit setup() exists for: the middleware never sees aiohttp's own 500 page.
    assert "X-Trace-ID" not in response.headers
    assert (await only_span(exporter)).status == "error"


async def test_setup_puts_trace_id_on_streamed_responses_and_span_covers_the_stream(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for chunk in (b"one ", b"two ", b"three"):
            await response.write(chunk)
        async with asynctrace.span("after the last chunk"):
            pass
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/stream", stream)
    setup(app)
    client = await aiohttp_client(app)
    response = await client.get("/stream")
    assert await response.read() == b"one two three"

    spans = await exported(exporter)
    (server,) = by_kind(spans, "server")
    (inner,) = by_kind(spans, "internal")
    assert response.headers["X-Trace-ID"] == server.trace_id
    assert server.tags["http.status"] == "200"
    assert inner.parent_span_id == server.span_id
    assert server.end_time >= inner.end_time


async def test_streamed_response_without_setup_is_traced_and_unharmed(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=206)
        await response.prepare(request)
        await response.write(b"partial")
        return response

    client = await aiohttp_client(app_with({"/stream": stream}))
    response = await client.get("/stream")
    assert await response.read() == b"partial"
    span = await only_span(exporter)
    assert span.tags["http.status"] == "206"
    # Its headers were sent before the middleware saw the response: setup() adds it.
    assert "X-Trace-ID" not in response.headers
    assert _ratelimit.internal_error_count() == 0


async def test_setup_keeps_a_trace_id_header_the_handler_set(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def own(request: web.Request) -> web.Response:
        return web.Response(headers={"X-Trace-ID": TRACE_ID})

    app = web.Application()
    app.router.add_get("/", own)
    setup(app)
    client = await aiohttp_client(app)
    response = await client.get("/")
    # The middleware writes the request's own trace id over it.
    assert response.headers.getall("X-Trace-ID") == [(await only_span(exporter)).trace_id]


def test_setup_adds_the_middleware_outermost_and_only_once() -> None:
    @web.middleware
    async def mine(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    app = web.Application(middlewares=[mine])
    setup(app)
    assert len(app.middlewares) == 2
    assert app.middlewares[1] is mine
    with pytest.raises(ValueError, match="already"):
        setup(app)
    assert len(app.middlewares) == 2


# -- the span is current for the handler --------------------------------------------------


async def test_spans_in_the_handler_nest_under_the_server_span(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    @asynctrace.traced
    async def load_order() -> str:
        return "42"

    async def order(request: web.Request) -> web.Response:
        current = asynctrace.current_span()
        assert current is not None
        assert current.kind == "server"
        async with asynctrace.span("check stock"):
            await load_order()
        return web.Response(text="ok")

    client = await aiohttp_client(app_with({"/order": order}))
    assert (await client.get("/order")).status == 200

    spans = {span.operation: span for span in await exported(exporter)}
    server = spans["GET /order"]
    assert spans["check stock"].parent_span_id == server.span_id
    assert spans[load_order.__qualname__].parent_span_id == spans["check stock"].span_id
    assert {span.trace_id for span in spans.values()} == {server.trace_id}


async def test_client_disconnect_ends_the_span_as_cancelled(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    started = asyncio.Event()
    never = asyncio.Event()
    ended = asyncio.Event()
    caught: list[BaseException] = []

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await never.wait()
        return web.Response()

    @web.middleware
    async def outer(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Runs after the asynctrace middleware is done with the cancellation.
        try:
            return await handler(request)
        except BaseException as exc:
            caught.append(exc)
            raise
        finally:
            ended.set()

    app = app_with({"/slow": slow}, middlewares=[outer, middleware()])
    client = await aiohttp_client(app, server_kwargs={"handler_cancellation": True})
    request = asyncio.create_task(client.get("/slow"))
    async with asyncio.timeout(5):
        await started.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await ended.wait()

    assert len(caught) == 1
    assert isinstance(caught[0], asyncio.CancelledError)
    span = await only_span(exporter)
    assert span.tags["cancelled"] == "true"
    assert span.status == "ok"
    assert "http.status" not in span.tags
    assert asynctrace.current_span() is None


# -- incoming context -------------------------------------------------------------------------


async def test_incoming_traceparent_is_continued(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(app_with())
    response = await client.get(
        "/",
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "vendor=opaque"},
    )
    span = await only_span(exporter)
    assert span.trace_id == TRACE_ID
    assert span.parent_span_id == PARENT_ID
    assert span.tracestate == "vendor=opaque"
    assert response.headers["X-Trace-ID"] == TRACE_ID


@pytest.mark.parametrize(
    ("entry", "caller"),
    [
        ("asynctrace=checkout", "checkout"),
        ("asynctrace=cod%E2%80%AEgpj", None),  # U+202E, a bidi override
        ("asynctrace=evil%0D%0Aname", None),
        ("asynctrace=" + "x" * 65, None),
    ],
)
async def test_only_a_valid_caller_name_becomes_peer_service_and_an_edge(
    tracer: Tracer,
    exporter: InMemoryExporter,
    aiohttp_client: AiohttpClient,
    entry: str,
    caller: str | None,
) -> None:
    client = await aiohttp_client(app_with())
    response = await client.get(
        "/", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": entry}
    )
    assert response.status == 200
    span = await only_span(exporter)
    assert span.tags.get("peer.service") == caller
    edges = [command for command in aggregate_commands([span]) if ":edge:" in command[1]]
    assert bool(edges) == (caller is not None)


async def test_a_caller_name_longer_than_the_string_limit_is_clipped_like_any_tag(
    exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    # Every other tag fits in 16 characters; only the caller's name does not.
    asynctrace.configure(exporter=exporter, limits=Limits(max_string_length=16))
    try:
        client = await aiohttp_client(app_with())
        response = await client.get(
            "/",
            headers={
                "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
                "tracestate": "asynctrace=checkout-frontend",
            },
        )
        assert response.status == 200
        span = await only_span(exporter)
    finally:
        await asynctrace.shutdown()
        reset_tracer()
    assert span.tags["peer.service"] == "checkout-fronten…[truncated]"
    assert span.tags["asynctrace.truncated"] == "true"


async def test_unsampled_traceparent_is_not_exported_but_trace_id_is_returned(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(app_with())
    response = await client.get("/", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert response.status == 200
    assert response.headers["X-Trace-ID"] == TRACE_ID
    assert await exported(exporter) == []
    assert asynctrace.stats().unsampled == 1


async def test_unsampled_trace_still_exports_its_error_span(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    client = await aiohttp_client(app_with({"/crash": crash}))
    await client.get("/crash", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    span = await only_span(exporter)
    assert span.tags["sampling.kept"] == "error"


@pytest.mark.parametrize(
    ("headers", "parent"),
    [
        ({"X-Trace-ID": TRACE_ID_OF_SEED}, None),
        ({"X-Trace-ID": TRACE_ID_OF_SEED, "X-Span-ID": ""}, None),
        ({"X-Trace-ID": TRACE_ID_OF_SEED.upper(), "X-Span-ID": SPAN_ID_OF_SEED}, SPAN_ID_OF_SEED),
        ({"x-trace-id": TRACE_ID_OF_SEED, "x-span-id": SPAN_ID_OF_SEED.upper()}, SPAN_ID_OF_SEED),
        ({"X-Trace-ID": TRACE_ID_OF_SEED, "X-Span-ID": "not-an-id"}, None),
    ],
)
async def test_caller_sending_only_x_trace_id_joins_the_trace(
    tracer: Tracer,
    exporter: InMemoryExporter,
    aiohttp_client: AiohttpClient,
    headers: dict[str, str],
    parent: str | None,
) -> None:
    client = await aiohttp_client(app_with())
    response = await client.get("/", headers=headers)
    span = await only_span(exporter)
    assert span.trace_id == TRACE_ID_OF_SEED
    assert span.parent_span_id == parent
    assert response.headers["X-Trace-ID"] == TRACE_ID_OF_SEED


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-00f067aa0ba902b7-01"},
        {"traceparent": f"00-{'0' * 32}-{PARENT_ID}-01"},
        {"traceparent": f"00-{TRACE_ID}-{'0' * 16}-01"},
        {"traceparent": f"ff-{TRACE_ID}-{PARENT_ID}-01"},
        {"traceparent": f"00-{TRACE_ID.upper()}-{PARENT_ID}-01"},
        {"traceparent": "garbage", "tracestate": "a=b"},
        {"X-Trace-ID": "trace:4bf92f3577b34da6a3ce929d0e0e4736"},
        {"X-Trace-ID": "../../../../etc/passwd"},
        {"X-Trace-ID": "4bf92f3577b34da6a3ce929d0e0e473*"},
        {"X-Trace-ID": "0" * 32, "X-Span-ID": PARENT_ID},
        {"X-Trace-ID": TRACE_ID + "00"},
        {"X-Trace-ID": "", "X-Span-ID": ""},
    ],
)
async def test_invalid_context_headers_start_a_new_trace(
    tracer: Tracer,
    exporter: InMemoryExporter,
    aiohttp_client: AiohttpClient,
    headers: dict[str, str],
) -> None:
    client = await aiohttp_client(app_with())
    response = await client.get("/", headers=headers)
    assert response.status == 200
    span = await only_span(exporter)
    assert span.parent_span_id is None
    assert span.trace_id != TRACE_ID
    assert is_valid_trace_id(span.trace_id)
    assert response.headers["X-Trace-ID"] == span.trace_id
    assert span.tracestate == ""


_HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    | st.characters(min_codepoint=0x80, max_codepoint=0x2FF)
    | st.sampled_from("\t"),
    max_size=80,
)
_HEX = "0123456789abcdefABCDEF"


def _lower_hex(size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789abcdef", min_size=size, max_size=size)


_NEAR_TRACEPARENT = st.builds(
    lambda version, trace_id, span_id, flags, tail: f"{version}-{trace_id}-{span_id}-{flags}{tail}",
    st.text(alphabet=_HEX, min_size=1, max_size=3),
    st.text(alphabet=_HEX, min_size=31, max_size=33),
    st.text(alphabet=_HEX, min_size=15, max_size=17),
    st.text(alphabet=_HEX, min_size=1, max_size=3),
    st.sampled_from(["", "-", "-x", " ", "\t"]),
)
_HEADER_VALUE = (
    _HEADER_TEXT
    | _NEAR_TRACEPARENT
    | st.builds(
        "-".join,
        st.tuples(*(_lower_hex(size) for size in (2, 32, 16, 2))),
    )
    | st.text(alphabet=_HEX, min_size=15, max_size=33)
    | st.builds(
        lambda before, digits, after: before + digits + after,
        st.sampled_from(["", " ", "\t"]),
        _lower_hex(16) | _lower_hex(32) | _lower_hex(32).map(str.upper),
        st.sampled_from(["", " ", "\t "]),
    )
)
_CONTEXT_HEADERS = st.dictionaries(
    st.sampled_from(["traceparent", "tracestate", "X-Trace-ID", "X-Span-ID"]),
    _HEADER_VALUE,
)


@pytest.fixture
async def fuzz_client(
    tracer: Tracer, aiohttp_client: AiohttpClient
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(app_with())


@settings(
    max_examples=200,
    deadline=None,
    # One app and client for all examples, on purpose: the server is the thing fuzzed.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(headers=_CONTEXT_HEADERS)
async def test_fuzzed_context_headers_never_give_a_500_or_an_invalid_id(
    fuzz_client: TestClient[web.Request, web.Application],
    exporter: InMemoryExporter,
    headers: dict[str, str],
) -> None:
    exporter.clear()
    response = await fuzz_client.get("/", headers=headers)
    assert response.status == 200
    trace_id = response.headers["X-Trace-ID"]
    assert is_valid_trace_id(trace_id)

    # aiohttp strips OWS around header values, as extract() does.
    expected = extract({name: value.strip(" \t") for name, value in headers.items()})
    spans = await exported(exporter)
    if expected is None:
        event("new trace")
        (span,) = spans
        assert span.parent_span_id is None
    elif not expected.is_sampled:
        event("continued, unsampled")
        assert spans == []
        assert trace_id == expected.trace_id
        return
    else:
        event("continued")
        (span,) = spans
        assert span.trace_id == expected.trace_id
        assert span.parent_span_id == expected.span_id
    assert span.trace_id == trace_id
    assert is_valid_span_id(span.span_id)
    assert span.parent_span_id is None or is_valid_span_id(span.parent_span_id)


# -- the tracer is a guest ----------------------------------------------------------------------


class FailingExporter:
    """An exporter whose backend rejects everything."""

    def __init__(self) -> None:
        self.calls = 0

    async def export(self, spans: object) -> None:
        self.calls += 1
        raise RuntimeError("backend rejected the batch")

    async def shutdown(self) -> None:
        return None


@pytest.fixture
async def failing_tracer() -> AsyncIterator[FailingExporter]:
    failing = FailingExporter()
    asynctrace.configure(service="test-service", exporter=failing)
    try:
        yield failing
    finally:
        await asynctrace.shutdown(timeout_s=1.0)
        reset_tracer()


async def test_failing_exporter_leaves_responses_unchanged(
    failing_tracer: FailingExporter, aiohttp_client: AiohttpClient
) -> None:
    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/crash", crash)
    setup(app)
    client = await aiohttp_client(app)
    for _ in range(3):
        response = await client.get("/")
        assert response.status == 200
        assert await response.text() == "ok"
        assert is_valid_trace_id(response.headers["X-Trace-ID"])
    assert (await client.get("/crash")).status == 500

    await asynctrace.flush()
    stats = asynctrace.stats()
    assert failing_tracer.calls >= 1
    assert stats.failed_batches >= 1
    assert stats.dropped == 4


async def test_internal_failure_in_the_middleware_serves_the_request_untraced(
    tracer: Tracer,
    exporter: InMemoryExporter,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracing bug")

    monkeypatch.setattr(traced_aiohttp, "span", broken)
    client = await aiohttp_client(app_with())
    response = await client.get("/", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert response.status == 200
    assert await response.text() == "ok"
    assert "X-Trace-ID" not in response.headers
    assert _ratelimit.internal_error_count() == 1
    assert await exported(exporter) == []


async def test_internal_failure_in_client_hooks_leaves_the_request_alone(
    tracer: Tracer,
    exporter: InMemoryExporter,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = await aiohttp_client(app_with({"/": echo_headers}))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracing bug")

    monkeypatch.setattr(traced_aiohttp, "inject", broken)
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        async with session.get(server.make_url("/")) as response:
            assert response.status == 200
            sent = await response.json()
    assert "traceparent" not in sent
    assert _ratelimit.internal_error_count() == 1


# -- client spans ----------------------------------------------------------------------------


async def test_client_span_is_a_child_of_the_current_span_and_parents_the_callee(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    server = await aiohttp_client(app_with({"/orders/{id}": echo_headers}, service="orders"))
    url = server.make_url("/orders/1").with_user("svc").with_password("hunter2")
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        async with asynctrace.span("job") as job:
            async with session.get(url.with_query(token="s3cret")) as response:
                sent = await response.json()

    spans = await exported(exporter)
    (client,) = by_kind(spans, "client")
    (callee,) = by_kind(spans, "server")
    port = server.port
    assert client.operation == f"HTTP GET 127.0.0.1:{port}"
    assert client.parent_span_id == job.span_id
    assert client.trace_id == job.trace_id
    assert client.service == "test-service"
    assert client.status == "ok"
    assert client.tags == {
        "http.method": "GET",
        "http.url": f"http://127.0.0.1:{port}/orders/1",
        "http.status": "200",
    }
    assert callee.parent_span_id == client.span_id
    assert callee.trace_id == job.trace_id
    # 03: sampled, and random (W3C Level 2) since the trace started here.
    assert sent["traceparent"] == f"00-{job.trace_id}-{client.span_id}-03"
    assert sent["x-trace-id"] == job.trace_id
    assert sent["x-span-id"] == client.span_id
    assert "s3cret" not in repr(client.to_dict())
    assert "hunter2" not in repr(client.to_dict())


async def test_client_passes_tracestate_and_unsampled_flag_on(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    downstream = await aiohttp_client(app_with({"/": echo_headers}))

    async def relay(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
            async with session.get(downstream.make_url("/")) as response:
                return web.json_response(await response.json())

    upstream = await aiohttp_client(app_with({"/": relay}))
    response = await upstream.get(
        "/",
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00", "tracestate": "congo=t61rcWkgMzE"},
    )
    sent = await response.json()
    assert re.fullmatch(f"00-{TRACE_ID}-[0-9a-f]{{16}}-00", sent["traceparent"])
    # Passed on, beside whatever entry asynctrace keeps there itself.
    assert "congo=t61rcWkgMzE" in sent["tracestate"].split(",")
    assert await exported(exporter) == []  # the whole trace is unsampled


async def test_client_never_overwrites_headers_the_caller_set(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    server = await aiohttp_client(app_with({"/": echo_headers}))
    mine = {"TraceParent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-trace-id": TRACE_ID}
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        async with asynctrace.span("job"):
            async with session.get(server.make_url("/"), headers=mine) as response:
                sent = await response.json()
    assert sent["traceparent"] == mine["TraceParent"]
    assert sent["x-trace-id"] == TRACE_ID
    # Neither half of a pair is mixed in from another trace.
    assert "x-span-id" not in sent
    assert "tracestate" not in sent


async def test_client_span_without_a_current_span_starts_a_trace(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    server = await aiohttp_client(app_with())
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        async with session.get(server.make_url("/")) as response:
            await response.read()
    spans = await exported(exporter)
    (client,) = by_kind(spans, "client")
    (callee,) = by_kind(spans, "server")
    assert client.parent_span_id is None
    assert callee.parent_span_id == client.span_id
    assert callee.trace_id == client.trace_id


async def test_client_span_lasts_until_the_response_is_released(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    go_on = asyncio.Event()

    async def slow_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"head ")
        await go_on.wait()
        await response.write(b"tail")
        return response

    server = await aiohttp_client(app_with({"/": slow_body}))
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        async with session.get(server.make_url("/")) as response:
            assert response.status == 200
            # Headers are in, the body is not: the client span is still open.
            assert by_kind(await exported(exporter), "client") == []
            go_on.set()
            assert await response.read() == b"head tail"
        (client,) = by_kind(await exported(exporter), "client")
    assert client.tags["http.status"] == "200"
    (callee,) = by_kind(await exported(exporter), "server")
    assert client.end_time >= callee.start_time


async def test_client_span_ends_when_an_unread_response_is_released(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    never = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        await never.wait()
        return response

    server = await aiohttp_client(app_with({"/": endless}))
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        response = await session.get(server.make_url("/"))
        assert by_kind(await exported(exporter), "client") == []
        response.close()
        (client,) = by_kind(await exported(exporter), "client")
    assert client.status == "ok"
    never.set()


@pytest.mark.parametrize(
    ("error_status", "status", "expected"),
    [(400, 404, "error"), (400, 302, "ok"), (500, 404, "ok"), (500, 502, "error")],
)
async def test_client_status_at_or_over_the_threshold_is_an_error(
    tracer: Tracer,
    exporter: InMemoryExporter,
    aiohttp_client: AiohttpClient,
    error_status: int,
    status: int,
    expected: str,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": "/"} if status == 302 else {})

    server = await aiohttp_client(app_with({"/answer": answer}))
    config = client_trace_config(error_status=error_status)
    async with aiohttp.ClientSession(trace_configs=[config]) as session:
        async with session.get(server.make_url("/answer"), allow_redirects=False) as response:
            assert response.status == status
    (client,) = by_kind(await exported(exporter), "client")
    assert client.tags["http.status"] == str(status)
    assert client.status == expected


async def test_redirects_stay_in_one_client_span(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def old(request: web.Request) -> web.Response:
        raise web.HTTPFound("/new")

    server = await aiohttp_client(app_with({"/old": old, "/new": ok}))
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        async with session.get(server.make_url("/old")) as response:
            assert await response.text() == "ok"
    spans = await exported(exporter)
    (client,) = by_kind(spans, "client")
    servers = by_kind(spans, "server")
    assert [span.operation for span in servers] == ["GET /old", "GET /new"]
    assert all(span.parent_span_id == client.span_id for span in servers)
    assert client.tags["http.redirects"] == "1"
    assert client.tags["http.status"] == "200"
    assert client.tags["http.url"].endswith("/old")


async def test_raise_for_status_marks_the_client_span_without_leaking_the_query(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    server = await aiohttp_client(app_with({"/crash": crash}))
    async with aiohttp.ClientSession(
        trace_configs=[client_trace_config()], raise_for_status=True
    ) as session:
        with pytest.raises(aiohttp.ClientResponseError):
            await session.get(server.make_url("/crash").with_query(api_key="s3cret"))
    (client,) = by_kind(await exported(exporter), "client")
    assert client.status == "error"
    assert client.tags["http.status"] == "500"
    assert client.tags["error.type"] == "ClientResponseError"
    assert client.logs[-1].level == "error"
    assert "/crash" in client.logs[-1].message
    assert "s3cret" not in repr(client.to_dict())


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_failure_is_an_error_client_span(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    port = closed_port()
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        async with asynctrace.span("job") as job:
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.get(f"http://127.0.0.1:{port}/orders?token=s3cret")
    (client,) = by_kind(await exported(exporter), "client")
    assert client.parent_span_id == job.span_id
    assert client.status == "error"
    assert client.tags["error.type"] == "ClientConnectorError"
    assert client.tags["http.url"] == f"http://127.0.0.1:{port}/orders"
    assert "http.status" not in client.tags
    assert "s3cret" not in repr(client.to_dict())


async def test_read_timeout_is_an_error_client_span(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    never = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    server = await aiohttp_client(app_with({"/stuck": stuck}))
    # The timeout is the behaviour under test, not a way to wait for something.
    timeout = aiohttp.ClientTimeout(sock_read=0.05)
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        with pytest.raises(asyncio.TimeoutError):
            await session.get(server.make_url("/stuck"), timeout=timeout)
    never.set()
    (client,) = by_kind(await exported(exporter), "client")
    assert client.status == "error"
    assert client.tags["error.type"].endswith("TimeoutError")


async def test_cancelled_client_request_ends_its_span_as_cancelled(
    tracer: Tracer, exporter: InMemoryExporter, aiohttp_client: AiohttpClient
) -> None:
    started = asyncio.Event()
    never = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        started.set()
        await never.wait()
        return web.Response()

    server = await aiohttp_client(app_with({"/stuck": stuck}))
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        request = asyncio.create_task(session.get(server.make_url("/stuck")))
        async with asyncio.timeout(5):
            await started.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    never.set()
    (client,) = by_kind(await exported(exporter), "client")
    assert client.tags["cancelled"] == "true"
    assert client.status == "ok"


def test_module_exports_exactly_its_public_api() -> None:
    assert traced_aiohttp.__all__ == ["client_trace_config", "middleware", "setup"]
    for name in traced_aiohttp.__all__:
        assert callable(getattr(traced_aiohttp, name))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://payment:8080/pay", "http://payment:8080/pay"),
        ("http://u:p@h:81/p?q=1#f", "http://h:81/p"),
        ("http://user@h/p", "http://h/p"),
        ("http://:password@h/p", "http://h/p"),
        ("http://h/p?token=s3cret", "http://h/p"),
        ("http://h/p#fragment", "http://h/p"),
        ("http://h/p?#", "http://h/p"),
        ("http://[::1]:8080/a%20b?x=1", "http://[::1]:8080/a%20b"),
    ],
)
def test_client_url_tag_cuts_only_what_is_there(url: str, expected: str) -> None:
    # The http.url tag skips the with_*() calls for parts the URL does not have; the
    # text is what cutting all three always gave.
    parsed = URL(url)
    assert traced_aiohttp._safe_url(parsed) == expected
    assert expected == str(parsed.with_user(None).with_query(None).with_fragment(None))
