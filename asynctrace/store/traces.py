"""Trace queries: one trace, the slowest, the failed, the recent, and search.

Listing and search read one bounded window of the trace index (``ZREVRANGEBYSCORE ...
LIMIT``), never KEYS or SCAN, and group its entries per trace in memory. Corrupt
stored data is skipped and counted, never fatal: a half-written span must not hide
the rest of a trace from the person debugging it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asynctrace import keys
from asynctrace.errors import InvalidQueryError
from asynctrace.model import IndexEntry, SpanDecodeError, Trace, spans_of
from asynctrace.store._connection import _StoreConnection
from asynctrace.store._validate import (
    _today,
    _valid_day,
    _valid_filter,
    _valid_limit,
    _valid_number,
    _valid_time,
    _valid_trace_id,
)

__all__ = ["TraceSummary"]

# A trace list is read this many entries per LRANGE, so the loop runs between chunks.
_READ_CHUNK = 1000
# Stop reading a trace's chunks past this many bytes of entries (the rest is unread,
# counted): a few writers with large limits must not make one read cost gigabytes.
_MAX_READ_BYTES = 64 * 1024 * 1024
# Up to this many entries are decoded on the event loop; more go to a worker thread.
_DECODE_ON_LOOP = 1000


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One row of a trace listing, built from the trace's index entries.

    ``operation``, ``service``, ``duration`` and ``start_time`` come from the trace's
    true root entry when the index holds it, else from its earliest entry (the trace
    started in a service that is not traced, or its root entry aged out).
    ``services`` are the services of its entries in start order; ``status`` is
    ``"error"`` when any entry is an error and ``error`` is the first error text.
    ``duration`` is milliseconds; ``start_time`` is Unix epoch milliseconds.
    """

    trace_id: str
    operation: str
    service: str
    services: tuple[str, ...]
    duration: float
    status: str
    start_time: float
    error: str


@dataclass(frozen=True, slots=True)
class _Row:
    """A summary together with the entries it was built from, which search filters on."""

    summary: TraceSummary
    entries: tuple[IndexEntry, ...]


