from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import fakeredis
import pytest
import redis.asyncio as aioredis
from blockbuster import BlockBuster, blockbuster_ctx

import asynctrace
from asynctrace import _ratelimit
from asynctrace.export import InMemoryExporter
from asynctrace.testing import RedisServer
from asynctrace.tracer import Tracer, reset_tracer

# fakeredis reads its command table from disk on first use; do it here, outside any
# event loop, so the blockbuster fixture does not flag it inside a test.
fakeredis.FakeRedis().ping()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's own redis-server, emptied before each test."""
    redis_server.start()  # an outage test may have left it stopped
    import redis as sync_redis

    with sync_redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


@pytest.fixture(params=["fake", "real"])
async def redis(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[aioredis.Redis]:
    """An async Redis client: fakeredis, then the session's real redis-server (emptied)."""
    if request.param == "fake":
        client: aioredis.Redis = fakeredis.FakeAsyncRedis()
    else:
        await redis_server.start_async()
        client = aioredis.Redis.from_url(redis_server.url)
        await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def exporter() -> InMemoryExporter:
    return InMemoryExporter()


@pytest.fixture
async def tracer(exporter: InMemoryExporter) -> AsyncIterator[Tracer]:
    """The global tracer, exporting to memory; reset after the test."""
    tracer = asynctrace.configure(service="test-service", exporter=exporter)
    try:
        yield tracer
    finally:
        await asynctrace.shutdown()
        reset_tracer()


@pytest.fixture(autouse=True)
def _fresh_internal_error_log() -> None:
    _ratelimit.reset_for_tests()


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test whose event loop makes a blocking call."""
    with blockbuster_ctx() as bb:
        for function in bb.functions.values():
            # redis-py reads its own package version from disk for each new connection
            # (redis/utils.py get_lib_version); that is redis-py's, not ours to fix.
            function.can_block_in("redis/utils.py", "get_lib_version")
            # asyncpg looks for ~/.pgpass on each connect without a password.
            function.can_block_in("asyncpg/connect_utils.py", "_read_password_file")
        yield bb


POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"
"""The machine's PostgreSQL (trust auth, loopback: no TLS, whose setup reads files on the loop)."""


@pytest.fixture
async def postgres_dsn() -> str:
    """``POSTGRES_DSN`` once it answers; outside CI a missing server skips, in CI it fails."""
    import asyncpg

    try:
        async with asyncio.timeout(5):
            connection = await asyncpg.connect(POSTGRES_DSN)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_DSN} is required in CI: {exc!r}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_DSN} (outside CI): {exc!r}")
    await connection.close()
    return POSTGRES_DSN
