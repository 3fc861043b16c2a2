"""A pre-fork server (workers forked after ``configure()``): each worker exports its
own spans on its own loop and connections, and spans the parent had queued are
exported once, by the parent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter

import aiohttp
import redis.asyncio as aioredis

from asynctrace.testing import RedisServer, free_port
from tests.faults.conftest import ROOT

REQUESTS = 60


async def stored_operations(url: str) -> tuple[Counter[str], set[str]]:
    """How many stored spans each operation has, and the pids the workers tagged."""
    client = aioredis.Redis.from_url(url)
    operations: Counter[str] = Counter()
    pids: set[str] = set()
    try:
        async for key in client.scan_iter(match="trace:" + "?" * 32):
            for entry in await client.lrange(key, 0, -1):
                span = json.loads(entry)
                operations[span["operation"]] += 1
                if "pid" in span["tags"]:
                    pids.add(span["tags"]["pid"])
    finally:
        await client.aclose()
    return operations, pids


async def test_workers_forked_after_configure_export_their_own_spans(
    own_redis: RedisServer,
) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.prefork",
        "--port",
        str(port),
        "--redis-url",
        own_redis.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode().split()
        assert line[:1] == ["ready"], line
        workers = set(line[1:])
        # A new connection per request, so the kernel spreads them over the workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(REQUESTS):
                async with asyncio.timeout(10), session.get(f"http://127.0.0.1:{port}/work") as r:
                    assert r.status == 200
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await process.communicate()
        assert process.returncode == 0, err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    operations, pids = await stored_operations(own_redis.url)
    assert operations == {
        "GET /work": REQUESTS,
        "compute": REQUESTS,
        "parent before fork": 1,
        "parent queued": 5,  # not 5 more per worker
    }
    assert pids
    assert pids <= workers
    assert "asynctrace" not in err.decode()
