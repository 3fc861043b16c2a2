"""Pure analysis of one trace: critical path, self time, bottleneck, errors, comparison.

Every function here takes a ``Trace`` (loaded by the store) and returns values; none
does I/O, so the CLI, the dashboard and tests call them the same way.
"""

from __future__ import annotations

from asynctrace.analysis._bottleneck import Bottleneck, bottleneck
from asynctrace.analysis._compare import Comparison, OperationDeviation, compare
from asynctrace.analysis._critical_path import CriticalSegment, critical_path
from asynctrace.analysis._error_chain import ErrorChain, ErrorHop, error_chain
from asynctrace.analysis._self_time import self_time

__all__ = [
    "Bottleneck",
    "Comparison",
    "CriticalSegment",
    "ErrorChain",
    "ErrorHop",
    "OperationDeviation",
    "bottleneck",
    "compare",
    "critical_path",
    "error_chain",
    "self_time",
]
