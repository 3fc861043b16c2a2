"""``RedisExporter``: writes a batch of spans to Redis in one round trip.

A batch is one run of non-transactional commands: an RPUSH of all of a trace's
spans and one EXPIRE per trace, the slow-trace ZADD (GT) and its trim, the error-day
SADD and EXPIRE, the trace-index ZADD and trims, and the per-hour aggregates'
increments (keys and lifetimes in ``keys.py``).

Two transports carry that run, each one round trip. A client whose pool makes
redis-py's own socket connections (every URL, and most clients given directly) gets
the commands written here as RESP text: the list writes and increments inside
guarded scripts that run them only if their guard key is new, the rest plainly
(``_guarded.py``). A retry of a batch Redis applied but whose reply was lost (a
timeout) changes nothing, so the per-hour counts stay exact and list entries are not
doubled. The pool still does everything the URL asks for (auth, TLS, database,
reconnect). Any other client
(fakeredis, a cluster client, a custom connection class) gets a redis-py
``Pipeline``, unguarded: one round trip per node, at about twice the CPU per span,
since it builds an object per command and encodes arguments one by one
(``python -m benchmarks export``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asynctrace import keys
from asynctrace._ratelimit import report_internal_error
from asynctrace.export import _cluster
from asynctrace.export._guarded import PART_SPANS, GuardedCommands
from asynctrace.export._resp import ENCODING_ERRORS, bulk, bulks, error_text
from asynctrace.export._trace_cap import TraceSpanCap
from asynctrace.export.aggregates import aggregate_commands
from asynctrace.export.protocol import BatchRejected
from asynctrace.model import Span, encode_indexed_span, encode_span, utc_day

__all__ = ["RedisCommandError", "RedisExporter"]

# redis-py's hiredis parser and hiredis's reader, for reading a batch's replies in one
# loop (``_read_buffered``). Private redis-py names (the same from 5.3 to 8.1): when
# they are missing or differ, replies go through the public ``read_response``.
_HIREDIS_PARSER: type | None
_HIREDIS_READER: type | None
try:
    import hiredis
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser
except ImportError:
    _HIREDIS_PARSER = _HIREDIS_READER = None
    _NOT_ENOUGH_DATA = object()
else:
    _HIREDIS_PARSER = _AsyncHiredisParser
    _HIREDIS_READER = hiredis.Reader
# Values of a connection's ``protocol`` that mean RESP2 (redis-py's default is 2).
_RESP2: tuple[object, ...] = (None, 2, "2")

# Encoding is CPU work on the loop: yield to it whenever one stretch of work has held
# it this long, so a request waits behind the exporter for well under 1 ms (a slice,
# plus at most one check interval). Shorter slices cost more turns of the loop; at
# 0.25 ms a batch of 256 takes 4 to 10 of them.
_SLICE_S = 0.00025
# Encoding time between two writes of a batch (the loop still runs after every slice).
# Each write wakes Redis, whose replies then come in pieces while the batch is still
# being encoded, a turn of the loop each: writing after every slice cost about 15 %
# more CPU per span than writing every 2 ms (a batch of 256 in one to three writes).
_WRITE_EVERY_S = 0.002
# How many spans (or commands, or replies) between two looks at the clock.
_CHECK_EVERY = 16
# Spans summed into the aggregates in one step (about 2.5 us each on the reference
# machine, so a chunk stays within a slice).
_AGGREGATE_CHUNK = 64
# A batch's round trip (taking a connection, with its handshake when it is new, every
# write and every reply) must finish within this by default, or the connection is
# dropped and the batch retried (``RedisExporter(timeout_s=...)``).
_TIMEOUT_S = 5.0
# Connection classes whose socket carries exactly the bytes given to
# ``send_packed_command``: redis-py's own. Anything else gets the pipeline.
_PACKABLE_CONNECTIONS: frozenset[type[AbstractConnection]] = frozenset(
    (Connection, SSLConnection, UnixDomainSocketConnection)
)


class RedisCommandError(BatchRejected):
    """Redis refused some commands of a batch (wrong key type, out of memory, ...)."""


class RedisExporter:
    """Exports spans to Redis: pass a URL, or a ready ``redis.asyncio`` client.

    A URL-made client is created on the loop that exports and replaced if the loop
    changes (asyncio connections belong to one loop). Connection failures are raised
    as builtin ``ConnectionError`` so the queue retries the batch.

    With ``idempotent`` (the default), a batch's list writes and increments go in
    guarded scripts, one per part of the batch, that a retry of the same batch finds
    already done (``_guarded.py``, ``keys.batch_key``); False streams every command
    unguarded, and a retry after a lost reply can then count a batch twice. Clients
    the exporter cannot pack for (fakeredis, clusters) are written unguarded either
    way.

    It also writes the per-hour aggregates (``aggregates.py``), which count every
    request, sampled or not: ``accepts_unsampled`` tells the tracer to queue the
    local-root and server spans of unsampled traces too; only their aggregates are
    written.
    """

    accepts_unsampled = True

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        prefix: str = keys.DEFAULT_PREFIX,
        slow_threshold_ms: float = 1000.0,
        trace_ttl_s: int = keys.TRACE_TTL_S,
        aggregate_ttl_s: int = keys.AGGREGATE_TTL_S,
        timeout_s: float = _TIMEOUT_S,
        max_spans_per_trace: int = keys.MAX_TRACE_SPANS,
        idempotent: bool = True,
    ) -> None:
        if (redis_url is None) == (client is None):
            raise ValueError("RedisExporter needs exactly one of redis_url or client")
        if redis_url is not None:
            _check_url(redis_url)
        if slow_threshold_ms < 0 or trace_ttl_s < 1 or aggregate_ttl_s < 1:
            raise ValueError("slow_threshold_ms must be >= 0, trace_ttl_s and aggregate_ttl_s >= 1")
        given: object = timeout_s  # checked as an object: callers may pass anything
        if (
            isinstance(given, bool)
            or not isinstance(given, int | float)
            or not 0 < given < math.inf
        ):
            raise ValueError("timeout_s must be a finite number of seconds above 0")
        self.redis_url = redis_url
        self.prefix = prefix
        self.slow_threshold_ms = slow_threshold_ms
        self.trace_ttl_s = trace_ttl_s
        self.aggregate_ttl_s = aggregate_ttl_s
        self.timeout_s = float(timeout_s)
        self.is_idempotent = idempotent
        # Spans of a trace past max_spans_per_trace are not stored (counted).
        self.trace_cap = TraceSpanCap(max_spans_per_trace)
        self._given_client = client
        self._client: aioredis.Redis | None = client
        self._client_loop: asyncio.AbstractEventLoop | None = None
        # Redis Cluster (export/_cluster.py): detected on the first batch of a loop.
        self._cluster_route = _cluster.ClusterRoute(redis_url, given=client)
        _exporters.add(self)

    @property
    def spans_over_trace_limit(self) -> int:
        """Spans not stored because their trace already held ``max_spans_per_trace``
        spans written by this exporter (they still count in the aggregates)."""
        return self.trace_cap.over_limit

    def _after_fork_in_child(self) -> None:
        """Forget the parent's connections (their sockets are shared with it): the
        child makes its own on first use. A given client's pool is emptied likewise."""
        self._cluster_route = _cluster.ClusterRoute(self.redis_url, given=self._given_client)
        if self._given_client is None:
            self._client = None
            self._client_loop = None
        else:
            with contextlib.suppress(Exception):
                self._given_client.connection_pool.reset()  # type: ignore[no-untyped-call]  # unannotated in redis-py

    def _client_here(self) -> aioredis.Redis:
        if self._given_client is not None:
            return self._given_client
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            assert self.redis_url is not None
            # No socket timeout and no health-check PING: each round trip, taking the
            # connection included, is bounded by timeout_s as a whole, and the pool
            # checks a connection as it hands it out. Per-read timers and PINGs cost
            # more than encoding a span.
            self._client = aioredis.Redis.from_url(
                self.redis_url,
                socket_connect_timeout=2.0,
                socket_timeout=None,
                health_check_interval=0,
            )
            self._client_loop = loop
        return self._client

    async def export(self, spans: Sequence[Span]) -> None:
        """Write ``spans`` in one round trip. Raises ``ConnectionError`` if Redis is
        unreachable or did not answer in time (the batch may have been written:
        retrying the same spans is safe, see the module docstring) and
        ``RedisCommandError`` if commands failed."""
        if not spans:
            return
        client = self._client_here()
        try:
            # -- Redis Cluster hook: its own transport and key layout (export/_cluster.py).
            cluster = await self._cluster_route.cluster_for(client, self.timeout_s)
            if cluster is not None:
                failures, count = await _cluster.write_batch(
                    cluster,
                    self._fill,
                    spans,
                    trace_ttl_s=self.trace_ttl_s,
                    prefix=self.prefix,
                    timeout_s=self.timeout_s,
                )
                failed, first_failure = _first_of(failures)
            elif _speaks_packed_resp(client) and self.is_idempotent:
                guarded, slices = self._guarded(spans)
                failed, first_failure = await _write_guarded(
                    client.connection_pool, guarded, slices, self.timeout_s
                )
                count = guarded.count
            elif _speaks_packed_resp(client):
                packed = _PackedCommands(self.trace_ttl_s)
                slices = self._fill(packed, spans)
                failures = await _write_packed(
                    client.connection_pool, packed, slices, self.timeout_s
                )
                failed, first_failure = _first_of(failures)
                count = packed.count
            else:
                pipe = client.pipeline(transaction=False)
                try:
                    pipelined = _PipelinedCommands(pipe, self.trace_ttl_s)
                    for _ in self._fill(pipelined, spans):
                        await asyncio.sleep(0)
                    results = await pipe.execute(raise_on_error=False)
                finally:
                    await pipe.reset()  # type: ignore[no-untyped-call]  # unannotated in redis-py
                failed, first_failure = _first_of(
                    [result for result in results if isinstance(result, Exception)]
                )
                count = pipelined.count
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            # OSError covers the builtin ConnectionError and TimeoutError too. The
            # batch timeout's TimeoutError has no message: name the error then, so
            # stats().last_error never ends in an empty cause.
            if isinstance(exc, TimeoutError) and not str(exc):
                cause = f"TimeoutError (no reply within {self.timeout_s:g} s)"
            else:
                cause = str(exc) or type(exc).__name__
            if isinstance(exc, AuthenticationError):
                # NOAUTH or a wrong password: retried (Redis may come back with the
                # expected password), but named, not "unreachable". Redis's own text
                # depends on the protocol (HELLO's is a paragraph).
                raise ConnectionError(
                    "Redis refused the connection: authentication required or failed "
                    "(NOAUTH); check the password in the Redis URL"
                ) from exc
            raise ConnectionError(f"Redis unreachable: {cause}") from exc
        if failed:
            raise RedisCommandError(
                f"{failed} of {count} Redis commands failed, first: {first_failure}"
            )

    def _guarded(self, spans: Sequence[Span]) -> tuple[GuardedCommands, Iterator[None]]:
        """The guarded commands of ``spans``, and the slices that fill them."""
        guarded = GuardedCommands(self.trace_ttl_s, batch_id(spans), prefix=self.prefix)
        return guarded, self._fill(guarded, spans, end_part=guarded.end_part)

    def _fill(
        self,
        commands: _Commands,
        spans: Sequence[Span],
        *,
        end_part: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """Add the batch's commands to ``commands``, pausing (yielding) after about
        ``_SLICE_S`` of work each time: the caller lets the loop run before resuming,
        and writes what is there, so Redis runs it while the rest is encoded.

        The aggregates' increments come first (they need no encoding), then each
        trace's spans in one RPUSH (a trace too big for one slice in several, in
        order) followed by its EXPIRE, then the index, slow-set and error-day
        commands. With ``end_part`` (the guarded transport), a part ends every
        ``PART_SPANS`` spans at a trace boundary, and the index entries of its local
        roots follow it. Spans of unsampled traces that are not errors only count in
        the aggregates (the tracer queues those for nothing else)."""
        prefix = self.prefix
        trace_key = keys.trace_key
        index_key = keys.index_key(prefix=prefix)
        # Most traces have one span in a batch (a request's local root, or all of a
        # one-span request), so no list per trace: a trace's first span is kept in
        # first_of, and any later ones in others_of.
        first_of: dict[str, Span] = {}
        others_of: dict[str, list[Span]] = {}
        aggregated: list[Span] = []
        for span in spans:
            if span.is_local_root or span.kind == "server":  # aggregates.is_aggregated
                aggregated.append(span)
            trace_id = span.trace_id
            if first_of.setdefault(trace_id, span) is not span:
                others = others_of.get(trace_id)
                if others is None:
                    others_of[trace_id] = [span]
                else:
                    others.append(span)
        clock = time.perf_counter
        deadline = clock() + _SLICE_S
        # Summing is CPU work too: a chunk at a time, each well within a slice. The
        # increments of two chunks add up in Redis as one chunk's would.
        for first in range(0, len(aggregated), _AGGREGATE_CHUNK):
            chunk = aggregated[first : first + _AGGREGATE_CHUNK]
            for command in aggregate_commands(chunk, prefix=prefix, ttl_s=self.aggregate_ttl_s):
                commands.command(*command)
            if clock() >= deadline:
                yield
                deadline = clock() + _SLICE_S
        noted = _BatchIndex(self.slow_threshold_ms, self.trace_cap)
        encode = noted.encode
        # One-span traces since the clock was last read: each is too little work to
        # look at the clock after it, so that is done every _CHECK_EVERY of them.
        unchecked = 0
        # Spans since the last part ended (with end_part): parts end at trace
        # boundaries, after the same spans on every try of the batch.
        in_part = 0
        for trace_id, first_span in first_of.items():
            key = trace_key(trace_id, prefix=prefix)
            others = others_of.get(trace_id) if others_of else None
            if others is None:
                unchecked += 1
                entry = encode(first_span)
                if entry is not None:
                    commands.rpush_one_and_expire(key, entry)
                in_part += 1
            else:
                entries: list[str] = []
                is_stored = False
                for span in (first_span, *others):
                    entry = encode(span)
                    if entry is None:
                        continue
                    entries.append(entry)
                    is_stored = True
                    if len(entries) % _CHECK_EVERY == 0 and clock() >= deadline:
                        commands.rpush(key, entries)
                        entries = []
                        yield
                        deadline = clock() + _SLICE_S
                if is_stored:
                    commands.rpush_and_expire(key, entries)
                in_part += 1 + len(others)
            if end_part is not None and in_part >= PART_SPANS:
                _end_part(commands, end_part, index_key, noted)
                in_part = 0
            if others is None and unchecked < _CHECK_EVERY:
                continue
            unchecked = 0
            if clock() >= deadline:
                yield
                deadline = clock() + _SLICE_S
        if end_part is not None:
            _end_part(commands, end_part, index_key, noted)
        slow, errors_by_day, index = noted.slow, noted.errors_by_day, noted.index
        if slow:
            slow_key = keys.slow_key(prefix=prefix)
            # GT keeps a trace's largest local-root duration: its outermost service's.
            pairs = [text for trace_id, ms in slow.items() for text in (repr(ms), trace_id)]
            commands.command("ZADD", slow_key, "GT", *pairs)
            commands.command("ZREMRANGEBYRANK", slow_key, "0", str(-(keys.SLOW_KEEP + 1)))
        for day, trace_ids in errors_by_day.items():
            errors_key = keys.errors_key(day, prefix=prefix)
            commands.command("SADD", errors_key, *trace_ids)
            commands.command("EXPIRE", errors_key, str(keys.ERRORS_TTL_S))
        if index:
            commands.command("ZADD", index_key, *index)
        if noted.is_indexed:
            oldest_ms = time.time() * 1000.0 - self.trace_ttl_s * 1000.0
            commands.command("ZREMRANGEBYSCORE", index_key, "-inf", f"({oldest_ms:.3f}")
            commands.command("ZREMRANGEBYRANK", index_key, "0", str(-(keys.INDEX_MAX_ENTRIES + 1)))

    async def shutdown(self) -> None:
        """Close the connection pool this exporter made (a given client stays open)."""
        await self._cluster_route.close()
        client, self._client = self._client, None
        if client is not None and self._given_client is None:
            loop = asyncio.get_running_loop()
            if self._client_loop is loop:
                await client.aclose()
        self._client_loop = None


_exporters: weakref.WeakSet[RedisExporter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for exporter in list(_exporters):
        exporter._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _end_part(
    commands: _Commands, end_part: Callable[[], None], index_key: str, noted: _BatchIndex
) -> None:
    """End a guarded part, followed by the index entries of its local roots (the
    index ZADD is idempotent: it goes plainly, after the part that wrote the lists)."""
    end_part()
    if noted.index:
        commands.command("ZADD", index_key, *noted.index)
        noted.index = []


class _BatchIndex:
    """Encodes a batch's spans and notes what they add to the slow set, the error-day
    sets and the trace index (local roots and error spans)."""

    __slots__ = ("admit", "errors_by_day", "index", "is_indexed", "slow", "threshold")

    def __init__(self, slow_threshold_ms: float, cap: TraceSpanCap) -> None:
        self.threshold = slow_threshold_ms
        self.admit = cap.admit
        self.slow: dict[str, float] = {}
        self.errors_by_day: dict[str, set[str]] = {}
        self.index: list[str] = []  # score, entry, score, entry, ... (not yet added)
        self.is_indexed = False  # whether the batch added any index entry

    def encode(self, span: Span) -> str | None:
        """The span's JSON, or None when it is not stored: a span of an unsampled
        trace that is not an error (it only counts in the aggregates), or one that
        cannot be encoded (reported, and left out rather than failing the batch)."""
        is_error = span.status == "error"
        if not (span.is_sampled or is_error):
            return None
        if not self.admit(span.trace_id):
            return None  # its trace is full (keys.MAX_TRACE_SPANS); counted by the cap
        try:
            if not (span.is_local_root or is_error):
                return encode_span(span)
            entry, score, index_entry = encode_indexed_span(span)
        except Exception as exc:
            # Only a value set around the Span API can do this (tags holding objects
            # JSON cannot encode).
            report_internal_error("a span could not be encoded; it was left out", exc)
            return None
        trace_id = span.trace_id
        if span.is_local_root and span.duration > self.threshold:
            self.slow[trace_id] = max(span.duration, self.slow.get(trace_id, 0.0))
        if is_error:
            self.errors_by_day.setdefault(utc_day(span.start_time), set()).add(trace_id)
        self.index += (score, index_entry)
        self.is_indexed = True
        return entry


def _first_of(failures: list[Exception]) -> tuple[int, str]:
    return len(failures), error_text(failures[0]) if failures else ""


def _speaks_packed_resp(client: object) -> bool:
    """True when ``client``'s pool makes redis-py's own socket connections.

    Only those are written to with commands packed here. fakeredis, cluster clients
    and custom connection classes (whose socket may not be a plain RESP stream) go
    through a redis-py pipeline instead.
    """
    pool = getattr(client, "connection_pool", None)
    return isinstance(pool, ConnectionPool) and pool.connection_class in _PACKABLE_CONNECTIONS


class _Commands(Protocol):
    """Where ``_fill`` puts a batch's commands; ``count`` is how many it holds."""

    count: int

    def rpush(self, key: str, entries: list[str]) -> None: ...

    def rpush_and_expire(self, key: str, entries: list[str]) -> None:
        """RPUSH ``entries`` (if any) to a trace list, then refresh its TTL."""

    def rpush_one_and_expire(self, key: str, entry: str) -> None:
        """``rpush_and_expire(key, [entry])``: the common trace of one span."""

    def command(self, *arguments: str) -> None: ...


class _PackedCommands:
    """Commands written straight into RESP text: arrays of bulk strings, the bytes
    redis-py would send for them. ``take()`` hands over what was added so far."""

    __slots__ = ("_parts", "_ttl_bulk", "count")

    def __init__(self, trace_ttl_s: int) -> None:
        self._parts: list[str] = []
        self._ttl_bulk = bulk(str(trace_ttl_s))
        self.count = 0  # commands

    def rpush(self, key: str, entries: list[str]) -> None:
        if entries:
            self._parts.append(f"*{len(entries) + 2}\r\n$5\r\nRPUSH\r\n{bulk(key)}")
            self._parts.append(bulks(entries))
            self.count += 1

    def rpush_and_expire(self, key: str, entries: list[str]) -> None:
        key_bulk = bulk(key)
        if entries:
            self._parts.append(
                f"*{len(entries) + 2}\r\n$5\r\nRPUSH\r\n{key_bulk}{bulks(entries)}"
                f"*3\r\n$6\r\nEXPIRE\r\n{key_bulk}{self._ttl_bulk}"
            )
            self.count += 2
        else:
            self._parts.append(f"*3\r\n$6\r\nEXPIRE\r\n{key_bulk}{self._ttl_bulk}")
            self.count += 1

    def rpush_one_and_expire(self, key: str, entry: str) -> None:
        if key.isascii() and entry.isascii():
            size = len(key)
            self._parts.append(
                f"*3\r\n$5\r\nRPUSH\r\n${size}\r\n{key}\r\n${len(entry)}\r\n{entry}\r\n"
                f"*3\r\n$6\r\nEXPIRE\r\n${size}\r\n{key}\r\n{self._ttl_bulk}"
            )
            self.count += 2
        else:
            self.rpush_and_expire(key, [entry])

    def command(self, *arguments: str) -> None:
        self._parts.append(f"*{len(arguments)}\r\n{bulks(arguments)}")
        self.count += 1

    def take(self) -> bytes:
        text = "".join(self._parts)
        self._parts.clear()
        return text.encode("utf-8", ENCODING_ERRORS)


def batch_id(spans: Sequence[Span]) -> str:
    """32 hex digits naming a batch by its spans' ids, in order: the queue retries a
    batch as the same spans in the same order, so a retry has the id of its first try."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update("".join([span.trace_id + span.span_id for span in spans]).encode())
    return digest.hexdigest()


class _PipelinedCommands:
    """Commands queued on a redis-py pipeline (clients the exporter cannot pack for)."""

    __slots__ = ("_pipe", "_ttl", "count")

    def __init__(self, pipe: Any, trace_ttl_s: int) -> None:
        self._pipe = pipe
        self._ttl = str(trace_ttl_s)
        self.count = 0

    def rpush(self, key: str, entries: list[str]) -> None:
        if entries:
            self.command("RPUSH", key, *entries)

    def rpush_and_expire(self, key: str, entries: list[str]) -> None:
        self.rpush(key, entries)
        self.command("EXPIRE", key, self._ttl)

    def rpush_one_and_expire(self, key: str, entry: str) -> None:
        self.rpush_and_expire(key, [entry])

    def command(self, *arguments: str) -> None:
        name, *rest = arguments
        # Arguments go as bytes, encoded as the packed transport encodes them; the
        # name stays a str, which cluster pipelines route by.
        self._pipe.execute_command(
            name, *(argument.encode("utf-8", ENCODING_ERRORS) for argument in rest)
        )
        self.count += 1


@contextlib.asynccontextmanager
async def _pooled_connection(pool: ConnectionPool) -> AsyncIterator[Any]:
    """A connection from ``pool``, disconnected if anything fails while it is held
    (unread replies, or half a write, would be served to the pool's next user)."""
    connection: Any = None
    try:
        try:
            # A new connection's handshake (HELLO, AUTH, SELECT) waits for replies:
            # the caller's timeout covers it. No arguments: redis-py >= 5.3 (the floor
            # in pyproject.toml) deprecates them. Unannotated in redis-py (a
            # deprecation decorator hides it).
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            # The pool took back a connection whose handshake may have stopped
            # half-way (redis-py only cleans up after its own errors): drop the
            # idle ones so the next batch starts on a fresh socket.
            await asyncio.shield(_disconnect_idle(pool))
            raise
        yield connection
    except BaseException:
        if connection is not None:
            await connection.disconnect(nowait=True)
        raise
    finally:
        if connection is not None:
            # Shielded so a second cancellation cannot split the pool's bookkeeping.
            await asyncio.shield(pool.release(connection))


async def _write_guarded(
    pool: ConnectionPool, commands: GuardedCommands, slices: Iterator[None], timeout_s: float
) -> tuple[int, str]:
    """Write the guarded parts of ``commands`` as ``slices`` makes them (letting the
    loop run between slices), then the last part and the plain commands, then read
    every reply: (commands that failed, the first failure's text). Parts an earlier
    try of the batch wrote count as written.

    Everything, taking the connection included, happens within ``timeout_s``
    (``TimeoutError`` otherwise): a Redis that accepts TCP but never answers would
    otherwise hold the export worker forever.
    """
    async with asyncio.timeout(timeout_s), _pooled_connection(pool) as connection:
        for _ in slices:
            ready = commands.take_ready()
            if ready:
                # The pool checked the connection when handing it out; a health-check
                # PING here would cost a second round trip after an idle spell.
                await connection.send_packed_command(ready, check_health=False)
            await asyncio.sleep(0)
        last = commands.finish()
        if last:
            await connection.send_packed_command(last, check_health=False)
        replies = await _read_replies(connection, commands.replies)
    return commands.outcome(replies)


async def _write_packed(
    pool: ConnectionPool, commands: _PackedCommands, slices: Iterator[None], timeout_s: float
) -> list[Exception]:
    """Write ``commands`` as ``slices`` makes them (every ``_WRITE_EVERY_S`` of
    encoding, and the rest at the end), then read every reply (``idempotent=False``).

    Returns the replies that are errors. Replies are read only after the last write:
    however many writes, the batch waits for Redis once. Everything, taking the
    connection included, happens within ``timeout_s`` (``TimeoutError`` otherwise).
    """
    async with asyncio.timeout(timeout_s), _pooled_connection(pool) as connection:
        clock = time.perf_counter
        written_at = clock()
        for _ in slices:
            if clock() - written_at >= _WRITE_EVERY_S:
                # The pool checked the connection when handing it out; a health-check
                # PING here would cost a second round trip after an idle spell.
                await connection.send_packed_command(commands.take(), check_health=False)
                written_at = clock()
            await asyncio.sleep(0)
        await connection.send_packed_command(commands.take(), check_health=False)
        replies = await _read_replies(connection, commands.count)
    return [reply for reply in replies if isinstance(reply, Exception)]


async def _read_replies(connection: Any, count: int) -> list[Any]:
    """Read ``count`` replies, an error reply as its exception, in order.

    The first reply, the one that waits for Redis, goes through redis-py's
    ``read_response``. The others are mostly in the buffer by then: with redis-py's
    hiredis parser they are taken straight from its reader, one C call each, instead
    of three coroutine calls each through ``read_response`` (about a tenth of the
    export's CPU). Any other parser gets ``read_response`` for every reply.
    """
    replies: list[Any] = []
    if count == 0:
        return replies
    await _read_each(connection, 1, replies)
    hiredis_parser = _hiredis_parser_of(connection)
    if hiredis_parser is None:
        await _read_each(connection, count - 1, replies)
    else:
        await _read_buffered(hiredis_parser, count - 1, replies)
    return replies


async def _read_each(connection: Any, count: int, replies: list[Any]) -> None:
    clock = time.perf_counter
    deadline = clock() + _SLICE_S
    for number in range(count):
        if number % _CHECK_EVERY == 0 and clock() >= deadline:
            await asyncio.sleep(0)
            deadline = clock() + _SLICE_S
        try:
            # math.inf: no timer per reply (the batch's timeout bounds them all).
            reply = await connection.read_response(disable_decoding=True, timeout=math.inf)
        except ResponseError as exc:
            reply = exc
        replies.append(reply)


async def _read_buffered(parser: Any, count: int, replies: list[Any]) -> None:
    """``_read_each`` on redis-py's hiredis parser, whose reader hands back a reply,
    an error reply as an exception instance (``parse_error``), a RESP3 push message,
    or its ``NOT_ENOUGH_DATA`` marker."""
    gets = parser._reader.gets
    not_enough_data = _NOT_ENOUGH_DATA
    push_type = _push_type_of(parser) or _NoPush
    clock = time.perf_counter
    deadline = clock() + _SLICE_S
    for number in range(count):
        if number % _CHECK_EVERY == 0 and clock() >= deadline:
            await asyncio.sleep(0)
            deadline = clock() + _SLICE_S
        reply = gets(False)  # False: bytes stay undecoded, as disable_decoding=True
        if reply is not_enough_data or type(reply) is push_type:
            reply = await _wait_for_reply(parser, push_type)
        # As read_response: a connection-level error (LOADING, max clients, auth) is
        # raised; an error about one command is that command's reply.
        if isinstance(reply, RedisConnectionError):
            raise reply
        replies.append(reply)


async def _wait_for_reply(parser: Any, push_type: type) -> Any:
    """The next reply, reading from the socket as needed and handing push messages
    to the parser's handlers, as its ``read_response`` does."""
    gets = parser._reader.gets
    while True:
        reply = gets(False)
        if reply is _NOT_ENOUGH_DATA:
            await parser.read_from_socket()  # raises ConnectionError when Redis closed
        elif type(reply) is push_type:
            await parser.handle_push_response(reply)
        else:
            return reply


class _NoPush:
    """Stands for the push message type where none can arrive (RESP2)."""


def _hiredis_parser_of(connection: Any) -> Any:
    """The connection's parser if it is redis-py's hiredis parser exactly as
    ``_read_buffered`` knows it (private redis-py API, checked on every batch); else
    None. On RESP3 (redis-py 8's default) Redis may send push messages between
    replies: only a parser that tells them apart and handles them qualifies."""
    parser = getattr(connection, "_parser", None)
    if (
        _HIREDIS_PARSER is None
        or type(parser) is not _HIREDIS_PARSER
        or getattr(parser, "_connected", False) is not True
        or type(getattr(parser, "_reader", None)) is not _HIREDIS_READER
        or not callable(getattr(parser, "read_from_socket", None))
    ):
        return None
    if getattr(connection, "protocol", None) in _RESP2:
        return parser
    has_push_handler = callable(getattr(parser, "handle_push_response", None))
    return parser if has_push_handler and _push_type_of(parser) is not None else None


def _push_type_of(parser: Any) -> type | None:
    """hiredis's push message class as redis-py 8's parser records it (hiredis >= 3.2)."""
    push_type = getattr(parser, "_hiredis_PushNotificationType", None)
    return push_type if isinstance(push_type, type) else None


async def _disconnect_idle(pool: ConnectionPool) -> None:
    try:
        await pool.disconnect(inuse_connections=False)
    except Exception as exc:
        # Already failing with the batch's own error; this one only adds noise.
        report_internal_error("could not close an idle Redis connection", exc)


def _check_url(url: str) -> None:
    try:
        aioredis.connection.parse_url(url)
    except ValueError as exc:
        # redis-py's message never contains the password; keep it that way.
        raise ValueError(f"invalid Redis URL: {exc}") from None
