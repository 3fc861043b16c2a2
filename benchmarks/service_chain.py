"""Scenario 6, five services in a chain (the demo's topology), end to end.

gateway -> orders -> inventory -> payments -> notify, each an aiohttp app calling
the next over HTTP with a keep-alive ``ClientSession``; all five share one process
and one event loop, as in ``asynctrace demo``. Traced: every app has
``asynctrace.aiohttp.setup(app, service=...)`` and every session the client
``TraceConfig``, exporting to a real Redis (nine spans a request: five server, four
client). The load generator calls the gateway from another process.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from asynctrace.testing import RedisServer, free_port
from benchmarks.load import choose_generator, load_rounds
from benchmarks.options import Options
from benchmarks.report import ScenarioResult, Table, Target, ratio
from benchmarks.rounds import Summary
from benchmarks.servers import serve_all

__all__ = ["NAME", "run"]

NAME = "chain"
TITLE = "6. Five-service chain end to end (gateway -> ... -> notify, one process)"
CONNECTIONS = 8


def _stored(url: str) -> tuple[int, int]:
    """(local-root entries in the trace index: five a request, spans of the newest trace)."""

    async def count() -> tuple[int, int]:
        client = aioredis.Redis.from_url(url)
        try:
            roots = int(await client.zcard("trace:index"))
            newest = await client.zrange("trace:index", -1, -1)
            if not newest:
                return roots, 0
            entry = newest[0]
            text = entry.decode() if isinstance(entry, bytes) else str(entry)
            trace_id = text.split('"')[1]
            await asyncio.sleep(0.5)  # the last batch of that trace may still be queued
            return roots, int(await client.llen(f"trace:{trace_id}"))
        finally:
            await client.aclose()

    return asyncio.run(count())


def run(options: Options) -> ScenarioResult:
    quick = options.quick
    wrk, wrk_note = choose_generator(options.load_tool)
    rounds, seconds = (1, 1.0 if wrk else 0.5) if quick else (5, 5.0)
    variants = {"untraced": "bare", "traced (asynctrace -> Redis)": "traced"}
    with RedisServer() as redis_server:
        ports = {name: [str(free_port()) for _ in range(5)] for name in variants}
        apps = serve_all(
            *(("chain", mode, *ports[name], redis_server.url) for name, mode in variants.items())
        )
        urls = {name: f"http://127.0.0.1:{ports[name][0]}/work" for name in variants}
        try:
            results = load_rounds(
                wrk,
                urls,
                connections=CONNECTIONS,
                seconds=seconds,
                rounds=rounds,
                warm_up=not quick,
            )
            roots, spans_per_trace = _stored(redis_server.url)
        finally:
            for app in apps:
                app.stop()

    tool = next(iter(results.values()))[0].tool
    table = Table(TITLE, ["variant", "p50 ms", "p99 ms", "requests/s", "errors"])
    data: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "tool": tool, "variants": {}}
    summaries = {}
    for name, runs in results.items():
        p50 = Summary.of([r.p50_ms for r in runs])
        p99 = Summary.of([r.p99_ms for r in runs])
        rate = Summary.of([r.requests_per_s for r in runs])
        summaries[name] = (p50, p99, rate)
        table.rows.append(
            [
                name,
                f"{p50.median:.2f} ({p50.p25:.2f}-{p50.p75:.2f})",
                f"{p99.median:.2f} ({p99.minimum:.2f}-{p99.maximum:.2f})",
                f"{rate.median:,.0f}",
                str(sum(r.errors for r in runs)),
            ]
        )
        data["variants"][name] = {
            "p50_ms": p50.as_dict(),
            "p99_ms": p99.as_dict(),
            "requests_per_s": rate.as_dict(),
        }
    bare = summaries["untraced"]
    traced = summaries["traced (asynctrace -> Redis)"]
    table.notes.append(
        f"{tool}, {CONNECTIONS} connections, {rounds} interleaved rounds of {seconds:g} s; "
        f"traced: p50 {ratio(traced[0].median, bare[0].median)}, p99 "
        f"{ratio(traced[1].median, bare[1].median)}, requests/s "
        f"{traced[2].median / bare[2].median:.0%} of untraced"
    )
    table.notes.append(
        f"Redis's trace index holds {roots} service entry spans (five a request); the "
        f"newest trace has {spans_per_trace} spans"
    )
    if wrk_note:
        table.notes.append(wrk_note)
    data["stored_traces"] = roots
    data["spans_in_newest_trace"] = spans_per_trace
    return ScenarioResult(
        NAME,
        table,
        [
            Target(
                "traced requests/s >= 70% of untraced",
                f"{traced[2].median / bare[2].median:.0%}",
                traced[2].median >= 0.7 * bare[2].median,
            ),
            Target(
                "(no target) end-to-end p50 with / without tracing",
                ratio(traced[0].median, bare[0].median),
                None,
            ),
        ],
        data,
    )
