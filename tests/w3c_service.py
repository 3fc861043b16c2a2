"""The test service the W3C Trace Context harness drives (w3c/trace-context ``test/``).

The harness POSTs to ``/test`` a JSON list of ``{"url": ..., "arguments": [...]}``
and expects the service to POST ``arguments`` (as JSON) to each ``url`` in order,
through a traced client, so the harness sees the headers the service propagates.

Run it, then the harness (from a checkout of w3c/trace-context, ``pip install aiohttp``):

    python -m tests.w3c_service --port 5000
    SPEC_LEVEL=2 python test/test.py http://127.0.0.1:5000/test

``tests/test_w3c_harness.py`` drives the same app with the harness's cases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

import asynctrace
from asynctrace.aiohttp import client_trace_config, setup
from asynctrace.export import InMemoryExporter

__all__ = ["main", "make_app"]

_SESSION = web.AppKey("w3c_session", aiohttp.ClientSession)
_MAX_CALLS = 64


def make_app(*, service: str = "w3c-test-service") -> web.Application:
    """The harness's test service: traced server, traced client, ``POST /test``."""
    app = web.Application()
    setup(app, service=service)
    app.router.add_post("/test", _test)
    app.cleanup_ctx.append(_client_session)
    return app


async def _client_session(app: web.Application) -> Any:
    async with aiohttp.ClientSession(
        trace_configs=[client_trace_config()], timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        app[_SESSION] = session
        yield


async def _test(request: web.Request) -> web.Response:
    try:
        calls = await request.json()
    except json.JSONDecodeError:
        raise web.HTTPBadRequest(text="expected a JSON list") from None
    if not isinstance(calls, list) or len(calls) > _MAX_CALLS:
        raise web.HTTPBadRequest(text="expected a JSON list")
    session = request.app[_SESSION]
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("url"), str):
            raise web.HTTPBadRequest(text="each call is {url, arguments}")
        async with session.post(call["url"], json=call.get("arguments", [])) as response:
            await response.read()
    return web.Response(text="ok")


def main(argv: list[str] | None = None) -> None:
    """Serve the test service until interrupted (spans go nowhere: no Redis needed)."""
    parser = argparse.ArgumentParser(prog="python -m tests.w3c_service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    options = parser.parse_args(argv)

    async def serve() -> None:
        asynctrace.configure(service="w3c-test-service", exporter=InMemoryExporter())
        runner = web.AppRunner(make_app())
        await runner.setup()
        await web.TCPSite(runner, options.host, options.port).start()
        print(f"W3C test service on http://{options.host}:{options.port}/test")  # noqa: T201
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
