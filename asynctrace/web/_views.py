"""Turning a ``Trace`` and its analysis into what the pages and the JSON API show.

One ``TraceView`` is computed per request from the trace and the similar traces;
the waterfall template and the page's JSON data block are both read off it.
``/api/traces/{id}`` is ``asynctrace.analysis.trace_report`` of the same values.
Every number a person reads is formatted here (durations by
``asynctrace.analysis.format_ms``), so the template and the script only place text.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asynctrace.analysis import (
    Bottleneck,
    Comparison,
    CriticalSegment,
    ErrorChain,
    OperationDeviation,
    bottleneck,
    compare,
    critical_path,
    error_chain,
    format_ms,
    self_time,
)
from asynctrace.model import Span, Trace
from asynctrace.store import TraceSummary

__all__ = [
    "SERVICE_COLOURS",
    "SpanRow",
    "Tick",
    "TraceView",
    "format_time",
    "service_class",
    "summary_json",
    "trace_view",
]

SERVICE_COLOURS = 20
"""Size of the palette ``svc-0`` .. ``svc-19`` in ``app.css``."""

_TARGET_TICKS = 6
# Names of the details panel's fields; each span's "fields" holds the values in order.
_DETAIL_FIELDS = (
    "Service",
    "Kind",
    "Status",
    "Start",
    "Duration",
    "Self time",
    "On critical path",
    "vs typical",
    "Span id",
    "Parent span id",
)
# A difference smaller than this share of the typical request's duration is not shown
# as a finding, however large against the operation's own median.
_FINDING_SHARE = 0.05
# A tick label sits right of its line; past this (percent) it would run off the axis.
_LAST_TICK_LABEL = 88.0


def format_time(epoch_ms: float) -> str:
    """Epoch milliseconds as ``2026-11-27 09:40:00.123 UTC``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000.0, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


def service_class(service: str) -> str:
    """A CSS class giving ``service`` the same colour on every page and every run.

    SHA-256 rather than ``hash()``, which Python salts per process; CRC-32's low
    bits put look-alike names ("api-gateway", "reports") on one colour too often.
    """
    digest = hashlib.sha256(service.encode("utf-8", "surrogatepass")).digest()
    return f"svc-{int.from_bytes(digest[:4], 'big') % SERVICE_COLOURS}"


def summary_json(summary: TraceSummary) -> dict[str, Any]:
    """One listing row as JSON (``/api/recent``, ``/api/slow``, ...)."""
    return {
        "trace_id": summary.trace_id,
        "operation": summary.operation,
        "service": summary.service,
        "services": list(summary.services),
        "duration_ms": round(summary.duration, 3),
        "status": summary.status,
        "start_time": round(summary.start_time, 3),
        "error": summary.error,
    }


@dataclass(frozen=True, slots=True)
class Tick:
    """A mark on the time axis, ``left`` percent along it."""

    left: float
    label: str


@dataclass(frozen=True, slots=True)
class SpanRow:
    """One waterfall row: a span, where its bar goes and what the analysis says of it.

    ``left`` and ``width`` are percent of the time axis; each critical segment is
    ``(left, width)`` in percent of the span's own bar. ``descendants`` counts the
    rows after this one that belong to its subtree (rows are in depth-first order),
    which is all the script needs to collapse it.
    """

    span: Span
    depth: int
    descendants: int
    left: float
    width: float
    self_ms: float
    critical_ms: float
    critical_segments: tuple[tuple[float, float], ...]
    deviation: OperationDeviation | None
    versus_typical: str
    versus_class: str
    is_bottleneck: bool
    is_error_origin: bool

    @property
    def service_class(self) -> str:
        return service_class(self.span.service)


