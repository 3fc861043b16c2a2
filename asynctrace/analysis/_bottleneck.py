"""The bottleneck of a trace: the service that held the critical path longest."""

from __future__ import annotations

from dataclasses import dataclass

from asynctrace.analysis._critical_path import CriticalSegment, critical_path
from asynctrace.analysis._units import format_ms
from asynctrace.model import Span, Trace

__all__ = ["Bottleneck", "bottleneck"]


@dataclass(frozen=True, slots=True)
class Bottleneck:
    """The service with the largest share of a trace's critical path.

    ``critical_ms`` is that service's time on the critical path, ``total_ms`` the
    whole critical path (the root's duration), ``share`` their ratio in ``[0, 1]``.
    ``span`` is the service's span with the most critical time: the place to look.
    """

    service: str
    span: Span
    critical_ms: float
    total_ms: float
    share: float

    @property
    def sentence(self) -> str:
        """The finding as one line for a person.

        For example: "orders is the bottleneck: 2,500 ms of 2,565 ms (97%) on the
        critical path, in GET /orders/{id}".
        """
        text = (
            f"{self.service} is the bottleneck: {format_ms(self.critical_ms)} of "
            f"{format_ms(self.total_ms)} ({_format_share(self.share)}) on the critical path"
        )
        if self.span.operation:
            text += f", in {self.span.operation}"
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
    spans = sorted(
        (span for span in by_span if span.service == service),
        key=lambda span: (-by_span[span], span.start_time, span.span_id),
    )
    critical = by_service[service]
    return Bottleneck(
        service=service,
        span=spans[0],
        critical_ms=critical,
        total_ms=total,
        share=min(1.0, critical / total),
    )


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
