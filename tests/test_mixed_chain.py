"""A mixed chain makes one trace: aiohttp gateway -> FastAPI orders (uvicorn) -> aiohttp payment.

The gateway and payment are aiohttp apps in this process; ``orders`` is the FastAPI
app of ``mixed_chain_orders.py`` under a real uvicorn process, calling payment with
httpx and querying the machine's PostgreSQL and the session's redis-server. Every
process exports to that redis-server; the test reads the trace back as the CLI would.
No handler holds tracing code.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

import asynctrace
from asynctrace.aiohttp import client_trace_config, setup
from asynctrace.analysis import bottleneck, error_chain, format_ms
from asynctrace.model import Span, Trace
from asynctrace.store import TraceStore
from asynctrace.testing import free_port
from asynctrace.tracer import reset_tracer

ROOT = Path(__file__).resolve().parent.parent
SLOW_ORDER_ID = "4711"
DECLINED_ORDER_ID = "1313"
# Long enough to be most of orders' time next to loopback calls, short for the suite.
SLOW_ORDER_SECONDS = 0.4
SESSION = web.AppKey("session", aiohttp.ClientSession)
ORDERS_URL = web.AppKey("orders_url", str)


@dataclass
class Chain:
    gateway: URL
    orders_port: int
    payment_port: int
    redis_url: str
    orders_process: asyncio.subprocess.Process

    async def stop_orders(self) -> str:
        """Stop uvicorn as an operator would (its lifespan flushes what orders traced);
        what it wrote to stderr since it started serving."""
        process = self.orders_process
        if process.returncode is not None:
            return ""
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        async with asyncio.timeout(20):
            log = (await process.stderr.read()).decode(errors="replace")
            await process.wait()
        return log


async def gateway_checkout(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    url = f"{request.app[ORDERS_URL]}/orders/{order_id}/checkout"
    async with request.app[SESSION].post(url) as response:
        body = await response.read()
        status = 502 if response.status >= 500 else response.status
        return web.Response(status=status, body=body, content_type="application/json")


async def payment_charge(request: web.Request) -> web.Response:
    if request.match_info["order_id"] == DECLINED_ORDER_ID:
        raise RuntimeError("card declined")
    return web.json_response({"charged": True})


async def _session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(trace_configs=[client_trace_config()]) as session:
        app[SESSION] = session
        yield


async def _serve(runners: list[web.AppRunner], app: web.Application, service: str) -> int:
    setup(app, service=service)
    runner = web.AppRunner(app)
    await runner.setup()
    runners.append(runner)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return int(runner.addresses[0][1])


async def _start_uvicorn(port: int, env: dict[str, str]) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "mixed_chain_orders:app",
        "--app-dir",
        str(ROOT / "tests"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await process.stderr.readline()).decode(errors="replace")
                if not line:
                    raise AssertionError("uvicorn exited before serving:\n" + "".join(seen))
                seen.append(line)
                if "Uvicorn running on" in line:  # listening (startup ran before)
                    break
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return process


@pytest.fixture
def orders_port() -> int:
    return free_port()


@pytest.fixture
async def chain(redis_url: str, postgres_dsn: str, orders_port: int) -> AsyncIterator[Chain]:
    asynctrace.configure(service="unnamed", redis_url=redis_url, max_delay_s=0.01)
    runners: list[web.AppRunner] = []
    process: asyncio.subprocess.Process | None = None
    try:
        payment_app = web.Application()
        payment_app.router.add_post("/charges/{order_id}", payment_charge)
        payment_port = await _serve(runners, payment_app, "payment")

        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis_url,
            "POSTGRES_DSN": postgres_dsn,
            "PAYMENT_URL": f"http://127.0.0.1:{payment_port}",
            "SLOW_ORDER_SECONDS": str(SLOW_ORDER_SECONDS),
        }
        process = await _start_uvicorn(orders_port, env)

        gateway_app = web.Application()
        gateway_app.router.add_post("/orders/{order_id}/checkout", gateway_checkout)
        gateway_app[ORDERS_URL] = f"http://127.0.0.1:{orders_port}"
        gateway_app.cleanup_ctx.append(_session)
        gateway_port = await _serve(runners, gateway_app, "api-gateway")

        chain = Chain(
            URL.build(scheme="http", host="127.0.0.1", port=gateway_port),
            orders_port,
            payment_port,
            redis_url,
            process,
        )
        yield chain
        await chain.stop_orders()
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        if process is not None and process.stderr is not None:
            await process.stderr.read()
        for runner in reversed(runners):
            await runner.cleanup()
        await asynctrace.shutdown()
        reset_tracer()


async def checkout(chain: Chain, order_id: str) -> tuple[int, str]:
    """Call the gateway as an untraced outside client: (status, X-Trace-ID)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(chain.gateway.with_path(f"/orders/{order_id}/checkout")) as response,
    ):
        await response.read()
        return response.status, response.headers["X-Trace-ID"]


