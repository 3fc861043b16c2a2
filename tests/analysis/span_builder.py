"""Hand-built traces for the analysis tests: ended spans with chosen times and parents.

Times are given in milliseconds after ``EPOCH_MS`` (a real epoch time, so the float
arithmetic is the production one); multiples of 1/4 ms stay exact there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from asynctrace.analysis import CriticalSegment
from asynctrace.model import Span, Trace

__all__ = ["EPOCH_MS", "TraceBuilder", "chain", "relative_path"]

EPOCH_MS = 1_764_236_400_000.0


class TraceBuilder:
    """Collects spans of one trace; spans are named, and names map to valid span ids.

    A parent name that is never added stands for a span missing from the trace, so
    the child becomes an orphan.
    """

    def __init__(self, number: int = 1) -> None:
        self.trace_id = f"{number:032x}"
        self.spans: list[Span] = []
        self._ids: dict[str, str] = {}

    def id_of(self, name: str) -> str:
        if name not in self._ids:
            self._ids[name] = f"{len(self._ids) + 1:016x}"
        return self._ids[name]

    def add(
        self,
        name: str,
        start: float,
        end: float,
        *,
        parent: str | None = None,
        service: str = "svc",
        operation: str | None = None,
        status: str = "ok",
        tags: Mapping[str, str] | None = None,
        logs: Sequence[tuple[str, str]] = (),
    ) -> Span:
        """Add an ended span lasting from ``start`` to ``end`` ms after ``EPOCH_MS``.

        ``logs`` are (level, message) pairs, stamped at the span's start.
        """
        span = Span.from_dict(
            {
                "traceId": self.trace_id,
                "spanId": self.id_of(name),
                "parentSpanId": None if parent is None else self.id_of(parent),
                "service": service,
                "operation": name if operation is None else operation,
                "kind": "server",
                "startTime": EPOCH_MS + start,
                "duration": end - start,
                "status": status,
                "tags": dict(tags or {}),
                "logs": [
                    {"timestamp": EPOCH_MS + start, "level": level, "message": message}
                    for level, message in logs
                ],
            }
        )
        self.spans.append(span)
        return span

    def build(self) -> Trace:
        return Trace.from_spans(self.spans)


def chain(length: int, *, failing_leaf: bool = False) -> Trace:
    """``length`` spans, each the only child of the previous one and nested inside it.

    Span ``i`` runs from ``i`` to ``2 * length - i`` ms, so every span has 1 ms of its
    own at each end and the innermost one 2 ms in the middle.
    """
    builder = TraceBuilder()
    for index in range(length):
        builder.add(
            f"s{index}",
            index,
            2 * length - index,
            parent=f"s{index - 1}" if index else None,
            status="error" if failing_leaf and index == length - 1 else "ok",
        )
    return builder.build()


def relative_path(segments: Sequence[CriticalSegment]) -> list[tuple[str, float, float]]:
    """Segments as (operation, start, end) with times relative to ``EPOCH_MS``."""
    return [
        (segment.span.operation, segment.start - EPOCH_MS, segment.end - EPOCH_MS)
        for segment in segments
    ]
