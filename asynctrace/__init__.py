"""asynctrace: lightweight distributed tracing for asyncio services, stored in Redis."""

from __future__ import annotations

from asynctrace.context import current_span, span, traced
from asynctrace.model import Span, SpanLog, Trace
from asynctrace.propagation import trace_headers
from asynctrace.tracer import Tracer, configure, flush, get_tracer, shutdown, stats

__all__ = [
    "Span",
    "SpanLog",
    "Trace",
    "Tracer",
    "configure",
    "current_span",
    "flush",
    "get_tracer",
    "shutdown",
    "span",
    "stats",
    "trace_headers",
    "traced",
]

__version__ = "0.1.0"
