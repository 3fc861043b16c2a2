"""Read-only queries over the traces and aggregates the exporter keeps in Redis.

The store reads exactly the keys of ``keys.py`` and never writes. Every argument that
could end up in a key (a trace id, a day) is validated first (``_validate.py``), so
input from a person never reaches Redis unchecked. ``traces.py`` holds the trace
queries, ``aggregates.py`` the aggregate ones; ``TraceStore`` offers both.
"""

from __future__ import annotations

from asynctrace.store._validate import DEFAULT_SCAN_LIMIT
from asynctrace.store.aggregates import (
    DEFAULT_SLOW_THRESHOLD_MS,
    EdgeStats,
    OperationStats,
    PatternCell,
    StatsRow,
    WeeklyPattern,
    _AggregateQueries,
)
from asynctrace.store.traces import TraceSummary, _TraceQueries

__all__ = [
    "DEFAULT_SCAN_LIMIT",
    "DEFAULT_SLOW_THRESHOLD_MS",
    "EdgeStats",
    "OperationStats",
    "PatternCell",
    "StatsRow",
    "TraceStore",
    "TraceSummary",
    "WeeklyPattern",
]


class TraceStore(_TraceQueries, _AggregateQueries):
    """Queries over stored traces (one trace, the slowest, the failed, recent, search)
    and over the per-hour aggregates (stats, weekly patterns, the service map).

    Give it any client with the ``redis.asyncio`` command API (``redis.asyncio.Redis``,
    ``fakeredis.FakeAsyncRedis``, ``redis.asyncio.cluster.RedisCluster``), or build one
    with ``from_url`` (which detects a Redis Cluster by itself). Every trace query is
    one read-only Redis command, except ``get_trace``, which reads a big trace in
    chunks up to its limit; aggregate queries are pipelines of read-only ones.
    Queries raise ``InvalidQueryError`` for bad arguments (before any I/O),
    ``StoreUnavailableError`` when Redis cannot be reached or does not answer, and
    ``AsynctraceError`` when Redis rejects a command. Corrupt index
    entries and invalid ids in the slow and error sets are skipped and counted in
    ``skipped_index_entries``; corrupt span entries are counted per trace in
    ``Trace.corrupt_entries``.

    ``aclose()`` closes the client only when the store created it (``from_url``); a
    client passed in belongs to the caller.
    """
