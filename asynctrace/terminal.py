"""Plain-text views of stored traces for a terminal, as the CLI and the demo print them.

Everything here is a pure function from values to a string: the caller decides the
width and whether ANSI colour is wanted (a TTY without ``NO_COLOR``), so tests can
render to a fixed width without colour and compare exact text. Without colour the
output holds no escape codes at all; with it, stripping the codes gives the same text.

Names and messages come from stored spans, which anyone who can send a request can
shape: every such text passes ``terminal_text`` before it is measured or placed, so a
span named ``"\x1b[2J"`` or holding a newline prints as those escapes, on one line,
and cannot move the cursor, clear the screen or forge a row.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asynctrace.analysis import CriticalSegment, critical_path, format_ms
from asynctrace.analysis.patterns import DAY_NAMES
from asynctrace.model import Span, Trace
from asynctrace.store import EdgeStats, OperationStats, StatsRow, TraceSummary, WeeklyPattern

__all__ = [
    "TraceRow",
    "error_rows",
    "render_edges",
    "render_heatmap",
    "render_stats_table",
    "render_trace_table",
    "render_waterfall",
    "slow_rows",
    "terminal_json",
    "terminal_text",
]

# What a terminal acts on instead of printing: C0 and C1 controls (ESC, CSI, CR, LF,
# BEL...), DEL, the bidirectional overrides that reorder what is shown, and lone
# surrogates (which no terminal encoding can write).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# Of those, what json.dumps(ensure_ascii=False) leaves raw inside strings.
_UNPRINTABLE_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def terminal_text(text: str) -> str:
    r"""``text`` with every character a terminal would act on written as an escape
    (``\x1b``, ``\n``, ``\u202e``): printable, on one line. Pure."""
    if text.isprintable():
        return text
    return _UNPRINTABLE.sub(_escape, text)


def terminal_json(text: str) -> str:
    r"""JSON text (``json.dumps(..., ensure_ascii=False)``) with what ``terminal_text``
    escapes and JSON leaves raw written as ``\uXXXX``: the same JSON value, safe to
    print. Such characters only occur inside JSON strings. Pure."""
    if text.isascii():
        return text.replace("\x7f", "\\u007f") if "\x7f" in text else text
    return _UNPRINTABLE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x0A:
        return "\\n"
    if code == 0x0D:
        return "\\r"
    if code == 0x09:
        return "\\t"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


_MIN_WIDTH = 40
_MIN_LABEL = 12
_MIN_BAR = 10
# A bar boundary that lands within this fraction of a cell of a cell edge is on the
# edge: float noise must not widen a bar by a whole cell.
_EDGE = 1e-6

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_ERROR = "\x1b[1;31m"
_ORPHAN = "\x1b[33m"
# Red is kept for errors, so no service is ever drawn in it.
_SERVICE_COLOURS = (
    "\x1b[36m",
    "\x1b[35m",
    "\x1b[34m",
    "\x1b[32m",
    "\x1b[33m",
    "\x1b[96m",
    "\x1b[95m",
    "\x1b[94m",
    "\x1b[92m",
    "\x1b[93m",
)


@dataclass(frozen=True, slots=True)
class _Glyphs:
    critical: str
    other: str
    error: str
    orphan: str
    ellipsis: str


_UNICODE = _Glyphs(critical="█", other="░", error="✗", orphan="?", ellipsis="…")
_ASCII = _Glyphs(critical="#", other="-", error="x", orphan="?", ellipsis="~")


# -- waterfall ------------------------------------------------------------------------


def render_waterfall(
    trace: Trace,
    *,
    width: int,
    color: bool,
    critical: Sequence[CriticalSegment] | None = None,
    ascii_only: bool = False,
) -> str:
    """``trace`` as a waterfall: one row per span, depth first, bars on one time axis.

    Each row is an error mark (``✗``), the service and operation indented by depth,
    a bar placed at the span's start and scaled to the whole trace, and the
    duration. Bar cells where the span was on the critical path are ``█``, the rest
    ``░``. A top-level span whose parent is missing from the trace is marked ``?``.
    ``critical`` defaults to ``critical_path(trace)``; pass ``()`` to highlight
    nothing. Lines fit ``width`` columns (at least 40); ``color`` adds ANSI colour
    per service; ``ascii_only`` draws with ASCII for terminals that cannot encode
    the block characters. Pure; the result has no trailing newline.
    """
    glyphs = _ASCII if ascii_only else _UNICODE
    segments = critical_path(trace) if critical is None else critical
    paint = _Painter(color, trace.services)
    width = max(width, _MIN_WIDTH)
    rows = trace.depth_first()

    durations = [format_ms(span.duration) for span, _ in rows]
    duration_width = max(len(text) for text in durations)
    room = width - 2 - 1 - 1 - duration_width  # mark, gap, bar, gap, duration
    natural = max(_label_length(span, depth) for span, depth in rows)
    label_width = min(natural, max(_MIN_LABEL, room // 2))
    bar_width = max(_MIN_BAR, room - label_width)

    axis = _Axis(trace, bar_width)
    by_span: dict[str, list[CriticalSegment]] = {}
    for segment in segments:
        by_span.setdefault(segment.span.span_id, []).append(segment)

    lines = [paint.bold(_fit(_header(trace), width, glyphs))]
    if trace.is_truncated:
        # Its own line, first word first: a narrow terminal must not cut it off.
        notice = f"TRUNCATED: {trace.unread_entries:,} more stored entries not read"
        lines.append(paint.error(_fit(notice, width, glyphs)))
    lines.append(" " * (2 + label_width + 1) + paint.dim(axis.ruler()))
    has_orphans = False
    for (span, depth), duration in zip(rows, durations, strict=True):
        is_orphan = _is_orphan(span, depth)
        has_orphans = has_orphans or is_orphan
        mark = paint.error(glyphs.error) + " " if span.is_error else "  "
        label = _label(span, depth, is_orphan, label_width, glyphs, paint)
        bar = axis.bar(span, by_span.get(span.span_id, ()), glyphs)
        duration_text = duration.rjust(duration_width)
        if span.is_error:
            duration_text = paint.error(duration_text)
        lines.append(f"{mark}{label} {paint.bar(span.service, bar)} {duration_text}")
    lines.append(paint.dim(_fit(_legend(trace, has_orphans, glyphs), width, glyphs)))
    return "\n".join(line.rstrip() for line in lines)


def _header(trace: Trace) -> str:
    parts = [
        f"trace {trace.trace_id}",
        format_ms(trace.total_duration),
        _count(len(trace.spans), "span"),
        _count(len(trace.services), "service"),
    ]
    errors = sum(1 for span in trace.spans if span.is_error)
    if errors:
        parts.append(_count(errors, "error"))
    return "  ".join(parts)


def _legend(trace: Trace, has_orphans: bool, glyphs: _Glyphs) -> str:
    parts = [f"{glyphs.critical} critical path", f"{glyphs.other} other time"]
    if trace.has_errors:
        parts.append(f"{glyphs.error} error")
    if has_orphans:
        parts.append(f"{glyphs.orphan} parent span missing")
    if trace.corrupt_entries:
        entries = _count(trace.corrupt_entries, "unreadable entry", "unreadable entries")
        parts.append(f"{entries} skipped")
    if trace.cyclic_spans:
        cut = _count(trace.cyclic_spans, "parent cycle", "parent cycles")
        parts.append(f"{cut} cut (shown as {glyphs.orphan})")
    return "  ".join(parts)


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"1 {singular}" if number == 1 else f"{number} {plural or singular + 's'}"


class _Axis:
    """Maps epoch-ms times to bar cells; the axis runs from the first start to the last end."""

    def __init__(self, trace: Trace, cells: int) -> None:
        self.cells = cells
        self.origin = trace.start_time
        self.span_ms = max(span.end_time for span in trace.spans) - self.origin
        self.scale = cells / self.span_ms if self.span_ms > 0 else 0.0

    def ruler(self) -> str:
        """The axis labels: "0 ms" under the first cell, the axis length under the last."""
        start, end = "0 ms", format_ms(self.span_ms)
        if len(start) + 1 + len(end) > self.cells:
            return end.rjust(self.cells)
        return start + end.rjust(self.cells - len(start))

    def cells_of(self, start: float, end: float) -> range:
        """The cells an interval touches; at least one, so a 0 ms span still shows."""
        first = math.floor((start - self.origin) * self.scale + _EDGE)
        last = math.ceil((end - self.origin) * self.scale - _EDGE)
        first = min(self.cells - 1, max(0, first))
        return range(first, min(self.cells, max(first + 1, last)))

    def bar(self, span: Span, segments: Sequence[CriticalSegment], glyphs: _Glyphs) -> str:
        cells = [" "] * self.cells
        drawn = self.cells_of(span.start_time, span.end_time)
        for index in drawn:
            cells[index] = glyphs.other
        for segment in segments:
            for index in self.cells_of(segment.start, segment.end):
                if index in drawn:
                    cells[index] = glyphs.critical
        return "".join(cells)


def _is_orphan(span: Span, depth: int) -> bool:
    """A top-level span that has a parent: the parent never reached the store."""
    return depth == 0 and span.parent_span_id is not None


def _label_length(span: Span, depth: int) -> int:
    orphan_mark = 2 if _is_orphan(span, depth) else 0
    return 2 * depth + orphan_mark + len(_name(span))


def _name(span: Span) -> str:
    service = terminal_text(span.service)
    return f"{service} {terminal_text(span.operation)}" if span.operation else service


def _label(
    span: Span, depth: int, is_orphan: bool, width: int, glyphs: _Glyphs, paint: _Painter
) -> str:
    """Indent, orphan mark and name, cut and padded to ``width``; the service coloured."""
    # Keep at least 8 columns of name however deep the tree goes.
    indent = "  " * min(depth, max(0, (width - 8) // 2))
    mark = f"{glyphs.orphan} " if is_orphan else ""
    name = _fit(_name(span), width - len(indent) - len(mark), glyphs)
    padding = " " * (width - len(indent) - len(mark) - len(name))
    cut = min(len(terminal_text(span.service)), len(name))
    if is_orphan:
        mark = paint.orphan(glyphs.orphan) + " "
    return indent + mark + paint.service(span.service, name[:cut]) + name[cut:] + padding


def _fit(text: str, width: int, glyphs: _Glyphs) -> str:
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: width - 1] + glyphs.ellipsis


class _Painter:
    """ANSI colour when asked for, the identity otherwise; services get stable colours."""

    def __init__(self, color: bool, services: Sequence[str]) -> None:
        self.color = color
        self.colours = {
            service: _SERVICE_COLOURS[index % len(_SERVICE_COLOURS)]
            for index, service in enumerate(services)
        }

    def _wrap(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color and text else text

    def service(self, service: str, text: str) -> str:
        return self._wrap(self.colours.get(service, _SERVICE_COLOURS[0]), text)

    def bar(self, service: str, bar: str) -> str:
        """Only the drawn cells, so the blank cells around them carry no codes."""
        body = bar.strip(" ")
        lead = len(bar) - len(bar.lstrip(" "))
        return bar[:lead] + self.service(service, body) + bar[lead + len(body) :]

    def bold(self, text: str) -> str:
        return self._wrap(_BOLD, text)

    def dim(self, text: str) -> str:
        return self._wrap(_DIM, text)

    def error(self, text: str) -> str:
        return self._wrap(_ERROR, text)

    def orphan(self, text: str) -> str:
        return self._wrap(_ORPHAN, text)


# -- trace listings -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One line of a trace listing; None or "" where the trace index no longer knows.

    ``started_ms`` is Unix epoch milliseconds, ``duration_ms`` milliseconds,
    ``root`` the root's service and operation.
    """

    trace_id: str
    started_ms: float | None = None
    duration_ms: float | None = None
    status: str = ""
    root: str = ""
    error: str = ""

    @classmethod
    def of(cls, summary: TraceSummary, *, duration_ms: float | None = None) -> TraceRow:
        """The row of an index summary; ``duration_ms`` overrides the summary's."""
        root = f"{summary.service} {summary.operation}".strip()
        return cls(
            trace_id=summary.trace_id,
            started_ms=summary.start_time,
            duration_ms=summary.duration if duration_ms is None else duration_ms,
            status=summary.status,
            root=root,
            error=summary.error,
        )


