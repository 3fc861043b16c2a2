"""A trace: all stored spans of one trace id, arranged as a tree."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from asynctrace.model.span import Span

__all__ = ["Trace"]


@dataclass(frozen=True, slots=True)
class Trace:
    """All stored spans of one trace, arranged as a tree.

    ``spans`` are sorted by start time. ``root`` is the span without a parent or, when
    that span is missing, the earliest span whose parent is missing. ``orphans`` are
    the other spans whose parent is not in the trace: they are kept and shown at the
    top level, never lost. ``corrupt_entries`` counts stored entries that could not
    be decoded and were skipped.
    """

    trace_id: str
    spans: tuple[Span, ...]
    root: Span
    orphans: tuple[Span, ...]
    children: Mapping[str, tuple[Span, ...]]
    services: tuple[str, ...]
    has_errors: bool
    total_duration: float
    start_time: float
    corrupt_entries: int = 0
    duplicate_spans: int = 0
    by_id: Mapping[str, Span] = field(default_factory=dict)

    @property
    def is_complete(self) -> bool:
        """True when the trace has its true root and no orphans."""
        return self.root.parent_span_id is None and not self.orphans

    @classmethod
    def from_spans(cls, spans: Iterable[Span], *, corrupt_entries: int = 0) -> Trace:
        """Arrange spans of one trace. Raises ``ValueError`` for no spans or mixed traces."""
        by_id: dict[str, Span] = {}
        duplicates = 0
        for span in spans:
            if span.span_id in by_id:
                duplicates += 1
                continue
            by_id[span.span_id] = span
        if not by_id:
            raise ValueError("a trace needs at least one span")
        ordered = tuple(sorted(by_id.values(), key=lambda s: (s.start_time, s.span_id)))
        trace_ids = {span.trace_id for span in ordered}
        if len(trace_ids) != 1:
            raise ValueError("spans of several traces cannot form one trace")

        detached = [s for s in ordered if s.parent_span_id is None or s.parent_span_id not in by_id]
        true_roots = [s for s in detached if s.parent_span_id is None]
        root = true_roots[0] if true_roots else detached[0] if detached else ordered[0]
        orphans = tuple(s for s in detached if s is not root)
        detached_ids = {s.span_id for s in detached}

        children: dict[str, list[Span]] = {}
        for span in ordered:
            if span.span_id in detached_ids or span.parent_span_id is None:
                continue
            children.setdefault(span.parent_span_id, []).append(span)

        services: dict[str, None] = {}
        for span in ordered:
            services.setdefault(span.service, None)
        start = min(s.start_time for s in ordered)
        if root.parent_span_id is None:
            total = root.duration
        else:
            total = max(s.end_time for s in ordered) - start
        return cls(
            trace_id=ordered[0].trace_id,
            spans=ordered,
            root=root,
            orphans=orphans,
            children={key: tuple(value) for key, value in children.items()},
            services=tuple(services),
            has_errors=any(s.status == "error" for s in ordered),
            total_duration=total,
            start_time=start,
            corrupt_entries=corrupt_entries,
            duplicate_spans=duplicates,
            by_id=by_id,
        )

    def children_of(self, span: Span) -> tuple[Span, ...]:
        """Direct children of ``span``, by start time."""
        return self.children.get(span.span_id, ())

    def depth_first(self) -> list[tuple[Span, int]]:
        """Every span once with its depth: the root's tree, then each orphan's tree."""
        out: list[tuple[Span, int]] = []
        seen: set[str] = set()
        for top in (self.root, *self.orphans):
            stack = [(top, 0)]
            while stack:
                span, depth = stack.pop()
                if span.span_id in seen:  # a cycle in corrupt data must not loop forever
                    continue
                seen.add(span.span_id)
                out.append((span, depth))
                stack.extend((child, depth + 1) for child in reversed(self.children_of(span)))
        # Spans only reachable through a cycle (a -> b -> a) are still shown.
        out.extend((span, 0) for span in self.spans if span.span_id not in seen)
        return out
