"""The trace report: the JSON that ``show --json`` and ``/api/traces/{id}`` both print."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from span_builder import TraceBuilder

from asynctrace.analysis import trace_report
from asynctrace.model import Trace


def _checkout(number: int = 1, *, orders_ms: float = 80.0) -> Trace:
    builder = TraceBuilder(number)
    builder.add("GET /checkout", 0, 20 + orders_ms, service="gateway")
    builder.add("GET /orders", 10, 10 + orders_ms, parent="GET /checkout", service="orders")
    return builder.build()


def _printed(trace: Trace, similar: Sequence[Trace] | None = None) -> Any:
    """The report as a client reads it, which also shows it is JSON-ready as it is."""
    return json.loads(json.dumps(trace_report(trace, similar=similar)))


def test_spans_come_in_tree_order_with_their_depths_and_analysis() -> None:
    trace = _checkout()
    report = _printed(trace)

    root, orders = trace.root.span_id, trace.spans[1].span_id
    assert [span["service"] for span in report["spans"]] == ["gateway", "orders"]
    assert report["depths"] == {root: 0, orders: 1}
    analysis = report["analysis"]
    assert analysis["bottleneck"]["span_id"] == orders
    assert analysis["error_chain"] is None
    assert analysis["self_time_ms"] == {root: 20.0, orders: 80.0}


def test_comparison_only_when_similar_traces_are_given_even_none() -> None:
    trace = _checkout(1, orders_ms=480.0)

    assert "comparison" not in _printed(trace)["analysis"]
    assert _printed(trace, [])["analysis"]["comparison"]["sample_size"] == 0
    comparison = _printed(trace, [_checkout(2), _checkout(3)])["analysis"]["comparison"]
    assert comparison["sample_size"] == 2
    assert comparison["deviations"][0]["diff_ms"] == 400.0
    # Both are 400 ms slower; orders' own time owns the difference.
    owners = {row["service"]: row["self_diff_ms"] for row in comparison["deviations"]}
    assert owners == {"gateway": 0.0, "orders": 400.0}
