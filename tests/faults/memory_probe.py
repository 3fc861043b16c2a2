"""Spans made at a steady rate while Redis is down, in a process of their own: prints
the process's RSS each second and the export health at the end, as JSON.

    python -m tests.faults.memory_probe --rate 2000 --seconds 10 --max-queue 2000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time

import asynctrace
from asynctrace.testing import free_port

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:  # one small read per second
        return int(statm.read().split()[1]) * _PAGE


async def produce(rate: int, seconds: float) -> dict[str, object]:
    made = 0
    samples: list[int] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    tick_s = 0.01
    per_tick = max(1, int(rate * tick_s))
    next_sample = start
    while (now := loop.time()) < start + seconds:
        if now >= next_sample:
            samples.append(rss_bytes())
            next_sample += 1.0
        for _ in range(per_tick // 2):  # a request: a server span and a child
            async with asynctrace.span("GET /work", kind="server", tags={"http.path": "/w"}):
                async with asynctrace.span("compute", tags={"n": str(made)}):
                    pass
            made += 2
        await asyncio.sleep(tick_s)  # the producer's pace
    samples.append(rss_bytes())
    return {"made": made, "rss": samples, "stats": dataclasses.asdict(asynctrace.stats())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--max-queue", type=int, required=True)
    options = parser.parse_args()
    # A port nothing listens on: Redis is down for the whole run.
    asynctrace.configure(
        service="memory",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        max_queue=options.max_queue,
    )
    started = time.monotonic()
    result = asyncio.run(produce(options.rate, options.seconds))
    result["elapsed_s"] = time.monotonic() - started
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
