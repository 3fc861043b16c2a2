"""The README's integration block runs as printed: a FastAPI app and its traced clients."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import asynctrace
from asynctrace.export import InMemoryExporter
from asynctrace.tracer import Tracer

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def integrations_block() -> str:
    """The code block of the README's integrations section, read outside the event loop."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## FastAPI, httpx, Redis and PostgreSQL", 1)[1]
    match = re.search(r"```python\n(.+?)\n```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


async def test_readme_integrations_block_traces_requests_commands_and_queries(
    tracer: Tracer,
    exporter: InMemoryExporter,
    integrations_block: str,
    redis_url: str,
    postgres_dsn: str,
) -> None:
    namespace: dict[str, object] = {"__name__": "readme_integrations"}
    exec(compile(integrations_block, str(README), "exec"), namespace)
    app = namespace["app"]
    connect = namespace["connect"]
    assert isinstance(app, FastAPI)
    assert callable(connect)

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, object]:
        state = app.state
        await state.cache.get(f"order:{order_id}")
        total = await state.db.fetchval("SELECT $1::int * 2", order_id)
        return {"order": order_id, "total": total}

    await _connected(connect, redis_url, postgres_dsn)
    state = app.state
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
            response = await client.get("/orders/21")
    finally:
        await state.http.aclose()
        await state.cache.aclose()
        await state.db.close()
    assert await asynctrace.flush()

    assert response.json() == {"order": 21, "total": 42}
    server = next(span for span in exporter.spans if span.kind == "server")
    children = {span.operation: span for span in exporter.spans if span.kind == "client"}
    assert server.operation == "GET /orders/{order_id}"
    assert response.headers["x-trace-id"] == server.trace_id
    assert set(children) == {"redis GET", "postgres SELECT ?::int * ?"}
    assert {span.parent_span_id for span in children.values()} == {server.span_id}


async def _connected(
    connect: Callable[[str, str], Awaitable[None]], redis_url: str, postgres_dsn: str
) -> None:
    await connect(redis_url, postgres_dsn)
