"""Data-store spans: one ``client`` span per query or command, named so a person sees what ran.

The Redis and PostgreSQL integrations (and the demo's simulated database) make their
spans here, so every data-store span has the same shape: operation
``"{store} {what}"`` (``"postgres SELECT … FROM orders WHERE id = ?"``,
``"redis GET"``), tag ``db.system``, and never a value or a query parameter.
Data-store spans are made only inside a span: a command outside any request would be
a trace of its own, and asynctrace's own export (which runs outside every span)
stays untraced even when it shares the application's client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from asynctrace._ratelimit import report_internal_error
from asynctrace.context import ActiveSpan, current_span, span

__all__ = [
    "POSTGRESQL",
    "REDIS",
    "query_name",
    "query_span",
    "sanitize_sql",
    "store_span",
]

POSTGRESQL = "postgresql"
"""``db.system`` of PostgreSQL (OpenTelemetry's value)."""
REDIS = "redis"
"""``db.system`` of Redis."""

# How each store is written in an operation name: short, as people say it.
_LABELS = {POSTGRESQL: "postgres", REDIS: "redis"}
# An operation name is for a person scanning a waterfall; the whole (sanitised)
# statement is in the db.statement tag, within the tag length limit.
_MAX_QUERY_NAME = 120
_ELLIPSIS = "\u2026"
# Sanitising a statement costs more than a query's round trip on a fast network:
# each distinct statement is read once (bounded: statements may be built from data
# by careless callers).
_MAX_CACHED_STATEMENTS = 512
_statements: dict[str, tuple[str, str]] = {}

# One pass over the statement: comments and literals are found left to right, so a
# quote inside a comment, or "--" inside a string, is read as what it is.
_SQL_TOKENS = re.compile(
    r"""
      (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*.*?\*/)
    | (?P<string>[eEbBxXnN]?'(?:[^']|'')*'?)
    | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*|)\$.*?\$(?P=tag)\$)
    | (?P<quoted_name>"(?:[^"]|"")*"?)
    | (?P<parameter>\$\d+)
    | (?P<number>(?<![A-Za-z0-9_$.])
        (?:0[xX][0-9A-Fa-f_]+|0[oO][0-7_]+|0[bB][01_]+
        |(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?))
    """,
    re.VERBOSE | re.DOTALL,
)
_WHITESPACE = re.compile(r"\s+")
# IN (?, ?, ?) and VALUES (?, ?), (?, ?) collapse to one group: a list's length is
# data, and would make every batch size a statement of its own.
_GROUP = r"\(\s*\?(?:\s*,\s*\?)*\s*\)"
_PLACEHOLDER_LISTS = re.compile(
    rf"\b(IN)\s*{_GROUP}|\b(VALUES)\s*{_GROUP}(?:\s*,\s*{_GROUP})*", re.IGNORECASE
)
_SELECT_FROM = re.compile(r"^(SELECT)\s+(?:DISTINCT\s+)?(.+?)\s+(FROM\s.*)$", re.IGNORECASE)


def sanitize_sql(statement: str) -> str:
    """``statement`` with every literal and parameter replaced by ``?``, on one line.

    String, dollar-quoted, numeric and bit/hex literals and ``$n`` parameters become
    ``?``; comments go; whitespace runs become one space; ``IN`` and ``VALUES`` lists of
    placeholders become one ``(?)``. Identifiers, quoted ones included, stay. Pure,
    never raises for a string.
    """

    def replace(match: re.Match[str]) -> str:
        kind = match.lastgroup
        if kind in ("line_comment", "block_comment"):
            return " "
        if kind == "quoted_name":
            return match.group()
        return "?"

    text = _SQL_TOKENS.sub(replace, statement)
    text = _WHITESPACE.sub(" ", text).strip()
    return _PLACEHOLDER_LISTS.sub(lambda match: f"{match[1] or match[2]} (?)", text)


def query_name(sanitized: str) -> str:
    """A sanitised statement as an operation names it: a SELECT's column list elided.

    ``"SELECT id, total FROM orders WHERE id = ?"`` reads ``"SELECT … FROM orders
    WHERE id = ?"``: which table and which condition say what ran; the columns are
    noise. Anything longer than 120 characters is cut, marked with ``…``.
    """
    match = _SELECT_FROM.match(sanitized)
    if match is not None and "(" not in match.group(2):
        name = f"{match.group(1)} {_ELLIPSIS} {match.group(3)}"
    elif match is not None:
        # A column list with calls or subqueries may hold its own FROM: keep the
        # outer statement's, which is the last one at depth zero.
        name = _elide_columns(sanitized) or sanitized
    else:
        name = sanitized
    if len(name) > _MAX_QUERY_NAME:
        name = name[: _MAX_QUERY_NAME - 1].rstrip() + _ELLIPSIS
    return name


def _elide_columns(sanitized: str) -> str | None:
    depth = 0
    upper = sanitized.upper()
    for index, char in enumerate(sanitized):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and upper.startswith(" FROM ", index):
            return f"{sanitized[:6]} {_ELLIPSIS}{sanitized[index:]}"
    return None


def store_span(
    system: str, what: str, *, tags: Mapping[str, object] | None = None
) -> ActiveSpan | None:
    """Start the ``client`` span of one query or command; None outside any span.

    Named ``"{store} {what}"`` (``what`` must already be free of values) and tagged
    ``db.system`` plus ``tags``. The caller ends it (``with``, or ``__exit__`` with
    the exception). Never raises.
    """
    try:
        if current_span() is None:
            return None
        label = _LABELS.get(system, system)
        started = span(f"{label} {what}", kind="client", tags=tags)
        started.set_tag("db.system", system)
        return started
    except Exception as exc:
        report_internal_error("data-store span start failed", exc)
        return None


def query_span(system: str, statement: str) -> ActiveSpan | None:
    """Start the span of one SQL statement, current until it ends; None outside any span.

    Named ``query_name(sanitize_sql(statement))`` after the store, tagged
    ``db.statement`` with the sanitised statement; parameters are never seen here.
    The caller ends it with ``__exit__`` (it is entered). Never raises.
    """
    try:
        names = _statements.get(statement)
        if names is None:
            sanitized = sanitize_sql(statement)
            names = (query_name(sanitized), sanitized)
            if len(_statements) >= _MAX_CACHED_STATEMENTS:
                _statements.clear()
            _statements[statement] = names
        name, sanitized = names
        started = store_span(system, name, tags={"db.statement": sanitized})
        if started is not None:
            started.__enter__()
        return started
    except Exception as exc:
        report_internal_error("data-store span start failed", exc)
        return None
