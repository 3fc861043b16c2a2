"""The demo's traces, plus four weeks of history, in a fakeredis server for the browser tests.

The demo takes about 3 s (its slow checkout waits 2.45 s), so the test session runs
it once (``demo_data`` in ``conftest.py``) and each test serves the same server's
data. The Patterns page needs weeks of requests the demo cannot make in seconds:
``history`` writes them at past hours counted back from the present, so the data is
alive and shaped the same on any date.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from dataclasses import dataclass

import fakeredis

from asynctrace.demo import DemoResult, run_demo
from asynctrace.export import RedisExporter
from asynctrace.model import Span

__all__ = ["PATTERN_OPERATION", "PATTERN_SERVICE", "DemoData", "fill_demo_server", "history"]

HOUR_MS = 3_600_000.0
WEEK_MS = 168 * HOUR_MS
PATTERN_SERVICE = "reports"
PATTERN_OPERATION = "GET /reports/{report_id}"
_HOT_HOURS_AGO = (20, 21)


@dataclass(frozen=True, slots=True)
class DemoData:
    """The demo's result, the fakeredis server holding its traces and the history,
    and the hours (back from the present, each week) the history makes slow."""

    result: DemoResult
    server: fakeredis.FakeServer
    hot_hours_ago: tuple[int, ...]


def history(now_ms: float) -> list[Span]:
    """Four weeks of a report endpoint over twenty hours of a day (12 to 31 hours
    back from this one, and the same hours of each week before), slow in the hours
    of ``_HOT_HOURS_AGO`` (the latest within the day traces are kept)."""
    rng = random.Random(15)
    current_hour = now_ms // HOUR_MS * HOUR_MS
    spans: list[Span] = []
    for week in range(4):
        for hours_ago in range(12, 32):
            start_of_hour = current_hour - hours_ago * HOUR_MS - week * WEEK_MS
            is_hot = hours_ago in _HOT_HOURS_AGO
            # A busy and a quiet hour in turn; now and then an hour a little slower.
            typical = rng.uniform(60, 180) * (1.5 if hours_ago % 7 == 0 else 1.0)
            for _ in range(24 if is_hot or hours_ago % 3 else 4):
                number = len(spans) + 1
                duration = rng.uniform(900, 1400) if is_hot else typical * rng.uniform(0.8, 1.2)
                spans.append(
                    Span.from_dict(
                        {
                            "traceId": f"{number:032x}",
                            "spanId": f"{number:016x}",
                            "parentSpanId": None,
                            "service": PATTERN_SERVICE,
                            "operation": PATTERN_OPERATION,
                            "kind": "server",
                            "startTime": start_of_hour + rng.uniform(0, HOUR_MS - 2_000),
                            "duration": duration,
                            "status": "ok",
                            "tags": {},
                        }
                    )
                )
    return spans


def fill_demo_server() -> DemoData:
    """Run the demo and write the history into a new fakeredis server, on a loop of
    its own (call it where no loop runs)."""
    server = fakeredis.FakeServer()

    async def fill() -> DemoResult:
        client = fakeredis.FakeAsyncRedis(server=server)
        try:
            async with asyncio.timeout(30):  # a guard: the demo takes about 3 s
                result = await run_demo(store_client=client, out=io.StringIO())
                exporter = RedisExporter(client=client)
                try:
                    await exporter.export(history(time.time() * 1000.0))
                finally:
                    await exporter.shutdown()
            return result
        finally:
            await client.aclose()

    return DemoData(result=asyncio.run(fill()), server=server, hot_hours_ago=_HOT_HOURS_AGO)
