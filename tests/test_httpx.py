"""The httpx transport against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

import asynctrace
import asynctrace.httpx
from asynctrace import _ratelimit
from asynctrace.export import InMemoryExporter
from asynctrace.model import Span
from asynctrace.propagation import extract
from asynctrace.tracer import Tracer


async def echo_headers(request: web.Request) -> web.Response:
    return web.json_response({name.lower(): value for name, value in request.headers.items()})


async def not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text="no")


def url_of(server: object, path: str) -> str:
    return str(server.make_url(path))  # type: ignore[attr-defined]  # aiohttp TestServer


@pytest.fixture
async def base_url(aiohttp_server: AiohttpServer) -> AsyncIterator[str]:
    released = asyncio.Event()

    async def slow_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        await released.wait()
        await response.write(b"second")
        return response

    async def hang(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/echo", echo_headers)
    app.router.add_get("/missing", not_found)
    app.router.add_get("/stream", slow_body)
    app.router.add_get("/hang", hang)
    server = await aiohttp_server(app)
    try:
        yield url_of(server, "")
    finally:
        released.set()


async def exported(exporter: InMemoryExporter) -> list[Span]:
    assert await asynctrace.flush()
    return list(exporter.spans)


async def test_request_is_a_client_span_whose_headers_reach_the_server(
    tracer: Tracer, exporter: InMemoryExporter, base_url: str
) -> None:
    async with httpx.AsyncClient(transport=asynctrace.httpx.transport()) as client:
        with asynctrace.span("checkout") as parent:
            response = await client.get(base_url + "/echo?token=secret")

    spans = await exported(exporter)
    (call,) = [span for span in spans if span.kind == "client"]
    received = extract(response.json())
    assert received is not None
    assert (received.trace_id, received.span_id) == (parent.trace_id, call.span_id)
    assert response.json()["x-trace-id"] == parent.trace_id
    assert call.parent_span_id == parent.span_id
    port = httpx.URL(base_url).port
    assert call.operation == f"HTTP GET 127.0.0.1:{port}"
    assert call.tags == {
        "http.method": "GET",
        "http.url": f"http://127.0.0.1:{port}/echo",
        "http.status": "200",
    }
    assert call.status == "ok"


async def test_callers_own_trace_headers_are_kept(
    tracer: Tracer, exporter: InMemoryExporter, base_url: str
) -> None:
    own = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with httpx.AsyncClient(transport=asynctrace.httpx.transport()) as client:
        with asynctrace.span("checkout"):
            response = await client.get(base_url + "/echo", headers={"traceparent": own})

    assert response.json()["traceparent"] == own


async def test_error_status_marks_the_span_an_error(
    tracer: Tracer, exporter: InMemoryExporter, base_url: str
) -> None:
    async with httpx.AsyncClient(transport=asynctrace.httpx.transport()) as client:
        response = await client.get(base_url + "/missing")

    (call,) = await exported(exporter)
    assert response.status_code == 404
    assert (call.tags["http.status"], call.status) == ("404", "error")


async def test_span_ends_when_the_streamed_body_is_closed(
    tracer: Tracer, exporter: InMemoryExporter, base_url: str
) -> None:
    async with (
        httpx.AsyncClient(transport=asynctrace.httpx.transport()) as client,
        client.stream("GET", base_url + "/stream") as response,
    ):
        chunks = response.aiter_bytes()
        assert await anext(chunks) == b"first"
        assert await exported(exporter) == []  # still downloading
        # Closed early: the server sends the rest only when the test ends.
    (call,) = await exported(exporter)
    assert call.tags["http.status"] == "200"


async def test_connection_failure_is_recorded_and_reraised(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: refused
        async with httpx.AsyncClient(transport=asynctrace.httpx.transport()) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://user:pw@127.0.0.1:{port}/x?key=secret")

    (call,) = await exported(exporter)
    assert call.status == "error"
    assert call.tags["error.type"] == "ConnectError"
    assert call.tags["http.url"] == f"http://127.0.0.1:{port}/x"
    assert all("secret" not in log.message and "pw" not in log.message for log in call.logs)


async def test_timeout_is_recorded_as_an_error(
    tracer: Tracer, exporter: InMemoryExporter, base_url: str
) -> None:
    async with httpx.AsyncClient(
        transport=asynctrace.httpx.transport(), timeout=httpx.Timeout(5.0, read=0.05)
    ) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(base_url + "/hang")

    (call,) = await exported(exporter)
    assert (call.status, call.tags["error.type"]) == ("error", "ReadTimeout")


async def test_wrapped_transport_serves_the_requests(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-trace-id", ""))
        return httpx.Response(201, text="made")

    traced = asynctrace.httpx.transport(httpx.MockTransport(answer))
    async with httpx.AsyncClient(transport=traced) as client:
        response = await client.post("https://payment.test:8443/charges")

    (call,) = await exported(exporter)
    assert (response.status_code, response.text) == (201, "made")
    assert seen == [call.trace_id]
    assert call.operation == "HTTP POST payment.test:8443"


def test_invalid_error_status_is_rejected() -> None:
    with pytest.raises(ValueError, match="error_status"):
        asynctrace.httpx.transport(error_status=True)


async def test_internal_failure_leaves_the_request_alone(
    tracer: Tracer, exporter: InMemoryExporter, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracing bug")

    monkeypatch.setattr(asynctrace.httpx, "span", broken)
    async with httpx.AsyncClient(transport=asynctrace.httpx.transport()) as client:
        response = await client.get(base_url + "/echo")

    assert response.status_code == 200
    assert "traceparent" not in response.json()
    assert _ratelimit.internal_error_count() == 1
    assert await exported(exporter) == []
