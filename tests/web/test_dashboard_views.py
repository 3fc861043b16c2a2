"""Layout and formatting of the waterfall, as pure functions of a Trace."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from dashboard_traces import SpanSpec, build, fast_checkout, now_ms, slow_checkout

from asynctrace.model import Trace
from asynctrace.web._views import (
    SERVICE_COLOURS,
    _descendant_counts,
    _ticks,
    service_class,
    trace_view,
)


def test_service_colours_are_stable_and_all_defined_in_the_stylesheet() -> None:
    assert service_class("orders") == service_class("orders")
    css = resources.files("asynctrace.web").joinpath("static/app.css").read_text()
    defined = set(re.findall(r"\.svc-(\d+) \{ --c:", css))
    assert defined == {str(number) for number in range(SERVICE_COLOURS)}
    demo = ["api-gateway", "auth", "orders", "payment", "inventory"]
    assert len({service_class(name) for name in demo}) == len(demo)


def test_descendant_counts_follow_depth_first_order() -> None:
    # root > (a > (a1, a2), b), then an orphan tree at depth 0
    assert _descendant_counts([0, 1, 2, 2, 1, 0, 1]) == [4, 2, 0, 0, 0, 1, 0]
    assert _descendant_counts([]) == []


def test_ticks_are_round_and_leave_room_for_the_last_label() -> None:
    ticks = _ticks(2565.0)
    assert [tick.label for tick in ticks] == ["0 ms", "500 ms", "1,000 ms", "1,500 ms", "2,000 ms"]
    assert ticks[1].left == pytest.approx(19.4932, abs=1e-3)
    assert [tick.label for tick in _ticks(0.3)] == [
        "0.00 ms",
        "0.05 ms",
        "0.10 ms",
        "0.15 ms",
        "0.20 ms",
        "0.25 ms",
    ]
    assert [tick.label for tick in _ticks(15.0)][:3] == ["0.0 ms", "2.5 ms", "5.0 ms"]


def test_rows_place_bars_and_critical_segments_in_percent() -> None:
    trace = Trace.from_spans(slow_checkout(start=1_000_000.0))
    view = trace_view(trace, [Trace.from_spans(fast_checkout(n)) for n in range(3)])
    gateway, auth, orders, payment = view.rows
    assert (gateway.left, gateway.width) == (0.0, 100.0)
    assert orders.left == pytest.approx(12 / 2565 * 100, abs=1e-3)
    assert [row.depth for row in view.rows] == [0, 1, 1, 2]
    assert [row.descendants for row in view.rows] == [3, 0, 1, 0]
    # orders holds the path before and after its payment call
    assert len(orders.critical_segments) == 2
    assert sum(width for _, width in orders.critical_segments) == pytest.approx(
        2500 / 2550 * 100, abs=1e-3
    )
    assert orders.is_bottleneck
    assert (orders.versus_typical, orders.versus_class) == ("+2,470 ms", "slower")
    assert (auth.versus_typical, auth.versus_class) == ("typical", "typical")
    assert payment.critical_ms == pytest.approx(50.0)
    # The gateway is as much slower, but through orders: muted, and the card names
    # the difference once, at orders.
    assert (gateway.versus_typical, gateway.versus_class) == ("+2,465 ms", "inherited")
    (owner, label, css), *others = view.top_deviations
    assert (owner.service, label, css) == ("orders", "+2,470 ms own time vs typical", "slower")
    assert all(not label.startswith("+2,") for _, label, _ in others)


def test_an_operation_the_typical_trace_never_runs_is_marked_new() -> None:
    start = now_ms()
    trace = Trace.from_spans(
        build(
            "ab" * 16,
            start,
            [
                SpanSpec("root", None, "api-gateway", "GET /checkout", 0, 100),
                SpanSpec("retry", "root", "orders", "retry payment", 10, 20),
            ],
        )
    )
    view = trace_view(trace, [Trace.from_spans(fast_checkout(0))])
    assert (view.rows[1].versus_typical, view.rows[1].versus_class) == ("not in typical", "new")


def test_a_zero_length_trace_still_lays_out() -> None:
    trace = Trace.from_spans(
        build("ab" * 16, now_ms(), [SpanSpec("root", None, "svc", "op", 0, 0)])
    )
    view = trace_view(trace, [])
    assert view.rows[0].width == 0.0
    assert view.bottleneck is None
    assert view.comparison_sentence == "No similar traces stored yet to compare with."
    assert view.page_data()["initial"] == trace.root.span_id