def slow_rows(slow: Sequence[tuple[str, float]], known: Sequence[TraceSummary]) -> list[TraceRow]:
    """Rows for ``TraceStore.slow_traces`` pairs, in their order, described by ``known``.

    The duration is the slow set's; the rest comes from the index summary in
    ``known`` (``recent_traces``), or stays unknown when the index no longer has it.
    """
    by_id = {summary.trace_id: summary for summary in known}
    return [
        TraceRow.of(by_id[trace_id], duration_ms=duration)
        if trace_id in by_id
        else TraceRow(trace_id, duration_ms=duration)
        for trace_id, duration in slow
    ]


def error_rows(trace_ids: Sequence[str], known: Sequence[TraceSummary]) -> list[TraceRow]:
    """Rows for ``TraceStore.error_traces`` ids: newest first, then undescribed ids by id."""
    by_id = {summary.trace_id: summary for summary in known}
    described = sorted(
        (by_id[trace_id] for trace_id in trace_ids if trace_id in by_id),
        key=lambda summary: (-summary.start_time, summary.trace_id),
    )
    undescribed = sorted(trace_id for trace_id in trace_ids if trace_id not in by_id)
    return [TraceRow.of(summary) for summary in described] + [
        TraceRow(trace_id) for trace_id in undescribed
    ]


