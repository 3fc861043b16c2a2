from __future__ import annotations

import redis

from asynctrace.testing import RedisServer, free_port


def test_redis_server_starts_stops_and_restarts_on_the_same_port() -> None:
    with RedisServer() as server:
        port = server.port
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
        server.stop()
        server.start()
        assert server.port == port
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
    assert not server.directory.exists()


def test_free_port_is_not_listening() -> None:
    port = free_port()
    assert 0 < port < 65536
