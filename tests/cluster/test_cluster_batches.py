"""How a batch reaches a cluster: translated to the cluster layout, one round trip
per node."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterNode

from asynctrace import keys
from asynctrace.export import RedisExporter
from asynctrace.export._cluster import ShardedCommands
from asynctrace.model import Span
from tests.cli.cli_traces import recent_start


class RecordingPipe:
    """Stands in for a cluster pipeline: records each command as text."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []

    def execute_command(self, name: str, *arguments: bytes) -> None:
        self.commands.append((name, *(argument.decode() for argument in arguments)))


def shard_key(key: str, member: str) -> str:
    return keys.cluster_shard_keys(key)[keys.cluster_shard_of(member)]


def test_members_go_to_their_shards_and_key_wide_commands_to_the_shards_touched() -> None:
    pipe = RecordingPipe()
    commands = ShardedCommands(pipe, 86_400, "trace:")
    first, second = "4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"
    assert keys.cluster_shard_of(first) != keys.cluster_shard_of(second)
    commands.command("ZADD", "trace:slow", "GT", "1500.0", first, "2500.0", second)
    commands.command("ZREMRANGEBYRANK", "trace:slow", "0", "-101")
    commands.command("ZREMRANGEBYRANK", "trace:index", "0", str(-(keys.INDEX_MAX_ENTRIES + 1)))
    commands.command("SADD", "trace:errors:2026-11-27", first)
    commands.command("EXPIRE", "trace:errors:2026-11-27", "604800")
    commands.rpush_one_and_expire(keys.trace_key(first), "{}")
    slow = sorted([shard_key("trace:slow", first), shard_key("trace:slow", second)])
    errors = shard_key("trace:errors:2026-11-27", first)
    assert sorted(pipe.commands[:2]) == sorted(
        [
            ("ZADD", shard_key("trace:slow", first), "GT", "1500.0", first),
            ("ZADD", shard_key("trace:slow", second), "GT", "2500.0", second),
        ]
    )
    assert pipe.commands[2:4] == [("ZREMRANGEBYRANK", key, "0", "-101") for key in slow]
    # The index was not written in this batch: every shard is trimmed, to its share.
    share = str(-(keys.CLUSTER_INDEX_MAX_ENTRIES + 1))
    assert pipe.commands[4:12] == [
        ("ZREMRANGEBYRANK", key, "0", share) for key in keys.cluster_shard_keys("trace:index")
    ]
    assert pipe.commands[12:] == [
        ("SADD", errors, first),
        ("EXPIRE", errors, "604800"),
        ("RPUSH", f"trace:{first}", "{}"),
        ("EXPIRE", f"trace:{first}", "86400"),
    ]
    assert commands.count == len(pipe.commands)


async def test_a_batch_costs_one_round_trip_per_node(
    cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips: Counter[str] = Counter()
    send = ClusterNode.execute_pipeline

    async def counted(node: ClusterNode, commands: list[Any]) -> bool:
        trips[node.name] += 1
        return await send(node, commands)

    t0 = recent_start()
    spans = []
    for number in range(200):
        trace_id = f"{number + 1:032x}"
        span = Span(trace_id, f"{number + 1:016x}", None, "orders", "GET /orders/{id}")
        span.start_time = t0 + number
        span.duration = 1500.0 if number % 2 else 5.0
        span.status = "error" if number % 7 == 0 else "ok"
        span.kind = "server"
        spans.append(span)
    exporter = RedisExporter(cluster_url)
    try:
        await exporter.export(spans[:1])  # detects the cluster and learns its slots
        monkeypatch.setattr(ClusterNode, "execute_pipeline", counted)
        await exporter.export(spans)
    finally:
        await exporter.shutdown()
    assert sorted(trips.values()) == [1, 1, 1]  # three masters, each written to once