class _TraceQueries(_StoreConnection):
    """The trace queries of ``TraceStore``."""

    async def get_trace(
        self, trace_id: str, *, max_spans: int = keys.MAX_TRACE_SPANS
    ) -> Trace | None:
        """The stored trace ``trace_id`` (32 hex digits, any case), or None if absent.

        Reads at most the first ``max_spans`` entries (1..``keys.MAX_TRACE_SPANS``),
        and at most about ``_MAX_READ_BYTES`` of them, a chunk at a time; the entries
        left unread are counted in ``Trace.unread_entries`` (``Trace.is_truncated``),
        so time and memory stay bounded however big the list grew. Corrupt entries,
        and entries that belong to another trace, are skipped and counted in
        ``Trace.corrupt_entries``. None when the trace expired, was never stored, or
        none of its entries decode. A key that is not a list is refused by Redis
        (``AsynctraceError``, WRONGTYPE).
        """
        trace_id = _valid_trace_id(trace_id)
        max_spans = _valid_max_spans(max_spans)
        key = keys.trace_key(trace_id, prefix=self._prefix)
        first = min(max_spans, _READ_CHUNK)
        length, raw = await self._pipelined([("LLEN", key), ("LRANGE", key, "0", str(first - 1))])
        if not raw or not isinstance(raw, list):
            return None
        entries: list[object] = []
        size = 0
        while True:
            for entry in raw:
                entries.append(entry)
                size += len(entry) if isinstance(entry, str | bytes) else 1
            if size >= _MAX_READ_BYTES or len(raw) < _READ_CHUNK or len(entries) >= max_spans:
                break
            start = len(entries)
            end = min(max_spans, start + _READ_CHUNK) - 1
            raw = await self._read(
                "LRANGE", functools.partial(self._client.lrange, key, start, end)
            )
            if not raw:
                break
        # LLEN and the chunks are not one snapshot: the list may have grown since.
        unread = max(0, (length if isinstance(length, int) else 0) - len(entries))
        if len(entries) > _DECODE_ON_LOOP:
            # Decoding and arranging thousands of spans takes long enough to stall
            # every other request of a dashboard: a worker thread does it.
            return await asyncio.to_thread(_trace_of, trace_id, entries, unread)
        return _trace_of(trace_id, entries, unread)

    async def slow_traces(self, limit: int = 20) -> list[tuple[str, float]]:
        """``(trace_id, duration_ms)`` of the slowest traces kept, slowest first.

        ``limit`` is 1..1000. The exporter keeps the top 100.
        """
        limit = _valid_limit(limit)
        slow = keys.slow_key(prefix=self._prefix)
        # One ZSET, or its shards on Redis Cluster (each holds its own top 100, so
        # the overall top is among their tops).
        replies = await self._across_shards(
            "ZREVRANGE", slow, lambda pipe, key: pipe.zrevrange(key, 0, limit - 1, withscores=True)
        )
        result: list[tuple[str, float]] = []
        for rows in replies:
            for row in rows:
                # (member, score) pairs; a list under RESP3, a tuple under RESP2.
                if not isinstance(row, tuple | list) or len(row) != 2:
                    self._skipped_index_entries += 1
                    continue
                trace_id = self._trace_id_member(row[0])
                if trace_id is not None:
                    result.append((trace_id, float(row[1])))
        if len(replies) > 1:
            result.sort(key=lambda pair: pair[1], reverse=True)
            del result[limit:]
        return result

    async def error_traces(self, day: str | None = None) -> list[str]:
        """Sorted ids of the traces with an error span on UTC ``day`` (``YYYY-MM-DD``).

        ``day`` defaults to today (UTC); the exporter keeps each day for 7 days.
        """
        day = _today() if day is None else _valid_day(day)
        errors = keys.errors_key(day, prefix=self._prefix)
        replies = await self._across_shards(
            "SMEMBERS", errors, lambda pipe, key: pipe.smembers(key)
        )
        ids = (self._trace_id_member(member) for members in replies for member in members)
        return sorted(trace_id for trace_id in ids if trace_id is not None)

    async def recent_traces(
        self, limit: int = 50, since: float | None = None
    ) -> list[TraceSummary]:
        """The newest traces, one row per trace, newest first.

        Served from the newest ``scan_limit`` index entries only. ``since`` (epoch
        ms) keeps the entries that started at or after it; a trace whose root
        started earlier is then summarised from its later entries.
        """
        limit = _valid_limit(limit)
        since = _valid_time(since, "since")
        rows = await self._rows(since)
        return [row.summary for row in rows[:limit]]

    async def search(
        self,
        *,
        service: str | None = None,
        operation: str | None = None,
        status: str | None = None,
        min_duration_ms: float | None = None,
        text: str | None = None,
        since: float | None = None,
        limit: int = 50,
        until: float | None = None,
    ) -> list[TraceSummary]:
        """Recent traces matching every filter given, newest first.

        Served from the same bounded window as ``recent_traces``. None or an empty
        string means "no filter".

        Args:
            service: a service the trace crossed (exact name).
            operation: case-insensitive substring of any of the trace's indexed
                operations.
            status: ``"ok"`` or ``"error"``.
            min_duration_ms: the row's duration is at least this.
            text: case-insensitive substring of any indexed operation or error
                text, or the exact trace id.
            since: epoch ms, as in ``recent_traces``.
            until: epoch ms; only entries that started before it (a past hour).
            limit: 1..1000 rows.
        """
        service = _valid_filter(service, "service")
        operation = _valid_filter(operation, "operation")
        status = _valid_filter(status, "status")
        if status is not None and status not in ("ok", "error"):
            raise InvalidQueryError("status must be 'ok' or 'error'")
        min_duration_ms = _valid_number(min_duration_ms, "min_duration_ms")
        text = _valid_filter(text, "text")
        since = _valid_time(since, "since")
        until = _valid_time(until, "until")
        limit = _valid_limit(limit)

        operation_folded = operation.casefold() if operation is not None else None
        text_folded = text.casefold() if text is not None else None
        matches: list[TraceSummary] = []
        for row in await self._rows(since, until):
            summary = row.summary
            if service is not None and service not in summary.services:
                continue
            if status is not None and summary.status != status:
                continue
            if min_duration_ms is not None and summary.duration < min_duration_ms:
                continue
            if operation_folded is not None and not any(
                operation_folded in entry.operation.casefold() for entry in row.entries
            ):
                continue
            if text_folded is not None and not _matches_text(row, text_folded):
                continue
            matches.append(summary)
            if len(matches) == limit:
                break
        return matches

    async def _rows(self, since: float | None, until: float | None = None) -> list[_Row]:
        """Group the newest ``scan_limit`` index entries (at or after ``since``, before
        ``until``) per trace."""
        index = keys.index_key(prefix=self._prefix)
        # One ZSET, or its shards on Redis Cluster: each gives its newest scan_limit,
        # and the newest scan_limit of them all are kept below.
        replies = await self._across_shards(
            "ZREVRANGEBYSCORE",
            index,
            lambda pipe, key: pipe.zrevrangebyscore(
                key,
                "+inf" if until is None else f"({until!r}",
                "-inf" if since is None else since,
                start=0,
                num=self._scan_limit,
            ),
        )
        members = [member for reply in replies for member in reply]
        entries: list[IndexEntry] = []
        for member in members:
            try:
                if not isinstance(member, str | bytes):
                    raise SpanDecodeError("not a trace index entry")
                entries.append(IndexEntry.decode(member))
            except SpanDecodeError:
                self._skipped_index_entries += 1
        if len(replies) > 1:
            entries.sort(key=lambda entry: entry.start_time, reverse=True)
            del entries[self._scan_limit :]
        return _group(entries)


