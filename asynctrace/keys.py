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

Aggregates, per UTC hour of a span's *start* (``{hour}`` is ``YYYY-MM-DDTHH``), of
every local-root or server span, sampled or not; kept ``AGGREGATE_TTL_S`` (35 days)
after their hour ends (EXPIREAT, so rewriting an hour never extends it):

- ``trace:agg:{hour}:op:{pair}``: HASH for one service and operation: ``n`` (spans),
  ``e`` (error spans), ``b{i}`` (spans in duration bucket ``i`` of ``histogram.py``).
  ``{pair}`` is ``["service","operation"]`` as JSON (``pair_member``), so any
  character in a name stays unambiguous, e.g.
  ``trace:agg:2026-11-27T09:op:["orders","GET /orders/\u007bid\u007d"]``.
- ``trace:agg:{hour}:ops``: SET of the ``{pair}`` members written that hour, so a
  query enumerates the hour's hashes without SCAN.
- ``trace:agg:{hour}:max``: ZSET, member ``{pair}``, score the hour's largest
  duration in ms (``ZADD GT``).
- ``trace:agg:{hour}:edge:{pair}``: HASH like ``op:`` for calls from service
  ``pair[0]`` to service ``pair[1]``, counted from the callee's server span (its
  caller's service travels in ``tracestate``).
- ``trace:agg:{hour}:edges``: SET of the ``{pair}`` members of the hour's edges.

- ``trace:batch:{id}``: STRING, set (NX) by the write of one part of a batch of
  spans (about 32 spans, ``export/_guarded.py``), so a retry of a part Redis already
  applied (its reply was lost) is skipped; ``{id}`` is 32 hex digits derived from
  the batch's span ids (the first part's is the batch's id itself) and the part's
  number; ``BATCH_GUARD_TTL_S`` (1 h).

Every command touches one key. Braces in names are written as the JSON escapes
``\u007b``/``\u007d`` so that Redis Cluster never reads part of a name as a hash tag
(``{id}`` in a route would otherwise pin every such key to one slot).

On Redis Cluster (and only there; a single Redis keeps the layout above, which the
seed's tools read) the keys every batch of every process writes to are split into
``CLUSTER_SHARDS`` shards, so that no one node takes all of their writes:
``trace:slow``, ``trace:index``, ``trace:errors:{day}`` and the hour sets
``trace:agg:{hour}:ops``, ``:max`` and ``:edges`` become ``{key}:{{tag}}``, e.g.
``trace:slow:{3.1}``, one key per shard. A member goes to shard
``cluster_shard_of(member)`` (CRC-32 of its text: a trace id, an index entry, a pair),
and each shard's hash tag puts its slot in a different eighth of the slot
space (``cluster_shard_keys``), so the shards land on different masters of a cluster
whose slots are spread evenly (as ``redis-cli --cluster create`` spreads them). Each
shard of ``trace:slow`` keeps its own top ``SLOW_KEEP`` (the overall top is among
them) and each shard of ``trace:index`` at most ``CLUSTER_INDEX_MAX_ENTRIES``;
readers merge the shards. The per-trace list and the per-pair aggregate hashes are
one key each and need no sharding.
"""

from __future__ import annotations

import json
import re
import zlib
from datetime import UTC, datetime

__all__ = [
    "AGGREGATE_TTL_S",
    "BATCH_GUARD_TTL_S",
    "CLUSTER_INDEX_MAX_ENTRIES",
    "CLUSTER_SHARDS",
    "DEFAULT_PREFIX",
    "ERRORS_TTL_S",
    "INDEX_MAX_ENTRIES",
    "MAX_TRACE_SPANS",
    "SLOW_KEEP",
    "TRACE_TTL_S",
    "aggregate_key",
    "batch_key",
    "cluster_shard_keys",
    "cluster_shard_of",
    "edge_index_key",
    "edge_key",
    "errors_key",
    "hour_of",
    "hour_start_ms",
    "index_key",
    "is_cluster_sharded",
    "max_key",
    "operation_index_key",
    "pair_member",
    "parse_pair_member",
    "slow_key",
    "trace_key",
]

DEFAULT_PREFIX = "trace:"
TRACE_TTL_S = 24 * 3600
ERRORS_TTL_S = 7 * 24 * 3600
SLOW_KEEP = 100
INDEX_MAX_ENTRIES = 100_000
# Spans one trace list holds: a ``RedisExporter`` stops appending to a trace there
# (counting what it leaves out), and readers read at most this many entries of a list
# (any writer may have gone further). A reused ``traceparent`` cannot grow a trace
# without bound, and no reader loads one whole.
MAX_TRACE_SPANS = 10_000
AGGREGATE_TTL_S = 35 * 24 * 3600
# A retry comes within the queue's backoff of Redis answering again; an hour covers
# any freeze of Redis shorter than that.
BATCH_GUARD_TTL_S = 3600
_HOUR_MS = 3_600_000
_SURROGATES = re.compile("[\ud800-\udfff]")
CLUSTER_SHARDS = 8
# Hash tags whose slots lie in the 1st, 2nd, ... eighth of Redis Cluster's 16384 slots
# (CRC16 of the tag, as tests/cluster/test_keys_cluster.py checks), one per shard.
_SHARD_TAGS = ("0.1", "1.43", "2.43", "3.1", "4.42", "5.1", "6.1", "7.42")
CLUSTER_INDEX_MAX_ENTRIES = INDEX_MAX_ENTRIES // CLUSTER_SHARDS
_SHARDED_AGGREGATE_SETS = (":ops", ":max", ":edges")


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


def hour_of(epoch_ms: float) -> str:
    """The UTC hour (``YYYY-MM-DDTHH``) that ``epoch_ms`` falls in: the aggregates' key part."""
    hour_ms = int(epoch_ms // _HOUR_MS) * _HOUR_MS
    return datetime.fromtimestamp(hour_ms / 1000.0, UTC).strftime("%Y-%m-%dT%H")


def hour_start_ms(hour: str) -> float:
    """Epoch ms of the start of ``hour`` (``YYYY-MM-DDTHH``); ``ValueError`` otherwise."""
    return datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC).timestamp() * 1000.0


def pair_member(first: str, second: str) -> str:
    """``["first","second"]``: a (service, operation) or (caller, callee) in a key or member.

    JSON keeps every name unambiguous and readable; braces are escaped (see above).
    """
    text = json.dumps([first, second], ensure_ascii=False, separators=(",", ":"))
    return text.replace("{", "\\u007b").replace("}", "\\u007d")


def parse_pair_member(member: str | bytes) -> tuple[str, str] | None:
    """The two names of a ``pair_member``, or None when ``member`` is not one."""
    try:
        value = json.loads(member)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None  # RecursionError: a member nested too deeply for the parser
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], str)
    ):
        return _valid_text(value[0]), _valid_text(value[1])
    return None


