"""Redis Cluster for ``RedisExporter``: detecting it, and writing a batch to it.

A URL may name any node of a cluster. The first batch on a loop asks that node
``INFO cluster`` (inside the export task, within the batch's timeout: never on the
request path, and a failure is the batch's ordinary retryable failure); on
``cluster_enabled:1`` the exporter writes through redis-py's ``RedisCluster`` instead.

A batch goes in one redis-py cluster pipeline, which groups its commands by node and
sends each node its share in one round trip, all nodes at once. The commands are the
single-Redis ones ``RedisExporter._fill`` makes, translated to the cluster layout of
``keys.py`` on the way in: a member of a sharded key (a slow trace, an error-day
trace, an index entry, an hour's pair) goes to its shard's key, and the commands
about the whole key (EXPIRE, EXPIREAT, trims) go to each shard the batch touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asynctrace import keys
from asynctrace.model import Span

__all__ = ["ClusterRoute", "ShardedCommands", "write_batch"]

# What a cluster answers while a failover or a resharding is under way (and redis-py
# could not settle with its own retries): the batch is retried, as after an outage.
# AskError covers MovedError.
_TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    TryAgainError,
    AskError,
    ReadOnlyError,
    RedisClusterException,
)
# ZADD options that come between the key and the score/member pairs.
_ZADD_FLAGS = frozenset(("NX", "XX", "GT", "LT", "CH", "INCR"))
# Commands about a whole key: sent to every shard the batch wrote members to.
_KEY_WIDE = frozenset(("EXPIRE", "EXPIREAT", "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK"))
_ENCODING_ERRORS = "backslashreplace"


class ClusterRoute:
    """Whether an exporter's URL names a Redis Cluster node, and the cluster client.

    Asked once per event loop (asyncio clients belong to one loop). A given
    ``RedisCluster`` client is used as it is.
    """

    def __init__(self, redis_url: str | None, *, given: object = None) -> None:
        self._url = redis_url
        self._given = given if isinstance(given, RedisCluster) else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: RedisCluster | None = None

    async def cluster_for(self, plain: aioredis.Redis, timeout_s: float) -> RedisCluster | None:
        """The cluster client to write through, or None for a single Redis.

        Raises what the probe raises when the node cannot be reached (the caller's
        retryable failure); a node that refuses ``INFO`` is taken as a single Redis.
        """
        if self._given is not None:
            return self._given
        if self._url is None:
            return None
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return self._client
        async with asyncio.timeout(timeout_s):
            try:
                info = await plain.info("cluster")
            except ResponseError:
                info = {}
        if self._loop is loop:
            return self._client  # a concurrent batch found out first
        client: RedisCluster | None = None
        if str(info.get("cluster_enabled", "0")) == "1":
            # Options as for the single-node client (no health-check PING; the batch
            # timeout bounds each round trip).
            client = RedisCluster.from_url(
                self._url, socket_connect_timeout=2.0, health_check_interval=0
            )
        # A client of an earlier loop cannot be closed from this one: it is dropped.
        self._client, self._loop = client, loop
        return client

    async def close(self) -> None:
        """Close the cluster client this route made, on its own loop."""
        client, self._client = self._client, None
        loop, self._loop = self._loop, None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()


class ShardedCommands:
    """``RedisExporter``'s commands, queued on a cluster pipeline in the cluster layout."""

    __slots__ = ("_pipe", "_prefix", "_touched", "_ttl", "count")

    def __init__(self, pipe: Any, trace_ttl_s: int, prefix: str) -> None:
        self._pipe = pipe
        self._ttl = str(trace_ttl_s)
        self._prefix = prefix
        # Shard numbers each sharded key received members in, this batch.
        self._touched: dict[str, set[int]] = {}
        self.count = 0

    def rpush(self, key: str, entries: list[str]) -> None:
        if entries:
            self._send("RPUSH", key, *entries)

    def rpush_and_expire(self, key: str, entries: list[str]) -> None:
        self.rpush(key, entries)
        self._send("EXPIRE", key, self._ttl)

    def rpush_one_and_expire(self, key: str, entry: str) -> None:
        self.rpush_and_expire(key, [entry])

    def command(self, *arguments: str) -> None:
        name, key, *rest = arguments
        if not keys.is_cluster_sharded(key, prefix=self._prefix):
            self._send(name, key, *rest)
            return
        shard_keys = keys.cluster_shard_keys(key)
        if name in _KEY_WIDE:
            touched = self._touched.get(key, range(keys.CLUSTER_SHARDS))
            if name == "ZREMRANGEBYRANK" and key == keys.index_key(prefix=self._prefix):
                # Each shard keeps its share of the index's bound.
                rest = ["0", str(-(keys.CLUSTER_INDEX_MAX_ENTRIES + 1))]
            for shard in sorted(touched):
                self._send(name, shard_keys[shard], *rest)
            return
        if name == "SADD":
            flags: list[str] = []
            groups = [[member] for member in rest]
        elif name == "ZADD":
            at = 0
            while at < len(rest) and rest[at].upper() in _ZADD_FLAGS:
                at += 1
            flags = rest[:at]
            pairs = rest[at:]
            groups = [pairs[i : i + 2] for i in range(0, len(pairs), 2)]
        else:  # not written by the exporter today: every shard gets it unchanged
            for shard_key in shard_keys:
                self._send(name, shard_key, *rest)
            return
        by_shard: dict[int, list[str]] = {}
        for group in groups:
            by_shard.setdefault(keys.cluster_shard_of(group[-1]), []).extend(group)
        self._touched.setdefault(key, set()).update(by_shard)
        for shard, members in by_shard.items():
            self._send(name, shard_keys[shard], *flags, *members)

    def _send(self, name: str, *arguments: str) -> None:
        # As the exporter's own pipeline: arguments as bytes, the name a str, which
        # the cluster pipeline routes by.
        self._pipe.execute_command(
            name, *(argument.encode("utf-8", _ENCODING_ERRORS) for argument in arguments)
        )
        self.count += 1


async def write_batch(
    cluster: RedisCluster,
    fill: Callable[[ShardedCommands, Sequence[Span]], Iterator[None]],
    spans: Sequence[Span],
    *,
    trace_ttl_s: int,
    prefix: str,
    timeout_s: float,
) -> tuple[list[Exception], int]:
    """Write the batch ``fill`` makes of ``spans``: (the failed commands' errors, how
    many commands there were).

    A cluster that is changing (failover, redirections redis-py could not settle,
    a node down) raises builtin ``ConnectionError``, so the batch is retried whole.
    """
    pipe = cluster.pipeline(transaction=False)
    try:
        commands = ShardedCommands(pipe, trace_ttl_s, prefix)
        for _ in fill(commands, spans):
            await asyncio.sleep(0)
        try:
            async with asyncio.timeout(timeout_s):
                results = await pipe.execute(raise_on_error=False)
        except _TRANSIENT as exc:
            raise ConnectionError(f"Redis Cluster: {type(exc).__name__}: {exc}") from exc
    finally:
        await pipe.reset()  # type: ignore[no-untyped-call]  # unannotated in redis-py
    failures = [result for result in results if isinstance(result, Exception)]
    transient = next((error for error in failures if isinstance(error, _TRANSIENT)), None)
    if transient is not None:
        raise ConnectionError(f"Redis Cluster: {type(transient).__name__}: {transient}")
    return failures, commands.count
