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

    Stored data can be corrupt in ways JSON cannot show: spans whose parent ids form a
    cycle (a span its own parent, or a -> b -> a). Such a cycle is cut at its
    earliest-starting span, which then counts as an orphan (``cyclic_spans`` says how
    many were cut), so ``children`` is always a forest and every walk from ``root``
    or an orphan ends (``cut_span_ids`` names the cut spans). ``unread_entries``
    counts stored entries beyond the reader's limit
    (``TraceStore.get_trace(max_spans=...)``) that were not read at all.
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
    cyclic_spans: int = 0
    unread_entries: int = 0
    cut_span_ids: frozenset[str] = frozenset()

    @property
    def is_complete(self) -> bool:
        """True when the trace has its true root and no orphans."""
        return self.root.parent_span_id is None and not self.orphans

    @property
    def is_truncated(self) -> bool:
        """True when the store holds more entries of this trace than were read."""
        return self.unread_entries > 0

    @classmethod
    def from_spans(
        cls, spans: Iterable[Span], *, corrupt_entries: int = 0, unread_entries: int = 0
    ) -> Trace:
        """Arrange spans of one trace. Raises ``ValueError`` for no spans or mixed traces.

        Never loops on corrupt parent links: cycles are cut (see the class docstring).
        Time and memory are linear in the number of spans, apart from sorting them.
        """
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
        linked: dict[str, list[Span]] = {}
        for span in ordered:
            parent_id = span.parent_span_id
            if parent_id is not None and parent_id in by_id:
                linked.setdefault(parent_id, []).append(span)
        cut = _cut_cycles(ordered, detached, linked, by_id)

        true_roots = [s for s in detached if s.parent_span_id is None]
        tops = detached or cut
        root = true_roots[0] if true_roots else tops[0]
        cut_ids = frozenset(s.span_id for s in cut)
        tops_ids = cut_ids.union(s.span_id for s in detached)
        orphans = tuple(s for s in ordered if s is not root and s.span_id in tops_ids)
        children = {
            parent_id: tuple(child for child in kids if child.span_id not in cut_ids)
            for parent_id, kids in linked.items()
        }

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
            children={key: value for key, value in children.items() if value},
            services=tuple(services),
            has_errors=any(s.status == "error" for s in ordered),
            total_duration=total,
            start_time=start,
            corrupt_entries=corrupt_entries,
            duplicate_spans=duplicates,
            by_id=by_id,
            cyclic_spans=len(cut),
            unread_entries=unread_entries,
            cut_span_ids=cut_ids,
        )

    def parent_of(self, span: Span) -> Span | None:
        """The parent ``span`` hangs under in this trace; None for the root and orphans
        (their parent is missing, or the link was cut to break a cycle)."""
        parent_id = span.parent_span_id
        if parent_id is None:
            return None
        if span.span_id in self.cut_span_ids:
            return None
        return self.by_id.get(parent_id)

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
        # from_spans leaves no span unreachable; a Trace built by hand still shows all.
        out.extend((span, 0) for span in self.spans if span.span_id not in seen)
        return out


def _cut_cycles(
    ordered: tuple[Span, ...],
    detached: list[Span],
    linked: Mapping[str, list[Span]],
    by_id: Mapping[str, Span],
) -> list[Span]:
    """The spans whose parent link must be cut so that every span hangs under a
    detached span or a cut one, earliest first.

    A span no detached span reaches sits on a parent cycle or below one. Following
    parent links from it reaches the cycle within as many steps as there are spans;
    the cycle is cut at its earliest span, and everything below that span becomes
    reachable. Each span is walked at most twice, so this is linear.
    """
    reached: set[str] = set()

    def reach(top: Span) -> None:
        stack = [top]
        while stack:
            span = stack.pop()
            if span.span_id in reached:
                continue
            reached.add(span.span_id)
            stack.extend(linked.get(span.span_id, ()))

    for top in detached:
        reach(top)
    cut: list[Span] = []
    if len(reached) == len(ordered):
        return cut
    for span in ordered:
        if span.span_id in reached:
            continue
        # Walk up until a span repeats: that span is on the cycle.
        walked: dict[str, int] = {}
        current = span
        while current.span_id not in walked:
            walked[current.span_id] = len(walked)
            # Unreached spans always have their parent in the trace (else detached).
            current = by_id[current.parent_span_id or ""]
        first_on_cycle = walked[current.span_id]
        cycle = [by_id[span_id] for span_id in list(walked)[first_on_cycle:]]
        victim = min(cycle, key=lambda s: (s.start_time, s.span_id))
        cut.append(victim)
        reach(victim)
    cut.sort(key=lambda s: (s.start_time, s.span_id))
    return cut
