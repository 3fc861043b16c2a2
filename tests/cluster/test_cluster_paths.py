"""The tracer, the store, the CLI and the dashboard on a real 3 + 3 Redis Cluster.

Each test points the ordinary ``redis_url`` at one node of the session's cluster:
the cluster is detected and nothing else changes for the user.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result
from pytest_aiohttp import AiohttpClient
from redis.asyncio.cluster import RedisCluster as ClusterClient

import asynctrace
from asynctrace import keys
from asynctrace.cli import main
from asynctrace.model import utc_day
from asynctrace.store import TraceStore
from asynctrace.tracer import reset_tracer
from asynctrace.web import create_app
from tests.cli.cli_traces import (
    FAILED_ID,
    SEED_ID,
    export,
    failed_trace,
    fast_trace,
    recent_start,
    seed_trace,
)

T0 = recent_start()
TRACES = 60


@pytest.fixture
async def traced(cluster_url: str) -> AsyncIterator[list[str]]:
    """TRACES live traces (root + child; every 4th fails) exported by the tracer."""
    tracer = asynctrace.configure(
        service="checkout", redis_url=cluster_url, slow_threshold_ms=0.0, batch_size=16
    )
    trace_ids: list[str] = []
    try:
        for number in range(TRACES):
            try:
                async with asynctrace.span("POST /checkout", kind="server") as root:
                    trace_ids.append(root.trace_id)
                    async with asynctrace.span("charge card"):
                        if number % 4 == 0:
                            raise RuntimeError("card declined")
            except RuntimeError:
                pass
        assert await asynctrace.flush(timeout_s=10)
        health = tracer.stats()
        assert (health.dropped, health.failed_batches, health.queued) == (0, 0, 0)
        yield trace_ids
    finally:
        await asynctrace.shutdown()
        reset_tracer()


async def test_spans_exported_through_a_cluster_url_read_back_whole(
    traced: list[str], cluster_url: str
) -> None:
    async with TraceStore.from_url(cluster_url) as store:
        for number, trace_id in enumerate(traced):
            trace = await store.get_trace(trace_id)
            assert trace is not None
            operations = sorted(span.operation for span in trace.spans)
            assert operations == ["POST /checkout", "charge card"]
            assert trace.has_errors is (number % 4 == 0)
        slow = await store.slow_traces(limit=TRACES)
        assert sorted(trace_id for trace_id, _ in slow) == sorted(traced)
        durations = [duration for _, duration in slow]
        assert durations == sorted(durations, reverse=True)
        assert await store.error_traces() == sorted(traced[::4])
        recent = await store.recent_traces(limit=TRACES + 1)
        assert {row.trace_id for row in recent} == set(traced)
        failed = await store.search(status="error", limit=TRACES)
        assert {row.trace_id for row in failed} == set(traced[::4])
        [row] = await store.stats()
        assert (row.service, row.operation) == ("checkout", "POST /checkout")
        assert (row.current.count, row.current.errors) == (TRACES, TRACES // 4)
        assert row.current.max_ms == max(durations)


async def test_the_global_indexes_are_spread_over_the_masters(
    traced: list[str], cluster_url: str
) -> None:
    client = ClusterClient.from_url(cluster_url)
    try:
        # The single-Redis keys stay unwritten; their shards hold the members.
        sharded = [
            keys.slow_key(),
            keys.index_key(),
            keys.errors_key(utc_day(T0)),
            keys.operation_index_key(keys.hour_of(T0 + 600_000)),
        ]
        for key in sharded:
            assert await client.exists(key) == 0
        slow_nodes = set()
        members = 0
        for shard_key in keys.cluster_shard_keys(keys.slow_key()):
            count = await client.zcard(shard_key)
            members += count
            if count:
                slow_nodes.add(client.get_node_from_key(shard_key).name)
        assert members == TRACES
        assert len(slow_nodes) == 3  # every master takes a share of the writes
    finally:
        await client.aclose()


def run(redis_url: str, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["--redis-url", redis_url, *args],
        env={"COLUMNS": "80", "REDIS_URL": None},
        catch_exceptions=False,
    )


def test_the_cli_reads_a_cluster(cluster_url: str) -> None:
    export(cluster_url, [*seed_trace(T0), *failed_trace(T0 + 5000), *fast_trace(T0 + 9000)])
    shown = run(cluster_url, "show", SEED_ID)
    assert shown.exit_code == 0
    assert shown.stdout.splitlines()[-1] == (
        "orders is the bottleneck: 2,500 ms of 2,565 ms (97%) on the critical path, "
        "in GET /orders/{id}"
    )
    slow = run(cluster_url, "slow")
    assert slow.exit_code == 0
    assert SEED_ID in slow.stdout
    assert FAILED_ID not in slow.stdout
    errors = run(cluster_url, "errors", "--day", utc_day(T0 + 5000))
    assert errors.exit_code == 0
    assert FAILED_ID in errors.stdout
    recent = run(cluster_url, "recent")
    assert recent.exit_code == 0
    assert [SEED_ID[:8] in recent.stdout, FAILED_ID[:8] in recent.stdout] == [True, True]
    stats = run(cluster_url, "stats")
    assert stats.exit_code == 0
    assert "POST /charges" in stats.stdout
    service_map = run(cluster_url, "map")
    assert service_map.exit_code == 0


@pytest.fixture
async def dashboard(aiohttp_client: AiohttpClient, cluster_url: str) -> AsyncIterator[TestClient]:
    async with TraceStore.from_url(cluster_url) as store:
        yield await aiohttp_client(create_app(store))


async def test_the_dashboard_reads_a_cluster(dashboard: TestClient, cluster_url: str) -> None:
    # Exported from a worker thread: export() runs its own asyncio.run.
    import asyncio

    spans = [*seed_trace(T0), *failed_trace(T0 + 5000)]
    await asyncio.to_thread(export, cluster_url, spans)
    health = await dashboard.get("/api/health")
    assert health.status == 200
    recent = await (await dashboard.get("/api/recent")).json()
    assert {row["trace_id"] for row in recent["traces"]} == {SEED_ID, FAILED_ID}
    trace = await dashboard.get(f"/api/traces/{SEED_ID}")
    assert trace.status == 200
    assert len((await trace.json())["spans"]) == 4
    page = await dashboard.get("/")
    assert page.status == 200
    assert FAILED_ID in await page.text()
    for path in ("/stats", "/map", f"/traces/{FAILED_ID}"):
        assert (await dashboard.get(path)).status == 200


async def test_a_cluster_client_given_directly_works_for_exporter_and_store(
    cluster_url: str,
) -> None:
    from asynctrace.export import RedisExporter

    client = ClusterClient.from_url(cluster_url)
    try:
        exporter = RedisExporter(client=client)  # type: ignore[arg-type]  # any client
        await exporter.export([*seed_trace(T0), *failed_trace(T0 + 5000)])
        await exporter.shutdown()
        store = TraceStore(client)
        assert [trace_id for trace_id, _ in await store.slow_traces()] == [SEED_ID]
        assert await store.error_traces(utc_day(T0 + 5000)) == [FAILED_ID]
        trace = await store.get_trace(FAILED_ID)
        assert trace is not None
        assert len(trace.spans) == 3
        await store.aclose()  # a given client stays open
        assert await client.exists(keys.trace_key(SEED_ID)) == 1
    finally:
        await client.aclose()


async def test_concurrent_first_queries_agree_on_one_cluster_client(cluster_url: str) -> None:
    import asyncio

    await asyncio.to_thread(export, cluster_url, seed_trace(T0))
    async with TraceStore.from_url(cluster_url) as store:
        slow, recent, trace = await asyncio.gather(
            store.slow_traces(), store.recent_traces(), store.get_trace(SEED_ID)
        )
        assert [trace_id for trace_id, _ in slow] == [SEED_ID]
        assert [row.trace_id for row in recent] == [SEED_ID]
        assert trace is not None
        client = store._client
        assert isinstance(client, ClusterClient)
        await store.slow_traces()
        assert store._client is client


async def test_the_map_and_the_weekly_pattern_read_a_cluster(cluster_url: str) -> None:
    import asyncio

    from asynctrace.model import Span

    calls = [
        Span.from_dict(
            {
                "traceId": f"{number + 1:032x}",
                "spanId": f"{number + 1:016x}",
                "parentSpanId": "00f067aa0ba902b7",
                "service": "orders",
                "operation": "GET /orders/{id}",
                "kind": "server",
                "startTime": T0 + number,
                "duration": 20.0,
                "status": "error" if number < 3 else "ok",
                "tags": {"peer.service": "gateway"},
                "logs": [],
            }
        )
        for number in range(30)
    ]
    await asyncio.to_thread(export, cluster_url, calls)
    async with TraceStore.from_url(cluster_url) as store:
        [edge] = await store.service_map()
        assert (edge.caller, edge.callee) == ("gateway", "orders")
        assert (edge.stats.count, edge.stats.errors) == (30, 3)
        pattern = await store.patterns("orders", "GET /orders/{id}", weeks=1)
        assert sum(cell.count for cell in pattern.cells) == 30
