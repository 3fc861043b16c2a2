"""Scenario 7, integration cost in-process: what each wave-2 integration adds per operation,
next to OpenTelemetry's instrumentation of the same library.

- ASGI: a Starlette app (route ``/hello/{name}``) called as an ASGI server calls it,
  without a socket: bare, with ``asynctrace.asgi.TraceMiddleware``, with
  OpenTelemetry's ``OpenTelemetryMiddleware`` (its default settings, which add a span
  per ``send``), both added with ``app.add_middleware``.
- httpx: ``AsyncClient.get`` through an in-process transport that answers with a
  streamed body: bare, wrapped in ``asynctrace.httpx.transport()``, wrapped in
  OpenTelemetry's ``AsyncOpenTelemetryTransport``.
- redis: ``GET`` on an in-process fakeredis client, inside a span: bare, after
  ``asynctrace.redis.instrument(client)``, after OpenTelemetry's
  ``RedisInstrumentor.instrument_client(client)``.

"added" is a variant's cost minus its bare library's, the median of per-round
differences of interleaved rounds. Both tracers export to a no-op exporter (asynctrace's
queue is drained between samples, outside the timing). A library or an OpenTelemetry
package that is missing makes its rows read "not installed".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asynctrace
from asynctrace.model import Span
from asynctrace.tracer import reset_tracer
from benchmarks import otel
from benchmarks.options import Options
from benchmarks.report import ScenarioResult, Table, Target, ratio
from benchmarks.rounds import Summary, interleaved_async, median_difference

__all__ = ["NAME", "run"]

NAME = "integrations"
TITLE = "7. Integration cost in-process vs OpenTelemetry (CPU us per operation, median (p25-p75))"

Sample = Callable[[], Awaitable[float]]


class _NoOpExporter:
    async def export(self, spans: Sequence[Span]) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def _timed(
    operation: Callable[[], Awaitable[Any]], count: int, before: Callable[[], Awaitable[Any]]
) -> Sample:
    async def sample() -> float:
        await before()
        # CPU time of this process: everything here runs on this thread, without a
        # socket, and a shared machine's other tenants do not count against it.
        start = time.process_time()
        for _ in range(count):
            await operation()
        return (time.process_time() - start) / count * 1e6

    return sample


def _otel_variant(
    provider: Any, library: str, package: str, build: Callable[[], Any]
) -> tuple[Any, list[str]]:
    """(OpenTelemetry's variant made by ``build``, []), or (None, [why it is missing]).

    ``build`` imports the instrumentation package itself: a missing package reads as
    "not installed", like a missing SDK.
    """
    if provider is None:
        return None, [f"{library}: {otel.UNAVAILABLE_REASON}"]
    try:
        return build(), []
    except ImportError as exc:
        return None, [f"{library}: {package} not installed ({exc.name})"]


# -- ASGI -------------------------------------------------------------------------------


def _asgi_variants(provider: Any) -> tuple[dict[str, Callable[[], Awaitable[Any]]], list[str]]:
    try:
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
    except ImportError as exc:
        return {}, [f"ASGI: starlette not installed ({exc.name})"]
    from asynctrace.asgi import TraceMiddleware

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello " + request.path_params["name"])

    def app() -> Starlette:
        return Starlette(routes=[Route("/hello/{name}", hello)])

    traced = app()
    traced.add_middleware(TraceMiddleware, service="hello")
    apps: dict[str, Any] = {"ASGI: bare Starlette": app(), "ASGI: asynctrace": traced}

    def instrumented() -> Starlette:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        made = app()
        made.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
        return made

    theirs, notes = _otel_variant(
        provider, "ASGI", "opentelemetry-instrumentation-asgi", instrumented
    )
    if theirs is not None:
        apps["ASGI: OpenTelemetry"] = theirs

    headers = [(b"host", b"orders.internal"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")]
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: Any) -> None:
        pass

    def call(application: Any) -> Callable[[], Awaitable[Any]]:
        async def one_request() -> None:
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/hello/world",
                "raw_path": b"/hello/world",
                "root_path": "",
                "query_string": b"",
                "headers": headers,
                "client": ("127.0.0.1", 50000),
                "server": ("127.0.0.1", 8000),
            }
            await application(scope, receive, send)

        return one_request

    return {name: call(application) for name, application in apps.items()}, notes


# -- httpx ------------------------------------------------------------------------------


def _httpx_variants(
    provider: Any,
) -> tuple[dict[str, Callable[[], Awaitable[Any]]], list[str], list[Any]]:
    try:
        import httpx
    except ImportError as exc:
        return {}, [f"httpx: httpx not installed ({exc.name})"], []
    import asynctrace.httpx

    class Local(httpx.AsyncBaseTransport):
        """Answers every request at once, with a body to stream as a server's would be."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                200, headers={"content-length": "5"}, stream=httpx.ByteStream(b"hello")
            )

    transports: dict[str, httpx.AsyncBaseTransport] = {
        "httpx: bare": Local(),
        "httpx: asynctrace": asynctrace.httpx.transport(Local()),
    }

    def instrumented() -> httpx.AsyncBaseTransport:
        from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport

        return AsyncOpenTelemetryTransport(Local(), tracer_provider=provider)

    theirs, notes = _otel_variant(
        provider, "httpx", "opentelemetry-instrumentation-httpx", instrumented
    )
    if theirs is not None:
        transports["httpx: OpenTelemetry"] = theirs
    clients = {name: httpx.AsyncClient(transport=t) for name, t in transports.items()}

    def call(client: httpx.AsyncClient) -> Callable[[], Awaitable[Any]]:
        async def one_request() -> None:
            response = await client.get("http://payment.internal/charges/42")
            assert response.status_code == 200

        return one_request

    return {name: call(client) for name, client in clients.items()}, notes, list(clients.values())


