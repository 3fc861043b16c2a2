"""What the stats, patterns and map pages show: JSON and template values from aggregates.

Pure functions of the store's values; the handlers in ``_app.py`` read the store.
Colours are CSS classes (``heat-0`` .. ``heat-7``, ``heat-none``), never inline styles, so the
strict Content-Security-Policy holds; every name reaches the page through Jinja's
autoescaping.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
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
    "HeatLegend",
    "MapView",
    "SpotView",
    "format_rate",
    "heat_legend",
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


_RATE_UNITS = (("/s", 1.0), ("/min", 60.0), ("/h", 3600.0))


def format_rate(per_s: float) -> str:
    """A rate in the largest of per second, minute or hour that shows at least 1.

    ``0.000278`` per second reads ``1.00/h``; a rate under one an hour stays in hours
    (``0.25/h``) and no requests at all read ``0/h``. Three significant digits at most.
    """
    if not math.isfinite(per_s) or per_s <= 0:
        return "0/h"
    for unit, seconds in _RATE_UNITS:
        value = per_s * seconds
        if value >= 1 or unit == "/h":
            break
    if value >= 100:
        return f"{value:,.0f}{unit}"
    if value >= 10:
        return f"{value:.1f}{unit}"
    if value >= 0.01:
        return f"{value:.2f}{unit}"
    return f"{value:.2g}{unit}"


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


# Upper bounds of the heat levels below the last, as multiples of the typical p95.
# The detector names an hour at twice the typical p95 (``PatternGuard.factor``), so
# from 2x on the cells turn red: hot hours stand out, ordinary variation stays pale.
_HEAT_BOUNDS = (0.67, 0.9, 1.15, 1.4, 2.0, 3.0, 5.0)
_HEAT_NAMES = ("faster", "", "typical", "", "slower", "2\u00d7 typical", "3\u00d7", "5\u00d7+")


@dataclass(frozen=True, slots=True)
class HeatLegend:
    """The heatmap's colour scale: the typical p95 and, per level, its CSS class,
    a short name (some empty) and the range of p95 it stands for."""

    typical_ms: float | None
    steps: tuple[tuple[str, str, str], ...]


def _typical_p95(pattern: WeeklyPattern) -> float | None:
    """The detector's typical p95 when it found hot spots, else the median hour's."""
    if pattern.hot_spots:
        return pattern.hot_spots[0].typical_p95_ms
    p95s = sorted(cell.p95_ms for cell in pattern.cells if cell.p95_ms is not None)
    return p95s[len(p95s) // 2] if p95s else None


def heat_legend(pattern: WeeklyPattern) -> HeatLegend:
    """The legend under the heatmap: what each colour means for this pattern."""
    typical = _typical_p95(pattern)
    steps = []
    for level, name in enumerate(_HEAT_NAMES):
        low = _HEAT_BOUNDS[level - 1] if level else None
        high = _HEAT_BOUNDS[level] if level < len(_HEAT_BOUNDS) else None
        if typical is None:
            span = ""
        elif low is None and high is not None:
            span = f"p95 under {format_ms(high * typical)}"
        elif high is None and low is not None:
            span = f"p95 {format_ms(low * typical)} or more"
        else:
            span = f"p95 {format_ms((low or 0) * typical)} to {format_ms((high or 0) * typical)}"
        steps.append((f"heat-{level}", name, span))
    return HeatLegend(typical_ms=typical, steps=tuple(steps))


def heat_rows(pattern: WeeklyPattern, now_ms: float) -> list[tuple[str, list[HeatCell]]]:
    """Seven (day name, 24 cells) rows; each cell's level is its p95 against the
    typical p95 (see ``heat_legend``)."""
    typical = _typical_p95(pattern)
    hot: dict[int, HotSpot] = {
        hour: spot for spot in pattern.hot_spots for hour in range(spot.first_hour, spot.end_hour)
    }
    rows = []
    for day, name in enumerate(DAY_NAMES):
        cells = []
        for hour in range(24):
            index = day * 24 + hour
            cell = pattern.cells[index]
            if cell.p95_ms is None or typical is None:
                cells.append(HeatCell("heat-none", f"{name} {hour:02d}:00: no requests", ""))
                continue
            ratio = cell.p95_ms / typical if typical > 0 else 1.0
            level = sum(1 for bound in _HEAT_BOUNDS if ratio >= bound)
            title = (
                f"{name} {hour:02d}:00 UTC: p95 {format_ms(cell.p95_ms)} "
                f"({ratio:.1f}\u00d7 typical), {cell.count:,} requests, {cell.slow:,} slow"
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
    """A service box: ``x``, ``y`` its top left corner, ``label`` its name as drawn
    (shortened with an ellipsis past ``_MAX_NAME`` characters)."""

    name: str
    label: str
    x: float
    y: float
    width: float
    height: float

    @property
    def text_x(self) -> float:
        return round(self.x + self.width / 2, 1)

    @property
    def text_y(self) -> float:
        return round(self.y + self.height / 2 + 4.5, 1)


@dataclass(frozen=True, slots=True)
class _Line:
    """An edge: an SVG path from the caller's right side to the callee's left side,
    level for its first stretch, where its label sits above it."""

    caller: str
    callee: str
    path: str
    label_x: float
    label_y: float
    label: str
    is_failing: bool


@dataclass(frozen=True, slots=True)
class MapView:
    """The service map laid out by call depth, in SVG user units (``width`` x
    ``height``): services nobody calls on the left, each callee one column right of
    its deepest caller, so the map reads like the requests flow."""

    width: int
    height: int
    nodes: tuple[_Node, ...]
    lines: tuple[_Line, ...]


# Sizes in SVG units (1 unit = 1 CSS px at natural size). Character widths are
# generous estimates for the 13 px bold node names and 11.5 px edge labels.
_MARGIN = 28.0
_NAME_CHAR = 8.6
_LABEL_CHAR = 6.7
_MAX_NAME = 30
_NODE_PAD = 16.0
_NODE_MIN_W = 110.0
_NODE_MIN_H = 54.0
_PORT_GAP = 34.0
_ROW_GAP = 60.0
# The dashboard's content width in a 1400 px window: a map spreads its columns over
# it (up to _MAX_COLUMN_GAP apart) and scales down in a narrower one.
_TARGET_WIDTH = 1340.0
_MIN_COLUMN_GAP = 240.0
_MAX_COLUMN_GAP = 480.0
# An edge whose error rate reaches this is drawn as failing.
_FAILING = 0.05


def map_view(edges: Sequence[EdgeStats]) -> MapView:
    """Lay the services out in columns by call depth, each edge labelled with its
    rate, error % and p95 above the level start of its line.

    Within a column, services sit in the order of their callers' heights (names
    break ties), which keeps a call tree free of crossings; a page reload keeps
    every service in place. Calls back to a shallower service (a cycle) still
    connect, curving back.
    """
    names = sorted({edge.caller for edge in edges} | {edge.callee for edge in edges})
    depth = _call_depths(names, [(edge.caller, edge.callee) for edge in edges])
    outgoing: dict[str, list[EdgeStats]] = {name: [] for name in names}
    incoming: dict[str, list[EdgeStats]] = {name: [] for name in names}
    for edge in edges:
        if edge.caller != edge.callee:
            outgoing[edge.caller].append(edge)
            incoming[edge.callee].append(edge)

    columns: list[list[str]] = [[] for _ in range(max(depth.values(), default=0) + 1)]
    sizes: dict[str, tuple[float, float, str]] = {}
    for name in names:
        label = name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 1] + "\u2026"
        width = max(_NODE_MIN_W, len(label) * _NAME_CHAR + 2 * _NODE_PAD)
        ports = max(len(outgoing[name]), len(incoming[name]), 1)
        sizes[name] = (width, max(_NODE_MIN_H, ports * _PORT_GAP + 16), label)
        columns[depth[name]].append(name)

    # Rows: column by column, each service at its callers' mean height.
    centre_y: dict[str, float] = {}
    for column in columns:
        column.sort(key=lambda name: (_mean_caller_y(incoming[name], centre_y), name))
        y = 0.0
        for name in column:
            centre_y[name] = y + sizes[name][1] / 2
            y += sizes[name][1] + _ROW_GAP
    heights = [
        sum(sizes[name][1] for name in column) + _ROW_GAP * (len(column) - 1) for column in columns
    ]
    canvas_h = max(heights, default=0.0) + 2 * _MARGIN

    column_w = [max((sizes[name][0] for name in column), default=0.0) for column in columns]
    label_w = {name: _run_length(outgoing[name]) for name in names}
    spare = _TARGET_WIDTH - sum(column_w) - 2 * _MARGIN
    gap = _MAX_COLUMN_GAP if len(columns) < 2 else spare / (len(columns) - 1)
    gap = min(_MAX_COLUMN_GAP, max(_MIN_COLUMN_GAP, max(label_w.values(), default=0) + 90, gap))

    places: dict[str, _Node] = {}
    x = _MARGIN
    for column, width, height in zip(columns, column_w, heights, strict=True):
        offset = _MARGIN + (canvas_h - 2 * _MARGIN - height) / 2
        for name in column:
            node_w, node_h, label = sizes[name]
            top = offset + centre_y[name] - node_h / 2
            places[name] = _Node(
                name, label, round(x + (width - node_w) / 2, 1), round(top, 1), node_w, node_h
            )
        x += width + gap
    canvas_w = x - gap + _MARGIN
    # Calls back to a shallower column run under every box, in a lane of their own.
    lane_y = canvas_h - _MARGIN + _ROW_GAP / 2
    if any(
        edge.caller != edge.callee and depth[edge.callee] <= depth[edge.caller] for edge in edges
    ):
        canvas_h = lane_y + _MARGIN

    out_port = _ports(outgoing, places, by="callee")
    in_port = _ports(incoming, places, by="caller")
    lines = []
    for edge in edges:
        stats = edge.stats
        caller, callee = places[edge.caller], places[edge.callee]
        if edge.caller == edge.callee:
            path, label_x, label_y = _loop(caller)
        else:
            x1, y1 = caller.x + caller.width, out_port[id(edge)]
            x2, y2 = callee.x - 2, in_port[id(edge)]
            run = x1 + label_w[edge.caller]
            if x2 > run:
                bend = max(40.0, (x2 - run) / 2)
                path = (
                    f"M{x1:.1f},{y1:.1f} H{run:.1f} "
                    f"C{run + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
                )
            else:
                path = _back_path(x1, y1, run, x2, y2, lane_y)
            label_x, label_y = x1 + 8, y1 - 6
        lines.append(
            _Line(
                caller=edge.caller,
                callee=edge.callee,
                path=path,
                label_x=round(label_x, 1),
                label_y=round(label_y, 1),
                label=_edge_label(stats),
                is_failing=stats.error_rate >= _FAILING,
            )
        )
    return MapView(
        width=round(canvas_w),
        height=round(canvas_h),
        nodes=tuple(places[name] for name in names),
        lines=tuple(lines),
    )


def _call_depths(names: Sequence[str], calls: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each service's column: the longest chain of calls leading to it.

    Calls that close a cycle (found by a depth-first walk from the services nobody
    calls, then from the rest in name order) are left out, so every chain is finite.
    """
    callees: dict[str, list[str]] = {name: [] for name in names}
    called = set()
    for caller, callee in calls:
        if caller != callee:
            callees[caller].append(callee)
            called.add(callee)
    forward: list[tuple[str, str]] = []
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    starts = [name for name in names if name not in called] + list(names)
    for start in starts:
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(sorted(callees[start])))]
        while stack:
            node, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) != 1:
                forward.append((node, child))
                if child not in state:
                    state[child] = 1
                    stack.append((child, iter(sorted(callees[child]))))
    depth = dict.fromkeys(names, 0)
    # Longest paths over the acyclic forward calls: at most len(names) rounds.
    for _ in names:
        changed = False
        for caller, callee in forward:
            if depth[callee] < depth[caller] + 1:
                depth[callee] = depth[caller] + 1
                changed = True
        if not changed:
            break
    return depth


