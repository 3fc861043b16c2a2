"""Traces for the CLI tests, exported to Redis the way a live service's spans are.

Times are whole milliseconds after a recent whole second, so the arithmetic is
exact and the exporter's 24 h index trim keeps them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from asynctrace.export import RedisExporter
from asynctrace.model import Span

__all__ = [
    "FAILED_ID",
    "FAST_ID",
    "SEED_ID",
    "export",
    "failed_trace",
    "fast_trace",
    "recent_start",
    "seed_trace",
]

SEED_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
FAILED_ID = "0af7651916cd43dd8448eb211c80319c"
FAST_ID = "c0ffee00c0ffee00c0ffee00c0ffee00"


def recent_start(seconds_ago: int = 600) -> float:
    """A whole-second epoch-ms time ``seconds_ago`` seconds back."""
    return float((int(time.time()) - seconds_ago) * 1000)


def _span(
    trace_id: str,
    span_id: str,
    parent: str | None,
    service: str,
    operation: str,
    start: float,
    end: float,
    *,
    error: str = "",
    http_status: str = "",
) -> Span:
    tags = {"http.status": http_status} if http_status else {}
    logs = []
    if error:
        tags["error"] = "true"
        logs.append({"timestamp": start, "message": error, "level": "error"})
    return Span.from_dict(
        {
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "service": service,
            "operation": operation,
            "kind": "server",
            "startTime": start,
            "duration": end - start,
            "status": "error" if error or http_status >= "500" else "ok",
            "tags": tags,
            "logs": logs,
        }
    )


def seed_trace(t0: float) -> list[Span]:
    """The seed's story: Gateway 5 ms -> Auth 10 ms -> Order 2,500 ms -> Payment 50 ms."""
    return [
        _span(SEED_ID, "00f067aa0ba902b7", None, "api-gateway", "GET /orders/{id}", t0, t0 + 2565),
        _span(
            SEED_ID, "1000000000000001", "00f067aa0ba902b7", "auth", "POST /verify",
            t0 + 5, t0 + 15,
        ),
        _span(
            SEED_ID, "1000000000000002", "00f067aa0ba902b7", "orders", "GET /orders/{id}",
            t0 + 15, t0 + 2565,
        ),
        _span(
            SEED_ID, "1000000000000003", "1000000000000002", "payment", "POST /charges",
            t0 + 2515, t0 + 2565,
        ),
    ]  # fmt: skip


def failed_trace(t0: float) -> list[Span]:
    """Payment fails; orders and the gateway answer 502 because of it."""
    return [
        _span(
            FAILED_ID, "2000000000000001", None, "api-gateway", "POST /checkout",
            t0, t0 + 80, http_status="502",
        ),
        _span(
            FAILED_ID, "2000000000000002", "2000000000000001", "orders", "POST /orders",
            t0 + 10, t0 + 70, http_status="502",
        ),
        _span(
            FAILED_ID, "2000000000000003", "2000000000000002", "payment", "POST /charges",
            t0 + 20, t0 + 60, error="CardProcessorError: card processor unavailable",
        ),
    ]  # fmt: skip


def fast_trace(t0: float) -> list[Span]:
    """One quick request answered by auth alone."""
    return [_span(FAST_ID, "3000000000000001", None, "auth", "GET /health", t0, t0 + 3)]


def export(redis_url: str, spans: Sequence[Span], *, prefix: str = "trace:") -> None:
    """Write ``spans`` through ``RedisExporter``, as a service's export task does."""

    async def run() -> None:
        exporter = RedisExporter(redis_url, prefix=prefix)
        try:
            await exporter.export(spans)
        finally:
            await exporter.shutdown()

    asyncio.run(run())
