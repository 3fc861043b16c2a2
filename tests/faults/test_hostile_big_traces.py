"""A trace of 100,000 spans (a reused ``traceparent`` grows one): readers load the
first ``keys.MAX_TRACE_SPANS`` and say the rest was not read, in bounded memory, and
the dashboard keeps answering while it analyses one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from asynctrace import keys
from asynctrace.cli import main
from asynctrace.store import TraceStore
from asynctrace.web import _app, create_app
from tests.faults.hostile_data import T0

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]

BIG = "b1" * 16
STORED = 100_000
# Peak resident memory of a `show --json` process reading the big trace. Reading it
# whole took 502 MB; the first 10,000 spans take about a tenth of that.
MAX_RSS_MB = 250
ROOT = Path(__file__).resolve().parents[2]


def _span_id(number: int) -> str:
    return f"{number + 1:016x}"


def _write_big_trace(url: str) -> None:
    """A chain 100,000 spans deep: each span is the previous one's child.

    The entries are formatted from one template (json.dumps per span would take
    seconds); ``hostile_data.span_json`` writes the same shape.
    """
    template = (
        '{{"traceId":"{trace}","spanId":"{span}","parentSpanId":{parent},'
        '"service":"api","operation":"step {number}","kind":"server",'
        '"startTime":{start},"endTime":{end},"duration":{duration},"status":"ok",'
        '"tags":{{"http.path":"/items/{number}"}},"logs":[]}}'
    )
    with redis.Redis.from_url(url) as client:
        key = keys.trace_key(BIG)
        for first in range(0, STORED, 20_000):
            entries = []
            for number in range(first, first + 20_000):
                start = T0 + number * 0.001
                duration = (STORED - number) * 0.002
                parent = f'"{_span_id(number - 1)}"' if number else "null"
                entries.append(
                    template.format(
                        trace=BIG,
                        span=_span_id(number),
                        parent=parent,
                        number=number,
                        start=round(start, 3),
                        end=round(start + duration, 3),
                        duration=round(duration, 3),
                    )
                )
            client.rpush(key, *entries)


@pytest.fixture
def big_trace(redis_url: str) -> str:
    _write_big_trace(redis_url)
    return redis_url


def _cli(url: str, tmp_path: Path, *args: str) -> tuple[int, bytes, bytes, float]:
    """Run the CLI as a process of its own: exit status, stdout, stderr, peak RSS in MB."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "asynctrace.cli", "--redis-url", url, *args],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
        guard = threading.Timer(50.0, process.kill)  # a hang fails, it does not stall CI
        guard.start()
        try:
            # wait4, not Popen.wait: it reports the child's own peak RSS (KiB on Linux).
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            guard.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, out.read_bytes(), err.read_bytes(), usage.ru_maxrss / 1024


def test_show_reads_the_first_spans_in_bounded_memory(big_trace: str, tmp_path: Path) -> None:
    status, stdout, stderr, peak_mb = _cli(big_trace, tmp_path, "show", "--json", BIG)
    assert status == 0, stderr.decode()
    report = json.loads(stdout)
    assert report["truncated"] is True
    assert report["span_count"] == keys.MAX_TRACE_SPANS
    assert report["unread_entries"] == STORED - keys.MAX_TRACE_SPANS
    assert max(report["depths"].values()) == keys.MAX_TRACE_SPANS - 1  # a deep chain
    assert peak_mb < MAX_RSS_MB

    shown = CliRunner().invoke(main, ["--redis-url", big_trace, "show", BIG])
    assert shown.exit_code == 0, shown.output
    header, notice = shown.output.splitlines()[:2]
    assert "10000 spans" in header
    assert notice == "TRUNCATED: 90,000 more stored entries not read"


@pytest.fixture
async def dashboard(aiohttp_client: ClientFactory, redis_url: str) -> AsyncIterator[Client]:
    async with TraceStore.from_url(redis_url) as trace_store:
        yield await aiohttp_client(create_app(trace_store))


async def test_the_dashboard_answers_while_it_analyses_a_big_trace(
    dashboard: Client, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.to_thread(_write_big_trace, redis_url)
    report = json.loads(await _held(dashboard, monkeypatch, f"/api/traces/{BIG}", "trace_report"))
    assert report["truncated"] is True
    assert report["unread_entries"] == STORED - keys.MAX_TRACE_SPANS
    page = await _held(dashboard, monkeypatch, f"/traces/{BIG}", "trace_view")
    assert "Truncated:" in page.decode("utf-8")


async def _held(
    dashboard: Client, monkeypatch: pytest.MonkeyPatch, path: str, analysis: str
) -> bytes:
    """GET ``path`` while holding its analysis (``_app.<analysis>``) until
    ``/api/health`` has been answered; the body, once it is."""
    analysing = threading.Event()
    health_answered = threading.Event()
    waits: list[bool] = []
    real = getattr(_app, analysis)

    def held_analysis(*args: Any, **kwargs: Any) -> Any:
        # On the event loop /api/health could never be answered meanwhile: the wait
        # would time out (and blockbuster would object to it).
        analysing.set()
        waits.append(health_answered.wait(timeout=20.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(_app, analysis, held_analysis)
    big = asyncio.create_task(dashboard.get(path))
    assert await asyncio.to_thread(analysing.wait, 20.0)
    health = await dashboard.get("/api/health")
    assert health.status == 200
    health_answered.set()
    response = await big
    assert waits == [True]
    assert response.status == 200
    body = await response.read()
    assert len(body) < 20_000_000
    return body