def _trace_of(trace_id: str, entries: Sequence[object], unread: int) -> Trace | None:
    spans, corrupt = spans_of(entries)
    # An entry of another trace in this list is as wrong as undecodable JSON.
    own = [span for span in spans if span.trace_id == trace_id]
    corrupt += len(spans) - len(own)
    if not own:
        return None
    return Trace.from_spans(own, corrupt_entries=corrupt, unread_entries=unread)


def _valid_max_spans(value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= keys.MAX_TRACE_SPANS
    ):
        raise InvalidQueryError(f"max_spans must be an integer from 1 to {keys.MAX_TRACE_SPANS}")
    return value


def _group(entries: Iterable[IndexEntry]) -> list[_Row]:
    """One row per trace, newest first; entries are deduplicated by span id."""
    by_trace: dict[str, dict[str, IndexEntry]] = {}
    for entry in entries:
        by_trace.setdefault(entry.trace_id, {}).setdefault(entry.span_id, entry)
    rows: list[_Row] = []
    for trace_id, spans in by_trace.items():
        ordered = tuple(sorted(spans.values(), key=lambda e: (e.start_time, e.span_id)))
        head = next((entry for entry in ordered if entry.is_root), ordered[0])
        services: dict[str, None] = {}
        for entry in ordered:
            services.setdefault(entry.service, None)
        failed = [entry for entry in ordered if entry.status == "error"]
        error = _telling_error(failed)
        summary = TraceSummary(
            trace_id=trace_id,
            operation=head.operation,
            service=head.service,
            services=tuple(services),
            duration=head.duration,
            status="error" if failed else "ok",
            start_time=head.start_time,
            error=error,
        )
        rows.append(_Row(summary, ordered))
    rows.sort(key=lambda row: (row.summary.start_time, row.summary.trace_id), reverse=True)
    return rows


def _telling_error(failed: Sequence[IndexEntry]) -> str:
    """The error text that says most about where a trace failed.

    Callers of a failed service often carry only the placeholder ``"error"`` (a 5xx
    without a log line); the span that failed first started last among them, so
    prefer the latest-starting entry with a real message.
    """
    messages = [entry.error for entry in failed if entry.error and entry.error != "error"]
    if messages:
        return messages[-1]
    return next((entry.error for entry in failed if entry.error), "")


def _matches_text(row: _Row, folded: str) -> bool:
    if folded == row.summary.trace_id:
        return True
    return any(
        folded in entry.operation.casefold() or folded in entry.error.casefold()
        for entry in row.entries
    )
