"""Scenario 5, the seed's way vs asynctrace's: awaited writes per request, or a queue.

The seed tracer awaited its Redis writes inline: every request waited for RPUSH,
EXPIRE, ZADD, ZREMRANGEBYRANK and SADD (five round trips) before its response went
out. asynctrace's middleware appends the finished span to a queue, and one
background task writes batches in one round trip each. Measured two ways, both
against the same real Redis on loopback: in-process (the handler chain called
directly, as in scenario 2; asynctrace's time includes flushing every span it made
to Redis within the sample), and over HTTP with the load generator of scenario 3.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import asynctrace
from asynctrace.testing import RedisServer, free_port
from asynctrace.tracer import reset_tracer
from benchmarks.apps import build_app
from benchmarks.load import LoadResult, choose_generator, load_rounds
from benchmarks.options import Options
from benchmarks.report import ScenarioResult, Table, Target, ratio
from benchmarks.rounds import Summary, interleaved_async
from benchmarks.servers import serve_all

__all__ = ["NAME", "run"]

NAME = "seed"
TITLE = "5. The seed's awaited writes per request vs asynctrace's batched export"
CONNECTIONS = 32


async def _in_process(url: str, quick: bool) -> dict[str, Summary]:
    rounds, count = (2, 50) if quick else (11, 500)
    redis = aioredis.Redis.from_url(url)
    tracer = asynctrace.configure(service="hello", redis_url=url)
    apps = {
        "bare aiohttp": build_app("bare"),
        "seed: 5 awaited writes": build_app("seed", redis=redis),
        "asynctrace setup(app)": build_app("asynctrace-setup"),
    }
    for app in apps.values():
        app.freeze()

    def sampler(name: str, app: web.Application) -> Any:
        async def sample() -> float:
            template = make_mocked_request("GET", "/hello/0", headers={"Host": "h"}, app=app)
            requests = [template.clone(rel_url=f"/hello/{n}") for n in range(count)]
            await tracer.flush()
            start = time.perf_counter()
            for request in requests:
                await app._handle(request)
            if name.startswith("asynctrace"):
                assert await tracer.flush()  # the export is part of asynctrace's bill
            return (time.perf_counter() - start) / count * 1e6

        return sample

    variants = {name: sampler(name, app) for name, app in apps.items()}
    for sample in variants.values():
        await sample()
    samples = await interleaved_async(variants, rounds)
    await asynctrace.shutdown()
    reset_tracer()
    await redis.aclose()
    return {name: Summary.of(values) for name, values in samples.items()}


def _over_http(url: str, options: Options) -> tuple[dict[str, list[LoadResult]], str]:
    wrk, _ = choose_generator(options.load_tool)
    rounds, seconds = (1, 1.0 if wrk else 0.5) if options.quick else (3, 5.0)
    modes = {"seed: 5 awaited writes": "seed", "asynctrace setup(app)": "asynctrace-setup"}
    ports = {name: free_port() for name in modes}
    apps = serve_all(*((mode, str(ports[name]), url) for name, mode in modes.items()))
    targets = {name: f"http://127.0.0.1:{port}/hello/x" for name, port in ports.items()}
    try:
        results = load_rounds(
            wrk,
            targets,
            connections=CONNECTIONS,
            seconds=seconds,
            rounds=rounds,
            warm_up=not options.quick,
        )
    finally:
        for app in apps:
            app.stop()
    return results, "wrk" if wrk else "aiohttp loop"


def run(options: Options) -> ScenarioResult:
    quick = options.quick
    with RedisServer() as server:
        in_process = asyncio.run(_in_process(server.url, quick))
        over_http, tool = _over_http(server.url, options)

    bare = in_process["bare aiohttp"].median
    table = Table(
        TITLE,
        ["variant", "in-process us/request", "added us", "HTTP requests/s", "HTTP p99 ms"],
    )
    data: dict[str, Any] = {"in_process": {}, "http": {}}
    for name, summary in in_process.items():
        runs = over_http.get(name, [])
        rate = Summary.of([r.requests_per_s for r in runs]) if runs else None
        p99 = Summary.of([r.p99_ms for r in runs]) if runs else None
        table.rows.append(
            [
                name,
                f"{summary.median:.1f} ({summary.p25:.1f}-{summary.p75:.1f})",
                "-" if name == "bare aiohttp" else f"{summary.median - bare:+.1f}",
                f"{rate.median:,.0f}" if rate else "(scenario 3)",
                f"{p99.median:.2f}" if p99 else "",
            ]
        )
        data["in_process"][name] = summary.as_dict()
        if rate and p99:
            data["http"][name] = {"requests_per_s": rate.as_dict(), "p99_ms": p99.as_dict()}
    seed = in_process["seed: 5 awaited writes"].median - bare
    ours = in_process["asynctrace setup(app)"].median - bare
    table.notes.append(
        f"in-process: sequential requests, asynctrace's time includes flushing its spans to "
        f"Redis; the seed's added cost is {ratio(seed, ours)} asynctrace's"
    )
    table.notes.append(f"HTTP: {tool}, {CONNECTIONS} connections, interleaved rounds")
    return ScenarioResult(
        NAME,
        table,
        [Target("(no target) seed's added cost / asynctrace's", ratio(seed, ours), None)],
        data,
    )