def _valid_text(text: str) -> str:
    """Lone surrogates (a JSON escape another writer left) as U+FFFD: readers print
    and serve names as UTF-8. ``model.span.valid_utf8``'s rule, kept here because the
    key layout does not depend on the span model."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def aggregate_key(hour: str, pair: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """HASH of one service and operation's hour: ``n``, ``e``, ``b{i}`` (see above)."""
    return f"{prefix}agg:{hour}:op:{pair}"


def operation_index_key(hour: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """SET of the ``pair_member`` (service, operation) pairs aggregated in ``hour``."""
    return f"{prefix}agg:{hour}:ops"


def max_key(hour: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """ZSET of each (service, operation) pair's largest duration (ms) in ``hour``."""
    return f"{prefix}agg:{hour}:max"


def edge_key(hour: str, pair: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """HASH of one caller → callee edge's hour: ``n``, ``e``, ``b{i}``."""
    return f"{prefix}agg:{hour}:edge:{pair}"


def edge_index_key(hour: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """SET of the ``pair_member`` (caller, callee) edges seen in ``hour``."""
    return f"{prefix}agg:{hour}:edges"


def is_cluster_sharded(key: str, *, prefix: str = DEFAULT_PREFIX) -> bool:
    """True for the keys that are split into shards on Redis Cluster (see above)."""
    if not key.startswith(prefix):
        return False
    rest = key[len(prefix) :]
    return (
        rest in ("slow", "index")
        or rest.startswith("errors:")
        or (rest.startswith("agg:") and rest.endswith(_SHARDED_AGGREGATE_SETS))
    )


def cluster_shard_of(member: str) -> int:
    """The shard (0..``CLUSTER_SHARDS`` - 1) a member of a sharded key goes to."""
    return zlib.crc32(member.encode("utf-8", "surrogatepass")) % CLUSTER_SHARDS


def cluster_shard_keys(key: str) -> tuple[str, ...]:
    """The Redis Cluster shards of a sharded ``key``, shard 0 first."""
    return tuple(f"{key}:{{{tag}}}" for tag in _SHARD_TAGS)


def batch_key(batch_id: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """STRING marking a batch (32 hex digits) as written, for ``BATCH_GUARD_TTL_S``."""
    return f"{prefix}batch:{batch_id}"
