"""The aiohttp applications the benchmarks measure, and a way to serve them.

``build_app(mode)`` makes the same hello-world application bare or traced:

- ``bare``: no middleware at all.
- ``empty``: one middleware that only awaits the handler (what any middleware costs).
- ``naive``: a naive in-memory tracing middleware, the issue's yardstick: a dict per
  request (ids, times, method, path, status) kept in a bounded deque, an
  ``X-Trace-ID`` response header, no propagation, no export.
- ``asynctrace``: ``asynctrace.aiohttp.middleware()``, the minimal form.
- ``asynctrace-setup``: ``asynctrace.aiohttp.setup(app)``: the middleware and the
  response hook that puts ``X-Trace-ID`` on responses aiohttp makes itself. Served
  with a Redis URL it exports there; ``asynctrace-noop`` is the same app served
  with an exporter that drops every batch (what the tracing costs without export).
- ``otel``: OpenTelemetry's aiohttp server middleware over the SDK with a
  ``BatchSpanProcessor`` and a no-op exporter.
- ``seed``: the original design: the handler's request awaits RPUSH, EXPIRE, ZADD,
  ZREMRANGEBYRANK and SADD on Redis before it returns.

``python -m benchmarks.apps MODE PORT [REDIS_URL]`` serves one app (HTTP scenario);
``python -m benchmarks.apps chain traced|bare PORT1 ... PORT5 [REDIS_URL]`` serves the
five-service chain in one process, as the demo does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

import asynctrace
from asynctrace.ids import new_span_id, new_trace_id
from benchmarks import otel
from benchmarks.loops import use_loop_from_env

__all__ = ["CHAIN", "MODES", "DropEverything", "build_app", "build_chain", "hello"]

MODES = (
    "bare",
    "empty",
    "naive",
    "asynctrace",
    "asynctrace-setup",
    "asynctrace-noop",
    "otel",
    "seed",
)
CHAIN = ("gateway", "orders", "inventory", "payments", "notify")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@web.middleware
async def empty_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)


_naive_spans: deque[dict[str, object]] = deque(maxlen=10_000)


@web.middleware
async def naive_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    trace_id = new_trace_id()
    start_ms = time.time() * 1000.0
    started = time.perf_counter()
    response = await handler(request)
    _naive_spans.append(
        {
            "traceId": trace_id,
            "spanId": new_span_id(),
            "operation": f"{request.method} {request.path}",
            "startTime": start_ms,
            "duration": (time.perf_counter() - started) * 1000.0,
            "status": response.status,
        }
    )
    response.headers["X-Trace-ID"] = trace_id
    return response


def seed_middleware(redis: Any) -> Any:
    """The seed tracer's way: every request awaits its own writes before it returns."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        trace_id = new_trace_id()
        start_ms = time.time() * 1000.0
        started = time.perf_counter()
        response = await handler(request)
        duration = (time.perf_counter() - started) * 1000.0
        span: dict[str, object] = {
            "traceId": trace_id,
            "spanId": new_span_id(),
            "parentSpanId": None,
            "service": "hello",
            "operation": f"{request.method} {request.path}",
            "startTime": start_ms,
            "endTime": start_ms + duration,
            "duration": duration,
            "status": "ok",
            "tags": {"http.method": request.method, "http.status": str(response.status)},
            "logs": [],
        }
        key = f"seed:{trace_id}"
        await redis.rpush(key, json.dumps(span, separators=(",", ":")))
        await redis.expire(key, 86400)
        await redis.zadd("seed:slow", {trace_id: duration})
        await redis.zremrangebyrank("seed:slow", 0, -101)
        await redis.sadd(f"seed:errors:{time.strftime('%Y-%m-%d', time.gmtime())}", trace_id)
        return response

    return middleware