def _mean_caller_y(calls: Sequence[EdgeStats], centre_y: Mapping[str, float]) -> float:
    placed = [centre_y[edge.caller] for edge in calls if edge.caller in centre_y]
    return sum(placed) / len(placed) if placed else math.inf


def _run_length(calls: Sequence[EdgeStats]) -> float:
    """How far an edge runs level before it bends: past the longest label above it."""
    longest = max((len(_edge_label(edge.stats)) for edge in calls), default=0)
    return longest * _LABEL_CHAR + 16


def _edge_label(stats: OperationStats) -> str:
    p95 = "-" if stats.p95_ms is None else format_ms(stats.p95_ms)
    return f"{format_rate(stats.rate_per_s)} · {stats.error_rate * 100:.1f}% err · p95 {p95}"


def _ports(
    calls: Mapping[str, Sequence[EdgeStats]], places: Mapping[str, _Node], *, by: str
) -> dict[int, float]:
    """Where each edge meets a node's side, spread evenly, in the order of the other
    ends' heights so that lines leaving one node do not cross."""
    port: dict[int, float] = {}
    for name, group in calls.items():
        node = places[name]
        ordered = sorted(group, key=lambda edge: _centre(places[getattr(edge, by)]))
        for number, edge in enumerate(ordered):
            port[id(edge)] = node.y + node.height * (number + 1) / (len(ordered) + 1)
    return port


def _back_path(x1: float, y1: float, run: float, x2: float, y2: float, lane_y: float) -> str:
    """A call back to a shallower service: level past its label, down to the lane
    under the boxes, left along it, and up into the callee's left side."""
    return (
        f"M{x1:.1f},{y1:.1f} H{run:.1f} "
        f"C{run + 40:.1f},{y1:.1f} {run + 40:.1f},{lane_y:.1f} {run:.1f},{lane_y:.1f} "
        f"H{x2 - 40:.1f} "
        f"C{x2 - 80:.1f},{lane_y:.1f} {x2 - 60:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    )


def _loop(node: _Node) -> tuple[str, float, float]:
    """A service calling itself: a loop over its top right corner, labelled above."""
    right, top = node.x + node.width, node.y
    path = (
        f"M{right - 20:.1f},{top:.1f} C{right - 20:.1f},{top - 34:.1f} "
        f"{right + 30:.1f},{top + 10:.1f} {right + 2:.1f},{top + 14:.1f}"
    )
    return path, right - 10, top - 26


def _centre(node: _Node) -> float:
    return node.y + node.height / 2
