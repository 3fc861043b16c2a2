"""What the stats, patterns and map pages show: JSON and template values from aggregates.

Pure functions of the store's values; the handlers in ``_app.py`` read the store.
Colours are CSS classes (``heat-0`` .. ``heat-7``), never inline styles, so the
strict Content-Security-Policy holds; every name reaches the page through Jinja's
autoescaping.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from asynctrace.analysis import format_ms
from asynctrace.analysis.patterns import DAY_NAMES, HotSpot
from asynctrace.errors import InvalidQueryError
from asynctrace.store import EdgeStats, OperationStats, StatsRow, WeeklyPattern

__all__ = [
    "HEAT_LEVELS",
    "HeatCell",
    "MapView",
    "SpotView",
    "heat_rows",
    "map_json",
    "map_view",
    "pattern_json",
    "since_ms",
    "spot_views",
    "stats_json",
]

HEAT_LEVELS = 8
_HOUR_MS = 3_600_000.0
_DAY_MS = 24 * _HOUR_MS
_RELATIVE = re.compile(r"([0-9]{1,4})([hdw])")
_UNIT_MS = {"h": _HOUR_MS, "d": _DAY_MS, "w": 7 * _DAY_MS}
_MAX_EPOCH_MS = 1e14


def since_ms(raw: str | None, now_ms: float) -> float | None:
    """``since`` as given: ``24h``, ``7d``, ``2w`` back from now, or epoch ms; None if absent."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip().lower()
    relative = _RELATIVE.fullmatch(text)
    if relative is not None:
        return now_ms - int(relative[1]) * _UNIT_MS[relative[2]]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value < _MAX_EPOCH_MS:
        raise InvalidQueryError("since must be 24h, 7d, 2w (back from now) or epoch ms")
    return value


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _stats_json(stats: OperationStats) -> dict[str, Any]:
    return {
        "count": stats.count,
        "errors": stats.errors,
        "error_rate": round(stats.error_rate, 6),
        "rate_per_s": round(stats.rate_per_s, 6),
        "p50_ms": _round(stats.p50_ms),
        "p95_ms": _round(stats.p95_ms),
        "p99_ms": _round(stats.p99_ms),
        "max_ms": _round(stats.max_ms),
        "seconds": round(stats.seconds, 3),
    }


def stats_json(rows: Sequence[StatsRow]) -> list[dict[str, Any]]:
    """``/api/stats`` rows: service, operation, ``current`` and ``previous`` (or null)."""
    return [
        {
            "service": row.service,
            "operation": row.operation,
            "current": _stats_json(row.current),
            "previous": None if row.previous is None else _stats_json(row.previous),
        }
        for row in rows
    ]


def _spot_json(spot: HotSpot) -> dict[str, Any]:
    return {
        "first_hour_of_week": spot.first_hour,
        "end_hour_of_week": spot.end_hour,
        "p95_ms": round(spot.p95_ms, 3),
        "typical_p95_ms": round(spot.typical_p95_ms, 3),
        "weeks_hot": spot.weeks_hot,
        "weeks": spot.weeks,
        "requests": spot.requests,
        "requests_over": spot.requests_over,
        "sentence": spot.sentence,
    }


def pattern_json(pattern: WeeklyPattern) -> dict[str, Any]:
    """``/api/patterns``: the 7 x 24 grid (Monday first) and the hot spots."""
    return {
        "service": pattern.service,
        "operation": pattern.operation,
        "weeks": pattern.weeks,
        "start_ms": pattern.start_ms,
        "end_ms": pattern.end_ms,
        "slow_threshold_ms": pattern.slow_threshold_ms,
        "days": list(DAY_NAMES),
        "grid": [
            [
                {"count": cell.count, "p95_ms": _round(cell.p95_ms), "slow": cell.slow}
                for cell in pattern.cells[day * 24 : (day + 1) * 24]
            ]
            for day in range(7)
        ],
        "hot_spots": [_spot_json(spot) for spot in pattern.hot_spots],
    }


def map_json(edges: Sequence[EdgeStats]) -> list[dict[str, Any]]:
    """``/api/map`` edges: caller, callee, calls, calls/s, error rate, p95."""
    return [
        {
            "caller": edge.caller,
            "callee": edge.callee,
            "calls": edge.stats.count,
            "calls_per_s": round(edge.stats.rate_per_s, 6),
            "error_rate": round(edge.stats.error_rate, 6),
            "p95_ms": _round(edge.stats.p95_ms),
        }
        for edge in edges
    ]


@dataclass(frozen=True, slots=True)
class HeatCell:
    """One hour of the heatmap: its CSS level, tooltip and, for a hot hour whose traces
    are still kept, a link to example traces."""

    level: str
    title: str
    link: str


