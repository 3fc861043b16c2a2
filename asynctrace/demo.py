"""The ``asynctrace demo``: five traced aiohttp services in one process tell the seed's story.

api-gateway, auth, orders, payment and inventory listen on free loopback ports and
are traced only by ``asynctrace.aiohttp.setup(app, service=...)`` and
``client_trace_config()``. The demo sends them ordinary traffic, one checkout that
orders makes slow (the seed's "API Gateway 5 ms -> Auth 10 ms -> Order 2,500 ms ->
Payment 50 ms") and one that fails in payment, then reads the traces back through
``TraceStore`` and prints what the analysis finds. Traces go to the Redis client it
is given: a real Redis, or ``fakeredis`` as an embedded store that lives as long as
the process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import redis.asyncio as aioredis
from aiohttp import ClientSession, ClientTimeout, web

import asynctrace
from asynctrace import keys
from asynctrace._datastore import POSTGRESQL, query_span
from asynctrace.aiohttp import client_trace_config, setup
from asynctrace.analysis import bottleneck, error_chain, format_ms
from asynctrace.errors import AsynctraceError, InvalidQueryError
from asynctrace.export import RedisExporter
from asynctrace.model import Trace, utc_day
from asynctrace.propagation import TRACE_ID_HEADER
from asynctrace.store import TraceStore
from asynctrace.terminal import (
    TraceRow,
    error_rows,
    render_trace_table,
    render_waterfall,
    slow_rows,
)
from asynctrace.tracer import reset_tracer

__all__ = [
    "FAILING_ORDER_ID",
    "SERVICES",
    "SLOW_ORDER_ID",
    "CardProcessorError",
    "DemoResult",
    "DemoStore",
    "main",
    "open_store",
    "run_demo",
]

SERVICES = ("api-gateway", "auth", "orders", "payment", "inventory")
SLOW_ORDER_ID = "4711"
"""Checking out this order makes orders wait 2.45 s on a query without its index."""
FAILING_ORDER_ID = "1313"
"""Charging this order fails in payment: its card processor is unavailable."""

_SLOW_QUERY_S = 2.45
# The orders service's queries. Its database is simulated (the demo needs no
# PostgreSQL), but each query is a span made by the code path asynctrace.asyncpg
# uses, so the waterfall and the bottleneck sentence read as they would in production.
_LOAD_ORDER = "SELECT id, customer_id, status, total FROM orders WHERE id = $1"
_ORDER_HISTORY = (
    "SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC"
)
_MARK_PAID = "UPDATE orders SET status = 'paid' WHERE id = $1"
_ORDER_VIEWS = 12
_CHECKOUTS = 8
_CONCURRENCY = 4
_LISTED = 5
# Enough of the newest index entries to describe every trace the demo made.
_SUMMARY_WINDOW = 1000


class CardProcessorError(Exception):
    """The failure the demo's payment service raises for ``FAILING_ORDER_ID``."""


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo did: the slow and the failed trace, and every trace it made."""

    slow_trace_id: str
    error_trace_id: str
    trace_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DemoStore:
    """The Redis client the demo writes to, and one line saying what it is."""

    client: aioredis.Redis
    description: str
    is_embedded: bool


@asynccontextmanager
async def open_store(redis_url: str | None) -> AsyncIterator[DemoStore]:
    """A client for ``redis_url``, or the embedded in-process store when it is None.

    A real Redis is asked a first query, which raises ``StoreUnavailableError``
    when it does not answer (the message names host and port, never the password);
    a malformed URL raises ``InvalidQueryError``. The embedded store needs
    ``fakeredis`` (the ``demo`` extra); without it, ``AsynctraceError`` says how to
    install it. The client is closed on exit.
    """
    if redis_url is None:
        try:
            import fakeredis
        except ImportError:
            raise AsynctraceError(
                "the demo's embedded store needs fakeredis: "
                "pip install 'asynctrace[demo]', or set REDIS_URL to use a Redis server"
            ) from None
        client: aioredis.Redis = fakeredis.FakeAsyncRedis()
        store = DemoStore(
            client,
            "embedded in-process store (fakeredis); traces vanish when the demo exits",
            is_embedded=True,
        )
    else:
        try:
            client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2.0)
        except ValueError as exc:
            # redis-py's URL messages never contain the password.
            raise InvalidQueryError(f"invalid Redis URL: {exc}") from None
        store = DemoStore(client, f"Redis at {_where(client)}", is_embedded=False)
    try:
        if not store.is_embedded:
            # Any cheap query will do: it fails with the store's own message, which
            # names host and port and never the password.
            await TraceStore(client).slow_traces(limit=1)
        yield store
    finally:
        await client.aclose()


def _where(client: aioredis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


async def main(
    redis_url: str | None,
    *,
    out: TextIO,
    serve: bool = False,
    port: int = 8080,
    prefix: str = keys.DEFAULT_PREFIX,
    width: int = 100,
    color: bool = False,
    ascii_only: bool = False,
    command: str = "asynctrace",
) -> DemoResult:
    """The ``asynctrace demo`` command: open the store, say which, run the demo.

    ``command`` is how the hints spell the CLI, with the connection options the demo
    was given (``asynctrace --redis-url URL``), so that they work as printed. Raises
    what ``open_store`` and ``run_demo`` raise.
    """
    async with open_store(redis_url) as store:
        print(f"store: {store.description}", file=out, flush=True)
        result = await run_demo(
            store_client=store.client,
            out=out,
            serve=serve,
            port=port,
            prefix=prefix,
            width=width,
            color=color,
            ascii_only=ascii_only,
            command=command,
        )
    if store.is_embedded:
        print(
            "These traces lived in memory. To browse them in the dashboard, run "
            "`asynctrace demo --serve`; to keep them, set REDIS_URL and run the demo again.",
            file=out,
        )
    else:
        print(
            f"These traces stay in Redis for 24 h: try `{command} show {result.slow_trace_id}` "
            f"or `{command} serve`.",
            file=out,
        )
    return result


async def run_demo(
    *,
    store_client: aioredis.Redis,
    out: TextIO,
    serve: bool = False,
    port: int = 8080,
    prefix: str = keys.DEFAULT_PREFIX,
    width: int = 100,
    color: bool = False,
    ascii_only: bool = False,
    command: str = "asynctrace",
) -> DemoResult:
    """Run the five services, send the traffic, print the story; return the trace ids.

    Traces are written to ``store_client`` (left open: it belongs to the caller)
    under ``prefix``. Progress is a line per phase on ``out``; the waterfalls are
    ``width`` columns, coloured when ``color``; the commands named in the titles
    start with ``command``. With ``serve``, the services keep
    running and the dashboard (``asynctrace.web``) serves the same store on
    127.0.0.1:``port`` until the task is cancelled (Ctrl-C). Configures the
    process's tracer for the duration and resets it afterwards. Raises
    ``AsynctraceError`` when the traffic or the store does not behave as the story
    needs or the dashboard port is taken.
    """
    # Without the web extra, --serve fails now rather than after the whole story.
    dashboard = _dashboard_server() if serve else None
    progress = _Progress(out)
    asynctrace.configure(
        service=SERVICES[0],
        exporter=RedisExporter(client=store_client, prefix=prefix),
        max_delay_s=0.05,
    )
    try:
        async with _Mesh(random.Random(2025)) as mesh:
            ports = ", ".join(f"{name} :{mesh.port_of(name)}" for name in SERVICES)
            progress.step(f"started {len(SERVICES)} services on 127.0.0.1: {ports}")
            result = await _send_traffic(mesh, progress)
            if not await asynctrace.flush(timeout_s=10.0):
                stats = asynctrace.stats()
                raise AsynctraceError(f"could not write the traces: {stats.last_error}")
            progress.step(f"flushed {asynctrace.stats().exported} spans to the store")

            store = TraceStore(store_client, prefix=prefix)
            await _tell_story(
                store,
                result,
                out,
                width=width,
                color=color,
                ascii_only=ascii_only,
                command=command,
            )
            if dashboard is not None:
                await _serve_dashboard(dashboard, store, mesh, out, port)
        return result
    finally:
        await asynctrace.shutdown()
        reset_tracer()


class _Progress:
    """Numbered phase lines, flushed at once so they show while the demo runs."""

    _PHASES = 5

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.done = 0
        self.started = time.perf_counter()

    def step(self, text: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self._PHASES}] {text}", file=self.out, flush=True)

    def seconds(self) -> str:
        """Seconds since the last call (or since the start), and restart the clock."""
        now = time.perf_counter()
        elapsed, self.started = now - self.started, now
        return f"{elapsed:.2f} s"


async def _send_traffic(mesh: _Mesh, progress: _Progress) -> DemoResult:
    """Ordinary requests, then the slow and the failing checkout, from an untraced client.

    The client is the outside world: it sends no trace headers, so every request
    starts its own trace at the gateway, whose ``X-Trace-ID`` names it.
    """
    gateway = mesh.url_of(SERVICES[0])
    limit = asyncio.Semaphore(_CONCURRENCY)
    async with ClientSession(timeout=ClientTimeout(total=15)) as visitor:

        async def send(method: str, path: str) -> tuple[int, str]:
            async with limit, visitor.request(method, gateway + path) as response:
                await response.read()
                trace_id = response.headers.get(TRACE_ID_HEADER, "")
                return response.status, trace_id

        rng = random.Random(7)
        requests = [("GET", f"/orders/{rng.randint(1000, 1999)}") for _ in range(_ORDER_VIEWS)]
        requests += [
            ("POST", f"/orders/{rng.randint(2000, 2999)}/checkout") for _ in range(_CHECKOUTS)
        ]
        rng.shuffle(requests)
        progress.seconds()
        answers = await asyncio.gather(*(send(method, path) for method, path in requests))
        statuses = sorted({status for status, _ in answers})
        progress.step(
            f"sent {len(requests)} ordinary requests ({_ORDER_VIEWS} order lookups, "
            f"{_CHECKOUTS} checkouts), answered {_statuses(statuses)}, in {progress.seconds()}"
        )
        slow_status, slow_id = await send("POST", f"/orders/{SLOW_ORDER_ID}/checkout")
        progress.step(
            f"sent the slow checkout (order {SLOW_ORDER_ID}), "
            f"answered {slow_status}, in {progress.seconds()}"
        )
        error_status, error_id = await send("POST", f"/orders/{FAILING_ORDER_ID}/checkout")
        progress.step(
            f"sent the failing checkout (order {FAILING_ORDER_ID}), "
            f"answered {error_status}, in {progress.seconds()}"
        )
    if statuses != [200] or slow_status != 200 or error_status < 500:
        raise AsynctraceError(
            "the demo services answered unexpectedly: ordinary requests "
            f"{_statuses(statuses)}, slow checkout {slow_status}, failing checkout {error_status}"
        )
    if not slow_id or not error_id:
        raise AsynctraceError(f"the gateway's responses carried no {TRACE_ID_HEADER} header")
    trace_ids = (*(trace_id for _, trace_id in answers), slow_id, error_id)
    return DemoResult(slow_trace_id=slow_id, error_trace_id=error_id, trace_ids=trace_ids)


def _statuses(statuses: list[int]) -> str:
    return "/".join(str(status) for status in statuses)


async def _tell_story(
    store: TraceStore,
    result: DemoResult,
    out: TextIO,
    *,
    width: int,
    color: bool,
    ascii_only: bool,
    command: str,
) -> None:
    """The slow trace and its bottleneck, the failed trace and its origin, the lists."""
    slow = await store.get_trace(result.slow_trace_id)
    failed = await store.get_trace(result.error_trace_id)
    if slow is None or failed is None:
        raise AsynctraceError("the slow or the failed trace is missing from the store")
    found = bottleneck(slow)
    chain = error_chain(failed)

    def show(title: str, text: str) -> None:
        print(f"\n{title}\n{text}", file=out)

    def waterfall(trace: Trace) -> str:
        return render_waterfall(trace, width=width, color=color, ascii_only=ascii_only)

    def table(rows: list[TraceRow]) -> str:
        return render_trace_table(rows, width=width, ascii_only=ascii_only)

    show(
        f"The slow checkout, {format_ms(slow.total_duration)} ({command} show {slow.trace_id}):",
        waterfall(slow),
    )
    print(f"\n{found.sentence if found else 'no critical path: the trace lasted 0 ms'}", file=out)
    show(
        f"The failed checkout ({command} show {failed.trace_id}):",
        waterfall(failed),
    )
    print(f"\n{chain.sentence if chain else 'no span of this trace failed'}", file=out)

    known = await store.recent_traces(limit=_SUMMARY_WINDOW)
    today = utc_day(failed.root.start_time)
    show(
        f"Slowest traces ({command} slow):",
        table(slow_rows(await store.slow_traces(limit=_LISTED), known)),
    )
    show(
        f"Traces with errors on {today} ({command} errors --day {today}):",
        table(error_rows(await store.error_traces(day=today), known)),
    )
    print(file=out, flush=True)


def _dashboard_server() -> Callable[..., Awaitable[None]]:
    """``asynctrace.web.serve``; ``AsynctraceError`` naming the extra when it is missing."""
    try:
        from asynctrace.web import serve
    except ImportError:
        raise AsynctraceError(
            "the dashboard needs the 'web' extra: pip install 'asynctrace[web]'"
        ) from None
    return serve


async def _serve_dashboard(
    serve: Callable[..., Awaitable[None]], store: TraceStore, mesh: _Mesh, out: TextIO, port: int
) -> None:
    gateway = mesh.url_of(SERVICES[0])

    def announce(url: str) -> None:
        print(
            f"Serving the dashboard on {url} (Ctrl-C to stop).\n"
            f"The services keep running; more traces: curl {gateway}/orders/42",
            file=out,
            flush=True,
        )

    try:
        await serve(store, host="127.0.0.1", port=port, on_listening=announce)
    except OSError as exc:
        raise AsynctraceError(
            f"cannot serve the dashboard on 127.0.0.1:{port}: {exc.strerror or exc} (try --port)"
        ) from None


# -- the five services -------------------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Mesh:
    """The five services, their traced client session, and the ports they listen on.

    Handlers sleep a few milliseconds where a real service would do work, with a
    seeded jitter, so every run tells the same story with believable numbers.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.urls: dict[str, str] = {}
        self.runners: list[web.AppRunner] = []
        self._session: ClientSession | None = None
        # aiohttp logs each unhandled handler exception with its traceback; the
        # payment failure is on purpose and the trace records it, so the services
        # log to a logger of the demo's own, which stays quiet.
        self.quiet = logging.getLogger("asynctrace.demo.services")
        self.quiet.setLevel(logging.CRITICAL + 1)

    async def __aenter__(self) -> _Mesh:
        # One session for every service's outgoing calls; each client span takes its
        # service from the server span it runs in.
        self._session = ClientSession(
            trace_configs=[client_trace_config()], timeout=ClientTimeout(total=10)
        )
        try:
            for name, app in self._apps().items():
                setup(app, service=name)
                runner = web.AppRunner(app, access_log=None, logger=self.quiet)
                await runner.setup()
                self.runners.append(runner)
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                host, port = runner.addresses[0][:2]
                self.urls[name] = f"http://{host}:{port}"
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()
        if self._session is not None:
            await self._session.close()

    def url_of(self, service: str) -> str:
        return self.urls[service]

    def port_of(self, service: str) -> str:
        return self.urls[service].rsplit(":", 1)[1]

    def _apps(self) -> dict[str, web.Application]:
        routes: dict[str, list[tuple[str, str, _Handler]]] = {
            "api-gateway": [
                ("GET", "/orders/{order_id}", self.gateway_order),
                ("POST", "/orders/{order_id}/checkout", self.gateway_checkout),
            ],
            "auth": [("POST", "/verify", self.auth_verify)],
            "orders": [
                ("GET", "/orders/{order_id}", self.orders_view),
                ("POST", "/orders/{order_id}/checkout", self.orders_checkout),
            ],
            "payment": [("POST", "/charges", self.payment_charge)],
            "inventory": [
                ("GET", "/stock/{sku}", self.inventory_stock),
                ("POST", "/reservations", self.inventory_reserve),
            ],
        }
        apps = {}
        for name in SERVICES:
            app = web.Application()
            for method, path, handler in routes[name]:
                app.router.add_route(method, path, handler)
            apps[name] = app
        return apps

    async def work(self, low_ms: float, high_ms: float) -> None:
        await asyncio.sleep(self.rng.uniform(low_ms, high_ms) / 1000.0)

    async def query(self, statement: str, low_ms: float, high_ms: float) -> None:
        """A simulated PostgreSQL query, traced as asynctrace.asyncpg traces real ones."""
        started = query_span(POSTGRESQL, statement)
        try:
            await self.work(low_ms, high_ms)
        except BaseException as exc:
            if started is not None:
                started.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if started is not None:
            started.__exit__(None, None, None)

    async def call(
        self, method: str, service: str, path: str, payload: Any = None
    ) -> tuple[int, Any]:
        assert self._session is not None
        async with self._session.request(
            method, self.urls[service] + path, json=payload
        ) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            await response.read()
            return response.status, None

    # api-gateway: authenticate, then route to orders; an upstream 5xx becomes a 502.

    async def _authenticated(self, method: str, path: str) -> web.StreamResponse:
        await self.work(1, 2)
        status, _ = await self.call("POST", "auth", "/verify", {"token": "demo-user-token"})
        if status != 200:
            return web.json_response({"error": "unauthorized"}, status=401)
        status, body = await self.call(method, "orders", path)
        await self.work(0.5, 1)
        if status >= 500:
            return web.json_response({"error": "upstream failure"}, status=502)
        return web.json_response(body, status=status)

    async def gateway_order(self, request: web.Request) -> web.StreamResponse:
        return await self._authenticated("GET", f"/orders/{request.match_info['order_id']}")

    async def gateway_checkout(self, request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        return await self._authenticated("POST", f"/orders/{order_id}/checkout")

    # auth

    async def auth_verify(self, request: web.Request) -> web.StreamResponse:
        await request.json()
        await self.work(8, 10)  # token signature and revocation list
        return web.json_response({"user": "customer-17"})

    # orders: a lookup fans out to inventory; a checkout reserves, then charges.

    async def orders_view(self, request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        await self.query(_LOAD_ORDER, 3, 6)
        skus = ("sku-100", "sku-200")
        stock = await asyncio.gather(*(self.call("GET", "inventory", f"/stock/{s}") for s in skus))
        return web.json_response(
            {"order": order_id, "items": [body for _, body in stock], "status": "paid"}
        )

    async def orders_checkout(self, request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        await self.query(_LOAD_ORDER, 2, 3)
        # The customer's order history, for the fraud check. For this customer it
        # scans the whole table (no index on customer_id): the seed's 2.5 s wait.
        slow_ms = _SLOW_QUERY_S * 1000
        await self.query(
            _ORDER_HISTORY, *((slow_ms, slow_ms) if order_id == SLOW_ORDER_ID else (1, 2))
        )
        status, _ = await self.call("POST", "inventory", "/reservations", {"order": order_id})
        if status >= 500:
            return web.json_response({"error": "reservation failed"}, status=502)
        status, _ = await self.call("POST", "payment", "/charges", {"order": order_id})
        if status >= 500:
            return web.json_response({"error": "payment failed"}, status=502)
        await self.query(_MARK_PAID, 1, 2)
        return web.json_response({"order": order_id, "status": "paid"})

    # payment

    async def payment_charge(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        await self.work(40, 50)  # the card processor's round trip
        if body.get("order") == FAILING_ORDER_ID:
            raise CardProcessorError("card processor unavailable (503 from acquirer)")
        return web.json_response({"charge": f"ch_{body.get('order')}", "status": "captured"})

    # inventory

    async def inventory_stock(self, request: web.Request) -> web.StreamResponse:
        await self.work(2, 4)
        return web.json_response({"sku": request.match_info["sku"], "available": 12})

    async def inventory_reserve(self, request: web.Request) -> web.StreamResponse:
        await request.json()
        await self.work(3, 5)
        return web.json_response({"reserved": True})
