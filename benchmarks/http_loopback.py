"""Scenario 3, HTTP over loopback: a hello-world aiohttp app bare, traced by
asynctrace (``setup(app)``, exporting to a real Redis) and by OpenTelemetry (its
aiohttp server middleware, ``BatchSpanProcessor``, no-op exporter). A fourth app,
asynctrace with an exporter that drops every batch, splits asynctrace's cost into
tracing (middleware, spans, queue) and export (encoding, Redis); a naive in-memory
tracing middleware (``apps.naive_middleware``) is the yardstick for the tracing part.

Each app runs in its own process, all at once; the load generator (``wrk``,
one thread, keep-alive connections, each sending its next request when the last one
answered) runs in another, against one app at a time, in interleaved rounds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from asynctrace.testing import RedisServer, free_port
from benchmarks import otel
from benchmarks.load import choose_generator, load_rounds
from benchmarks.options import Options
from benchmarks.report import ScenarioResult, Table, Target
from benchmarks.rounds import Summary
from benchmarks.servers import serve_all

__all__ = ["NAME", "run"]

NAME = "http"
TITLE = "3. Hello world over loopback (requests/s and latency, load from another process)"
CONNECTIONS = 32


def _exported(url: str) -> int:
    async def count() -> int:
        client = aioredis.Redis.from_url(url)
        try:
            return int(await client.zcard("trace:index"))
        finally:
            await client.aclose()

    return asyncio.run(count())


def variants() -> tuple[dict[str, str], str]:
    """({row name: app mode}, why OpenTelemetry's row is missing, or "").

    The OpenTelemetry row needs the SDK and its aiohttp server instrumentation; with
    either missing the row is left out and the reason becomes a note.
    """
    modes = {
        "bare aiohttp": "bare",
        "asynctrace -> Redis": "asynctrace-setup",
        "asynctrace, export dropped": "asynctrace-noop",
        "naive in-memory middleware": "naive",
    }
    why_no_otel = otel.aiohttp_unavailable_reason()
    if not why_no_otel:
        modes["OpenTelemetry (no-op exporter)"] = "otel"
    return modes, why_no_otel


def run(options: Options) -> ScenarioResult:
    quick = options.quick
    wrk, wrk_note = choose_generator(options.load_tool)
    rounds, seconds = (1, 1.0 if wrk else 0.5) if quick else (9, 3.0)
    modes, why_no_otel = variants()
    with RedisServer() as redis_server:
        ports = {name: free_port() for name in modes}
        apps = serve_all(
            *((mode, str(ports[name]), redis_server.url) for name, mode in modes.items())
        )
        urls = {name: f"http://127.0.0.1:{port}/hello/world" for name, port in ports.items()}
        try:
            results = load_rounds(
                wrk,
                urls,
                connections=CONNECTIONS,
                seconds=seconds,
                rounds=rounds,
                warm_up=not quick,
            )
            exported = _exported(redis_server.url)
        finally:
            for app in apps:
                app.stop()

    tool = next(iter(results.values()))[0].tool
    table = Table(
        TITLE,
        ["variant", "requests/s", "vs bare", "p50 ms", "p99 ms", "p99 vs bare", "errors"],
    )
    data: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "tool": tool, "variants": {}}
    bare_runs = results["bare aiohttp"]
    # Ratios are taken round by round (each variant against the bare run of the same
    # round) and their median reported: steadier than a ratio of medians on a machine
    # whose load changes between rounds.
    shares: dict[str, float] = {}
    p99_ratios: dict[str, float] = {}
    for name, runs in results.items():
        rate = Summary.of([r.requests_per_s for r in runs])
        p50 = Summary.of([r.p50_ms for r in runs])
        p99 = Summary.of([r.p99_ms for r in runs])
        pairs = list(zip(runs, bare_runs, strict=True))
        shares[name] = Summary.of([r.requests_per_s / b.requests_per_s for r, b in pairs]).median
        p99_ratios[name] = Summary.of([r.p99_ms / b.p99_ms for r, b in pairs]).median
        errors = sum(r.errors for r in runs)
        table.rows.append(
            [
                name,
                f"{rate.median:,.0f} ({rate.p25:,.0f}-{rate.p75:,.0f})",
                f"{shares[name]:.0%}",
                f"{p50.median:.2f}",
                f"{p99.median:.2f} ({p99.p25:.2f}-{p99.p75:.2f})",
                f"{p99_ratios[name]:.2f}x",
                str(errors),
            ]
        )
        data["variants"][name] = {
            "requests_per_s": rate.as_dict(),
            "p50_ms": p50.as_dict(),
            "p99_ms": p99.as_dict(),
            "share_of_bare_requests_per_s": shares[name],
            "p99_vs_bare": p99_ratios[name],
            "errors": errors,
        }
    table.notes.append(
        f"{tool}, {CONNECTIONS} connections, {rounds} interleaved rounds of {seconds:g} s; "
        "'vs bare' columns are medians of per-round ratios; the traced app put "
        f"{exported} root spans in Redis's trace index"
    )
    if wrk_note:
        table.notes.append(wrk_note)
    if why_no_otel:
        table.notes.append(why_no_otel)
    share = shares["asynctrace -> Redis"]
    p99_ratio = p99_ratios["asynctrace -> Redis"]
    targets = [
        Target(">= 70% of bare requests/s with export to Redis", f"{share:.0%}", share >= 0.7),
        Target("p99 <= 2x bare p99", f"{p99_ratio:.2f}x", p99_ratio <= 2.0),
    ]
    data["exported_root_spans"] = exported
    return ScenarioResult(NAME, table, targets, data)