async def stored_traces(chain: Chain, *trace_ids: str) -> list[Trace]:
    """The traces, once every process exported its part."""
    log = await chain.stop_orders()
    assert "Traceback" not in log
    assert "asynctrace" not in log  # no internal failure, no unexported spans
    assert await asynctrace.flush(timeout_s=5.0)
    async with TraceStore.from_url(chain.redis_url) as store:
        traces = [await store.get_trace(trace_id) for trace_id in trace_ids]
    assert all(trace is not None for trace in traces)
    return [trace for trace in traces if trace is not None]


def one(trace: Trace, service: str, kind: str, operation: str) -> Span:
    (span,) = [
        span
        for span in trace.spans
        if (span.service, span.kind, span.operation) == (service, kind, operation)
    ]
    return span


def linked_spans(trace: Trace, chain: Chain) -> dict[str, Span]:
    """Every span of a checkout by a short name, asserting the exact tree."""
    spans = {
        "gateway": one(trace, "api-gateway", "server", "POST /orders/{order_id}/checkout"),
        "gateway->orders": one(
            trace, "api-gateway", "client", f"HTTP POST 127.0.0.1:{chain.orders_port}"
        ),
        "orders": one(trace, "orders", "server", "POST /orders/{order_id}/checkout"),
        "cache get": one(trace, "orders", "client", "redis GET"),
        "query": one(trace, "orders", "client", "postgres SELECT \u2026 FROM orders WHERE id = ?"),
        "orders->payment": one(
            trace, "orders", "client", f"HTTP POST 127.0.0.1:{chain.payment_port}"
        ),
        "payment": one(trace, "payment", "server", "POST /charges/{order_id}"),
    }
    parents = {
        "gateway->orders": "gateway",
        "orders": "gateway->orders",
        "cache get": "orders",
        "query": "orders",
        "orders->payment": "orders",
        "payment": "orders->payment",
    }
    for child, parent in parents.items():
        assert spans[child].parent_span_id == spans[parent].span_id, child
    assert spans["gateway"].parent_span_id is None
    return spans


async def test_fastapi_and_aiohttp_services_make_one_trace_naming_the_slow_query(
    chain: Chain,
) -> None:
    status, trace_id = await checkout(chain, SLOW_ORDER_ID)
    (trace,) = await stored_traces(chain, trace_id)

    assert status == 200
    spans = linked_spans(trace, chain)
    assert {span.trace_id for span in trace.spans} == {trace_id}
    assert set(trace.services) == {"api-gateway", "orders", "payment"}
    pipeline = one(trace, "orders", "client", "redis PIPELINE")
    assert pipeline.parent_span_id == spans["orders"].span_id
    assert pipeline.tags["db.redis.commands"] == "SET EXPIRE"
    query = spans["query"]
    assert query.tags["db.system"] == "postgresql"
    assert query.tags["db.statement"] == (
        "SELECT id, status, total, pg_sleep(?) FROM orders WHERE id = ?"
    )
    assert query.tags["db.rows"] == "1"
    assert spans["orders"].tags["http.route"] == "/orders/{order_id}/checkout"
    assert spans["orders"].tags["peer.service"] == "api-gateway"
    assert spans["payment"].tags["peer.service"] == "orders"
    found = bottleneck(trace)
    assert found is not None
    assert found.service == "orders"
    assert found.span is spans["orders"]
    assert found.slow_operation is not None
    assert found.slow_operation.span is query
    assert found.sentence.startswith("orders is the bottleneck: ")
    # pg_sleep held orders up: most of its time is the query, which the sentence names.
    assert found.slow_operation.critical_ms >= SLOW_ORDER_SECONDS * 1000
    assert found.sentence.endswith(
        " on the critical path, in POST /orders/{order_id}/checkout \u2014 "
        f"{format_ms(found.slow_operation.critical_ms)} of it in "
        "postgres SELECT \u2026 FROM orders WHERE id = ?"
    )


async def test_payment_error_chains_through_fastapi_to_the_gateway(chain: Chain) -> None:
    status, trace_id = await checkout(chain, DECLINED_ORDER_ID)
    (trace,) = await stored_traces(chain, trace_id)

    assert status == 502
    spans = linked_spans(trace, chain)
    found = error_chain(trace)
    assert found is not None
    assert found.origin is spans["payment"]
    assert [hop.span for hop in found.path] == [
        spans["payment"],
        spans["orders->payment"],
        spans["orders"],
        spans["gateway->orders"],
        spans["gateway"],
    ]
    assert spans["orders"].tags["http.status"] == "502"
    assert found.sentence == (
        "payment failed first: RuntimeError: card declined (in POST /charges/{order_id}),"
        " surfacing as HTTP 502 at api-gateway"
    )
