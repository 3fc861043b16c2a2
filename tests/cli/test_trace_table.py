"""Trace listings as aligned plain columns, and how slow and error ids get described."""

from __future__ import annotations

from asynctrace.store import TraceSummary
from asynctrace.terminal import TraceRow, error_rows, render_trace_table, slow_rows

T0 = 1_764_236_400_000.0  # 2025-11-27 09:40:00 UTC

SLOW = TraceSummary(
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    operation="GET /orders/{id}",
    service="api-gateway",
    services=("api-gateway", "auth", "orders", "payment"),
    duration=2565.0,
    status="ok",
    start_time=T0,
    error="",
)
FAILED = TraceSummary(
    trace_id="0af7651916cd43dd8448eb211c80319c",
    operation="POST /checkout",
    service="api-gateway",
    services=("api-gateway", "orders", "payment"),
    duration=80.0,
    status="error",
    start_time=T0 + 61_000,
    error="CardProcessorError:\ncard processor unavailable",
)
GONE = "c0ffee00c0ffee00c0ffee00c0ffee00"


def test_table_aligns_columns_and_right_aligns_durations() -> None:
    assert render_trace_table([TraceRow.of(FAILED), TraceRow.of(SLOW)]) == "\n".join(
        [
            "TRACE ID                          STARTED UTC     DURATION  STATUS  ROOT"
            "                          ERROR",
            "0af7651916cd43dd8448eb211c80319c  11-27 09:41:01     80 ms  error   api-gateway"
            " POST /checkout    CardProcessorError: card processor unavailable",
            "4bf92f3577b34da6a3ce929d0e0e4736  11-27 09:40:00  2,565 ms  ok      api-gateway"
            " GET /orders/{id}",
        ]
    )


def test_table_without_errors_has_no_error_column_and_marks_unknowns() -> None:
    assert render_trace_table([TraceRow.of(SLOW), TraceRow(GONE, duration_ms=1200.0)]) == (
        "\n".join(
            [
                "TRACE ID                          STARTED UTC     DURATION  STATUS  ROOT",
                "4bf92f3577b34da6a3ce929d0e0e4736  11-27 09:40:00  2,565 ms  ok      "
                "api-gateway GET /orders/{id}",
                "c0ffee00c0ffee00c0ffee00c0ffee00  -               1,200 ms  -       -",
            ]
        )
    )


def test_narrow_table_shares_the_room_between_root_and_error() -> None:
    lines = render_trace_table([TraceRow.of(FAILED)], width=100).splitlines()
    assert lines[1] == (
        "0af7651916cd43dd8448eb211c80319c  11-27 09:41:01     80 ms  error   "
        "api-gateway POST /check…  CardP…"
    )
    assert all(len(line) <= 100 for line in lines)


def test_slow_rows_keep_the_slow_order_and_duration() -> None:
    found = slow_rows([(GONE, 3000.0), (SLOW.trace_id, 2600.0)], [FAILED, SLOW])
    assert found == [
        TraceRow(GONE, duration_ms=3000.0),
        TraceRow.of(SLOW, duration_ms=2600.0),
    ]


def test_error_rows_are_newest_first_then_undescribed_ids() -> None:
    found = error_rows([GONE, SLOW.trace_id, FAILED.trace_id], [SLOW, FAILED])
    assert [row.trace_id for row in found] == [FAILED.trace_id, SLOW.trace_id, GONE]
    assert found[-1] == TraceRow(GONE)
