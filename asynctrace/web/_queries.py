"""The store reads a page needs beyond one ``TraceStore`` call.

The slow and error sets hold bare trace ids; a listing row needs the root
operation, services and start time. Rows come from the trace index first (one read
for all of them), and only ids the index window no longer holds cost a trace read
each, a few at a time. Similar traces for the comparison are found by search and
read the same way.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from asynctrace.analysis import error_chain
from asynctrace.errors import AsynctraceError, StoreUnavailableError
from asynctrace.model import Trace
from asynctrace.store import TraceStore, TraceSummary

__all__ = ["Listing", "list_traces", "similar_traces", "summarise"]

_T = TypeVar("_T")
_R = TypeVar("_R")

_CONCURRENT_READS = 8
_INDEX_ROWS = 1000
_SIMILAR_SEARCH_ROWS = 200
_MAX_FILTER_LENGTH = 1000  # TraceStore.search's limit on a filter string
# Traces read only to describe a listing row or to compare with are read this far:
# enough for a summary or typical totals, and 50 of them stay small.
_SUMMARY_MAX_SPANS = 1000
_SIMILAR_MAX_SPANS = 2000


@dataclass(frozen=True, slots=True)
class Listing:
    """Rows for a list of trace ids.

    ``rows`` are the traces still stored, in the order asked for; ``expired`` the
    ids whose spans are gone (the slow and error sets outlive the 24 h traces);
    ``not_shown`` how many ids were left unread because of the limit.
    """

    rows: tuple[TraceSummary, ...]
    expired: tuple[str, ...]
    not_shown: int


def summarise(trace: Trace) -> TraceSummary:
    """A listing row built from a whole trace, for ids the index no longer holds."""
    chain = error_chain(trace)
    return TraceSummary(
        trace_id=trace.trace_id,
        operation=trace.root.operation,
        service=trace.root.service,
        services=trace.services,
        duration=trace.total_duration,
        status="error" if trace.has_errors else "ok",
        start_time=trace.root.start_time,
        error="" if chain is None else chain.message,
    )


async def list_traces(
    store: TraceStore, trace_ids: Sequence[str], *, limit: int, newest_first: bool = False
) -> Listing:
    """Rows for ``trace_ids``, at most ``limit``, in the order given or newest first.

    With ``newest_first`` the ids the index knows come first, so the limit keeps the
    recent ones. Raises what the store raises (``StoreUnavailableError`` and friends).
    """
    indexed = {row.trace_id: row for row in await store.recent_traces(limit=_INDEX_ROWS)}
    wanted = list(dict.fromkeys(trace_ids))
    if newest_first:
        wanted.sort(key=lambda trace_id: -_start_of(indexed.get(trace_id)))
    chosen = wanted[:limit]
    missing = [trace_id for trace_id in chosen if trace_id not in indexed]
    traces = await _bounded(_summary_trace(store), missing)
    found = dict(indexed)
    expired: list[str] = []
    for trace_id, trace in zip(missing, traces, strict=True):
        if trace is None:
            expired.append(trace_id)
        else:
            found[trace_id] = summarise(trace)
    rows = [found[trace_id] for trace_id in chosen if trace_id in found]
    if newest_first:
        rows.sort(key=lambda row: row.start_time, reverse=True)
    return Listing(rows=tuple(rows), expired=tuple(expired), not_shown=len(wanted) - len(chosen))


async def similar_traces(store: TraceStore, trace: Trace, *, limit: int) -> list[Trace]:
    """Up to ``limit`` recent other traces with ``trace``'s root service and operation."""
    if limit == 0:
        return []
    root = trace.root
    # Search filters are capped in length and span text may be longer: filter on
    # what fits (a prefix is still a substring) and compare exactly below.
    rows = await store.search(
        service=root.service if len(root.service) <= _MAX_FILTER_LENGTH else None,
        operation=root.operation[:_MAX_FILTER_LENGTH] or None,
        limit=_SIMILAR_SEARCH_ROWS,
    )
    ids = [
        row.trace_id
        for row in rows
        if row.trace_id != trace.trace_id
        and row.service == root.service
        and row.operation == root.operation
    ][:limit]
    found = await _bounded(_similar_trace(store), ids)
    # A similar trace over the limit was only partly read: its totals would mislead.
    return [other for other in found if other is not None and not other.is_truncated]


def _summary_trace(store: TraceStore) -> Callable[[str], Awaitable[Trace | None]]:
    return functools.partial(_read_alone, store, max_spans=_SUMMARY_MAX_SPANS)


def _similar_trace(store: TraceStore) -> Callable[[str], Awaitable[Trace | None]]:
    return functools.partial(_read_alone, store, max_spans=_SIMILAR_MAX_SPANS)


async def _read_alone(store: TraceStore, trace_id: str, *, max_spans: int) -> Trace | None:
    """A trace read for another page's sake: one that Redis refuses (a key of the
    wrong type) costs only itself, as if expired. Redis being away still fails."""
    try:
        return await store.get_trace(trace_id, max_spans=max_spans)
    except StoreUnavailableError:
        raise
    except AsynctraceError:
        return None


def _start_of(row: TraceSummary | None) -> float:
    return -1.0 if row is None else row.start_time


async def _bounded(read: Callable[[_T], Awaitable[_R]], items: Sequence[_T]) -> list[_R]:
    """``read`` every item, a few concurrently, results in order.

    The first failure cancels the other reads and is raised as itself (not as an
    ExceptionGroup), so the error middleware maps it like any store error.
    """
    gate = asyncio.Semaphore(_CONCURRENT_READS)

    async def one(item: _T) -> _R:
        async with gate:
            return await read(item)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]
