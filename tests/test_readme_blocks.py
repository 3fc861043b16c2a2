"""The README's integration blocks run as printed: a FastAPI app with its traced
clients, and the queue recipe."""

from __future__ import annotations

import asyncio
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


def readme_block(heading: str) -> dict[str, object]:
    """Run the first Python block under ``heading``; the names it defines."""
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    match = re.search(r"```python\n(.+?)\n```", section, re.DOTALL)
    assert match is not None
    namespace: dict[str, object] = {"__name__": "readme_block"}  # not "__main__"
    exec(compile(match.group(1), str(README), "exec"), namespace)
    return namespace


@pytest.fixture
def integrations_block() -> dict[str, object]:
    """Read outside the event loop (blocking file I/O)."""
    return readme_block("## FastAPI, httpx, Redis and PostgreSQL")


@pytest.fixture
def queue_recipe() -> dict[str, object]:
    return readme_block("### A trace through a queue")


async def test_readme_integrations_block_traces_requests_commands_and_queries(
    tracer: Tracer,
    exporter: InMemoryExporter,
    integrations_block: dict[str, object],
    redis_url: str,
    postgres_dsn: str,
) -> None:
    app = integrations_block["app"]
    connect = integrations_block["connect"]
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


async def test_readme_queue_recipe_makes_the_consumer_a_child_of_the_producer(
    tracer: Tracer, exporter: InMemoryExporter, queue_recipe: dict[str, object]
) -> None:
    async with asyncio.timeout(10):
        await queue_recipe["main"]()  # type: ignore[operator]  # defined by the recipe
    await asyncio.sleep(0)  # let the cancelled consumer finish
    assert await asynctrace.flush()

    (published,) = exporter.by_operation("publish order")
    (processed,) = exporter.by_operation("process order")
    assert processed.trace_id == published.trace_id
    assert processed.parent_span_id == published.span_id
    assert published.tags["order.id"] == "42"