def build_app(
    mode: str, *, redis: Any = None, otel_provider: Any = None, path: str = "/hello/{name}"
) -> web.Application:
    """The hello-world app in ``mode`` (see the module docstring).

    ``asynctrace`` mode expects ``asynctrace.configure()`` to have run; ``seed``
    needs a ``redis.asyncio`` client; ``otel`` an OpenTelemetry ``TracerProvider``.
    """
    app = web.Application()
    if mode == "empty":
        app.middlewares.append(empty_middleware)
    elif mode == "naive":
        app.middlewares.append(naive_middleware)
    elif mode == "asynctrace":
        from asynctrace import aiohttp as traced_aiohttp

        app.middlewares.append(traced_aiohttp.middleware(service="hello"))
    elif mode in ("asynctrace-setup", "asynctrace-noop"):
        from asynctrace.aiohttp import setup

        setup(app, service="hello")
    elif mode == "otel":
        otel_middleware, why_not = otel.aiohttp_middleware(otel_provider)
        if otel_middleware is None:
            raise RuntimeError(why_not)
        app.middlewares.append(otel_middleware)
    elif mode == "seed":
        app.middlewares.append(seed_middleware(redis))
    elif mode != "bare":
        raise ValueError(f"unknown mode {mode!r}")
    app.router.add_get(path, hello)
    return app


def build_chain(ports: list[int], *, traced: bool) -> list[web.Application]:
    """Five services, each calling the next over HTTP; the last one answers."""
    apps = []
    for number, name in enumerate(CHAIN):
        app = web.Application()
        if traced:
            from asynctrace.aiohttp import setup

            setup(app, service=name)
        next_url = f"http://127.0.0.1:{ports[number + 1]}/work" if number + 1 < len(ports) else None

        async def session_context(app: web.Application, traced: bool = traced) -> Any:
            configs = []
            if traced:
                from asynctrace.aiohttp import client_trace_config

                configs.append(client_trace_config())
            app["session"] = ClientSession(
                connector=TCPConnector(limit=0),
                timeout=ClientTimeout(total=30),
                trace_configs=configs,
            )
            yield
            await app["session"].close()

        async def work(request: web.Request, next_url: str | None = next_url) -> web.Response:
            if next_url is None:
                return web.Response(text="done")
            async with request.app["session"].get(next_url) as upstream:
                body = await upstream.read()
            return web.Response(body=body)

        app.cleanup_ctx.append(session_context)
        app.router.add_get("/work", work)
        apps.append(app)
    return apps


class DropEverything:
    """An exporter that drops every batch: what tracing costs without its export."""

    async def export(self, spans: object) -> None:
        pass

    async def shutdown(self) -> None:
        pass


async def _serve(
    apps: list[tuple[web.Application, int]],
    redis_url: str | None,
    traced: bool,
    *,
    exports: bool = True,
) -> None:
    if traced and not exports:
        asynctrace.configure(service="hello", exporter=DropEverything())
    elif traced and redis_url:
        asynctrace.configure(service="hello", redis_url=redis_url)
    runners = []
    for app, port in apps:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        runners.append(runner)
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()  # until the benchmark terminates this process
    finally:
        for runner in runners:
            await runner.cleanup()
        await asynctrace.shutdown()


def main(argv: list[str]) -> None:
    use_loop_from_env()
    if argv[0] == "chain":
        traced = argv[1] == "traced"
        ports = [int(port) for port in argv[2:7]]
        redis_url = argv[7] if len(argv) > 7 else None
        apps = build_chain(ports, traced=traced)
        asyncio.run(_serve(list(zip(apps, ports, strict=True)), redis_url, traced))
        return
    mode, port = argv[0], int(argv[1])
    redis_url = argv[2] if len(argv) > 2 else None

    async def serve() -> None:
        redis = None
        provider = None
        if mode == "seed":
            import redis.asyncio as aioredis

            redis = aioredis.Redis.from_url(redis_url or "")
        if mode == "otel":
            provider, _ = otel.sdk_provider()
        app = build_app(mode, redis=redis, otel_provider=provider)
        try:
            await _serve(
                [(app, port)],
                redis_url,
                traced=mode.startswith("asynctrace"),
                exports=mode != "asynctrace-noop",
            )
        finally:
            if provider is not None:
                provider.shutdown()

    asyncio.run(serve())


if __name__ == "__main__":
    main(sys.argv[1:])
