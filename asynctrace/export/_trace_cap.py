"""The write side of ``keys.MAX_TRACE_SPANS``: how many spans a process stores per trace.

Any client can append to any trace by reusing a ``traceparent``; without a cap one
trace list grows for as long as someone sends requests, and every reader of it pays.
``TraceSpanCap`` counts, per trace, the spans this process has stored, and refuses a
trace's spans past the cap (they are counted in ``over_limit``; the aggregates still
count them as requests). The counts are kept for the most recently written traces
only (``remembered``), so memory stays bounded: a trace forgotten and written again
starts a new count, which bounds its growth by the cap per ``remembered`` other traces
written in between. Each process counts its own spans; readers read at most
``keys.MAX_TRACE_SPANS`` entries of a list whatever the writers did.
"""

from __future__ import annotations

from asynctrace import keys

__all__ = ["TraceSpanCap"]

_REMEMBERED_TRACES = 4096


class TraceSpanCap:
    """Admits at most ``max_spans`` spans per trace id; O(1) per span, not thread-safe
    (the one export task calls it)."""

    __slots__ = ("_current", "_previous", "max_spans", "over_limit", "remembered")

    def __init__(
        self, max_spans: int = keys.MAX_TRACE_SPANS, *, remembered: int = _REMEMBERED_TRACES
    ) -> None:
        if max_spans < 1 or remembered < 1:
            raise ValueError("max_spans and remembered must be at least 1")
        self.max_spans = max_spans
        self.remembered = remembered
        self.over_limit = 0
        # Two generations of counts: a trace written while ``_current`` fills keeps
        # its count; when ``_current`` is full it becomes ``_previous`` and the older
        # generation is forgotten whole. A trace written in either is remembered, so
        # between ``remembered`` and twice that many recent traces are. (An LRU dict
        # would evict one trace per new one, and finding the oldest in a dict after
        # many deletions walks their holes: slower per span than all of this.)
        self._current: dict[str, int] = {}
        self._previous: dict[str, int] = {}

    def admit(self, trace_id: str) -> bool:
        """True when one more span of ``trace_id`` may be stored (and count it)."""
        current = self._current
        count = current.get(trace_id)
        if count is None:
            count = self._previous.get(trace_id, 0)
            if len(current) >= self.remembered:
                self._previous = current
                self._current = current = {}
        if count >= self.max_spans:
            current[trace_id] = count
            self.over_limit += 1
            return False
        current[trace_id] = count + 1
        return True

    def remembered_traces(self) -> int:
        """How many trace ids the cap holds a count for (at most twice ``remembered``)."""
        return len(self._current) + len(self._previous)
