"""Every Redis key asynctrace writes or reads, and how long each is kept.

The exporter writes exactly the keys the store reads, so the layout lives here, in
the model layer, as part of the data contract. The first three are the seed's:

- ``trace:{traceId}``: LIST of span JSON, one entry per finished span; 24 h, the
  expiry refreshed by every batch that writes to it.
- ``trace:slow``: ZSET, member traceId, score its largest local-root duration (ms)
  over the slow threshold; trimmed to the top 100.
- ``trace:errors:{YYYY-MM-DD}``: SET of traceIds with an error span that UTC day
  (the day of the span's start); 7 days.
- ``trace:index``: ZSET of ``IndexEntry`` JSON for every local-root and error span,
  scored by start time (epoch ms); entries older than 24 h are trimmed and the set
  is capped at ``INDEX_MAX_ENTRIES``.

``trace:index`` serves listing and search with one bounded ZRANGE (no KEYS, no
SCAN). Each key is a single key, so on Redis Cluster every key of one trace lives in
one slot without a hash tag.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_PREFIX",
    "ERRORS_TTL_S",
    "INDEX_MAX_ENTRIES",
    "SLOW_KEEP",
    "TRACE_TTL_S",
    "errors_key",
    "index_key",
    "slow_key",
    "trace_key",
]

DEFAULT_PREFIX = "trace:"
TRACE_TTL_S = 24 * 3600
ERRORS_TTL_S = 7 * 24 * 3600
SLOW_KEEP = 100
INDEX_MAX_ENTRIES = 100_000


def trace_key(trace_id: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """LIST of one trace's span JSON. ``trace_id`` must already be validated."""
    return f"{prefix}{trace_id}"


def slow_key(*, prefix: str = DEFAULT_PREFIX) -> str:
    """ZSET of the slowest traces: member traceId, score duration in ms."""
    return f"{prefix}slow"


def errors_key(day: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """SET of the traceIds with an error span on the UTC ``day`` (``YYYY-MM-DD``)."""
    return f"{prefix}errors:{day}"


def index_key(*, prefix: str = DEFAULT_PREFIX) -> str:
    """ZSET of recent local-root and error spans (``IndexEntry`` JSON) by start ms."""
    return f"{prefix}index"
