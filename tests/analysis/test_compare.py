from __future__ import annotations

import pytest
from span_builder import TraceBuilder

from asynctrace.analysis import Comparison, compare
from asynctrace.model import Trace


def checkout(
    number: int,
    *,
    orders_ms: float,
    queries: int = 1,
    cache_refill: bool = False,
    operation: str = "GET /api/checkout",
    service: str = "api-gateway",
) -> Trace:
    """A gateway request calling orders, which runs ``queries`` 10 ms queries."""
    builder = TraceBuilder(number)
    builder.add(operation, 0, orders_ms + 20, service=service)
    builder.add("GET /orders", 10, 10 + orders_ms, parent=operation, service="orders")
    for index in range(queries):
        builder.add(
            f"query {index}",
            20 + 10 * index,
            30 + 10 * index,
            parent="GET /orders",
            service="db",
            operation="SELECT orders",
        )
    if cache_refill:
        builder.add("refill", 15, 18, parent="GET /orders", service="cache")
    return builder.build()


def rows(comparison: Comparison) -> list[tuple[str, str, float, float, float]]:
    return [
        (row.service, row.operation, row.duration_ms, row.median_ms, row.diff_ms)
        for row in comparison.deviations
    ]


def test_no_similar_traces_gives_an_empty_comparison() -> None:
    trace = checkout(1, orders_ms=100)

    comparison = compare(trace, [])

    assert comparison.sample_size == 0
    assert comparison.deviations == ()
    assert dict(comparison.by_span_id) == {}
    assert comparison.median_duration_ms is None
    assert comparison.duration_ms == 120


def test_only_traces_with_the_same_root_count_and_never_the_trace_itself() -> None:
    trace = checkout(1, orders_ms=100)
    same = checkout(2, orders_ms=50)
    others = [
        trace,
        same,
        same,  # passed twice, counted once
        checkout(3, orders_ms=9000, operation="GET /api/cart"),
        checkout(4, orders_ms=9000, service="orders-edge"),
    ]

    comparison = compare(trace, others)

    assert comparison.sample_size == 1
    assert comparison.median_duration_ms == 70


def test_operations_are_compared_with_the_median_of_similar_traces() -> None:
    trace = checkout(1, orders_ms=2500)
    others = [checkout(2, orders_ms=100), checkout(3, orders_ms=120), checkout(4, orders_ms=5000)]

    comparison = compare(trace, others)

    assert comparison.sample_size == 3
    assert rows(comparison) == [
        ("api-gateway", "GET /api/checkout", 2520, 140, 2380),
        ("orders", "GET /orders", 2500, 120, 2380),
        ("db", "SELECT orders", 10, 10, 0),
    ]
    assert comparison.deviations[1].ratio == pytest.approx(2500 / 120)
    assert comparison.median_duration_ms == 140


def test_repeated_operations_are_compared_by_their_per_trace_total() -> None:
    trace = checkout(1, orders_ms=100, queries=3)
    others = [checkout(2, orders_ms=100), checkout(3, orders_ms=100)]

    comparison = compare(trace, others)

    query_row = next(row for row in comparison.deviations if row.service == "db")
    assert (query_row.count, query_row.median_count) == (3, 1.0)
    assert (query_row.duration_ms, query_row.median_ms, query_row.diff_ms) == (30, 10, 20)
    assert query_row.ratio == 3


def test_an_operation_missing_from_other_traces_counts_as_zero_there() -> None:
    trace = checkout(1, orders_ms=100, cache_refill=True)
    others = [
        checkout(2, orders_ms=100, cache_refill=True),
        checkout(3, orders_ms=100),
        checkout(4, orders_ms=100),
    ]

    comparison = compare(trace, others)

    refill = next(row for row in comparison.deviations if row.service == "cache")
    assert (refill.median_ms, refill.median_count, refill.diff_ms) == (0, 0, 3)
    assert refill.ratio is None


def test_faster_operations_are_ranked_by_absolute_difference() -> None:
    trace = checkout(1, orders_ms=100, queries=0)
    others = [checkout(2, orders_ms=150, queries=4), checkout(3, orders_ms=150, queries=4)]

    comparison = compare(trace, others)

    assert [(row.service, row.diff_ms) for row in comparison.deviations] == [
        ("api-gateway", -50),
        ("orders", -50),
    ]


def test_every_span_can_look_up_its_operations_deviation() -> None:
    trace = checkout(1, orders_ms=2500, queries=2)
    others = [checkout(2, orders_ms=100, queries=2)]

    comparison = compare(trace, others)

    assert set(comparison.by_span_id) == {span.span_id for span in trace.spans}
    for span in trace.spans:
        row = comparison.by_span_id[span.span_id]
        assert (row.service, row.operation) == (span.service, span.operation)


def test_a_slow_span_owns_its_difference_and_its_ancestors_do_not() -> None:
    # orders takes 400 ms instead of 100 ms, all of it in its own code: the gateway
    # above it is 300 ms slower too, but only orders' self time changed.
    trace = checkout(1, orders_ms=400)
    typical = [checkout(number, orders_ms=100) for number in range(2, 5)]

    comparison = compare(trace, typical)

    by_name = {row.service: row for row in comparison.deviations}
    assert (by_name["api-gateway"].diff_ms, by_name["orders"].diff_ms) == (300, 300)
    assert by_name["api-gateway"].self_diff_ms == 0
    assert (by_name["orders"].self_ms, by_name["orders"].median_self_ms) == (390, 90)
    assert by_name["orders"].self_diff_ms == 300
    assert comparison.by_own_time[0].service == "orders"
    assert [row.self_diff_ms for row in comparison.by_own_time][1:] == [0, 0]
