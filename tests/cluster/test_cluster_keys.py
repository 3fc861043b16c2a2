"""The cluster layout of ``keys.py``: which keys are sharded, and where shards land."""

from __future__ import annotations

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from asynctrace import keys


def test_each_shard_lands_in_its_own_share_of_the_slots() -> None:
    shares = [
        key_slot(shard.encode()) * keys.CLUSTER_SHARDS // REDIS_CLUSTER_HASH_SLOTS
        for shard in keys.cluster_shard_keys("trace:slow")
    ]
    assert shares == list(range(keys.CLUSTER_SHARDS))


def test_the_keys_every_batch_writes_are_sharded_and_per_trace_keys_are_not() -> None:
    hour = "2026-11-27T09"
    pair = keys.pair_member("orders", "GET /x:ops")
    sharded = [
        keys.slow_key(),
        keys.index_key(),
        keys.errors_key("2026-11-27"),
        keys.operation_index_key(hour),
        keys.max_key(hour),
        keys.edge_index_key(hour),
    ]
    single = [
        keys.trace_key("4bf92f3577b34da6a3ce929d0e0e4736"),
        keys.aggregate_key(hour, pair),
        keys.edge_key(hour, pair),
    ]
    assert all(keys.is_cluster_sharded(key) for key in sharded)
    assert not any(keys.is_cluster_sharded(key) for key in single)
    assert keys.is_cluster_sharded("app:slow", prefix="app:")
    assert not keys.is_cluster_sharded("trace:slow", prefix="app:")


def test_a_member_always_goes_to_the_same_shard() -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    shard = keys.cluster_shard_of(trace_id)
    assert 0 <= shard < keys.CLUSTER_SHARDS
    assert keys.cluster_shard_of(trace_id) == shard
    spread = {keys.cluster_shard_of(f"{number:032x}") for number in range(1, 200)}
    assert spread == set(range(keys.CLUSTER_SHARDS))
