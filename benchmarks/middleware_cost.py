"""Scenario 2, middleware cost in-process: µs a request pays for being traced.

The application's whole handler chain runs in-process, without a socket: each
request is an aiohttp ``make_mocked_request`` handled by ``Application._handle``,
which resolves the route with the app's real router (``/hello/{name}``), builds the
middleware chain and calls the handler, exactly as aiohttp's server does. "added" is
a variant's cost minus the bare app's, measured in the same interleaved rounds.
asynctrace and OpenTelemetry both export to a no-op exporter here (asynctrace's
queue is drained between samples, outside the timing).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import asynctrace
from asynctrace.model import Span
from asynctrace.tracer import reset_tracer
from benchmarks import otel
from benchmarks.apps import build_app
from benchmarks.options import Options
from benchmarks.report import ScenarioResult, Table, Target, ratio
from benchmarks.rounds import Summary, interleaved_async, median_difference

__all__ = ["NAME", "run"]

NAME = "middleware"
TITLE = "2. aiohttp middleware cost in-process (us per request, median (p25-p75))"

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BASE_HEADERS = {
    "Host": "orders.internal",
    "User-Agent": "bench/1.0",
    "Accept": "*/*",
}


class _NoOpExporter:
    async def export(self, spans: Sequence[Span]) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def _frozen(app: web.Application) -> web.Application:
    app.freeze()
    return app


def _requests(app: web.Application, count: int, headers: dict[str, str]) -> list[web.Request]:
    # make_mocked_request builds mocks (~0.5 ms); clones of one share them (~15 us).
    template = make_mocked_request("GET", "/hello/0", headers=headers, app=app)
    return [template.clone(rel_url=f"/hello/{number}") for number in range(count)]


def _sampler(
    app: web.Application, count: int, headers: dict[str, str], before: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[float]]:
    async def sample() -> float:
        requests = _requests(app, count, headers)
        await before()
        handle = app._handle
        start = time.perf_counter()
        for request in requests:
            await handle(request)
        return (time.perf_counter() - start) / count * 1e6

    return sample


async def _measure(quick: bool) -> ScenarioResult:
    rounds, count = (3, 200) if quick else (21, 2000)
    tracer = asynctrace.configure(service="hello", exporter=_NoOpExporter())
    plain = dict(BASE_HEADERS)
    continued = {**BASE_HEADERS, "traceparent": TRACEPARENT}
    apps: dict[str, tuple[web.Application, dict[str, str]]] = {
        "bare aiohttp": (_frozen(build_app("bare")), plain),
        "empty middleware (reference)": (_frozen(build_app("empty")), plain),
        "naive in-memory middleware (reference)": (_frozen(build_app("naive")), plain),
        "asynctrace middleware(), new trace": (_frozen(build_app("asynctrace")), plain),
        "asynctrace middleware(), incoming traceparent": (
            _frozen(build_app("asynctrace")),
            continued,
        ),
        "asynctrace setup(app), new trace": (_frozen(build_app("asynctrace-setup")), plain),
    }
    provider = None
    why_no_otel = otel.aiohttp_unavailable_reason()
    if not why_no_otel:
        provider, _ = otel.sdk_provider()
        middleware, why_no_otel = otel.aiohttp_middleware(provider)
        if middleware is not None:
            apps["OpenTelemetry, new trace"] = (
                _frozen(build_app("otel", otel_provider=provider)),
                plain,
            )
            apps["OpenTelemetry, incoming traceparent"] = (
                _frozen(build_app("otel", otel_provider=provider)),
                continued,
            )

    async def drain() -> None:
        await tracer.flush()

    variants = {name: _sampler(app, count, headers, drain) for name, (app, headers) in apps.items()}
    for sample in variants.values():
        await sample()  # warm-up
    samples = await interleaved_async(variants, rounds)
    stats = {name: Summary.of(values) for name, values in samples.items()}
    await asynctrace.shutdown()
    reset_tracer()
    if provider is not None:
        provider.shutdown()

    # Added cost is the median of round-by-round differences from the bare app: the
    # variants of a round ran side by side, so a slow spell of the machine cancels.
    added_us = {
        name: median_difference(values, samples["bare aiohttp"]) for name, values in samples.items()
    }
    table = Table(TITLE, ["variant", "us/request", "added us", "added vs asynctrace"])
    # Each OpenTelemetry case against asynctrace in the same case: a new trace against
    # a new trace, an incoming traceparent against an incoming traceparent.
    ours_by_case = {
        "new trace": added_us["asynctrace middleware(), new trace"],
        "incoming traceparent": added_us["asynctrace middleware(), incoming traceparent"],
    }
    ours_added = max(ours_by_case.values())
    otel_vs_ours = {
        case: added_us[f"OpenTelemetry, {case}"] / ours
        for case, ours in ours_by_case.items()
        if f"OpenTelemetry, {case}" in added_us and ours > 0
    }
    data: dict[str, Any] = {"rounds": rounds, "requests_per_sample": count, "variants": {}}
    for name, summary in stats.items():
        added = added_us[name]
        case = name.removeprefix("OpenTelemetry, ")
        table.rows.append(
            [
                name,
                f"{summary.median:.2f} ({summary.p25:.2f}-{summary.p75:.2f})",
                "-" if name == "bare aiohttp" else f"{added:+.2f}",
                ratio(added, ours_by_case[case]) if case in ours_by_case else "",
            ]
        )
        data["variants"][name] = {"us_per_request": summary.as_dict(), "added_us": added}
    if why_no_otel:
        table.notes.append(why_no_otel)
    table.notes.append(
        f"{rounds} interleaved rounds of {count} requests; added = median of per-round "
        "differences from bare; Application._handle with a real router, no socket; both "
        "tracers export to a no-op exporter"
    )
    naive_added = added_us["naive in-memory middleware (reference)"]
    targets = [
        Target(
            "middleware adds <= 4 us per request in-process",
            f"{ours_added:.2f} us (the worse of new trace / traceparent)",
            ours_added <= 4.0,
        ),
        Target(
            "middleware adds no more than a naive in-memory middleware (the issue's ~4 us "
            "yardstick, measured in this run)",
            f"{ours_added:.2f} us vs {naive_added:.2f} us",
            ours_added <= naive_added,
        ),
    ]
    worst = min(otel_vs_ours.values()) if len(otel_vs_ours) == len(ours_by_case) else None
    targets.append(
        Target(
            ">= 15x less added than OpenTelemetry's instrumentation (the worse of its new-trace "
            "and traceparent cases, each against asynctrace's same case)",
            (
                ", ".join(f"{case} {value:.2f}x" for case, value in otel_vs_ours.items())
                if worst is not None
                else "OTel not installed"
            ),
            worst >= 15 if worst is not None else None,
        )
    )
    data["otel_vs_asynctrace_by_case"] = otel_vs_ours
    return ScenarioResult(NAME, table, targets, data)


def run(options: Options) -> ScenarioResult:
    quick = options.quick
    return asyncio.run(_measure(quick))