# -- redis ------------------------------------------------------------------------------


def _redis_variants(
    provider: Any,
) -> tuple[dict[str, Callable[[], Awaitable[Any]]], list[str], list[Any]]:
    try:
        import fakeredis
    except ImportError as exc:
        return {}, [f"redis: fakeredis not installed ({exc.name})"], []
    import asynctrace.redis

    def client() -> Any:
        return fakeredis.FakeAsyncRedis()

    clients: dict[str, Any] = {
        "redis: bare": client(),
        "redis: asynctrace": asynctrace.redis.instrument(client()),
    }

    def instrumented() -> Any:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        made = client()
        RedisInstrumentor.instrument_client(made, tracer_provider=provider)
        return made

    theirs, notes = _otel_variant(
        provider, "redis", "opentelemetry-instrumentation-redis", instrumented
    )
    if theirs is not None:
        clients["redis: OpenTelemetry"] = theirs

    def call(redis_client: Any) -> Callable[[], Awaitable[Any]]:
        async def one_command() -> None:
            await redis_client.get("order:42")

        return one_command

    return {name: call(c) for name, c in clients.items()}, notes, list(clients.values())


# -- the scenario -----------------------------------------------------------------------


async def _measure(quick: bool) -> ScenarioResult:
    rounds, count = (3, 100) if quick else (15, 1000)
    tracer = asynctrace.configure(service="bench", exporter=_NoOpExporter())
    provider = otel.sdk_provider()[0] if otel.AVAILABLE else None

    async def drain() -> None:
        await tracer.flush()

    asgi, asgi_notes = _asgi_variants(provider)
    httpx_calls, httpx_notes, httpx_clients = _httpx_variants(provider)
    redis_calls, redis_notes, redis_clients = _redis_variants(provider)
    groups = {"ASGI": asgi, "httpx": httpx_calls, "redis": redis_calls}
    notes = [*asgi_notes, *httpx_notes, *redis_notes]

    samples: dict[str, list[float]] = {}
    for library, variants in groups.items():
        if not variants:
            continue
        timed = {name: _timed(call, count, drain) for name, call in variants.items()}
        if library == "redis":
            # asynctrace makes data-store spans only inside a span: every variant runs
            # its commands inside one (made once per sample, outside the count).
            timed = {name: _in_a_span(sample) for name, sample in timed.items()}
        for sample in timed.values():
            await sample()  # warm-up
        samples.update(await interleaved_async(timed, rounds))

    for client in httpx_clients:
        await client.aclose()
    for client in redis_clients:
        await client.aclose()
    await asynctrace.shutdown()
    reset_tracer()
    if provider is not None:
        provider.shutdown()

    table = Table(TITLE, ["variant", "us/op", "added us", "OTel added / asynctrace added"])
    data: dict[str, Any] = {"rounds": rounds, "operations_per_sample": count, "variants": {}}
    targets = []
    otel_vs_ours: dict[str, float] = {}
    for library, variants in groups.items():
        names = list(variants)
        if not names:
            table.rows.append([f"{library}: not installed", "-", "-", "-"])
            continue
        bare = samples[names[0]]
        ours = median_difference(samples[f"{library}: asynctrace"], bare)
        theirs_name = f"{library}: OpenTelemetry"
        theirs = median_difference(samples[theirs_name], bare) if theirs_name in samples else None
        for name in names:
            summary = Summary.of(samples[name])
            added = median_difference(samples[name], bare)
            table.rows.append(
                [
                    name,
                    f"{summary.median:.2f} ({summary.p25:.2f}-{summary.p75:.2f})",
                    "-" if name == names[0] else f"{added:+.2f}",
                    # A negative or zero cost of ours is noise: no meaningful ratio.
                    (ratio(added, ours) if ours > 0 else "n/a") if name == theirs_name else "",
                ]
            )
            data["variants"][name] = {"us_per_operation": summary.as_dict(), "added_us": added}
        if theirs is None:
            table.rows.append([f"{theirs_name}: not installed", "-", "-", "-"])
        elif ours > 0:
            otel_vs_ours[library] = theirs / ours
        targets.append(
            Target(
                f"{library}: asynctrace adds less than OpenTelemetry's instrumentation",
                f"{ours:.2f} us vs {theirs:.2f} us"
                if theirs is not None
                else f"{ours:.2f} us (OpenTelemetry not installed)",
                ours < theirs if theirs is not None else None,
            )
        )
    table.notes.extend(notes)
    table.notes.append(
        f"{rounds} interleaved rounds of {count} operations per variant; added = median of "
        "per-round differences from the bare library; CPU time, no socket; both tracers export "
        "to a no-op exporter"
    )
    data["otel_vs_asynctrace"] = otel_vs_ours
    return ScenarioResult(NAME, table, targets, data)


def _in_a_span(sample: Sample) -> Sample:
    async def inside() -> float:
        with asynctrace.span("bench request"):
            return await sample()

    return inside


def run(options: Options) -> ScenarioResult:
    return asyncio.run(_measure(options.quick))
