"""The store's one Redis client: read-only commands, retries, and errors that say
where (host:port) and why, never the password."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asynctrace import keys
from asynctrace.errors import AsynctraceError, InvalidQueryError, StoreUnavailableError
from asynctrace.ids import is_valid_trace_id
from asynctrace.store._validate import DEFAULT_SCAN_LIMIT, _valid_scan_limit, _valid_url

_T = TypeVar("_T")


# Aggregate reads go to Redis in pipelines of this many commands, and one query reads
# at most _MAX_AGGREGATE_READS keys (hours x pairs), so a query stays bounded.
_PIPELINE_CHUNK = 5000


def _client_options() -> dict[str, Any]:
    """Socket and retry settings for clients the store creates itself (``from_url``).

    A query is asked by a person waiting at a terminal or a page: fail within
    seconds rather than hang, and ride over a Redis restart with quick retries
    (redis-py's ``from_url`` gives connections no retry at all unless one is passed).
    Query-string options in the URL still win; redis-py gives them priority.
    """
    return {
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 30,
        "retry": Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries=2),
    }


# Errors meaning "Redis is not there right now", as opposed to "Redis said no".
# builtins.TimeoutError (= asyncio.TimeoutError) is an OSError. A cluster client
# raises RedisClusterException when no node answers (or a slot has no node).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    RedisClusterException,
)


class _StoreConnection:
    """A client, its key prefix, and how queries read through it (the base of ``TraceStore``)."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        prefix: str = keys.DEFAULT_PREFIX,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
    ) -> None:
        """Wrap ``client``; no I/O happens here.

        Args:
            prefix: the key prefix the exporter writes with (``trace:``).
            scan_limit: how many of the newest index entries listing and search
                read at most; grouping and filtering happen within that window.
                Raises ``ValueError`` outside 1..``keys.INDEX_MAX_ENTRIES``.
        """
        self._client: aioredis.Redis | RedisCluster = client
        self._prefix = prefix
        self._scan_limit = _valid_scan_limit(scan_limit)
        self._owns_client = False
        self._skipped_index_entries = 0
        # Redis Cluster: known for a given client; for a URL, asked on the first query
        # (``_ensure_layout``), since the URL may name any node of a cluster.
        self._url: str | None = None
        self._is_cluster: bool | None = isinstance(client, RedisCluster)
        self._layout_lock: asyncio.Lock | None = None
        self._layout_lock_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = keys.DEFAULT_PREFIX,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
    ) -> Self:
        """A store over a new client for ``url`` (``redis://``, ``rediss://``, ``unix://``).

        Does not connect yet. The URL may name any node of a Redis Cluster: the first
        query asks it (``INFO cluster``) and, on a cluster, reads through redis-py's
        cluster client and ``keys.py``'s cluster layout from then on. The client fails
        fast (2 s to connect, 5 s to answer) and reconnects by itself after a Redis
        restart. Raises ``InvalidQueryError``
        for a malformed URL; the message never contains the password.
        """
        url = _valid_url(url)
        try:
            client = aioredis.Redis.from_url(url, **_client_options())
        except (ValueError, TypeError) as exc:
            reason = _one_line(_scrub(str(exc), *_passwords_of(url)))
            raise InvalidQueryError(f"invalid Redis URL {_redacted(url)}: {reason}") from None
        store = cls(client, prefix=prefix, scan_limit=scan_limit)
        store._owns_client = True
        store._url = url
        store._is_cluster = None
        return store

    @property
    def skipped_index_entries(self) -> int:
        """How many corrupt index, slow or error-set members queries have skipped so far."""
        return self._skipped_index_entries

    async def aclose(self) -> None:
        """Close the client if the store created it; a client passed in is left open."""
        if self._owns_client:
            self._owns_client = False
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _pipelined(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        """Replies to read-only ``commands``, in order, in pipelines of bounded size."""
        replies: list[Any] = []
        for first in range(0, len(commands), _PIPELINE_CHUNK):
            chunk = commands[first : first + _PIPELINE_CHUNK]
            replies.extend(await self._read(chunk[0][0], functools.partial(self._run, chunk)))
        return replies

    async def _run(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        # A new pipeline per attempt: _read may retry, and an executed pipeline is empty.
        pipe = self._client.pipeline(transaction=False)
        try:
            for name, *arguments in commands:
                pipe.execute_command(name, *arguments)
            return list(await pipe.execute())
        finally:
            await pipe.reset()  # type: ignore[no-untyped-call]  # unannotated in redis-py

    def _trace_id_member(self, member: object) -> str | None:
        """A slow or error set member as a trace id, or None (counted) when it is not one."""
        if isinstance(member, bytes):
            try:
                member = member.decode("ascii")
            except UnicodeDecodeError:
                member = None
        if isinstance(member, str):
            member = member.lower()
            if is_valid_trace_id(member):
                return member
        self._skipped_index_entries += 1
        return None

    async def _ensure_layout(self) -> None:
        """Find out, once, whether the URL's node belongs to a Redis Cluster; if so,
        read through redis-py's cluster client from now on (``keys.py``'s cluster
        layout). A node that refuses ``INFO`` is taken as a single Redis."""
        if self._is_cluster is not None:
            return
        # One probe at a time: concurrent first queries wait for it, so the plain
        # client is closed only when no query still uses it.
        loop = asyncio.get_running_loop()
        if self._layout_lock is None or self._layout_lock_loop is not loop:
            self._layout_lock, self._layout_lock_loop = asyncio.Lock(), loop
        async with self._layout_lock:
            if self._knows_layout():
                return  # a concurrent query found out first
            await self._detect_layout()

    async def _detect_layout(self) -> None:
        url = self._url
        info = await self._attempt("INFO", self._cluster_info)
        if url is None or str(info.get("cluster_enabled", "0")) != "1":
            self._is_cluster = False
            return
        try:
            cluster = RedisCluster.from_url(url, **_client_options())
        except (ValueError, TypeError, RedisClusterException) as exc:
            raise self._error("CLUSTER", exc) from exc
        plain, self._client = self._client, cluster
        self._is_cluster = True
        await plain.aclose()

    def _knows_layout(self) -> bool:
        # A method, not an inline test: mypy would keep the narrowing across the await.
        return self._is_cluster is not None

    async def _cluster_info(self) -> dict[str, Any]:
        try:
            return dict(await self._client.info("cluster"))
        except ResponseError:
            return {}

    def _stored_keys(self, key: str) -> tuple[str, ...]:
        """The keys ``key`` is stored under: itself, or its shards on Redis Cluster
        (after ``_ensure_layout``)."""
        if self._is_cluster and keys.is_cluster_sharded(key, prefix=self._prefix):
            return keys.cluster_shard_keys(key)
        return (key,)

    async def _across_shards(
        self, command: str, key: str, queue: Callable[[Any, str], object]
    ) -> list[Any]:
        """One reply per key ``key`` is stored under, in shard order: ``queue(pipe,
        stored_key)`` adds each one's command to a pipeline (one round trip per node)."""
        await self._ensure_layout()
        stored = self._stored_keys(key)

        async def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            try:
                for stored_key in stored:
                    queue(pipe, stored_key)
                return list(await pipe.execute())
            finally:
                await pipe.reset()  # type: ignore[no-untyped-call]  # unannotated in redis-py

        return await self._read(command, run)

    async def _read(self, command: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run one read command (after ``_ensure_layout``), translating redis-py
        failures into asynctrace's errors."""
        await self._ensure_layout()
        return await self._attempt(command, call)

    async def _attempt(self, command: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run one read command, translating redis-py failures into asynctrace's errors.

        A pooled connection that Redis dropped (it restarted) fails its next command
        with a plain ConnectionError, and a client without retries (redis-py's
        ``from_url`` default) hands that failure to us. The command is a read, so one
        immediate second attempt on a fresh connection is safe, and it makes "the
        first query after a restart" work with any client.
        """
        try:
            return await call()
        except RedisConnectionError as exc:
            if type(exc) is not RedisConnectionError:  # auth, loading, pool full: final
                raise self._error(command, exc) from exc
        except (RedisError, OSError, RedisClusterException) as exc:
            raise self._error(command, exc) from exc
        try:
            return await call()
        except (RedisError, OSError, RedisClusterException) as exc:
            raise self._error(command, exc) from exc

    def _error(self, command: str, exc: BaseException) -> AsynctraceError:
        """The message names host:port and the cause, never the password, on one line."""
        where = self._where()
        redis_at = f"Redis at {where}" if where else "Redis"
        if isinstance(exc, _UNAVAILABLE):
            return StoreUnavailableError(f"{redis_at} is unavailable: {self._cause(exc)}")
        return AsynctraceError(f"{redis_at} rejected {command}: {self._cause(exc)}")

    def _connection_kwargs(self) -> dict[str, Any]:
        pool = getattr(self._client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", None)
        if isinstance(self._client, RedisCluster):
            kwargs = dict(self._client.connection_kwargs)
            node = self._client.get_default_node()
            if node is not None:
                kwargs.update(host=node.host, port=node.port)
        return kwargs if isinstance(kwargs, dict) else {}

    def _where(self) -> str:
        """``host:port`` (or the unix socket) of the client, "" when it does not say."""
        kwargs = self._connection_kwargs()
        if kwargs.get("path"):
            return f"unix:{kwargs['path']}"
        if "host" in kwargs:
            return f"{kwargs['host']}:{kwargs.get('port', 6379)}"
        return ""

    def _cause(self, exc: BaseException) -> str:
        password = self._connection_kwargs().get("password")
        return _one_line(f"{type(exc).__name__}: {_scrub(str(exc) or 'no details', password)}")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _score_pairs(reply: object) -> list[tuple[str, float]]:
    """``(member, score)`` of a ZRANGE WITHSCORES reply (RESP2 or RESP3, bytes or str)."""
    pairs: list[tuple[str, float]] = []
    if not isinstance(reply, list):
        return pairs
    for row in reply:
        if isinstance(row, tuple | list) and len(row) == 2:
            try:
                pairs.append((_text(row[0]), float(row[1])))
            except (TypeError, ValueError):
                continue
    return pairs


def _passwords_of(url: str) -> list[str]:
    """Every password ``url`` may carry: in its user info or a ``password=`` query option."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = parse_qs(parts.query).get("password", [])
    if parts.password:
        found.extend((parts.password, unquote(parts.password)))
    return found


def _redacted(url: str) -> str:
    """``scheme://host:port`` of ``url`` without credentials, path or query."""
    if "://" not in url:
        return "(no scheme://)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable)"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ":(invalid port)"
    return f"{parts.scheme or '(no scheme)'}://{parts.hostname or ''}{port}"


def _scrub(text: str, *passwords: object) -> str:
    for password in passwords:
        if isinstance(password, str) and password:
            text = text.replace(password, "***")
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())
