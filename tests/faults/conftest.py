"""Fixtures of the fault suite: real redis-server processes and a real service process.

Every case starts what it breaks (its own redis-server on a free port, its own
service), so killing or freezing it touches nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from asynctrace.testing import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this case alone: it may be killed, frozen or reconfigured."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


@dataclass
class Service:
    """A running ``tests/faults/service.py`` process."""

    process: asyncio.subprocess.Process
    url: str
    stderr_lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.url}/stats") as response:
            values: dict[str, Any] = json.loads(await response.text())
            return values

    async def terminate(self) -> int:
        """SIGTERM, then wait for the exit (bounded); returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await self.process.wait()
        if self._reader is not None:
            await self._reader
        return code


async def start_service(*arguments: str) -> Service:
    """Start the service with ``arguments`` and wait until it listens."""
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.service",
        "--port",
        str(port),
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=environment,
    )
    service = Service(process, f"http://127.0.0.1:{port}")
    assert process.stdout is not None
    async with asyncio.timeout(20):
        line = await process.stdout.readline()
    assert line.strip() == b"ready", f"service did not start: {line!r}"
    service._reader = asyncio.create_task(_collect(process, service.stderr_lines))
    return service


async def _collect(process: asyncio.subprocess.Process, lines: list[str]) -> None:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        lines.append(line.decode("utf-8", "replace").rstrip("\n"))


@pytest.fixture
async def services() -> AsyncIterator[list[Service]]:
    """Services a case starts (``start_service``); any still running are killed."""
    started: list[Service] = []
    yield started
    for service in started:
        if service.process.returncode is None:
            service.process.kill()
            await service.process.wait()
        if service._reader is not None:
            service._reader.cancel()


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def p99(self) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def load(
    session: aiohttp.ClientSession, url: str, *, rate: float, duration_s: float
) -> LoadResult:
    """GET ``url`` at ``rate`` requests/s for ``duration_s``, at most 32 at a time."""
    result = LoadResult()
    bound = asyncio.Semaphore(32)
    loop = asyncio.get_running_loop()

    async def one() -> None:
        async with bound:
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        result.failures.append(f"status {response.status}")
                        return
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                result.failures.append(repr(exc))
                return
            result.latencies_s.append(time.perf_counter() - started)

    tasks = []
    start = loop.time()
    count = int(rate * duration_s)
    for number in range(count):
        due = start + number / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the load generator, not synchronising
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return result
