"""The ASGI middleware against real FastAPI and Starlette apps, driven in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, WebSocket
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

import asynctrace
import asynctrace.asgi
from asynctrace import _ratelimit
from asynctrace.asgi import TraceMiddleware
from asynctrace.export import InMemoryExporter
from asynctrace.model import Span
from asynctrace.tracer import Tracer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Boom(Exception):
    """What the failing handler raises."""


def orders_app(**options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, object]:
        current = asynctrace.current_span()
        return {"order": order_id, "span": current.span_id if current else None}

    @app.get("/missing/{item}")
    async def missing(item: str) -> None:
        raise HTTPException(status_code=404, detail="no such item")

    @app.get("/boom")
    async def boom() -> None:
        raise Boom("the handler failed")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for index in range(3):
                with asynctrace.span(f"chunk {index}"):
                    yield b"chunk\n"

        return StreamingResponse(chunks())

    @app.websocket("/rooms/{room}")
    async def room(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        while (text := await websocket.receive_text()) != "bye":
            with asynctrace.span("handle message"):
                await websocket.send_text(text.upper())
        await websocket.close(code=1000)

    @app.websocket("/private")
    async def private(websocket: WebSocket) -> None:
        await websocket.close(code=1008)  # refused before the handshake completes

    app.add_middleware(TraceMiddleware, service="orders", **options)
    return app


async def exported(tracer: Tracer, exporter: InMemoryExporter) -> list[Span]:
    assert await asynctrace.flush()
    return list(exporter.spans)


@asynccontextmanager
async def client_of(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: the client sees the 500 the framework renders, as a
    # real server's client would.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://orders.test") as client:
        yield client


async def test_request_span_is_named_by_the_route_template_and_tagged(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    async with client_of(orders_app()) as client:
        response = await client.get("/orders/42")

    (server,) = await exported(tracer, exporter)
    assert response.status_code == 200
    assert response.json()["span"] == server.span_id  # current while the handler ran
    assert response.headers["x-trace-id"] == server.trace_id
    assert (server.operation, server.kind, server.service) == (
        "GET /orders/{order_id}",
        "server",
        "orders",
    )
    assert server.tags == {
        "http.method": "GET",
        "http.path": "/orders/42",
        "http.route": "/orders/{order_id}",
        "http.host": "orders.test",
        "net.peer.ip": "127.0.0.1",
        "http.status": "200",
    }
    assert server.parent_span_id is None
    assert server.status == "ok"


async def test_request_continues_the_callers_traceparent(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    headers = {
        "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
        "tracestate": "asynctrace=api-gateway,other=1",
    }
    async with client_of(orders_app()) as client:
        response = await client.get("/orders/7", headers=headers)

    (server,) = await exported(tracer, exporter)
    assert (server.trace_id, server.parent_span_id) == (TRACE_ID, PARENT_ID)
    assert server.tags["peer.service"] == "api-gateway"
    assert response.headers["x-trace-id"] == TRACE_ID


async def test_seed_trace_id_header_is_continued_in_any_case(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    async with client_of(orders_app()) as client:
        await client.get("/orders/7", headers={"X-Trace-Id": TRACE_ID.upper()})

    (server,) = await exported(tracer, exporter)
    assert server.trace_id == TRACE_ID


async def test_garbage_trace_headers_start_a_new_trace(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    async with client_of(orders_app()) as client:
        response = await client.get(
            "/orders/7", headers={"traceparent": "00-zz-\r\n", "x-trace-id": "nope"}
        )

    (server,) = await exported(tracer, exporter)
    assert response.status_code == 200
    assert server.parent_span_id is None
    assert server.trace_id not in (TRACE_ID, "nope")


async def test_http_exception_is_a_status_and_unmatched_paths_share_one_name(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    async with client_of(orders_app()) as client:
        missing = await client.get("/missing/x")
        unmatched = await client.get("/no/such/path")

    first, second = await exported(tracer, exporter)
    assert (missing.status_code, unmatched.status_code) == (404, 404)
    assert missing.headers["x-trace-id"] == first.trace_id
    assert unmatched.headers["x-trace-id"] == second.trace_id
    assert (first.operation, first.tags["http.status"], first.status) == (
        "GET /missing/{item}",
        "404",
        "error",
    )
    assert second.operation == "GET (unmatched)"
    assert "http.route" not in second.tags


async def test_framework_500_page_carries_the_trace_id_and_the_span_the_error(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    async with client_of(orders_app()) as client:
        await client.get("/orders/1")  # the app builds its middleware stack
        response = await client.get("/boom")

    spans = await exported(tracer, exporter)
    failed = spans[-1]
    assert response.status_code == 500
    assert response.text == "Internal Server Error"  # the framework's own page
    assert response.headers["x-trace-id"] == failed.trace_id
    assert failed.operation == "GET /boom"
    assert failed.status == "error"
    assert (failed.tags["http.status"], failed.tags["error"]) == ("500", "true")
    assert any("Boom: the handler failed" in log.message for log in failed.logs)


async def test_500_page_of_the_very_first_request_after_lifespan_carries_the_trace_id(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    app = orders_app()
    await run_lifespan(app)
    async with client_of(app) as client:
        response = await client.get("/boom")

    (failed,) = await exported(tracer, exporter)
    assert response.headers["x-trace-id"] == failed.trace_id


async def test_streamed_body_is_inside_the_request_span(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    async with client_of(orders_app()) as client:
        response = await client.get("/stream")

    spans = await exported(tracer, exporter)
    server = next(span for span in spans if span.kind == "server")
    chunks = [span for span in spans if span.operation.startswith("chunk")]
    assert response.text == "chunk\n" * 3
    assert response.headers["x-trace-id"] == server.trace_id
    assert len(chunks) == 3
    assert {chunk.parent_span_id for chunk in chunks} == {server.span_id}
    assert all(chunk.end_time <= server.end_time for chunk in chunks)


async def test_excluded_path_is_served_untraced(tracer: Tracer, exporter: InMemoryExporter) -> None:
    async with client_of(orders_app(exclude_paths=["/orders/1"])) as client:
        response = await client.get("/orders/1")

    assert response.status_code == 200
    assert "x-trace-id" not in response.headers
    assert await exported(tracer, exporter) == []


async def test_starlette_mounts_name_spans_by_the_full_template(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    async def item(request: Any) -> PlainTextResponse:
        return PlainTextResponse(str(request.path_params["item_id"]))

    inner = Starlette(routes=[Route("/items/{item_id:int}", item)])
    app = Starlette(routes=[Mount("/api", app=inner)])
    app.add_middleware(TraceMiddleware)
    async with client_of(app) as client:
        response = await client.get("/api/items/5")

    (server,) = await exported(tracer, exporter)
    assert response.text == "5"
    assert server.operation == "GET /api/items/{item_id}"


async def test_websocket_is_one_span_for_its_life(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    socket = AsgiWebSocket(orders_app(), "/rooms/blue")
    await socket.connect()
    assert await socket.exchange("hello") == "HELLO"
    assert await socket.exchange("again") == "AGAIN"
    close_code = await socket.finish()

    spans = await exported(tracer, exporter)
    server = next(span for span in spans if span.kind == "server")
    handled = [span for span in spans if span.operation == "handle message"]
    assert close_code == 1000
    assert socket.accept_headers[b"x-trace-id"] == server.trace_id.encode()
    assert server.operation == "WS /rooms/{room}"
    assert (server.tags["http.status"], server.tags["websocket.close_code"]) == ("101", "1000")
    assert server.status == "ok"
    assert len(handled) == 2
    assert {span.parent_span_id for span in handled} == {server.span_id}


async def test_websocket_refused_before_accept_is_an_error_span(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    socket = AsgiWebSocket(orders_app(), "/private")
    closed = await socket.refused()

    (server,) = await exported(tracer, exporter)
    assert closed["code"] == 1008
    assert server.operation == "WS /private"
    assert (server.tags["http.status"], server.status) == ("403", "error")


async def test_lifespan_events_pass_through_untouched(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = Starlette(lifespan=lifespan)
    app.add_middleware(TraceMiddleware)

    sent = await run_lifespan(app)

    assert events == ["startup", "shutdown"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert await exported(tracer, exporter) == []


def test_invalid_options_are_rejected_at_setup() -> None:
    app = FastAPI()
    with pytest.raises(ValueError, match="error_status"):
        TraceMiddleware(app, error_status=99)
    with pytest.raises(ValueError, match="service"):
        TraceMiddleware(app, service=" ")
    with pytest.raises(ValueError, match="exclude_paths"):
        TraceMiddleware(app, exclude_paths="/health")


async def run_lifespan(app: Any) -> list[str]:
    """Start and stop ``app`` through the ASGI lifespan protocol; the messages it sent."""
    incoming: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        incoming.put_nowait({"type": kind})
    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    async with asyncio.timeout(10):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, incoming.get, send)
    return sent


class AsgiWebSocket:
    """A WebSocket client speaking ASGI directly to an app, as a server would."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.accept_headers: dict[bytes, bytes] = {}
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        accepted = await self._open()
        assert accepted["type"] == "websocket.accept"
        self.accept_headers = dict(accepted.get("headers") or [])

    async def refused(self) -> dict[str, Any]:
        """Open a connection the app refuses; the close message it sent."""
        closed = await self._open()
        assert self.task is not None
        async with asyncio.timeout(10):
            await self.task
        assert closed["type"] == "websocket.close"
        return closed

    async def _open(self) -> dict[str, Any]:
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"orders.test")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "subprotocols": [],
        }
        self.task = asyncio.create_task(self.app(scope, self.to_app.get, self.from_app.put))
        self.to_app.put_nowait({"type": "websocket.connect"})
        async with asyncio.timeout(10):
            return await self.from_app.get()

    async def exchange(self, text: str) -> str:
        self.to_app.put_nowait({"type": "websocket.receive", "text": text})
        async with asyncio.timeout(10):
            answer = await self.from_app.get()
        return str(answer["text"])

    async def finish(self) -> int:
        assert self.task is not None
        self.to_app.put_nowait({"type": "websocket.receive", "text": "bye"})
        async with asyncio.timeout(10):
            closed = await self.from_app.get()
            await self.task
        assert closed["type"] == "websocket.close"
        return int(closed["code"])


async def test_any_asgi_app_can_be_wrapped_directly(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    async def raw_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with client_of(TraceMiddleware(raw_app, service="raw")) as client:
        response = await client.delete("/anything/7")

    (server,) = await exported(tracer, exporter)
    assert response.status_code == 204
    assert response.headers["x-trace-id"] == server.trace_id
    # No router to name a route: one low-cardinality name per method, never the path.
    assert (server.operation, server.service) == ("DELETE (unmatched)", "raw")
    assert server.tags["http.path"] == "/anything/7"


async def test_internal_failure_serves_the_request_untraced(
    tracer: Tracer, exporter: InMemoryExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracing bug")

    monkeypatch.setattr(asynctrace.asgi, "span", broken)
    async with client_of(orders_app()) as client:
        response = await client.get("/orders/3")

    assert response.status_code == 200
    assert response.json()["order"] == 3
    assert "x-trace-id" not in response.headers
    assert _ratelimit.internal_error_count() == 1
    assert await exported(tracer, exporter) == []
