"""A traced aiohttp service for the fault tests, run as a real process.

    python -m tests.faults.service --port PORT --redis-url URL [--loop uvloop] ...

``GET /work`` makes two spans (the server span and one child). ``GET /stats``
(untraced) answers the export health and ``created``, the spans ended so far,
counted where they end: at any moment created = exported + dropped + queued.
Prints ``ready`` on stdout once listening; SIGTERM stops it the way ``web.run_app``
does, so ``setup(app)``'s cleanup flush runs. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys

from aiohttp import web

import asynctrace
from asynctrace.aiohttp import setup
from asynctrace.export import RedisExporter

_COMPLETED = web.AppKey("completed", list)


async def work(request: web.Request) -> web.Response:
    async with asynctrace.span("compute", tags={"pid": str(os.getpid())}):
        await asyncio.sleep(0)
    # No await between here and the server span's end in the middleware: a /stats
    # request sees both spans of this request ended, or neither.
    request.app[_COMPLETED][0] += 1
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    values = dataclasses.asdict(asynctrace.stats())
    values["created"] = 2 * request.app[_COMPLETED][0]
    return web.json_response(values)


def make_app(flush_timeout_s: float) -> web.Application:
    app = web.Application()
    app[_COMPLETED] = [0]
    app.router.add_get("/work", work)
    app.router.add_get("/stats", stats)
    setup(app, service="faults", exclude_paths=["/stats"], flush_timeout_s=flush_timeout_s)
    return app


def _say_ready(_: str) -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--timeout-s", type=float, default=5.0, help="the exporter's")
    parser.add_argument("--flush-timeout-s", type=float, default=5.0, help="setup(app)'s")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-queue", type=int, default=20_000)
    parser.add_argument("--max-in-flight", type=int, default=4)
    options = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")

    async def on_startup(app: web.Application) -> None:
        asynctrace.configure(
            service="faults",
            exporter=RedisExporter(options.redis_url, timeout_s=options.timeout_s),
            batch_size=options.batch_size,
            max_queue=options.max_queue,
            max_in_flight=options.max_in_flight,
        )

    app = make_app(options.flush_timeout_s)
    app.on_startup.insert(0, on_startup)
    loop_factory = None
    if options.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    runner_loop = loop_factory() if loop_factory else asyncio.new_event_loop()
    web.run_app(
        app,
        host="127.0.0.1",
        port=options.port,
        print=_say_ready,  # called once the site listens
        access_log=None,
        loop=runner_loop,
        shutdown_timeout=5.0,
    )


if __name__ == "__main__":
    main()
