"""Fixtures of the Redis Cluster tests: one local 3 + 3 cluster for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from asynctrace.testing import RedisClusterServer


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    cluster = RedisClusterServer(Path(tmp_path_factory.mktemp("cluster")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterServer) -> str:
    """A URL of one node of the session's cluster, every master emptied first.

    The node is a replica in some tests (a failover turns masters into replicas):
    any node must do.
    """
    for port in redis_cluster.ports:
        with sync_redis.Redis(port=port) as node:
            if node.info("replication")["role"] == "master":
                node.flushdb()
    return redis_cluster.url
