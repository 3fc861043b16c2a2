"""A master of the cluster fails over to its replica while spans are being exported."""

from __future__ import annotations

import asyncio

import pytest

import asynctrace
from asynctrace.store import TraceStore
from asynctrace.testing import RedisClusterServer
from asynctrace.tracer import reset_tracer


async def make_traces(count: int) -> list[str]:
    """``count`` requests of two spans each, every 5th failing; their trace ids."""
    trace_ids = []
    for number in range(count):
        try:
            async with asynctrace.span("GET /cart", kind="server") as root:
                trace_ids.append(root.trace_id)
                async with asynctrace.span("load cart"):
                    if number % 5 == 0:
                        raise KeyError("cart")
        except KeyError:
            pass
    return trace_ids


async def test_export_rides_over_a_failover_and_keeps_what_was_acknowledged(
    redis_cluster: RedisClusterServer, cluster_url: str
) -> None:
    tracer = asynctrace.configure(
        service="cart", redis_url=cluster_url, slow_threshold_ms=0.0, batch_size=8,
        max_delay_s=0.01,
    )  # fmt: skip
    try:
        acknowledged = await make_traces(40)
        assert await asynctrace.flush(timeout_s=10)

        async with TraceStore.from_url(cluster_url) as store:
            assert len(await store.slow_traces(limit=100)) == 40  # the store's client is up
            replica = (await asyncio.to_thread(redis_cluster.replica_ports))[0]
            failover = asyncio.create_task(asyncio.to_thread(redis_cluster.failover, replica))
            during: list[str] = []
            rounds = 0
            # Spans keep ending and being exported while the roles change; a flush may
            # fail then (the batch stays queued and is retried), but never raises.
            while not failover.done() or rounds < 3:
                during += await make_traces(10)
                await asynctrace.flush(timeout_s=5)
                rounds += 1
            await failover
            after = await make_traces(10)
            # The cluster may still be settling (a node learning the new roles): a
            # flush that meets that fails, the spans stay queued, and the next one
            # sends them. Export must succeed within a few attempts.
            flushed = [await asynctrace.flush(timeout_s=30) for _ in range(1)]
            while not flushed[-1] and len(flushed) < 20:
                flushed.append(await asynctrace.flush(timeout_s=30))
            assert flushed[-1]
            health = tracer.stats()
            assert (health.dropped, health.queued) == (0, 0)

            durations = []
            for trace_id in acknowledged + during + after:
                trace = await store.get_trace(trace_id)
                assert trace is not None
                assert {span.operation for span in trace.spans} == {"GET /cart", "load cart"}
                assert trace.root is not None
                durations.append(trace.root.duration)
            # The slow shards merge into the overall top 100, whichever node held them.
            slow = [duration for _, duration in await store.slow_traces(limit=100)]
            assert slow == pytest.approx(sorted(durations, reverse=True)[:100], abs=0.001)
            errors = set(await store.error_traces())
            assert errors >= set(acknowledged[::5])
            recent = {row.trace_id for row in await store.recent_traces(limit=1000)}
            assert recent >= set(after)
        # The old master rejoined as a replica: three of each again.
        assert len(await asyncio.to_thread(redis_cluster.replica_ports)) == 3
    finally:
        await asynctrace.shutdown()
        reset_tracer()