def _started(epoch_ms: float) -> str:
    """``MM-DD HH:MM:SS`` in UTC, the error days' zone; no year, as traces last a day."""
    return datetime.fromtimestamp(epoch_ms / 1000.0, UTC).strftime("%m-%d %H:%M:%S")


_COLUMNS = ("TRACE ID", "STARTED UTC", "DURATION", "STATUS", "ROOT", "ERROR")
_STARTED = _COLUMNS.index("STARTED UTC")
_DURATION = _COLUMNS.index("DURATION")
_STATUS = _COLUMNS.index("STATUS")
_ROOT = _COLUMNS.index("ROOT")
_ERROR_TEXT = _COLUMNS.index("ERROR")
_MIN_ROOT = 24
_ERROR_INDENT = 4


def render_trace_table(
    rows: Sequence[TraceRow], *, width: int | None = None, ascii_only: bool = False
) -> str:
    """``rows`` as aligned plain columns under a header line; "-" marks unknown values.

    The ERROR column is left out when no row has an error text. With ``width`` (for
    a terminal; leave it None when output is piped, so nothing is lost to ``grep``)
    the table fits the width without ever cutting an error text: ROOT gives up room
    to ERROR first; when the error texts still do not fit, each goes under its row,
    wrapped and marked "✗" ("x" when ``ascii_only``); then STATUS is left out when
    those lines already say which rows failed, then STARTED UTC when ROOT would
    otherwise keep fewer than 24 columns; what still does not fit is cut with "…"
    ("~"). Pure; no trailing newline.
    """
    glyphs = _ASCII if ascii_only else _UNICODE
    table = [
        (
            row.trace_id,
            "-" if row.started_ms is None else _started(row.started_ms),
            "-" if row.duration_ms is None else format_ms(row.duration_ms),
            terminal_text(row.status) or "-",
            terminal_text(row.root) or "-",
            terminal_text(" ".join(row.error.split())),
        )
        for row in rows
    ]
    columns = [
        index
        for index in range(len(_COLUMNS))
        if index != _ERROR_TEXT or any(cells[index] for cells in table)
    ]
    widths = {
        index: max(len(_COLUMNS[index]), *(len(cells[index]) for cells in table))
        for index in columns
    }
    errors_below = False
    if width is not None:
        width = max(width, _MIN_WIDTH)
        errors_below = _fit_columns(table, columns, widths, width)
    lines = []
    for cells in [_COLUMNS, *table]:
        texts = []
        for index in columns:
            text = _fit(cells[index], widths[index], glyphs)
            texts.append(
                text.rjust(widths[index]) if index == _DURATION else text.ljust(widths[index])
            )
        line = "  ".join(texts).rstrip()
        lines.append(line if width is None else _fit(line, width, glyphs))
        if errors_below and cells is not _COLUMNS and cells[_ERROR_TEXT] and width is not None:
            lines.extend(_error_lines(cells[_ERROR_TEXT], width, glyphs))
    return "\n".join(lines)


