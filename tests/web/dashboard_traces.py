"""Traces for the dashboard tests, built as span JSON and written through RedisExporter.

Times are relative to "now" (the exporter trims index entries older than 24 h),
given in milliseconds after ``start``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from asynctrace.export import RedisExporter
from asynctrace.model import Span

__all__ = [
    "SLOW_TRACE_ID",
    "XSS_IMG",
    "XSS_SCRIPT",
    "SpanSpec",
    "build",
    "day_safe_now_ms",
    "error_trace",
    "export",
    "fast_checkout",
    "now_ms",
    "slow_checkout",
    "wide_trace",
    "xss_trace",
]

SLOW_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_DAY_MS = 86_400_000.0
XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = "<script>window.__xss=1</script>"


def now_ms() -> float:
    return time.time() * 1000.0


def day_safe_now_ms(present_ms: float | None = None) -> float:
    """Now (or ``present_ms``), or a minute into the UTC day when the day is younger.

    A dashboard whose clock is fixed at this instant sees data written up to a minute
    before it on its own "today", whatever the time of day the test runs at (the
    instant is at most a minute ahead: the exporter keeps index entries from the future).
    """
    now = now_ms() if present_ms is None else present_ms
    return max(now, now // _DAY_MS * _DAY_MS + 60_000.0)


@dataclass(frozen=True)
class SpanSpec:
    """One span: name (its span id is derived), parent name, service, operation, times."""

    name: str
    parent: str | None
    service: str
    operation: str
    start: float
    duration: float
    status: str = "ok"
    tags: Mapping[str, str] = field(default_factory=dict)
    logs: Sequence[tuple[str, str]] = ()


def _span_id(trace_number: int, name: str, names: dict[str, int]) -> str:
    number = names.setdefault(name, len(names) + 1)
    return f"{trace_number:08x}{number:08x}"


def build(trace_id: str, start: float, specs: Sequence[SpanSpec]) -> list[Span]:
    """Ended spans of one trace; ``start`` is the trace's epoch ms."""
    names: dict[str, int] = {}
    trace_number = int(trace_id[:7], 16) or 1
    spans = []
    for spec in specs:
        begin = start + spec.start
        spans.append(
            Span.from_dict(
                {
                    "traceId": trace_id,
                    "spanId": _span_id(trace_number, spec.name, names),
                    "parentSpanId": None
                    if spec.parent is None
                    else _span_id(trace_number, spec.parent, names),
                    "service": spec.service,
                    "operation": spec.operation,
                    "kind": "server",
                    "startTime": begin,
                    "endTime": begin + spec.duration,
                    "duration": spec.duration,
                    "status": spec.status,
                    "tags": dict(spec.tags),
                    "logs": [
                        {"timestamp": begin + 1, "message": message, "level": level}
                        for level, message in spec.logs
                    ],
                }
            )
        )
    return spans


def slow_checkout(trace_id: str = SLOW_TRACE_ID, start: float | None = None) -> list[Span]:
    """The seed's slow request: api-gateway 5 ms, auth 10 ms, orders 2,500 ms, payment 50 ms."""
    begin = now_ms() - 60_000 if start is None else start
    return build(
        trace_id,
        begin,
        [
            SpanSpec(
                "gateway",
                None,
                "api-gateway",
                "GET /checkout",
                0,
                2565,
                tags={"http.method": "GET", "http.route": "/checkout", "http.status_code": "200"},
            ),
            SpanSpec("auth", "gateway", "auth", "POST /verify", 2, 10, tags={"user.id": "42"}),
            SpanSpec(
                "orders",
                "gateway",
                "orders",
                "GET /orders/{id}",
                12,
                2550,
                tags={"order.id": "1001", "db.rows": "18000"},
                logs=[("warn", "cache miss, loading from database")],
            ),
            SpanSpec("payment", "orders", "payment", "POST /charge", 2462, 50),
        ],
    )


def fast_checkout(number: int, start: float | None = None) -> list[Span]:
    """A typical checkout of the same root operation, about 100 ms."""
    begin = now_ms() - 300_000 - number * 1000 if start is None else start
    return build(
        f"{0xFA57 + number:032x}",
        begin,
        [
            SpanSpec("gateway", None, "api-gateway", "GET /checkout", 0, 100),
            SpanSpec("auth", "gateway", "auth", "POST /verify", 2, 10),
            SpanSpec("orders", "gateway", "orders", "GET /orders/{id}", 14, 80),
            SpanSpec("payment", "orders", "payment", "POST /charge", 30, 50),
        ],
    )


def error_trace(trace_id: str, start: float | None = None) -> list[Span]:
    """A checkout whose payment is declined and surfaces as HTTP 500 at the gateway."""
    begin = now_ms() - 30_000 if start is None else start
    return build(
        trace_id,
        begin,
        [
            SpanSpec(
                "gateway",
                None,
                "api-gateway",
                "POST /checkout",
                0,
                140,
                status="error",
                tags={"http.status_code": "500", "error": "true"},
                logs=[("error", "upstream orders failed")],
            ),
            SpanSpec(
                "orders",
                "gateway",
                "orders",
                "POST /orders",
                5,
                120,
                status="error",
                tags={"http.status_code": "502", "error": "true"},
                logs=[("error", "payment failed")],
            ),
            SpanSpec(
                "payment",
                "orders",
                "payment",
                "POST /charge",
                20,
                60,
                status="error",
                tags={"error": "true", "error.type": "CardDeclined"},
                logs=[("error", "CardDeclined: card declined")],
            ),
        ],
    )


def xss_trace(trace_id: str, start: float | None = None) -> list[Span]:
    """Hostile text where a request controls it: operation names, tags and logs."""
    begin = now_ms() - 20_000 if start is None else start
    return build(
        trace_id,
        begin,
        [
            SpanSpec("root", None, "api-gateway", XSS_IMG, 0, 50, tags={"user.agent": XSS_SCRIPT}),
            SpanSpec(
                "child",
                "root",
                XSS_SCRIPT,
                f"GET /search?q={XSS_SCRIPT}",
                5,
                20,
                tags={XSS_IMG: XSS_IMG, "q": '"></script><script>window.__xss=1</script>'},
                logs=[("info", XSS_IMG)],
            ),
        ],
    )


def wide_trace(trace_id: str, spans: int, start: float | None = None) -> list[Span]:
    """A large trace: one root, a handful of handlers, each with many database calls."""
    begin = now_ms() - 10_000 if start is None else start
    specs = [SpanSpec("root", None, "api-gateway", "GET /report", 0, 5000)]
    handlers = 10
    per_handler = max(1, (spans - 1 - handlers) // handlers)
    for h in range(handlers):
        specs.append(SpanSpec(f"h{h}", "root", "reports", f"build section {h}", h * 490, 480))
        for q in range(per_handler):
            specs.append(
                SpanSpec(
                    f"q{h}-{q}",
                    f"h{h}",
                    "postgres",
                    "SELECT rows",
                    h * 490 + q * 480 / per_handler,
                    480 / per_handler * 0.8,
                )
            )
    return build(trace_id, begin, specs)


async def export(redis_url: str, *traces: Sequence[Span]) -> None:
    """Write spans exactly as a live service would, through ``RedisExporter``."""
    exporter = RedisExporter(redis_url)
    try:
        for spans in traces:
            await exporter.export(list(spans))
    finally:
        await exporter.shutdown()
