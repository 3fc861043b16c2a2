"""The bottleneck of a trace: the service that held the critical path longest."""

from __future__ import annotations

from dataclasses import dataclass

from asynctrace.analysis._critical_path import CriticalSegment, critical_path
from asynctrace.analysis._units import format_ms
from asynctrace.model import Span, Trace

__all__ = ["Bottleneck", "SlowOperation", "bottleneck"]

# A child operation is named when it holds more than this share of the service's
# critical time: "most of it", so it is the one thing to look at.
_MOST = 0.5


@dataclass(frozen=True, slots=True)
class SlowOperation:
    """One operation inside the bottleneck service that holds most of its critical time.

    ``operation`` is the spans' name (``"postgres SELECT … FROM orders WHERE id =
    ?"``), ``critical_ms`` the critical time of all its spans in the service
    together (a query run in a loop adds up), ``span`` the one with the most.
    """

    operation: str
    critical_ms: float
    span: Span


@dataclass(frozen=True, slots=True)
class Bottleneck:
    """The service with the largest share of a trace's critical path.

    ``critical_ms`` is that service's time on the critical path, ``total_ms`` the
    whole critical path (the root's duration), ``share`` their ratio in ``[0, 1]``.
    ``span`` is where the service spent it: of the service's entry spans (those
    whose parent is another service's, or none), the one whose subtree within the
    service held the critical path longest. ``slow_operation`` is the operation
    below it (a query, a call, an inner span) that holds more than half of the
    service's critical time, when one does.
    """

    service: str
    span: Span
    critical_ms: float
    total_ms: float
    share: float
    slow_operation: SlowOperation | None = None

    @property
    def sentence(self) -> str:
        """The finding as one line for a person.

        For example: "orders is the bottleneck: 2,460 ms of 2,529 ms (97%) on the
        critical path, in POST /orders/{order_id}/checkout — 2,300 ms of it in
        postgres SELECT … FROM orders WHERE id = ?".
        """
        text = (
            f"{self.service} is the bottleneck: {format_ms(self.critical_ms)} of "
            f"{format_ms(self.total_ms)} ({_format_share(self.share)}) on the critical path"
        )
        if self.span.operation:
            text += f", in {self.span.operation}"
        slow = self.slow_operation
        if slow is not None:
            text += f" \u2014 {format_ms(slow.critical_ms)} of it in {slow.operation}"
        return text


def bottleneck(trace: Trace) -> Bottleneck | None:
    """The service with the largest share of ``trace``'s critical path, or None.

    None when the critical path is empty (the root lasted 0 ms). Ties between
    services go to the one that reached the critical path first; ties between one
    service's spans go to the earliest-starting span. Pure, never raises.
    """
    segments = critical_path(trace)
    if not segments:
        return None
    by_service, by_span = _critical_time(segments)
    total = sum(by_service.values())
    # Dicts keep insertion order, which is the order of first appearance on the
    # path because segments are sorted by start: max() keeps the first of equals.
    service = max(by_service, key=lambda name: by_service[name])
    critical = by_service[service]
    own = {span: ms for span, ms in by_span.items() if span.service == service}
    entries = _entry_spans(trace, own)
    by_entry: dict[Span, float] = {}
    for span, ms in own.items():
        by_entry[entries[span]] = by_entry.get(entries[span], 0.0) + ms
    return Bottleneck(
        service=service,
        span=_longest(by_entry),
        critical_ms=critical,
        total_ms=total,
        share=min(1.0, critical / total),
        slow_operation=_slow_operation(own, entries, critical),
    )


def _entry_spans(trace: Trace, own: dict[Span, float]) -> dict[Span, Span]:
    """Each of the service's spans mapped to its entry: its topmost same-service ancestor."""
    by_id = {span.span_id: span for span in trace.spans}
    entries: dict[Span, Span] = {}
    for span in own:
        entry = span
        seen = {span.span_id}
        while True:
            parent = by_id.get(entry.parent_span_id or "")
            # The seen set guards against corrupt data that links spans in a cycle.
            if parent is None or parent.service != span.service or parent.span_id in seen:
                break
            seen.add(parent.span_id)
            entry = parent
        entries[span] = entry
    return entries


def _slow_operation(
    own: dict[Span, float], entries: dict[Span, Span], critical: float
) -> SlowOperation | None:
    inner = {span: ms for span, ms in own.items() if entries[span] is not span}
    by_operation: dict[str, float] = {}
    for span, ms in inner.items():
        by_operation[span.operation] = by_operation.get(span.operation, 0.0) + ms
    if not by_operation:
        return None
    operation = max(by_operation, key=lambda name: by_operation[name])
    held = by_operation[operation]
    if held <= critical * _MOST:
        return None
    spans = {span: ms for span, ms in inner.items() if span.operation == operation}
    return SlowOperation(operation=operation, critical_ms=held, span=_longest(spans))


def _longest(times: dict[Span, float]) -> Span:
    """The span with the most time; ties go to the earliest start, then the span id."""
    return min(times, key=lambda span: (-times[span], span.start_time, span.span_id))


def _critical_time(
    segments: list[CriticalSegment],
) -> tuple[dict[str, float], dict[Span, float]]:
    by_service: dict[str, float] = {}
    by_span: dict[Span, float] = {}
    for segment in segments:
        by_service[segment.span.service] = (
            by_service.get(segment.span.service, 0.0) + segment.duration_ms
        )
        by_span[segment.span] = by_span.get(segment.span, 0.0) + segment.duration_ms
    return by_service, by_span


def _format_share(share: float) -> str:
    """A percentage that never rounds a partial share to "100%" or a real one to "0%"."""
    percent = round(share * 100)
    if percent >= 100 and share < 1:
        return ">99%"
    if percent <= 0 < share:
        return "<1%"
    return f"{percent}%"