def _fit_columns(
    table: Sequence[Sequence[str]], columns: list[int], widths: dict[int, int], width: int
) -> bool:
    """Narrow ``columns``/``widths`` in place to ``width``; True when errors go below rows."""

    def used() -> int:
        return sum(widths[index] for index in columns) + 2 * (len(columns) - 1)

    if used() <= width:
        return False
    root_floor = min(widths[_ROOT], _MIN_ROOT)
    errors_below = False
    if _ERROR_TEXT in columns:
        spare = width - (used() - widths[_ROOT])
        if spare >= root_floor:
            widths[_ROOT] = spare  # ROOT gives way; every error text still fits
            return False
        columns.remove(_ERROR_TEXT)
        errors_below = True
        # The marked lines under the rows say which failed, unless a failed row has no text.
        if all(cells[_ERROR_TEXT] or cells[_STATUS] != "error" for cells in table):
            columns.remove(_STATUS)
    if used() - widths[_ROOT] + root_floor > width and _STARTED in columns:
        columns.remove(_STARTED)
    widths[_ROOT] = max(root_floor, min(widths[_ROOT], width - (used() - widths[_ROOT])))
    return errors_below


def _error_lines(text: str, width: int, glyphs: _Glyphs) -> list[str]:
    """A row's whole error text under it, wrapped to ``width``, the first line marked."""
    indent = " " * _ERROR_INDENT
    first = indent[:-2] + glyphs.error + " "
    return textwrap.wrap(
        text,
        width,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
    )