def heat_rows(pattern: WeeklyPattern, now_ms: float) -> list[tuple[str, list[HeatCell]]]:
    """Seven (day name, 24 cells) rows; levels on a log scale of p95."""
    p95s = [cell.p95_ms for cell in pattern.cells if cell.p95_ms is not None]
    low, high = min(p95s, default=0.0), max(p95s, default=0.0)
    hot: dict[int, HotSpot] = {
        hour: spot for spot in pattern.hot_spots for hour in range(spot.first_hour, spot.end_hour)
    }
    rows = []
    for day, name in enumerate(DAY_NAMES):
        cells = []
        for hour in range(24):
            index = day * 24 + hour
            cell = pattern.cells[index]
            if cell.p95_ms is None:
                cells.append(HeatCell("heat-none", f"{name} {hour:02d}:00: no requests", ""))
                continue
            share = 0.0 if high <= low else math.log(cell.p95_ms / low) / math.log(high / low)
            level = min(HEAT_LEVELS - 1, int(share * HEAT_LEVELS))
            title = (
                f"{name} {hour:02d}:00 UTC: p95 {format_ms(cell.p95_ms)}, "
                f"{cell.count:,} requests, {cell.slow:,} slow"
            )
            spot = hot.get(index)
            link = "" if spot is None else _examples_link(pattern, spot, index, now_ms)
            cells.append(HeatCell(f"heat-{level}" + (" hot" if spot else ""), title, link))
        rows.append((name, cells))
    return rows


@dataclass(frozen=True, slots=True)
class SpotView:
    """One hot spot on the Patterns page: its sentence, and a link to slow traces of
    its latest occurrence while they are kept ("" once they expired)."""

    sentence: str
    link: str


def spot_views(pattern: WeeklyPattern, now_ms: float) -> list[SpotView]:
    """The hot spots of ``pattern`` with their example links (the first hour of the spot
    whose latest occurrence is still kept)."""
    views = []
    for spot in pattern.hot_spots:
        links = (
            _examples_link(pattern, spot, hour, now_ms)
            for hour in range(spot.first_hour, spot.end_hour)
        )
        views.append(SpotView(spot.sentence, next((link for link in links if link), "")))
    return views


def _examples_link(pattern: WeeklyPattern, spot: HotSpot, index: int, now_ms: float) -> str:
    """Search for slow traces of the latest occurrence of this hour, if in the last 24 h
    (traces are kept 24 h; the aggregates outlive them)."""
    week_start = pattern.end_ms - ((pattern.end_ms // _HOUR_MS + 72) % 168) * _HOUR_MS
    start = week_start + index * _HOUR_MS
    if start >= pattern.end_ms:
        start -= 7 * _DAY_MS
    if start < now_ms - _DAY_MS:
        return ""
    query = {
        "view": "search",
        "service": pattern.service,
        "operation": pattern.operation,
        "min_duration_ms": f"{spot.typical_p95_ms * 2:.0f}",
        "since": f"{start:.0f}",
        "until": f"{start + _HOUR_MS:.0f}",
    }
    return "/?" + urlencode(query)


@dataclass(frozen=True, slots=True)
class _Node:
    name: str
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class _Line:
    caller: str
    callee: str
    x1: float
    y1: float
    x2: float
    y2: float
    label_x: float
    label_y: float
    label: str
    is_failing: bool


@dataclass(frozen=True, slots=True)
class MapView:
    """The service map laid out on a circle, in SVG user units (``size`` square)."""

    size: int
    nodes: tuple[_Node, ...]
    lines: tuple[_Line, ...]


_MAP_SIZE = 640
_RADIUS = 240
_NODE_RADIUS = 34
# An edge whose error rate reaches this is drawn as failing.
_FAILING = 0.05


def map_view(edges: Sequence[EdgeStats]) -> MapView:
    """Services on a circle (sorted by name, so a page reload keeps them in place);
    each edge a line that stops at the callee's circle, labelled with calls/s, error
    % and p95."""
    names = sorted({edge.caller for edge in edges} | {edge.callee for edge in edges})
    centre = _MAP_SIZE / 2
    places: dict[str, tuple[float, float]] = {}
    for number, name in enumerate(names):
        angle = 2 * math.pi * number / max(1, len(names)) - math.pi / 2
        places[name] = (centre + _RADIUS * math.cos(angle), centre + _RADIUS * math.sin(angle))
    lines = []
    for edge in edges:
        (x1, y1), (x2, y2) = places[edge.caller], places[edge.callee]
        length = math.hypot(x2 - x1, y2 - y1)
        if length < 1:
            # A service calling itself: a short line above its node.
            x1, y1, x2, y2 = x1 - 20, y1 - 60, x1, y1 - _NODE_RADIUS
        else:
            # Stop at both circles, so the arrowhead is visible.
            ux, uy = (x2 - x1) / length, (y2 - y1) / length
            x1, y1 = x1 + ux * _NODE_RADIUS, y1 + uy * _NODE_RADIUS
            x2, y2 = x2 - ux * (_NODE_RADIUS + 4), y2 - uy * (_NODE_RADIUS + 4)
        stats = edge.stats
        p95 = "-" if stats.p95_ms is None else format_ms(stats.p95_ms)
        lines.append(
            _Line(
                caller=edge.caller,
                callee=edge.callee,
                x1=round(x1, 1),
                y1=round(y1, 1),
                x2=round(x2, 1),
                y2=round(y2, 1),
                label_x=round((x1 + x2) / 2, 1),
                label_y=round((y1 + y2) / 2 - 6, 1),
                label=f"{stats.rate_per_s:.2f}/s · {stats.error_rate * 100:.1f}% · p95 {p95}",
                is_failing=stats.error_rate >= _FAILING,
            )
        )
    nodes = tuple(_Node(name, round(x, 1), round(y, 1)) for name, (x, y) in places.items())
    return MapView(size=_MAP_SIZE, nodes=nodes, lines=tuple(lines))
