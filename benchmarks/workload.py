"""Finished spans shaped like a service's, made through the real ``span()`` API.

A trace here is one request as one service sees it: a ``server`` span with five
tags and ``children`` spans under it (a database query, a cache read, a call out),
each with one tag. ``finished_spans`` captures them with a recorder of its own, so
nothing is exported while they are made.
"""

from __future__ import annotations

from collections.abc import Callable

from asynctrace import context
from asynctrace.model import DEFAULT_LIMITS, Limits, Span

__all__ = ["SERVER_TAGS", "finished_spans"]

SERVER_TAGS = {
    "http.method": "GET",
    "http.route": "/orders/{id}",
    "http.path": "/orders/42",
    "http.status": "200",
    "net.peer.ip": "10.1.2.3",
}
_CHILDREN = (
    ("SELECT orders", "db.system", "postgresql"),
    ("cache get", "cache.hit", "true"),
    ("GET inventory", "http.status", "200"),
    ("render", "template", "order.html"),
)


class _Capture:
    service = "orders"
    limits: Limits = DEFAULT_LIMITS
    ended = context.UNQUEUED  # every span goes through on_end

    def __init__(self, sink: list[Span]) -> None:
        self.on_end: Callable[[Span], None] = sink.append
        self.on_unsampled_end: Callable[[Span], None] = sink.append

    def should_sample(self) -> bool:
        return True


def finished_spans(count: int, *, spans_per_trace: int = 4) -> list[Span]:
    """About ``count`` ended spans, ``spans_per_trace`` per trace (children end first)."""
    sink: list[Span] = []
    context.set_recorder(_Capture(sink))
    try:
        for _ in range(max(1, count // spans_per_trace)):
            with context.span("GET /orders/{id}", kind="server", tags=SERVER_TAGS):
                for number in range(spans_per_trace - 1):
                    name, key, value = _CHILDREN[number % len(_CHILDREN)]
                    with context.span(name, kind="client" if number % 2 else "internal") as s:
                        s.set_tag(key, value)
    finally:
        context.set_recorder(None)
    return sink
