"""A pre-fork server: configure, trace, then fork workers that serve one socket.

    python -m tests.faults.prefork --port PORT --redis-url URL --workers 2

The parent traces before forking (its exporter has made a client on a loop, since
closed) and leaves spans queued with no loop to export them; each worker then
serves ``GET /work`` with ``setup(app)``. Prints ``ready PID PID...`` (the workers)
once they are forked; SIGTERM is passed on to the workers, and the parent exits
after them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from types import FrameType

from aiohttp import web

import asynctrace
from asynctrace.aiohttp import setup


async def work(request: web.Request) -> web.Response:
    async with asynctrace.span("compute", tags={"pid": str(os.getpid())}):
        await asyncio.sleep(0)
    return web.Response(text="ok")


def serve(sock: socket.socket) -> None:
    app = web.Application()
    app.router.add_get("/work", work)
    setup(app, service="prefork")
    web.run_app(app, sock=sock, print=None, access_log=None, shutdown_timeout=5.0)


async def parent_traces() -> None:
    async with asynctrace.span("parent before fork"):
        pass
    await asynctrace.flush(timeout_s=5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    asynctrace.configure(service="prefork", redis_url=options.redis_url)
    asyncio.run(parent_traces())
    for _ in range(5):
        with asynctrace.span("parent queued"):  # no loop: queued, not exported yet
            pass
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", options.port))
    sock.listen(128)
    workers = []
    for _ in range(options.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                serve(sock)
            except BaseException:
                code = 1
            os._exit(code)
        workers.append(pid)

    def pass_on(signum: int, frame: FrameType | None) -> None:
        for pid in workers:
            os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, pass_on)
    # The parent's own queued spans: exported by the parent, never by a worker.
    asyncio.run(asynctrace.flush(timeout_s=5))
    sys.stdout.write("ready " + " ".join(str(pid) for pid in workers) + "\n")
    sys.stdout.flush()
    failed = 0
    for pid in workers:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
