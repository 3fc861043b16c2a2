"""A TCP proxy in front of a test's redis-server that can slow or swallow replies.

Runs on the test's event loop, on 127.0.0.1. Requests always reach Redis, so with
``drop_replies`` Redis applies a batch whose reply never arrives: the lost reply
that makes a client retry what was already written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

__all__ = ["RedisProxy"]


class RedisProxy:
    """Forwards 127.0.0.1:``port`` to the Redis on ``target_port``.

    ``reply_delay_s``: every reply chunk is held this long after it arrived (a slow
    network or a slow Redis: latency, not bandwidth). ``drop_replies``: replies are
    read from Redis and thrown away. Both can change while connections are open.
    """

    def __init__(self, target_port: int, *, reply_delay_s: float = 0.0) -> None:
        self.target_port = target_port
        self.reply_delay_s = reply_delay_s
        self.drop_replies = False
        self.connections = 0
        self._serving = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> RedisProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def wait_idle(self) -> None:
        """Until every client connection has closed and what it sent reached Redis."""
        await self._idle.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._serving += 1
        self._idle.clear()
        try:
            await self._forward(reader, writer)
        finally:
            self._serving -= 1
            if not self._serving:
                self._idle.set()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return
        self._writers.append(upstream_writer)
        upward = self._spawn(_pump(reader, upstream_writer))
        downward = self._spawn(self._replies(upstream_reader, writer))
        await asyncio.wait([upward, downward], return_when=asyncio.FIRST_COMPLETED)
        writer.close()
        upstream_writer.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await held.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # a chunk's latency, not a sync point
                writer.write(data)
                await writer.drain()

        delivering = self._spawn(deliver())
        try:
            while data := await reader.read(65536):
                if not self.drop_replies:
                    held.put_nowait((loop.time() + self.reply_delay_s, data))
        except (ConnectionError, OSError):
            pass
        finally:
            delivering.cancel()  # Redis closed: replies still held are lost, as on a network


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
