from __future__ import annotations

import pytest
from span_builder import TraceBuilder

from asynctrace.analysis import bottleneck
from asynctrace.model import Trace


def seed_story() -> Trace:
    """api-gateway 5 ms -> auth 10 ms -> orders 2,500 ms -> payment 50 ms of own time."""
    builder = TraceBuilder()
    builder.add("GET /api/orders/{id}", 0, 2565, service="api-gateway")
    builder.add("POST /verify", 2.5, 12.5, parent="GET /api/orders/{id}", service="auth")
    builder.add("GET /orders/{id}", 12.5, 2562.5, parent="GET /api/orders/{id}", service="orders")
    builder.add("POST /charge", 1000, 1050, parent="GET /orders/{id}", service="payment")
    return builder.build()


def test_seed_story_names_orders_as_the_bottleneck() -> None:
    trace = seed_story()

    found = bottleneck(trace)

    assert found is not None
    assert found.service == "orders"
    assert found.span.operation == "GET /orders/{id}"
    assert found.critical_ms == pytest.approx(2500)
    assert found.total_ms == pytest.approx(2565)
    assert found.share == pytest.approx(2500 / 2565)
    assert found.sentence == (
        "orders is the bottleneck: 2,500 ms of 2,565 ms (97%) on the critical path,"
        " in GET /orders/{id}"
    )


def test_zero_duration_trace_has_no_bottleneck() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 0)

    assert bottleneck(builder.build()) is None


def test_lone_span_is_the_whole_critical_path() -> None:
    builder = TraceBuilder()
    builder.add("GET /health", 0, 12_345.4, service="orders")

    found = bottleneck(builder.build())

    assert found is not None
    assert found.share == 1.0
    assert found.sentence == (
        "orders is the bottleneck: 12,345 ms of 12,345 ms (100%) on the critical path,"
        " in GET /health"
    )


def test_service_time_adds_up_across_its_spans_and_points_at_its_longest_span() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100, service="api-gateway")
    builder.add("query users", 0, 30, parent="root", service="db")
    builder.add("call orders", 30, 60, parent="root", service="orders")
    builder.add("query orders", 60, 100, parent="root", service="db")

    found = bottleneck(builder.build())

    assert found is not None
    assert (found.service, found.span.operation) == ("db", "query orders")
    assert found.critical_ms == 70
    assert found.sentence == (
        "db is the bottleneck: 70 ms of 100 ms (70%) on the critical path, in query orders"
    )


def test_time_off_the_critical_path_does_not_count() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100, service="api-gateway")
    builder.add("slow but concurrent", 0, 80, parent="root", service="search")
    builder.add("last to finish", 5, 95, parent="root", service="orders")

    found = bottleneck(builder.build())

    assert found is not None
    assert found.service == "orders"


def test_tied_services_go_to_the_one_first_on_the_path() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100, service="api-gateway")
    builder.add("first", 0, 50, parent="root", service="b-service")
    builder.add("second", 50, 100, parent="root", service="a-service")

    found = bottleneck(builder.build())

    assert found is not None
    assert found.service == "b-service"


@pytest.mark.parametrize(
    ("duration_ms", "text"),
    [(0.4, "0.4 ms"), (0.04, "<0.1 ms"), (4.5, "4.5 ms"), (5, "5 ms"), (999.6, "1,000 ms")],
)
def test_small_and_large_durations_read_naturally(duration_ms: float, text: str) -> None:
    builder = TraceBuilder()
    builder.add("op", 0, duration_ms)

    found = bottleneck(builder.build())

    assert found is not None
    assert (
        found.sentence
        == f"svc is the bottleneck: {text} of {text} (100%) on the critical path, in op"
    )


def test_share_just_under_one_is_not_rounded_to_all_of_it() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 1000, service="api-gateway")
    builder.add("work", 0.25, 1000, parent="root", service="orders")

    found = bottleneck(builder.build())

    assert found is not None
    assert "(>99%)" in found.sentence


def checkout_with_a_slow_query(query_ms: float) -> Trace:
    """The gateway calls orders, whose checkout runs a query, then calls payment."""
    builder = TraceBuilder()
    builder.add("POST /checkout", 0, 2529, service="api-gateway")
    builder.add("HTTP POST orders", 20, 2500, parent="POST /checkout", service="api-gateway")
    checkout = "POST /orders/{order_id}/checkout"
    builder.add(checkout, 25, 2495, parent="HTTP POST orders", service="orders")
    builder.add(
        "load",
        30,
        30 + query_ms,
        parent=checkout,
        service="orders",
        operation="postgres SELECT \u2026 FROM orders WHERE id = ?",
    )
    builder.add("HTTP POST payment", 2400, 2480, parent=checkout, service="orders")
    builder.add("POST /charges", 2405, 2475, parent="HTTP POST payment", service="payment")
    return builder.build()


def test_sentence_names_the_child_operation_holding_most_of_the_services_time() -> None:
    found = bottleneck(checkout_with_a_slow_query(2300))

    assert found is not None
    assert found.service == "orders"
    assert found.span.operation == "POST /orders/{order_id}/checkout"
    assert found.slow_operation is not None
    assert found.slow_operation.critical_ms == pytest.approx(2300)
    assert found.slow_operation.span.operation.startswith("postgres SELECT")
    assert found.sentence == (
        "orders is the bottleneck: 2,400 ms of 2,529 ms (95%) on the critical path,"
        " in POST /orders/{order_id}/checkout \u2014 2,300 ms of it in"
        " postgres SELECT \u2026 FROM orders WHERE id = ?"
    )


def test_no_child_operation_is_named_when_none_holds_most_of_the_time() -> None:
    found = bottleneck(checkout_with_a_slow_query(1000))

    assert found is not None
    assert found.service == "orders"
    assert found.span.operation == "POST /orders/{order_id}/checkout"
    assert found.slow_operation is None
    assert "\u2014" not in found.sentence


def test_repeated_queries_add_up_to_one_operation() -> None:
    builder = TraceBuilder()
    builder.add("GET /orders", 0, 1000, service="orders")
    for index in range(10):
        builder.add(
            f"query {index}",
            index * 100,
            index * 100 + 90,
            parent="GET /orders",
            service="orders",
            operation="postgres SELECT \u2026 FROM items WHERE order_id = ?",
        )

    found = bottleneck(builder.build())

    assert found is not None
    assert found.slow_operation is not None
    assert found.slow_operation.critical_ms == pytest.approx(900)
    assert found.sentence.endswith(
        "in GET /orders \u2014 900 ms of it in postgres SELECT \u2026 FROM items WHERE order_id = ?"
    )
