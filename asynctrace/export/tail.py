"""Local tail sampling: an unsampled trace's spans wait for their local root's verdict.

Head sampling decides when a trace starts, before anyone knows whether it will be
slow or fail. ``TailBuffer`` holds the ended spans of an unsampled trace in this
process until their local root (the span with no parent here) ends; then the local
root's whole subtree is kept when any span in it failed (``sampling.kept=error``) or
the local root took longer than the slow threshold (``sampling.kept=slow``), so a slow
or failed request is seen whole within each service, not as a lone span. Otherwise
the spans go where unsampled spans always went (counted, and the aggregates' share
queued).

The buffer is bounded by span count and by age: when it is full, or a trace has
waited longer than ``max_age_s`` (a root that never ends), the oldest trace leaves
it undecided: its error spans are kept, the rest are not, and all of them are counted
in ``overflow``. A span that ends after its local root was decided follows that
decision when its parent was decided (remembered for the last ``_DECISIONS_KEPT``
traces); another local root of the same trace in this process (a service calling
another in the same process) decides its own subtree. Called from any
thread: a lock guards the buffer, and the spans are handed on outside it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from asynctrace.model import Span

__all__ = ["KEPT_TAG", "TailBuffer"]

KEPT_TAG = "sampling.kept"
# Traces whose verdict is remembered for spans that end after their local root.
_DECISIONS_KEPT = 4096


class _Held:
    """The spans of one trace waiting for a local root, by parent span id, and when
    the first came."""

    __slots__ = ("by_parent", "count", "since")

    def __init__(self, since: float) -> None:
        self.since = since
        self.by_parent: dict[str | None, list[Span]] = {}
        self.count = 0

    def spans(self) -> list[Span]:
        return [span for children in self.by_parent.values() for span in children]


class TailBuffer:
    """Holds unsampled traces' spans until their local root ends (see the module).

    Args:
        keep: receives each span of a kept subtree, tagged and marked sampled.
        discard: receives each span that is not kept.
        slow_threshold_ms: a local root slower than this keeps its subtree.
        max_spans: spans held at most; beyond it the oldest trace leaves undecided.
        max_age_s: longest a trace's spans wait for their local root.
    """

    def __init__(
        self,
        *,
        keep: Callable[[Span], None],
        discard: Callable[[Span], None],
        slow_threshold_ms: float,
        max_spans: int = 10_000,
        max_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_spans < 1 or max_age_s <= 0:
            raise ValueError("max_spans must be at least 1 and max_age_s above 0")
        self._keep = keep
        self._discard = discard
        self._threshold = slow_threshold_ms
        self._max_spans = max_spans
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        # Insertion order is age order: the first trace is the oldest.
        self._held: dict[str, _Held] = {}
        self._size = 0
        # Per recent trace, the verdict on each span of its decided subtrees.
        self._decided: dict[str, dict[str, str | None]] = {}
        self.kept = 0
        self.overflow = 0

    @property
    def held(self) -> int:
        """Spans waiting for their local root right now."""
        return self._size

    def add(self, span: Span) -> None:
        """Take an ended span of an unsampled trace. O(1) unless it is a local root
        (then O(spans held for its trace)); never blocks, never raises."""
        trace_id = span.trace_id
        spans: list[Span] = []
        reason: str | None = None
        evicted: list[tuple[Span, str | None]] | None = None
        with self._lock:
            held = self._held.get(trace_id)
            if span.is_local_root:
                if held is None:
                    spans = [span]
                else:
                    spans = [span, *self._take_subtree(held, span.span_id)]
                    if not held.count:
                        del self._held[trace_id]
                reason = self._verdict(span, spans)
                decided = self._decided
                verdicts = decided.get(trace_id)
                if verdicts is None:
                    verdicts = decided[trace_id] = {}
                    if len(decided) > _DECISIONS_KEPT:
                        del decided[next(iter(decided))]
                for member in spans:
                    verdicts[member.span_id] = reason
                if reason is not None:
                    self.kept += len(spans)
            elif (
                held is None
                and (verdicts := self._decided.get(trace_id)) is not None
                and span.parent_span_id in verdicts
            ):
                # Its local root was decided already (a task it left running).
                reason = verdicts[span.span_id] = verdicts[span.parent_span_id]
                spans = [span]
                if reason is not None:
                    self.kept += 1
            else:
                if held is None:
                    held = self._held[trace_id] = _Held(self._clock())
                children = held.by_parent.get(span.parent_span_id)
                if children is None:
                    held.by_parent[span.parent_span_id] = [span]
                else:
                    children.append(span)
                held.count += 1
                self._size += 1
                evicted = self._evict()
                if not evicted:
                    return
                self.kept += sum(1 for _, verdict in evicted if verdict is not None)
        if evicted is not None:
            self._hand_on(evicted)
        else:
            self._hand_on_all(spans, reason)

    def release_all(self) -> None:
        """Let every held trace go undecided (at shutdown): errors kept, rest not."""
        with self._lock:
            out = [
                (span, "error" if span.status == "error" else None)
                for held in self._held.values()
                for span in held.spans()
            ]
            self.overflow += len(out)
            self.kept += sum(1 for _, reason in out if reason is not None)
            self._held.clear()
            self._size = 0
        self._hand_on(out)

    def _take_subtree(self, held: _Held, root_id: str) -> list[Span]:
        """Remove and return the held spans below ``root_id`` (by parent links)."""
        by_parent = held.by_parent
        taken: list[Span] = []
        parents = [root_id]
        while parents:
            children = by_parent.pop(parents.pop(), None)
            if children is not None:
                taken += children
                parents += [child.span_id for child in children]
        held.count -= len(taken)
        self._size -= len(taken)
        return taken

    def _verdict(self, root: Span, spans: list[Span]) -> str | None:
        for span in spans:
            if span.status == "error":
                return "error"
        if root.duration > self._threshold:
            return "slow"
        return None

    def _evict(self) -> list[tuple[Span, str | None]]:
        """Let the oldest traces go while the buffer is over its bound or they are
        over age (called with the lock held)."""
        out: list[tuple[Span, str | None]] = []
        held_traces = self._held
        oldest_allowed = self._clock() - self._max_age_s
        while held_traces:
            trace_id = next(iter(held_traces))
            oldest = held_traces[trace_id]
            if self._size <= self._max_spans and oldest.since >= oldest_allowed:
                break
            del held_traces[trace_id]
            self._size -= oldest.count
            self.overflow += oldest.count
            out += [(span, "error" if span.status == "error" else None) for span in oldest.spans()]
        return out

    def _hand_on_all(self, spans: list[Span], reason: str | None) -> None:
        if reason is None:
            discard = self._discard
            for span in spans:
                discard(span)
        else:
            self._hand_on([(span, reason) for span in spans])

    def _hand_on(self, out: list[tuple[Span, str | None]]) -> None:
        for span, reason in out:
            if reason is None:
                self._discard(span)
            else:
                # Kept after the fact: stored like a sampled span, and said why.
                span.is_sampled = True
                span.tags[KEPT_TAG] = reason
                self._keep(span)
