"""Scenario 1, span cost: what one span costs the code that makes it.

Each variant is timed against a floor measured in the same run: a minimal span
object (``__slots__``; a span id from the same pooled id source, a trace id from the
parent or two pool draws; two clock reads; a ContextVar set and reset; a list append
as its "export"), used with ``async with``/``with`` exactly like the real thing, so
the comparison is like for like. OpenTelemetry is the SDK's ``TracerProvider`` with a
``BatchSpanProcessor`` and a no-op exporter. asynctrace is configured with a no-op
exporter: a span's cost is its start, its end and its hand-off to the export queue
(the queue is drained between samples, outside the timed loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar, Token
from typing import Any

import asynctrace
from asynctrace.ids import new_span_id, new_trace_id
from asynctrace.model import Span
from asynctrace.tracer import reset_tracer
from benchmarks import otel
from benchmarks.options import Options
from benchmarks.report import ScenarioResult, Table, Target
from benchmarks.rounds import Summary, interleaved_async, median_ratio

__all__ = ["NAME", "run"]

NAME = "span"
TITLE = "1. Span cost (ns per span, median (p25-p75))"

TAGS = {
    "http.method": "GET",
    "http.route": "/orders/{id}",
    "http.status": "200",
    "order.id": "42",
    "user.tier": "gold",
}

# ---------------------------------------------------------------------------- floor

_floor_active: ContextVar[FloorSpan | None] = ContextVar("floor_active", default=None)
_floor_sink: list[FloorSpan] = []
_clock = time.time


class FloorSpan:
    """The least a span can be: ids, start and end, current while open, then queued."""

    __slots__ = ("end", "parent_span_id", "span_id", "start", "tags", "token", "trace_id")

    trace_id: str
    span_id: str
    parent_span_id: str | None
    start: float
    end: float
    tags: dict[str, str] | None
    token: Token[FloorSpan | None] | None

    def __enter__(self) -> FloorSpan:
        self.token = _floor_active.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end = _clock()
        if self.token is not None:
            _floor_active.reset(self.token)
        _floor_sink.append(self)

    async def __aenter__(self) -> FloorSpan:
        self.token = _floor_active.set(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.end = _clock()
        if self.token is not None:
            _floor_active.reset(self.token)
        _floor_sink.append(self)


def floor_span(tags: dict[str, str] | None = None) -> FloorSpan:
    new = FloorSpan.__new__(FloorSpan)
    parent = _floor_active.get()
    if parent is None:
        new.trace_id = new_trace_id()
        new.parent_span_id = None
    else:
        new.trace_id = parent.trace_id
        new.parent_span_id = parent.span_id
    new.span_id = new_span_id()
    new.tags = dict(tags) if tags else None
    new.token = None
    new.start = _clock()
    return new


class _NoOpExporter:
    async def export(self, spans: Sequence[Span]) -> None:
        pass

    async def shutdown(self) -> None:
        pass


# ----------------------------------------------------------------------- variants

Sample = Callable[[], Awaitable[float]]


def _variants(iterations: int, otel_tracer: Any) -> dict[str, dict[str, Sample]]:
    """{row: {"floor" | "asynctrace" | "otel": sample}}; each sample returns ns/span."""
    n = iterations
    perf = time.perf_counter

    async def floor_child() -> float:
        async with floor_span():
            start = perf()
            for _ in range(n):
                async with floor_span():
                    pass
            return (perf() - start) / n * 1e9

    async def ours_child() -> float:
        async with asynctrace.span("parent"):
            start = perf()
            for _ in range(n):
                async with asynctrace.span("child"):
                    pass
            return (perf() - start) / n * 1e9

    async def floor_root() -> float:
        start = perf()
        for _ in range(n):
            async with floor_span(TAGS):
                pass
        return (perf() - start) / n * 1e9

    async def ours_root() -> float:
        start = perf()
        for _ in range(n):
            async with asynctrace.span("root", tags=TAGS):
                pass
        return (perf() - start) / n * 1e9

    async def plain_work() -> int:
        return 1

    async def floor_work() -> int:
        async with floor_span():
            return await plain_work()

    @asynctrace.traced
    async def ours_work() -> int:
        return 1

    async def floor_traced() -> float:
        async with floor_span():
            start = perf()
            for _ in range(n):
                await floor_work()
            return (perf() - start) / n * 1e9

    async def ours_traced() -> float:
        async with asynctrace.span("parent"):
            start = perf()
            for _ in range(n):
                await ours_work()
            return (perf() - start) / n * 1e9

    def floor_sync_loop() -> float:
        with floor_span():
            start = perf()
            for _ in range(n):
                with floor_span():
                    pass
            return (perf() - start) / n * 1e9

    def ours_sync_loop() -> float:
        with asynctrace.span("parent"):
            start = perf()
            for _ in range(n):
                with asynctrace.span("child"):
                    pass
            return (perf() - start) / n * 1e9

    async def floor_sync() -> float:
        return floor_sync_loop()

    async def ours_sync() -> float:
        return ours_sync_loop()

    rows: dict[str, dict[str, Sample]] = {
        "async with span() child": {"floor": floor_child, "asynctrace": ours_child},
        "async with span() root, 5 tags": {"floor": floor_root, "asynctrace": ours_root},
        "@traced coroutine call": {"floor": floor_traced, "asynctrace": ours_traced},
        "sync with span() child": {"floor": floor_sync, "asynctrace": ours_sync},
    }
    if otel_tracer is not None:
        tracer = otel_tracer

        async def otel_child() -> float:
            with tracer.start_as_current_span("parent"):
                start = perf()
                for _ in range(n):
                    with tracer.start_as_current_span("child"):
                        pass
                return (perf() - start) / n * 1e9

        async def otel_root() -> float:
            start = perf()
            for _ in range(n):
                with tracer.start_as_current_span("root", attributes=TAGS):
                    pass
            return (perf() - start) / n * 1e9

        @tracer.start_as_current_span("work")  # type: ignore[untyped-decorator]  # OTel's
        async def otel_work() -> int:
            return 1

        async def otel_traced() -> float:
            with tracer.start_as_current_span("parent"):
                start = perf()
                for _ in range(n):
                    await otel_work()
                return (perf() - start) / n * 1e9

        def otel_sync_loop() -> float:
            with tracer.start_as_current_span("parent"):
                start = perf()
                for _ in range(n):
                    with tracer.start_as_current_span("child"):
                        pass
                return (perf() - start) / n * 1e9

        async def otel_sync() -> float:
            return otel_sync_loop()

        rows["async with span() child"]["otel"] = otel_child
        rows["async with span() root, 5 tags"]["otel"] = otel_root
        rows["@traced coroutine call"]["otel"] = otel_traced
        rows["sync with span() child"]["otel"] = otel_sync
    return rows


async def _measure(quick: bool) -> ScenarioResult:
    rounds, iterations = (3, 1000) if quick else (25, 2000)
    provider = None
    otel_tracer = None
    if otel.AVAILABLE:
        provider, _ = otel.sdk_provider()
        otel_tracer = provider.get_tracer("benchmarks")
    tracer = asynctrace.configure(service="bench", exporter=_NoOpExporter())
    rows = _variants(iterations, otel_tracer)

    def drained(sample: Sample) -> Sample:
        async def run() -> float:
            _floor_sink.clear()
            await tracer.flush()  # the queue starts each sample empty, outside the timing
            return await sample()

        return run

    flat = {
        f"{row}|{kind}": drained(sample)
        for row, kinds in rows.items()
        for kind, sample in kinds.items()
    }
    for sample in flat.values():  # warm-up: caches, id pools, first-call paths
        await sample()
    samples = await interleaved_async(flat, rounds)
    stats = {key: Summary.of(values) for key, values in samples.items()}
    await asynctrace.shutdown()
    reset_tracer()
    if provider is not None:
        provider.shutdown()

    table = Table(
        TITLE,
        ["variant", "floor", "asynctrace", "vs floor", "OpenTelemetry SDK", "OTel/asynctrace"],
    )
    data: dict[str, Any] = {"rounds": rounds, "iterations_per_sample": iterations, "rows": {}}
    vs_floor: dict[str, float] = {}
    otel_vs_ours: dict[str, float] = {}
    for row in rows:
        floor = stats[f"{row}|floor"]
        ours = stats[f"{row}|asynctrace"]
        theirs = stats.get(f"{row}|otel")
        vs_floor[row] = median_ratio(samples[f"{row}|asynctrace"], samples[f"{row}|floor"])
        if theirs:
            otel_vs_ours[row] = median_ratio(samples[f"{row}|otel"], samples[f"{row}|asynctrace"])
        table.rows.append(
            [
                row,
                _cell(floor),
                _cell(ours),
                f"{vs_floor[row]:.2f}x",
                _cell(theirs) if theirs else "not installed",
                f"{otel_vs_ours[row]:.2f}x" if theirs else "n/a",
            ]
        )
        data["rows"][row] = {
            "floor_ns": floor.as_dict(),
            "asynctrace_ns": ours.as_dict(),
            "otel_ns": theirs.as_dict() if theirs else None,
            "asynctrace_vs_floor": vs_floor[row],
            "otel_vs_asynctrace": otel_vs_ours.get(row),
        }
    if not otel.AVAILABLE:
        table.notes.append(otel.UNAVAILABLE_REASON)
    table.notes.append(
        f"{rounds} interleaved rounds of {iterations} spans per variant; ratios are "
        "medians of per-round ratios; floor = slotted object, pooled ids, 2 clock reads, "
        "ContextVar set/reset, list append"
    )
    child = "async with span() child"
    targets = [
        Target(
            "async with span() child <= 1.2x floor",
            f"{vs_floor[child]:.2f}x",
            vs_floor[child] <= 1.2,
        )
    ]
    otel_child = otel_vs_ours.get(child)
    targets.append(
        Target(
            "child span >= 8x cheaper than the OpenTelemetry SDK",
            f"{otel_child:.2f}x" if otel_child is not None else "OTel not installed",
            otel_child >= 8 if otel_child is not None else None,
        )
    )
    return ScenarioResult(NAME, table, targets, data)


def _cell(summary: Summary) -> str:
    return f"{summary.median:,.0f} ({summary.p25:,.0f}-{summary.p75:,.0f})"


def run(options: Options) -> ScenarioResult:
    quick = options.quick
    return asyncio.run(_measure(quick))
