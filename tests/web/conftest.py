from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from aiohttp.test_utils import TestServer
from blockbuster import BlockBuster

from asynctrace.store import TraceStore
from asynctrace.web import create_app

if TYPE_CHECKING:
    from demo_data import DemoData

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[TraceStore]:
    """A store over the session's real redis-server (emptied for the test)."""
    async with TraceStore.from_url(redis_url) as trace_store:
        yield trace_store


@pytest.fixture
def blockbuster(request: pytest.FixtureRequest, blockbuster: BlockBuster) -> BlockBuster:
    """The project's blocking-call guard (tests/conftest.py), switched off for browser tests.

    Playwright's driver plumbing (its pipes to the Node.js driver, reading its own
    package files) makes blocking calls on the event loop the test shares with the
    server. Those belong to the test tool, not to the dashboard, whose handlers the
    API tests run with the guard on.
    """
    if request.node.get_closest_marker("browser") is not None:
        blockbuster.deactivate()
    return blockbuster


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser tests (.ci/run installs them)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; skipped outside CI when it or Playwright is missing."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is not installed")
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """Headless Chromium driven by Playwright; never downloads a browser."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def dashboard_url(store: TraceStore) -> AsyncIterator[str]:
    """The dashboard served on 127.0.0.1 (a free port), as its base URL with a slash."""
    server = TestServer(create_app(store), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()


@pytest.fixture(scope="session")
def demo_data(chromium: str) -> DemoData:
    """The demo's traces and four weeks of history in a fakeredis server, made once
    (the demo takes about 3 s) and only when a browser test will use them."""
    from demo_data import fill_demo_server

    return fill_demo_server()


@pytest.fixture
async def demo_url(demo_data: DemoData) -> AsyncIterator[str]:
    """The dashboard over ``demo_data`` on 127.0.0.1 (a free port), with a slash."""
    import fakeredis

    client = fakeredis.FakeAsyncRedis(server=demo_data.server)
    server = TestServer(create_app(TraceStore(client)), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()
        await client.aclose()
