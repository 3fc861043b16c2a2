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


def test_a_wide_terminal_shows_every_column_on_one_line() -> None:
    table = render_trace_table([TraceRow.of(FAILED), TraceRow.of(SLOW)], width=160)
    assert table == render_trace_table([TraceRow.of(FAILED), TraceRow.of(SLOW)])


def test_root_gives_way_to_the_error_text_first() -> None:
    lines = render_trace_table([TraceRow.of(FAILED)], width=140).splitlines()
    assert lines[1] == (
        "0af7651916cd43dd8448eb211c80319c  11-27 09:41:01     80 ms  error   "
        "api-gateway POST /check…  CardProcessorError: card processor unavailable"
    )
    assert max(len(line) for line in lines) == 140


def test_at_80_columns_errors_go_whole_under_their_rows() -> None:
    rows = [TraceRow.of(FAILED), TraceRow.of(SLOW), TraceRow(GONE, duration_ms=1200.0)]
    assert render_trace_table(rows, width=80) == "\n".join(
        [
            "TRACE ID                          DURATION  ROOT",
            "0af7651916cd43dd8448eb211c80319c     80 ms  api-gateway POST /checkout",
            "  ✗ CardProcessorError: card processor unavailable",
            "4bf92f3577b34da6a3ce929d0e0e4736  2,565 ms  api-gateway GET /orders/{id}",
            "c0ffee00c0ffee00c0ffee00c0ffee00  1,200 ms  -",
        ]
    )


def test_a_long_error_is_wrapped_never_cut() -> None:
    long_error = TraceRow.of(FAILED)
    text = "TimeoutError: the acquirer did not answer within 2 s " * 3
    row = TraceRow(long_error.trace_id, long_error.started_ms, 80.0, "error", "gw POST /x", text)
    lines = render_trace_table([row], width=80, ascii_only=True).splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[2].startswith("  x TimeoutError:")
    assert " ".join(line.strip() for line in lines[2:]).removeprefix("x ") == " ".join(text.split())


def test_a_failed_row_without_text_keeps_the_status_column() -> None:
    silent = TraceRow(GONE, SLOW.start_time, 10.0, "error", "gw GET /", "")
    lines = render_trace_table([TraceRow.of(FAILED), silent], width=100).splitlines()
    assert lines[0].split() == ["TRACE", "ID", "STARTED", "UTC", "DURATION", "STATUS", "ROOT"]
    assert lines[3] == f"{GONE}  11-27 09:40:00     10 ms  error   gw GET /"


def test_without_errors_a_narrow_table_drops_the_start_before_cutting_the_root() -> None:
    lines = render_trace_table([TraceRow.of(SLOW)], width=80).splitlines()
    assert lines == [
        "TRACE ID                          DURATION  STATUS  ROOT",
        "4bf92f3577b34da6a3ce929d0e0e4736  2,565 ms  ok      api-gateway GET /orders/{id}",
    ]


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
