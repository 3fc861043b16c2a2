"""``RedisExporter``: writes a batch of spans to Redis in one non-transactional pipeline.

One batch is one round trip: an RPUSH of all of a trace's spans at once and one
EXPIRE per trace, the slow-trace ZADD (GT) and its trim, the error-day SADD and
EXPIRE, and the trace-index ZADD and trims (keys and lifetimes in ``keys.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asynctrace import keys
from asynctrace.model import IndexEntry, Span, encode_span, utc_day

__all__ = ["RedisCommandError", "RedisExporter"]

# Encoding is CPU work on the loop; yield between chunks so no request waits long.
_ENCODE_CHUNK = 64


class RedisCommandError(Exception):
    """Redis refused some commands of a batch (wrong key type, out of memory, ...)."""


class RedisExporter:
    """Exports spans to Redis: pass a URL, or a ready ``redis.asyncio`` client.

    A URL-made client is created on the loop that exports and replaced if the loop
    changes (asyncio connections belong to one loop). Connection failures are raised
    as builtin ``ConnectionError`` so the queue retries the batch.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        prefix: str = keys.DEFAULT_PREFIX,
        slow_threshold_ms: float = 1000.0,
        trace_ttl_s: int = keys.TRACE_TTL_S,
    ) -> None:
        if (redis_url is None) == (client is None):
            raise ValueError("RedisExporter needs exactly one of redis_url or client")
        if redis_url is not None:
            _check_url(redis_url)
        if slow_threshold_ms < 0 or trace_ttl_s < 1:
            raise ValueError("slow_threshold_ms must be >= 0 and trace_ttl_s >= 1")
        self.redis_url = redis_url
        self.prefix = prefix
        self.slow_threshold_ms = slow_threshold_ms
        self.trace_ttl_s = trace_ttl_s
        self._given_client = client
        self._client: aioredis.Redis | None = client
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _client_here(self) -> aioredis.Redis:
        if self._given_client is not None:
            return self._given_client
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            assert self.redis_url is not None
            self._client = aioredis.Redis.from_url(
                self.redis_url,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
                health_check_interval=30,
            )
            self._client_loop = loop
        return self._client

    async def export(self, spans: Sequence[Span]) -> None:
        """Write ``spans`` in one pipeline. Raises ``ConnectionError`` if Redis is
        unreachable (nothing written) and ``RedisCommandError`` if commands failed."""
        client = self._client_here()
        pipe = client.pipeline(transaction=False)
        try:
            await self._queue_commands(pipe, spans)
            try:
                results = await pipe.execute(raise_on_error=False)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                raise ConnectionError(f"Redis unreachable: {exc}") from exc
        finally:
            await pipe.reset()  # type: ignore[no-untyped-call]  # unannotated in redis-py
        failures = [result for result in results if isinstance(result, Exception)]
        if failures:
            raise RedisCommandError(
                f"{len(failures)} of {len(results)} Redis commands failed, first: {failures[0]}"
            )

    async def _queue_commands(self, pipe: Any, spans: Sequence[Span]) -> None:
        prefix = self.prefix
        by_trace: dict[str, list[str]] = {}
        slow: dict[str, float] = {}
        errors_by_day: dict[str, set[str]] = {}
        index: dict[str, float] = {}
        for start in range(0, len(spans), _ENCODE_CHUNK):
            if start:
                await asyncio.sleep(0)
            for span in spans[start : start + _ENCODE_CHUNK]:
                trace_id = span.trace_id
                by_trace.setdefault(trace_id, []).append(encode_span(span))
                is_error = span.status == "error"
                if span.is_local_root and span.duration > self.slow_threshold_ms:
                    slow[trace_id] = max(span.duration, slow.get(trace_id, 0.0))
                if is_error:
                    errors_by_day.setdefault(utc_day(span.start_time), set()).add(trace_id)
                if span.is_local_root or is_error:
                    index[IndexEntry.of(span).encode()] = round(span.start_time, 3)
        for trace_id, entries in by_trace.items():
            key = keys.trace_key(trace_id, prefix=prefix)
            pipe.rpush(key, *entries)
            pipe.expire(key, self.trace_ttl_s)
        if slow:
            slow_key = keys.slow_key(prefix=prefix)
            # GT keeps a trace's largest local-root duration: its outermost service's.
            pipe.zadd(slow_key, slow, gt=True)
            pipe.zremrangebyrank(slow_key, 0, -(keys.SLOW_KEEP + 1))
        for day, trace_ids in errors_by_day.items():
            errors_key = keys.errors_key(day, prefix=prefix)
            pipe.sadd(errors_key, *trace_ids)
            pipe.expire(errors_key, keys.ERRORS_TTL_S)
        if index:
            index_key = keys.index_key(prefix=prefix)
            oldest_ms = time.time() * 1000.0 - self.trace_ttl_s * 1000.0
            pipe.zadd(index_key, index)
            pipe.zremrangebyscore(index_key, "-inf", f"({oldest_ms:.3f}")
            pipe.zremrangebyrank(index_key, 0, -(keys.INDEX_MAX_ENTRIES + 1))

    async def shutdown(self) -> None:
        """Close the connection pool this exporter made (a given client stays open)."""
        client, self._client = self._client, None
        if client is not None and self._given_client is None:
            loop = asyncio.get_running_loop()
            if self._client_loop is loop:
                await client.aclose()
        self._client_loop = None


def _check_url(url: str) -> None:
    try:
        aioredis.connection.parse_url(url)
    except ValueError as exc:
        # redis-py's message never contains the password; keep it that way.
        raise ValueError(f"invalid Redis URL: {exc}") from None
