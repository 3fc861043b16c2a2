"""The dashboard as a new user sees it: headless Chromium at 1400 x 1000 on the demo's data.

The demo runs once for the module (its slow checkout takes 2.5 s) into a fakeredis
server; each test serves that server's data to Chromium, checks what issue 15 found
wrong on one page, and saves a screenshot of the page to ``artifacts/screenshots/``
(``ASYNCTRACE_ARTIFACTS`` moves the directory). The Patterns page also needs weeks
of history the demo cannot make in seconds: four weeks of requests are written
through ``RedisExporter`` at past hours, relative to the present so the test passes
on any date.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import fakeredis
import pytest
from aiohttp.test_utils import TestServer
from page_problems import PageProblems

from asynctrace.demo import DemoResult, run_demo
from asynctrace.export import RedisExporter
from asynctrace.model import Span
from asynctrace.store import TraceStore
from asynctrace.web import create_app

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1400, "height": 1000}
HOUR_MS = 3_600_000.0
WEEK_MS = 168 * HOUR_MS
PATTERN_SERVICE = "reports"
PATTERN_OPERATION = "GET /reports/{report_id}"


def _artifacts() -> Path:
    configured = os.environ.get("ASYNCTRACE_ARTIFACTS")
    base = Path(configured) if configured else Path(__file__).resolve().parents[2] / "artifacts"
    return base / "screenshots"


@dataclass(frozen=True, slots=True)
class DemoData:
    """The demo's result and the fakeredis server holding its traces (and the history)."""

    result: DemoResult
    server: fakeredis.FakeServer
    hot_hours_ago: tuple[int, ...]


def _history(now_ms: float) -> tuple[list[Span], tuple[int, ...]]:
    """Four weeks of a report endpoint, slow for two hours a week (3 and 2 days ago at
    this hour, each week), fast the rest of the working day."""
    rng = random.Random(15)
    hot = (51, 52)  # hours back from now: the same two hours of every week
    current_hour = now_ms // HOUR_MS * HOUR_MS
    spans = []
    number = 0
    for week in range(4):
        for hours_ago in range(40, 60):
            start_of_hour = current_hour - hours_ago * HOUR_MS - week * WEEK_MS
            is_hot = hours_ago in hot
            for _ in range(24 if hours_ago % 3 else 4):
                number += 1
                duration = rng.uniform(900, 1400) if is_hot else rng.uniform(60, 180)
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
    return spans, hot


@pytest.fixture(scope="module")
def demo_data() -> Iterator[DemoData]:
    """Runs the demo (and writes the history) once, on a loop of its own."""
    server = fakeredis.FakeServer()

    async def fill() -> tuple[DemoResult, tuple[int, ...]]:
        client = fakeredis.FakeAsyncRedis(server=server)
        try:
            async with asyncio.timeout(30):  # a guard: the demo takes about 3 s
                result = await run_demo(store_client=client, out=io.StringIO())
                spans, hot = _history(time.time() * 1000.0)
                exporter = RedisExporter(client=client)
                await exporter.export(spans)
                await exporter.shutdown()
            return result, hot
        finally:
            await client.aclose()

    result, hot = asyncio.run(fill())
    yield DemoData(result=result, server=server, hot_hours_ago=hot)


@pytest.fixture
async def base_url(demo_data: DemoData) -> AsyncIterator[str]:
    client = fakeredis.FakeAsyncRedis(server=demo_data.server)
    server = TestServer(create_app(TraceStore(client)), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()
        await client.aclose()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def _screenshot(page: Page, name: str) -> None:
    directory = _artifacts()
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    await page.screenshot(path=directory / f"{name}.png", full_page=True)


async def test_slow_trace_page(page: Page, base_url: str, demo_data: DemoData) -> None:
    problems = PageProblems(page)
    await page.goto(f"{base_url}traces/{demo_data.result.slow_trace_id}")
    await _screenshot(page, "screen-slow-trace")
    assert problems.messages == []


async def test_failed_trace_page(page: Page, base_url: str, demo_data: DemoData) -> None:
    problems = PageProblems(page)
    await page.goto(f"{base_url}traces/{demo_data.result.error_trace_id}")
    await _screenshot(page, "screen-failed-trace")
    assert problems.messages == []


async def test_stats_page(page: Page, base_url: str) -> None:
    problems = PageProblems(page)
    await page.goto(f"{base_url}stats")
    await _screenshot(page, "screen-stats")
    assert problems.messages == []


async def test_map_page(page: Page, base_url: str) -> None:
    problems = PageProblems(page)
    await page.goto(f"{base_url}map")
    await _screenshot(page, "screen-map")
    assert problems.messages == []


async def test_patterns_page(page: Page, base_url: str) -> None:
    problems = PageProblems(page)
    await page.goto(f"{base_url}patterns?service={PATTERN_SERVICE}&operation={PATTERN_OPERATION}")
    await _screenshot(page, "screen-patterns")
    assert problems.messages == []
