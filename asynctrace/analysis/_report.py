"""One trace and its analysis as a JSON-ready dict, as the CLI and the dashboard API print it."""

from __future__ import annotations

from collections.abc import Sequence

from asynctrace.analysis._bottleneck import Bottleneck, bottleneck
from asynctrace.analysis._compare import Comparison, compare
from asynctrace.analysis._critical_path import CriticalSegment, critical_path
from asynctrace.analysis._error_chain import ErrorChain, error_chain
from asynctrace.analysis._self_time import self_time
from asynctrace.model import Trace

__all__ = ["trace_report"]


def trace_report(trace: Trace, *, similar: Sequence[Trace] | None = None) -> dict[str, object]:
    """``trace`` as span JSON in tree order, with its analysis, ready for ``json.dumps``.

    The keys are those of ``asynctrace show --json`` and ``/api/traces/{id}``: the
    root's summary, ``spans`` (span JSON, depth first), ``depths`` (span id to depth)
    and ``analysis`` with ``critical_path``, ``bottleneck``, ``error_chain`` and
    ``self_time_ms``. ``analysis.comparison`` is there only when ``similar`` is
    given, even empty (then its ``sample_size`` is 0). Milliseconds are rounded to
    the microsecond. ``truncated`` says the trace holds more entries than were read
    (``unread_entries``); the analysis is then of the spans read. Pure and CPU only;
    never raises.
    """
    ordered = trace.depth_first()
    analysis: dict[str, object] = {
        "critical_path": [_segment_json(segment) for segment in critical_path(trace)],
        "bottleneck": _bottleneck_json(bottleneck(trace)),
        "error_chain": _error_chain_json(error_chain(trace)),
        "self_time_ms": {span_id: round(ms, 3) for span_id, ms in self_time(trace).items()},
    }
    if similar is not None:
        analysis["comparison"] = _comparison_json(compare(trace, similar))
    return {
        "trace_id": trace.trace_id,
        "root_span_id": trace.root.span_id,
        "operation": trace.root.operation,
        "service": trace.root.service,
        "services": list(trace.services),
        "duration_ms": round(trace.total_duration, 3),
        "start_time": round(trace.start_time, 3),
        "status": "error" if trace.has_errors else "ok",
        "span_count": len(trace.spans),
        "is_complete": trace.is_complete,
        "orphan_span_ids": [span.span_id for span in trace.orphans],
        "corrupt_entries": trace.corrupt_entries,
        # Parent links cut to break a cycle in corrupt data; those spans are orphans.
        "cyclic_span_ids": sorted(trace.cut_span_ids),
        # True when the store holds more spans than were read (the reader's limit).
        "truncated": trace.is_truncated,
        "unread_entries": trace.unread_entries,
        "spans": [span.to_dict() for span, _ in ordered],
        "depths": {span.span_id: depth for span, depth in ordered},
        "analysis": analysis,
    }


def _segment_json(segment: CriticalSegment) -> dict[str, object]:
    return {
        "span_id": segment.span.span_id,
        "service": segment.span.service,
        "operation": segment.span.operation,
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "duration_ms": round(segment.duration_ms, 3),
    }


def _bottleneck_json(found: Bottleneck | None) -> dict[str, object] | None:
    if found is None:
        return None
    return {
        "service": found.service,
        "span_id": found.span.span_id,
        "critical_ms": round(found.critical_ms, 3),
        "total_ms": round(found.total_ms, 3),
        "share": round(found.share, 4),
        "sentence": found.sentence,
        "slow_operation": None
        if found.slow_operation is None
        else {
            "operation": found.slow_operation.operation,
            "span_id": found.slow_operation.span.span_id,
            "critical_ms": round(found.slow_operation.critical_ms, 3),
        },
    }


def _error_chain_json(chain: ErrorChain | None) -> dict[str, object] | None:
    if chain is None:
        return None
    return {
        "origin_span_id": chain.origin.span_id,
        "message": chain.message,
        "sentence": chain.sentence,
        "path": [
            {
                "span_id": hop.span.span_id,
                "service": hop.span.service,
                "operation": hop.span.operation,
                "status": hop.status,
                "http_status": hop.http_status,
            }
            for hop in chain.path
        ],
    }


def _comparison_json(comparison: Comparison) -> dict[str, object]:
    median = comparison.median_duration_ms
    return {
        "sample_size": comparison.sample_size,
        "duration_ms": round(comparison.duration_ms, 3),
        "median_duration_ms": None if median is None else round(median, 3),
        "deviations": [
            {
                "service": row.service,
                "operation": row.operation,
                "count": row.count,
                "duration_ms": round(row.duration_ms, 3),
                "median_count": row.median_count,
                "median_ms": round(row.median_ms, 3),
                "diff_ms": round(row.diff_ms, 3),
                "ratio": None if row.ratio is None else round(row.ratio, 4),
                "self_ms": round(row.self_ms, 3),
                "median_self_ms": round(row.median_self_ms, 3),
                "self_diff_ms": round(row.self_diff_ms, 3),
            }
            for row in comparison.deviations
        ],
    }
