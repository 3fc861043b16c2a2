from __future__ import annotations

from span_builder import TraceBuilder, chain

from asynctrace.analysis import ErrorHop, error_chain
from asynctrace.model import Trace


def card_declined() -> Trace:
    """api-gateway -> orders -> payment, where payment's card charge fails."""
    builder = TraceBuilder()
    builder.add(
        "GET /api/checkout",
        0,
        300,
        service="api-gateway",
        status="error",
        tags={"http.status_code": "500", "error": "true"},
        logs=[("error", "upstream returned 500")],
    )
    builder.add("POST /verify", 5, 15, parent="GET /api/checkout", service="auth")
    builder.add(
        "POST /orders",
        20,
        290,
        parent="GET /api/checkout",
        service="orders",
        status="error",
        tags={"http.status_code": "502"},
        logs=[("error", "PaymentFailed: payment service returned 402")],
    )
    builder.add(
        "POST /charge",
        40,
        90,
        parent="POST /orders",
        service="payment",
        status="error",
        tags={"error.type": "CardDeclined", "http.status_code": "402"},
        logs=[("info", "charging card"), ("error", "CardDeclined: card declined")],
    )
    builder.add("INSERT payment", 45, 50, parent="POST /charge", service="payment")
    return builder.build()


def test_trace_without_errors_has_no_error_chain() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 10)
    builder.add("a", 1, 9, parent="root")

    assert error_chain(builder.build()) is None


def test_error_at_the_gateway_points_at_the_payment_failure_three_services_down() -> None:
    trace = card_declined()

    chain_found = error_chain(trace)

    assert chain_found is not None
    assert chain_found.origin.operation == "POST /charge"
    assert chain_found.message == "CardDeclined: card declined"
    assert [(hop.span.service, hop.status, hop.http_status) for hop in chain_found.path] == [
        ("payment", "error", 402),
        ("orders", "error", 502),
        ("api-gateway", "error", 500),
    ]
    assert chain_found.path[-1].span is trace.root
    assert chain_found.sentence == (
        "payment failed first: CardDeclined: card declined (in POST /charge),"
        " surfacing as HTTP 500 at api-gateway"
    )


def test_hops_are_values() -> None:
    trace = card_declined()

    chain_found = error_chain(trace)

    assert chain_found is not None
    assert chain_found.path[-1] == ErrorHop(span=trace.root, status="error", http_status=500)


def test_message_falls_back_to_the_error_type_tag_then_to_error() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 10, status="error", tags={"error.type": "TimeoutError"})
    with_tag = error_chain(builder.build())

    builder = TraceBuilder()
    builder.add("root", 0, 10, status="error", logs=[("warn", "slow")])
    bare = error_chain(builder.build())

    assert with_tag is not None
    assert with_tag.message == "TimeoutError"
    assert bare is not None
    assert bare.message == "error"


def test_error_level_is_recognised_in_any_case_and_above_error() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 10, status="error", logs=[("WARNING", "w"), ("CRITICAL", "disk full")])

    found = error_chain(builder.build())

    assert found is not None
    assert found.message == "disk full"


def test_deepest_failing_leaf_is_the_origin() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100, status="error")
    builder.add("shallow", 5, 10, parent="root", status="error")
    builder.add("mid", 20, 90, parent="root")
    builder.add("deep", 30, 40, parent="mid", status="error")

    found = error_chain(builder.build())

    assert found is not None
    assert found.origin.operation == "deep"
    assert [hop.span.operation for hop in found.path] == ["deep", "mid", "root"]


def test_equally_deep_failures_go_to_the_earliest_start() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100, status="error")
    builder.add("second", 50, 60, parent="root", status="error")
    builder.add("first", 10, 20, parent="root", status="error")

    found = error_chain(builder.build())

    assert found is not None
    assert found.origin.operation == "first"


def test_error_in_an_orphan_subtree_stops_at_the_top_of_that_subtree() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100, service="api-gateway")
    builder.add("orders", 10, 90, parent="lost client span", service="orders")
    builder.add("charge", 20, 30, parent="orders", service="payment", status="error")

    found = error_chain(builder.build())

    assert found is not None
    assert [hop.span.operation for hop in found.path] == ["charge", "orders"]
    assert found.sentence == "payment failed first: error (in charge), but orders finished ok"


def test_sentence_says_when_the_top_still_answered_successfully() -> None:
    builder = TraceBuilder()
    builder.add("GET /", 0, 100, service="api-gateway", tags={"http.status_code": "200"})
    builder.add("fetch", 10, 20, parent="GET /", service="recs", status="error")

    found = error_chain(builder.build())

    assert found is not None
    assert found.sentence == (
        "recs failed first: error (in fetch), but api-gateway still answered HTTP 200"
    )


def test_sentence_without_an_http_status_at_the_top() -> None:
    builder = TraceBuilder()
    builder.add("job", 0, 100, service="worker", status="error")
    builder.add("query", 10, 20, parent="job", service="db", status="error")

    found = error_chain(builder.build())

    assert found is not None
    assert found.sentence == "db failed first: error (in query), surfacing as an error at worker"


def test_sentence_for_an_error_at_the_root_alone() -> None:
    builder = TraceBuilder()
    builder.add(
        "GET /x", 0, 100, service="api-gateway", status="error", tags={"http.status": "503"}
    )

    found = error_chain(builder.build())

    assert found is not None
    assert found.path[0].http_status == 503
    assert found.sentence == "api-gateway failed first: error (in GET /x)"


def test_unparseable_http_status_tag_is_ignored() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100, status="error", tags={"http.status_code": "teapot"})

    found = error_chain(builder.build())

    assert found is not None
    assert found.path[0].http_status is None


def test_error_at_the_bottom_of_a_5000_span_chain_is_traced_to_the_root() -> None:
    trace = chain(5000, failing_leaf=True)

    found = error_chain(trace)

    assert found is not None
    assert found.origin.operation == "s4999"
    assert len(found.path) == 5000
    assert found.path[-1].span is trace.root
