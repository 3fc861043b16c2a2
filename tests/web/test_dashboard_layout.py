"""The aggregate pages' pure parts: rate units, the service map's layout, heat levels."""

from __future__ import annotations

import re

import pytest

from asynctrace.analysis.patterns import HotSpot
from asynctrace.histogram import Histogram
from asynctrace.store import EdgeStats, OperationStats, PatternCell, WeeklyPattern
from asynctrace.web._aggregates import format_rate, heat_legend, heat_rows, map_view

DAY_S = 86_400.0


@pytest.mark.parametrize(
    ("count", "seconds", "shown"),
    [
        (24, DAY_S, "1.00/h"),
        (10, DAY_S, "0.42/h"),
        (1, 30 * DAY_S, "0.0014/h"),
        (0, DAY_S, "0/h"),
        (90, 3600.0, "1.50/min"),
        (3000, 3600.0, "50.0/min"),
        (7200, 3600.0, "2.00/s"),
        (4_000_000, 3600.0, "1,111/s"),
    ],
)
def test_a_rate_takes_the_largest_unit_that_shows_a_whole_number(
    count: int, seconds: float, shown: str
) -> None:
    assert format_rate(count / seconds) == shown


def _edge(caller: str, callee: str, *, count: int = 10, errors: int = 0) -> EdgeStats:
    stats = OperationStats(
        count=count, errors=errors, seconds=DAY_S, histogram=Histogram.of([200.0] * count)
    )
    return EdgeStats(caller, callee, stats)


def _columns(edges: list[EdgeStats]) -> dict[str, float]:
    return {node.name: node.x + node.width / 2 for node in map_view(edges).nodes}


def test_the_map_puts_callers_left_of_their_callees_by_call_depth() -> None:
    edges = [
        _edge("api-gateway", "auth"),
        _edge("api-gateway", "orders"),
        _edge("orders", "payment", errors=1),
        _edge("orders", "inventory"),
        _edge("api-gateway", "inventory"),  # also called directly: still after orders
    ]
    x = _columns(edges)
    assert x["api-gateway"] < x["auth"] == x["orders"] < x["payment"] == x["inventory"]
    view = map_view(edges)
    assert view.width >= 1300  # three columns spread over the page
    failing = [line for line in view.lines if line.is_failing]
    assert [(line.caller, line.callee) for line in failing] == [("orders", "payment")]
    assert failing[0].label.startswith("0.42/h · 10.0% err · p95 ")


def test_the_map_lays_out_cycles_self_calls_and_long_names() -> None:
    long_name = "a-service-whose-name-goes-on-and-on-and-on"
    edges = [
        _edge("gateway", "web"),
        _edge("web", "jobs"),
        _edge("jobs", "web"),  # a callback closes a cycle
        _edge("jobs", "jobs"),
        _edge("jobs", long_name),
    ]
    view = map_view(edges)
    x = _columns(edges)
    assert x["gateway"] < x["web"] < x["jobs"] < x[long_name]
    (named,) = [node for node in view.nodes if node.name == long_name]
    assert named.label.endswith("\u2026")
    assert len(named.label) == 30
    assert len(view.lines) == 5
    assert all(line.path.startswith("M") for line in view.lines)
    # The callback runs below every box, inside the drawing.
    (back,) = [line for line in view.lines if (line.caller, line.callee) == ("jobs", "web")]
    lowest = max(float(y) for y in re.findall(r",(-?[0-9.]+)", back.path))
    assert max(node.y + node.height for node in view.nodes) < lowest < view.height


def test_an_empty_map_has_no_nodes() -> None:
    view = map_view([])
    assert (view.nodes, view.lines) == ((), ())


def _pattern(p95s: dict[int, float], hot: tuple[int, int] | None = None) -> WeeklyPattern:
    cells = tuple(
        PatternCell(count=40, p95_ms=p95s[hour], slow=0)
        if hour in p95s
        else PatternCell(count=0, p95_ms=None, slow=0)
        for hour in range(168)
    )
    spots: tuple[HotSpot, ...] = ()
    if hot is not None:
        spots = (HotSpot("GET /r", hot[0], hot[1], 900.0, 100.0, 4, 4),)
    return WeeklyPattern("reports", "GET /r", 4, 0.0, 4 * 168 * 3_600_000.0, 1000.0, cells, spots)


def test_heat_levels_measure_each_hour_against_the_typical_p95() -> None:
    pattern = _pattern({9: 100.0, 10: 105.0, 11: 60.0, 12: 250.0, 13: 900.0}, hot=(13, 14))
    (monday, _), *_ = rows = heat_rows(pattern, now_ms=0.0)
    levels = [cell.level for cell in rows[0][1][9:14]]
    assert levels == ["heat-2", "heat-2", "heat-0", "heat-5", "heat-7 hot"]
    assert rows[0][1][0].level == "heat-none"
    assert monday == "Monday"
    legend = heat_legend(pattern)
    assert legend.typical_ms == 100.0
    assert [css for css, _, _ in legend.steps] == [f"heat-{level}" for level in range(8)]
    assert legend.steps[5] == ("heat-5", "2\u00d7 typical", "p95 200 ms to 300 ms")
    assert legend.steps[7][2] == "p95 500 ms or more"


def test_one_hour_of_data_is_typical_not_blank() -> None:
    rows = heat_rows(_pattern({30: 42.0}), now_ms=0.0)
    assert rows[1][1][6].level == "heat-2"
    assert heat_legend(_pattern({})).typical_ms is None