@dataclass(frozen=True, slots=True)
class TraceView:
    """A trace with its analysis, laid out for the waterfall."""

    trace: Trace
    rows: tuple[SpanRow, ...]
    extent_ms: float
    ticks: tuple[Tick, ...]
    critical: tuple[CriticalSegment, ...]
    bottleneck: Bottleneck | None
    error_chain: ErrorChain | None
    comparison: Comparison
    self_ms: dict[str, float]

    @property
    def status(self) -> str:
        return "error" if self.trace.has_errors else "ok"

    @property
    def services(self) -> list[tuple[str, str]]:
        """``(service, css class)`` in order of first appearance, for the legend."""
        return [(service, service_class(service)) for service in self.trace.services]

    @property
    def comparison_sentence(self) -> str:
        """How the whole trace compares with the similar ones, as one line."""
        comparison = self.comparison
        if comparison.median_duration_ms is None:
            return "No similar traces stored yet to compare with."
        plural = "trace" if comparison.sample_size == 1 else "traces"
        return (
            f"{format_ms(comparison.duration_ms)} against a median of "
            f"{format_ms(comparison.median_duration_ms)} over {comparison.sample_size} "
            f"similar {plural} (same root service and operation)."
        )

    @property
    def top_deviations(self) -> list[tuple[OperationDeviation, str, str]]:
        """Up to three operations whose own time is furthest from typical, each with
        its label and class.

        Own (self) time, not duration: a slow span makes each of its ancestors slower
        by the same amount, and the card names the difference once, where it is.
        """
        out: list[tuple[OperationDeviation, str, str]] = []
        floor_ms = _FINDING_SHARE * (self.comparison.median_duration_ms or 0.0)
        for deviation in self.comparison.by_own_time:
            if len(out) == 3 or abs(deviation.self_diff_ms) < floor_ms:
                break
            if deviation.median_count == 0:
                out.append((deviation, "not in typical", "new"))
                continue
            own = _delta(deviation.self_diff_ms, deviation.median_self_ms)
            if own is not None:
                out.append((deviation, f"{own[0]} own time vs typical", own[1]))
        return out

    def page_data(self) -> dict[str, Any]:
        """What the trace page's script needs, embedded as JSON: per-span details."""
        origin = self.trace.start_time
        spans: dict[str, Any] = {}
        for row in self.rows:
            span = row.span
            spans[span.span_id] = {
                "service": span.service,
                "service_class": row.service_class,
                "operation": span.operation,
                "fields": [
                    span.service,
                    span.kind,
                    span.status,
                    f"+{format_ms(span.start_time - origin)}",
                    format_ms(span.duration),
                    format_ms(row.self_ms),
                    format_ms(row.critical_ms),
                    _typical_detail(row.deviation, self.comparison),
                    span.span_id,
                    span.parent_span_id or "none (root)",
                ],
                "tags": sorted(span.tags.items()),
                "logs": [
                    [f"+{format_ms(max(0.0, log.timestamp - origin))}", log.level, log.message]
                    for log in span.logs
                ],
                "status": span.status,
            }
        if self.error_chain is not None:
            initial = self.error_chain.origin.span_id
        elif self.bottleneck is not None:
            initial = self.bottleneck.span.span_id
        else:
            initial = self.trace.root.span_id
        return {"fields": list(_DETAIL_FIELDS), "spans": spans, "initial": initial}


def trace_view(trace: Trace, similar: Sequence[Trace]) -> TraceView:
    """Analyse ``trace`` (against ``similar``) and lay it out. Pure, CPU only."""
    critical = critical_path(trace)
    found = bottleneck(trace)
    chain = error_chain(trace)
    comparison = compare(trace, similar)
    self_ms = self_time(trace)

    origin = trace.start_time
    extent = max(trace.total_duration, max(span.end_time for span in trace.spans) - origin)
    if extent <= 0:
        extent = 1.0

    # A row's difference must matter to the whole request: a twentieth of its
    # typical duration (2.7 ms more in an 80 ms request is noise, not a finding).
    floor_ms = _FINDING_SHARE * (comparison.median_duration_ms or 0.0)
    segments_of: dict[str, list[CriticalSegment]] = {}
    for segment in critical:
        segments_of.setdefault(segment.span.span_id, []).append(segment)

    ordered = trace.depth_first()
    descendants = _descendant_counts([depth for _, depth in ordered])
    rows = []
    for (span, depth), count in zip(ordered, descendants, strict=True):
        segments = segments_of.get(span.span_id, [])
        deviation = comparison.by_span_id.get(span.span_id)
        label, css = ("", "") if deviation is None else _versus_typical(deviation, floor_ms)
        rows.append(
            SpanRow(
                span=span,
                depth=depth,
                descendants=count,
                left=_percent(span.start_time - origin, extent),
                width=_percent(span.duration, extent),
                self_ms=self_ms.get(span.span_id, 0.0),
                critical_ms=sum(segment.duration_ms for segment in segments),
                critical_segments=tuple(_within(span, segment) for segment in segments),
                deviation=deviation,
                versus_typical=label,
                versus_class=css,
                is_bottleneck=found is not None and found.span is span,
                is_error_origin=chain is not None and chain.origin is span,
            )
        )
    return TraceView(
        trace=trace,
        rows=tuple(rows),
        extent_ms=extent,
        ticks=_ticks(extent),
        critical=tuple(critical),
        bottleneck=found,
        error_chain=chain,
        comparison=comparison,
        self_ms=self_ms,
    )


