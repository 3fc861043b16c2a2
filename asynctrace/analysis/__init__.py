"""Pure analysis of one trace: critical path, self time, bottleneck, errors, comparison.

Every function here takes a ``Trace`` (loaded by the store) and returns values; none
does I/O, so the CLI, the dashboard and tests call them the same way. ``trace_report``
gathers them into the JSON both print. The exceptions to "of one trace" are
``hot_spots``, over per-hour duration histograms, and ``format_ms``, the one way
every sentence and view writes a duration.
"""

from __future__ import annotations

from asynctrace.analysis._bottleneck import Bottleneck, SlowOperation, bottleneck
from asynctrace.analysis._compare import Comparison, OperationDeviation, compare
from asynctrace.analysis._critical_path import CriticalSegment, critical_path
from asynctrace.analysis._error_chain import ErrorChain, ErrorHop, error_chain
from asynctrace.analysis._report import trace_report
from asynctrace.analysis._self_time import self_time
from asynctrace.analysis._units import format_ms
from asynctrace.analysis.patterns import HotSpot, PatternGuard, hot_spots

__all__ = [
    "Bottleneck",
    "Comparison",
    "CriticalSegment",
    "ErrorChain",
    "ErrorHop",
    "HotSpot",
    "OperationDeviation",
    "PatternGuard",
    "SlowOperation",
    "bottleneck",
    "compare",
    "critical_path",
    "error_chain",
    "format_ms",
    "hot_spots",
    "self_time",
    "trace_report",
]