# -- aggregates -----------------------------------------------------------------------


def _aligned(header: Sequence[str], table: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [max(len(header[i]), *(len(cells[i]) for cells in table)) for i in range(len(header))]
    lines = []
    for cells in [header, *table]:
        texts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        lines.append("  ".join(texts).rstrip())
    return "\n".join(lines)


def _optional_ms(value: float | None) -> str:
    return "-" if value is None else format_ms(value)


def _rate(per_s: float) -> str:
    """Requests per second; per hour when under 0.01/s, so a quiet route is not "0"."""
    if per_s < 0.01:
        return f"{per_s * 3600:.2f}/h"
    return f"{per_s:.3f}/s" if per_s < 10 else f"{per_s:,.1f}/s"


def _change(current: float | None, previous: float | None) -> str:
    """Relative change, "+12%"; "new" without a previous value; "-" when unknown."""
    if current is None:
        return "-"
    if previous is None:
        return "new"
    if previous <= 0:
        return "-" if current <= 0 else "new"
    # round() first: "-0%" says nothing "+0%" does not.
    return f"{round((current - previous) / previous * 100):+d}%"


def render_stats_table(rows: Sequence[StatsRow]) -> str:
    """RED table: per service and operation, rate, error %, p50/p95/p99 and max, with
    the change of rate and p95 against the period before. Pure; no trailing newline."""
    header = (
        "SERVICE", "OPERATION", "REQUESTS", "RATE", "ERRORS", "P50", "P95", "P99", "MAX",
        "RATE +/-", "P95 +/-",
    )  # fmt: skip
    table = []
    for row in rows:
        now: OperationStats = row.current
        before = row.previous
        table.append(
            (
                terminal_text(row.service),
                terminal_text(row.operation),
                f"{now.count:,}",
                _rate(now.rate_per_s),
                f"{now.error_rate * 100:.1f}%",
                _optional_ms(now.p50_ms),
                _optional_ms(now.p95_ms),
                _optional_ms(now.p99_ms),
                _optional_ms(now.max_ms),
                _change(now.rate_per_s, None if before is None else before.rate_per_s),
                _change(now.p95_ms, None if before is None else before.p95_ms),
            )
        )
    return _aligned(header, table, right=set(range(2, len(header))))


def render_edges(edges: Sequence[EdgeStats]) -> str:
    """Service map as a table: caller → callee, calls, calls/s, error %, p95. Pure."""
    header = ("CALLER", "", "CALLEE", "CALLS", "RATE", "ERRORS", "P95")
    table = [
        (
            terminal_text(edge.caller),
            "->",
            terminal_text(edge.callee),
            f"{edge.stats.count:,}",
            _rate(edge.stats.rate_per_s),
            f"{edge.stats.error_rate * 100:.1f}%",
            _optional_ms(edge.stats.p95_ms),
        )
        for edge in edges
    ]
    return _aligned(header, table, right={3, 4, 5, 6})


_SHADES = "░▒▓█"
_ASCII_SHADES = ":+*#"


def render_heatmap(pattern: WeeklyPattern, *, ascii_only: bool = False) -> str:
    """The hour-of-week grid: 7 rows (Monday first) by 24 hour columns, each hour
    shaded by its p95 relative to the slowest hour ("·" where there were no
    requests), then the legend and one line per hot spot. Pure."""
    shades = _ASCII_SHADES if ascii_only else _SHADES
    empty = "." if ascii_only else "·"
    p95s = [cell.p95_ms for cell in pattern.cells if cell.p95_ms is not None]
    low = min(p95s, default=0.0)
    high = max(p95s, default=0.0)
    lines = [
        f"{terminal_text(pattern.service)} {terminal_text(pattern.operation)}: "
        f"p95 by hour of the week (UTC), last {pattern.weeks} weeks",
        "     " + "".join(f"{hour:<3d}" for hour in range(0, 24, 3)).rstrip(),
    ]
    for day, name in enumerate(DAY_NAMES):
        cells = pattern.cells[day * 24 : (day + 1) * 24]
        row = []
        for cell in cells:
            if cell.p95_ms is None:
                row.append(empty)
                continue
            # Log scale: latency spreads over orders of magnitude.
            share = 0.0 if high <= low else math.log(cell.p95_ms / low) / math.log(high / low)
            row.append(shades[min(len(shades) - 1, int(share * len(shades)))])
        lines.append(f"{name[:3]}  {''.join(row)}")
    lines.append(
        f"shades: p95 from {format_ms(low)} to {format_ms(high)} (log scale); "
        f"requests {sum(cell.count for cell in pattern.cells):,}, "
        f"slow (>= {format_ms(pattern.slow_threshold_ms)}) "
        f"{sum(cell.slow for cell in pattern.cells):,}"
    )
    if pattern.hot_spots:
        lines.extend(terminal_text(spot.sentence) for spot in pattern.hot_spots)
    else:
        lines.append("no recurring hot spots")
    return "\n".join(lines)
