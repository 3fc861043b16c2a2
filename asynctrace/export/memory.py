"""An exporter that keeps spans in a list: for tests and for inspecting a process."""

from __future__ import annotations

from collections.abc import Sequence

from asynctrace.model import Span, Trace

__all__ = ["InMemoryExporter"]


class InMemoryExporter:
    """Collects exported spans in ``spans``, in export order. Bounded by ``max_spans``."""

    def __init__(self, *, max_spans: int = 1_000_000) -> None:
        self.spans: list[Span] = []
        self.max_spans = max_spans
        self.is_shut_down = False

    async def export(self, spans: Sequence[Span]) -> None:
        room = self.max_spans - len(self.spans)
        if room < len(spans):
            raise OverflowError(f"InMemoryExporter holds at most {self.max_spans} spans")
        self.spans.extend(spans)

    async def shutdown(self) -> None:
        self.is_shut_down = True

    def clear(self) -> None:
        self.spans.clear()

    def traces(self) -> dict[str, Trace]:
        """The exported spans grouped into traces, by trace id."""
        grouped: dict[str, list[Span]] = {}
        for span in self.spans:
            grouped.setdefault(span.trace_id, []).append(span)
        return {trace_id: Trace.from_spans(spans) for trace_id, spans in grouped.items()}

    def by_operation(self, operation: str) -> list[Span]:
        return [span for span in self.spans if span.operation == operation]
