"""asynctrace.asyncpg against the machine's PostgreSQL (skipped outside CI without it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

import asynctrace
import asynctrace.asyncpg
from asynctrace.export import InMemoryExporter
from asynctrace.model import Span
from asynctrace.tracer import Tracer


async def exported(exporter: InMemoryExporter) -> list[Span]:
    assert await asynctrace.flush()
    return [span for span in exporter.spans if span.kind == "client"]


@pytest.fixture
async def pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    made = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=1)
    try:
        yield made
    finally:
        await made.close()


async def test_pool_queries_are_sanitised_spans_with_rows(
    tracer: Tracer, exporter: InMemoryExporter, pool: asyncpg.Pool
) -> None:
    assert asynctrace.asyncpg.instrument(pool) is pool
    with asynctrace.span("list orders") as parent:
        rows = await pool.fetch(
            "SELECT n, 'secret' AS label FROM generate_series(1, $1) AS orders(n) WHERE n > 0",
            3,
        )
        value = await pool.fetchval("SELECT $1::text", "hidden-parameter")
        async with pool.acquire() as connection:
            status = await connection.execute("SELECT 1 FROM generate_series(1, 2)")

    spans = await exported(exporter)
    assert (len(rows), value, status) == (3, "hidden-parameter", "SELECT 2")
    assert [span.operation for span in spans] == [
        "postgres SELECT \u2026 FROM generate_series(?, ?) AS orders(n) WHERE n > ?",
        "postgres SELECT ?::text",
        "postgres SELECT \u2026 FROM generate_series(?, ?)",
    ]
    assert {span.parent_span_id for span in spans} == {parent.span_id}
    assert [span.tags.get("db.rows") for span in spans] == ["3", None, "2"]
    assert spans[0].tags["db.statement"] == (
        "SELECT n, ? AS label FROM generate_series(?, ?) AS orders(n) WHERE n > ?"
    )
    assert all(span.tags["db.system"] == "postgresql" for span in spans)
    text = str([span.to_dict() for span in spans])
    assert "secret" not in text
    assert "hidden-parameter" not in text


async def test_failed_query_records_its_sqlstate_not_its_message(
    tracer: Tracer, exporter: InMemoryExporter, postgres_dsn: str
) -> None:
    connection = asynctrace.asyncpg.instrument(await asyncpg.connect(postgres_dsn))
    try:
        with asynctrace.span("bad input"), pytest.raises(asyncpg.InvalidTextRepresentationError):
            await connection.fetchrow("SELECT $1::text::int", "not-a-number")
    finally:
        await connection.close()

    (failed,) = await exported(exporter)
    assert failed.status == "error"
    assert failed.tags["db.sqlstate"] == "22P02"
    assert failed.tags["error.type"] == "InvalidTextRepresentationError"
    assert "not-a-number" not in str(failed.to_dict())


async def test_queries_outside_any_span_are_not_traced(
    tracer: Tracer, exporter: InMemoryExporter, pool: asyncpg.Pool
) -> None:
    asynctrace.asyncpg.instrument(pool)
    asynctrace.asyncpg.instrument(pool)  # again: no second layer
    assert await pool.fetchval("SELECT 1") == 1
    with asynctrace.span("request"):
        await pool.fetchval("SELECT 2")

    assert [span.operation for span in await exported(exporter)] == ["postgres SELECT ?"]
