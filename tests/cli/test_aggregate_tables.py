"""The aggregate tables and the heatmap as text: exact output, no colour, fixed data."""

from __future__ import annotations

from asynctrace.analysis import HotSpot
from asynctrace.histogram import Histogram
from asynctrace.store import EdgeStats, OperationStats, PatternCell, StatsRow, WeeklyPattern
from asynctrace.terminal import render_edges, render_heatmap, render_stats_table


def _stats(
    count: int, errors: int, durations: list[float], seconds: float = 3600.0
) -> OperationStats:
    return OperationStats(count, errors, seconds, Histogram.of(durations), max(durations))


def test_the_stats_table_shows_the_change_against_the_period_before() -> None:
    rows = [
        StatsRow(
            "orders", "GET /orders/{id}", _stats(36, 1, [100.0] * 36), _stats(18, 0, [50.0] * 18)
        ),
        StatsRow("auth", "verify", _stats(3600, 0, [2.0] * 3600), None),
    ]
    # Quantiles are bucket values: within 4.8 % of the samples (100 ms shows as 99 ms).
    assert render_stats_table(rows).splitlines() == [
        "SERVICE  OPERATION         REQUESTS     RATE  ERRORS    P50    P95    P99     MAX"
        "  RATE +/-  P95 +/-",
        "orders   GET /orders/{id}        36  0.010/s    2.8%  99 ms  99 ms  99 ms  100 ms"
        "     +100%     +97%",
        "auth     verify               3,600  1.000/s    0.0%   2 ms   2 ms   2 ms    2 ms"
        "       new      new",
    ]


def test_the_edges_table_reads_caller_to_callee() -> None:
    edges = [EdgeStats("gateway", "orders", OperationStats(7, 7, 3600.0, Histogram.of([30.0] * 7)))]
    assert render_edges(edges).splitlines() == [
        "CALLER       CALLEE  CALLS    RATE  ERRORS    P95",
        "gateway  ->  orders      7  7.00/h  100.0%  31 ms",
    ]


def test_the_heatmap_is_seven_rows_of_twenty_four_hours_then_the_spots() -> None:
    cells = [PatternCell(0, None, 0)] * 168
    cells[9] = PatternCell(100, 5000.0, 100)
    cells[10] = PatternCell(100, 400.0, 0)
    pattern = WeeklyPattern(
        "orders",
        "GET /x",
        4,
        0.0,
        0.0,
        1000.0,
        tuple(cells),
        (HotSpot("GET /x", 9, 10, 5000.0, 400.0, 4, 4),),
    )
    lines = render_heatmap(pattern, ascii_only=True).splitlines()
    assert lines[0] == "orders GET /x: p95 by hour of the week (UTC), last 4 weeks"
    assert lines[1] == "     0  3  6  9  12 15 18 21"
    assert lines[2] == "Mon  .........#:............."
    assert lines[3] == "Tue  " + "." * 24
    assert lines[9] == (
        "shades: p95 from 400 ms to 5,000 ms (log scale); requests 200, slow (>= 1,000 ms) 100"
    )
    assert lines[10] == (
        "GET /x: Mondays 09:00\u201310:00 UTC, p95 5,000 ms vs 400 ms typical, "
        "in 4 of the last 4 weeks"
    )
