"""The demo tells the seed's story from real traces: once in-process, once as a command.

Each run includes the 2.5 s slow checkout, so the demo runs exactly twice here.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import fakeredis
import pytest

import asynctrace
from asynctrace.demo import SERVICES, open_store, run_demo
from asynctrace.errors import StoreUnavailableError
from asynctrace.ids import is_valid_trace_id
from asynctrace.model import utc_day
from asynctrace.store import TraceStore
from asynctrace.testing import free_port

_REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(30)
async def test_demo_tells_the_slow_and_the_failed_story() -> None:
    out = io.StringIO()
    client = fakeredis.FakeAsyncRedis()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(15):  # a guard: the demo must stay under 15 s
            result = await run_demo(store_client=client, out=out, width=100)
        elapsed = time.perf_counter() - started
        store = TraceStore(client)
        slow = await store.get_trace(result.slow_trace_id)
        failed = await store.get_trace(result.error_trace_id)
        slow_ids = [trace_id for trace_id, _ in await store.slow_traces()]
        # The failed checkout's own day, not "today": the demo may end after midnight UTC.
        error_ids = [] if failed is None else await store.error_traces(utc_day(failed.start_time))
    finally:
        await client.aclose()
    text = out.getvalue()

    assert elapsed < 15
    assert [line[:5] for line in text.splitlines() if line.startswith("[")] == [
        f"[{phase}/5]" for phase in range(1, 6)
    ]
    assert "answered 200" in text
    assert "answered 502" in text
    # The slow checkout: orders held the critical path for nearly all of it.
    assert slow is not None
    assert set(slow.services) == set(SERVICES)
    assert 2450 <= slow.total_duration < 4000
    assert "\norders is the bottleneck: 2,4" in text
    # ... and nearly all of that in one query, which the sentence names.
    assert ("on the critical path, in POST /orders/{order_id}/checkout \u2014 2,4") in text
    assert (
        " ms of it in postgres SELECT \u2026 FROM orders WHERE customer_id = ? "
        "ORDER BY created_at DESC\n"
    ) in text
    # The failed checkout: the gateway's 502 points at payment's exception.
    assert failed is not None
    assert failed.has_errors
    assert (
        "\npayment failed first: CardProcessorError: card processor unavailable "
        "(503 from acquirer) (in POST /charges), surfacing as HTTP 502 at api-gateway\n"
    ) in text
    # Both waterfalls and both lists were printed, with the ids a user would copy.
    assert f"asynctrace show {result.slow_trace_id}" in text
    assert f"asynctrace show {result.error_trace_id}" in text
    assert text.count("█ critical path") == 2
    assert slow_ids == [result.slow_trace_id]
    assert error_ids == [result.error_trace_id]
    assert f"\n{result.slow_trace_id}  " in text.split("Slowest traces")[1]
    assert f"\n{result.error_trace_id}  " in text.split("Traces with errors")[1]
    # Every request made its own trace, and the tracer was put back as it was.
    assert len(set(result.trace_ids)) == len(result.trace_ids) == 22
    assert all(is_valid_trace_id(trace_id) for trace_id in result.trace_ids)
    assert asynctrace.get_tracer() is None


async def test_demo_on_an_unreachable_redis_fails_before_starting() -> None:
    port = free_port()
    with pytest.raises(StoreUnavailableError) as raised:
        async with open_store(f"redis://:s3cret-pw@127.0.0.1:{port}/0"):
            pytest.fail("the store opened")
    assert f"127.0.0.1:{port}" in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)


def test_demo_command_runs_on_the_embedded_store() -> None:
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env["COLUMNS"] = "100"
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "asynctrace.cli", "demo"],
        cwd=_REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ""
    assert finished.stdout.startswith("store: embedded in-process store (fakeredis)")
    assert "orders is the bottleneck" in finished.stdout
    assert "payment failed first" in finished.stdout
    assert "\x1b[" not in finished.stdout  # not a terminal: no colour
    assert elapsed < 15
