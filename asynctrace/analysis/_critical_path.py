"""The critical path of a trace: which span the request was waiting on, moment by moment.

The walk is the one Jaeger uses. Start at the root's end and step back in time: the
child that finished last before the current point is what its parent was waiting
for, so the parent's time after that child is the parent's own, the child's interval
is explained by recursing into it, and the walk continues left of the child's start.
A child that overlaps the one chosen was running concurrently but did not hold the
parent up, so it is off the path.

Every moment of the root's interval is given to exactly one span, so the segments
never overlap and add up to the root's duration.
"""

from __future__ import annotations

from dataclasses import dataclass

from asynctrace.model import Span, Trace

__all__ = ["CriticalSegment", "critical_path"]


@dataclass(frozen=True, slots=True)
class CriticalSegment:
    """A stretch of the critical path during which the request waited on ``span`` itself.

    ``start`` and ``end`` are Unix epoch milliseconds; they lie inside ``span``'s own
    interval as clipped to its ancestors' (see ``critical_path``).
    """

    span: Span
    start: float
    end: float

    @property
    def duration_ms(self) -> float:
        """Length of the segment in milliseconds."""
        return self.end - self.start


def critical_path(trace: Trace) -> list[CriticalSegment]:
    """The critical path through ``trace``'s root tree, as segments sorted by start.

    Segments have a positive length and cover the root's interval exactly once. A
    child is clipped to its parent's (already clipped) interval, so a child that
    overruns its parent, or one that starts before it because the two services'
    clocks disagree, counts only while the parent was running; a child entirely
    outside its parent contributes nothing. Zero-length spans and segments are left
    out, so a trace whose root lasted 0 ms has an empty path.

    Orphans (spans whose parent is missing, ``trace.orphans``) are ignored: without
    the link to their parent there is no telling what they held up, and guessing
    would blame a service on no evidence. Pure, never raises, iterative (a chain of
    thousands of spans does not hit the recursion limit).
    """
    root = trace.root
    segments: list[CriticalSegment] = []
    if root.end_time <= root.start_time:
        return segments
    # Explicit stack instead of recursion: traces from buggy instrumentation can nest
    # arbitrarily deep. Each entry is a span and the (non-empty) window it may claim.
    # Trace.from_spans cuts parent cycles, so the root's tree is a tree; ``visited``
    # still bounds the walk for a Trace whose children were built some other way.
    stack: list[tuple[Span, float, float]] = [(root, root.start_time, root.end_time)]
    visited: set[str] = set()
    while stack:
        span, window_start, window_end = stack.pop()
        if span.span_id in visited:
            continue
        visited.add(span.span_id)
        point = window_end
        children = _clipped_children(trace, span, window_start, window_end)
        for child, child_start, child_end in children:
            # Sorted by end, latest first, and ``point`` only moves left: a child that
            # ends after ``point`` overlaps the one already chosen and is off the path.
            if child_end > point:
                continue
            if child_end < point:
                segments.append(CriticalSegment(span, child_end, point))
            stack.append((child, child_start, child_end))
            point = child_start
        if point > window_start:
            segments.append(CriticalSegment(span, window_start, point))
    segments.sort(key=lambda segment: segment.start)
    return segments


def _clipped_children(
    trace: Trace, span: Span, window_start: float, window_end: float
) -> list[tuple[Span, float, float]]:
    """Children of ``span`` clipped to the window, latest end first.

    Ties on the end go to the child that started first: of two children that
    finished together, the longer one is the one the parent waited on longest.
    """
    clipped = []
    for child in trace.children_of(span):
        start = max(child.start_time, window_start)
        end = min(child.end_time, window_end)
        if end > start:
            clipped.append((child, start, end))
    clipped.sort(key=lambda item: (-item[2], item[1], item[0].span_id))
    return clipped