def _descendant_counts(depths: Sequence[int]) -> list[int]:
    """For rows in depth-first order, how many following rows are deeper (its subtree)."""
    counts = [0] * len(depths)
    open_rows: list[int] = []
    for index, depth in enumerate(depths):
        while open_rows and depths[open_rows[-1]] >= depth:
            closed = open_rows.pop()
            counts[closed] = index - closed - 1
        open_rows.append(index)
    for closed in open_rows:
        counts[closed] = len(depths) - closed - 1
    return counts


def _percent(value: float, extent: float) -> float:
    return round(min(100.0, max(0.0, value / extent * 100.0)), 4)


def _within(span: Span, segment: CriticalSegment) -> tuple[float, float]:
    """A critical segment's place inside its span's bar, in percent of the bar."""
    if span.duration <= 0:
        return (0.0, 100.0)
    left = _percent(segment.start - span.start_time, span.duration)
    width = _percent(segment.duration_ms, span.duration)
    return (left, min(width, 100.0 - left))


def _ticks(extent: float) -> tuple[Tick, ...]:
    raw = extent / _TARGET_TICKS
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(factor * magnitude for factor in (1, 2, 2.5, 5, 10) if factor * magnitude >= raw)
    # As many decimals as the step needs (0.25 ms steps need two), no more.
    decimals = 0
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-9:
        decimals += 1
    ticks: list[Tick] = []
    index = 0
    while index * step <= extent * 1.0001:
        value = index * step
        left = _percent(value, extent)
        if left <= _LAST_TICK_LABEL or not ticks:
            ticks.append(Tick(left, f"{value:,.{decimals}f} ms"))
        index += 1
    return tuple(ticks)


def _versus_typical(deviation: OperationDeviation, floor_ms: float) -> tuple[str, str]:
    """A short label for a row's "vs typical" column and its CSS class.

    The label is the difference in duration. The class is slower or faster when the
    span's own time made (at least half of) the difference; inherited when its
    children did, which reads muted so that only the span owning a difference stands
    out; typical; or new (the typical trace does not run the operation at all).
    """
    if deviation.median_count == 0:
        return ("not in typical", "new")
    total = _delta(deviation.diff_ms, deviation.median_ms)
    if total is None or abs(deviation.diff_ms) < floor_ms:
        return ("typical", "typical")
    own = _delta(deviation.self_diff_ms, deviation.median_self_ms)
    # The span owns its difference when its own time makes at least half of it.
    if own is None or abs(deviation.self_diff_ms) < 0.5 * abs(deviation.diff_ms):
        return (total[0], "inherited")
    return (total[0], own[1])


def _delta(diff_ms: float, median_ms: float) -> tuple[str, str] | None:
    """``+2,456 ms`` and slower (or faster), None when the difference is noise."""
    # Within a fifth of the median (and at least 1 ms) is noise, not a finding.
    threshold = max(1.0, 0.2 * median_ms)
    if diff_ms > threshold:
        return (f"+{format_ms(diff_ms)}", "slower")
    if diff_ms < -threshold:
        return (f"\u2212{format_ms(-diff_ms)}", "faster")
    return None


def _typical_detail(deviation: OperationDeviation | None, comparison: Comparison) -> str:
    """The row's comparison in full, for the details panel."""
    if deviation is None or comparison.sample_size == 0:
        return "no similar traces stored"
    here = f"{_calls(deviation.count)}, {format_ms(deviation.duration_ms)} in this trace"
    typical = f"{_calls(deviation.median_count)}, {format_ms(deviation.median_ms)}"
    plural = "trace" if comparison.sample_size == 1 else "traces"
    own = (
        f"; own time {format_ms(deviation.self_ms)}, "
        f"typically {format_ms(deviation.median_self_ms)}"
    )
    return f"{here}; typically {typical} (median of {comparison.sample_size} similar {plural}){own}"


def _calls(count: float) -> str:
    return f"{count:g} call" if count == 1 else f"{count:g} calls"
