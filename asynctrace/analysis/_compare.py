"""Comparison of a trace with similar traces: which operations took unusually long."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from types import MappingProxyType

from asynctrace.analysis._self_time import self_time
from asynctrace.model import Trace

__all__ = ["Comparison", "OperationDeviation", "compare"]

_OperationKey = tuple[str, str]
_ABSENT = (0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class OperationDeviation:
    """How one (service, operation) of a trace differs from the typical similar trace.

    ``count`` and ``duration_ms`` are this trace's number of such spans and the sum
    of their durations; ``median_count`` and ``median_ms`` are the medians of the
    same per-trace figures over the similar traces, where a trace without the
    operation counts as 0. ``diff_ms`` is ``duration_ms - median_ms`` (positive:
    slower than usual); ``ratio`` is ``duration_ms / median_ms``, or None when the
    median is 0 (the typical trace does not run the operation at all).

    ``self_ms``, ``median_self_ms`` and ``self_diff_ms`` are the same figures for the
    spans' self time (their duration minus what their children covered). A slow
    span makes every ancestor's duration slower by as much, but only its own self
    time: ``self_diff_ms`` names the operation that owns a difference.
    """

    service: str
    operation: str
    count: int
    duration_ms: float
    median_count: float
    median_ms: float
    diff_ms: float
    ratio: float | None
    self_ms: float = 0.0
    median_self_ms: float = 0.0
    self_diff_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """A trace set against the median of the traces similar to it.

    ``sample_size`` is the number of similar traces; with none, ``deviations`` and
    ``by_span_id`` are empty and ``median_duration_ms`` is None. ``deviations`` has
    one entry per (service, operation) of the trace, largest absolute ``diff_ms``
    first; ``by_span_id`` gives every span of the trace its operation's entry, so a
    waterfall can show the deviation beside each span. ``duration_ms`` is the
    trace's total duration and ``median_duration_ms`` the similar traces' median.
    """

    sample_size: int
    deviations: tuple[OperationDeviation, ...]
    by_span_id: Mapping[str, OperationDeviation]
    duration_ms: float
    median_duration_ms: float | None

    @property
    def by_own_time(self) -> tuple[OperationDeviation, ...]:
        """``deviations`` ordered by absolute ``self_diff_ms``, largest first: the
        operations that own the trace's differences, each named once."""
        return tuple(
            sorted(
                self.deviations,
                key=lambda row: (-abs(row.self_diff_ms), row.service, row.operation),
            )
        )


def compare(trace: Trace, others: Sequence[Trace]) -> Comparison:
    """Compare ``trace`` per (service, operation) with the similar traces in ``others``.

    Similar means the same root service and root operation: "GET /health" answered
    by the gateway and by orders are different requests. ``trace`` itself (by trace
    id) is left out, and a trace passed twice counts once. Per-trace totals are
    compared, not single spans, so an operation called three times instead of once
    shows up. Operations that only the other traces ran are not listed. Pure, never
    raises.
    """
    similar = _similar(trace, others)
    if not similar:
        return Comparison(
            sample_size=0,
            deviations=(),
            by_span_id=MappingProxyType({}),
            duration_ms=trace.total_duration,
            median_duration_ms=None,
        )
    own = _totals(trace)
    their = [_totals(other) for other in similar]
    deviations: dict[_OperationKey, OperationDeviation] = {}
    for key, (count, duration, own_time) in own.items():
        # An absent operation is a real 0 for that trace, not a gap: leaving it out
        # would make a rarely taken slow path (a cache miss) look typical.
        median_count = median(totals.get(key, _ABSENT)[0] for totals in their)
        median_ms = median(totals.get(key, _ABSENT)[1] for totals in their)
        median_self_ms = median(totals.get(key, _ABSENT)[2] for totals in their)
        deviations[key] = OperationDeviation(
            service=key[0],
            operation=key[1],
            count=count,
            duration_ms=duration,
            median_count=float(median_count),
            median_ms=float(median_ms),
            diff_ms=duration - median_ms,
            ratio=duration / median_ms if median_ms > 0 else None,
            self_ms=own_time,
            median_self_ms=float(median_self_ms),
            self_diff_ms=own_time - median_self_ms,
        )
    ordered = sorted(
        deviations.values(),
        key=lambda row: (-abs(row.diff_ms), row.service, row.operation),
    )
    by_span_id = {span.span_id: deviations[(span.service, span.operation)] for span in trace.spans}
    return Comparison(
        sample_size=len(similar),
        deviations=tuple(ordered),
        by_span_id=MappingProxyType(by_span_id),
        duration_ms=trace.total_duration,
        median_duration_ms=float(median(other.total_duration for other in similar)),
    )


def _similar(trace: Trace, others: Sequence[Trace]) -> list[Trace]:
    kind = (trace.root.service, trace.root.operation)
    similar: dict[str, Trace] = {}
    for other in others:
        if other.trace_id == trace.trace_id:
            continue
        if (other.root.service, other.root.operation) == kind:
            similar.setdefault(other.trace_id, other)
    return list(similar.values())


def _totals(trace: Trace) -> dict[_OperationKey, tuple[int, float, float]]:
    """Number of spans, their summed duration and summed self time in ms, per
    (service, operation)."""
    own_times = self_time(trace)
    totals: dict[_OperationKey, tuple[int, float, float]] = {}
    for span in trace.spans:
        key = (span.service, span.operation)
        count, duration, own_time = totals.get(key, _ABSENT)
        totals[key] = (
            count + 1,
            duration + span.duration,
            own_time + own_times.get(span.span_id, 0.0),
        )
    return totals
