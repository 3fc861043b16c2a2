"""Memory stays flat while Redis is down.

The issue's probe ran 3 minutes at 1,000 spans/s against a queue of 20,000 (9 times
the bound). Scaled to run in seconds with the same shape: 12 s at 2,000 spans/s
against a queue of 2,000 (12 times the bound, the queue full after 1 s): resident
memory after the queue filled must not grow with the spans still coming.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tests.faults.conftest import ROOT

RATE = 2000
SECONDS = 12
MAX_QUEUE = 2000
# Allocator noise (arenas, the first log line, a reconnect's buffers); the spans of
# the run, were they kept, would be over 20 MB (24,000 spans of about 1 kB).
GROWTH_BOUND_BYTES = 4 * 1024 * 1024


async def test_memory_stays_flat_while_redis_is_down() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.memory_probe",
        "--rate",
        str(RATE),
        "--seconds",
        str(SECONDS),
        "--max-queue",
        str(MAX_QUEUE),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    async with asyncio.timeout(50):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    stats = result["stats"]
    made = result["made"]
    assert made >= 6 * MAX_QUEUE  # far over the bound, even on a slow machine
    assert stats["exported"] == 0
    assert stats["queued"] <= MAX_QUEUE
    assert stats["exported"] + stats["dropped"] + stats["queued"] == made
    rss = result["rss"]
    # From the third second on (the queue full since the first), RSS is flat.
    settled = rss[3:]
    assert max(settled) - settled[0] <= GROWTH_BOUND_BYTES, rss
    lines = err.decode().splitlines()
    # Redis down for the whole run: a handful of lines, not one per failure.
    assert len([line for line in lines if "asynctrace" in line]) <= 4, lines
