"""A fleet's traffic through the real tracer into a real Redis, and what it costs there.

One request is a trace across ``SERVICES_PER_TRACE`` services (a gateway, a service,
a backend, as the demo's chain), four spans in each: the ``server`` span (a local
root: the next service continues the caller's client span as a remote parent, as
the aiohttp middleware does), a database query, a cache read, and the ``client``
call to the next service (the last service renders instead). One request in
``ERROR_EVERY`` fails in the backend (the error surfaces at every caller) and one in
``SLOW_EVERY`` is slower than the slow threshold.

Spans are made through ``asynctrace.span()`` under the configured tracer (head and
tail sampling, the aggregates' share of unsampled spans, all real) with no loop
running, so they wait in the export queue; the export is then timed alone
(``flush()``, CPU time of this process), and Redis's memory is read per key class
with ``MEMORY USAGE`` (a benchmark may SCAN; asynctrace never does).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import redis

import asynctrace
from asynctrace import keys
from asynctrace.model import SpanContext
from asynctrace.store import TraceStore
from asynctrace.tracer import reset_tracer

__all__ = [
    "ERROR_EVERY",
    "SERVICES_PER_TRACE",
    "SLOW_EVERY",
    "SLOW_THRESHOLD_MS",
    "SPANS_PER_SERVICE",
    "Fleet",
    "Measured",
    "export_cpu",
    "fleet",
    "measure",
]

SERVICES_PER_TRACE = 3
SPANS_PER_SERVICE = 4
ERROR_EVERY = 100
SLOW_EVERY = 100
# Low, so a slow request costs the benchmark little time; only the share matters.
SLOW_THRESHOLD_MS = 2.0
_SPIN_S = SLOW_THRESHOLD_MS / 1000.0 * 1.2
_SERVICES = ("gateway", "orders", "payments")
_SERVER_TAGS = {
    "http.method": "GET",
    "http.route": "/orders/{id}",
    "http.path": "/orders/42",
    "http.status": "200",
    "net.peer.ip": "10.1.2.3",
}


class _Declined(Exception):
    """The backend's failure in one request of ``ERROR_EVERY``."""


@dataclass(slots=True)
class Measured:
    """What ``requests`` requests cost at one sample rate."""

    sample_rate: float
    requests: int
    spans_made: int
    request_cpu_s: float
    export_cpu_s: float
    spans_exported: int
    bytes_by_class: dict[str, int] = field(default_factory=dict)
    keys_by_class: dict[str, int] = field(default_factory=dict)
    index_entries: int = 0
    traces_stored: int = 0
    slow_requests: int = 0
    slow_kept_whole: int = 0
    error_requests: int = 0
    error_kept_whole: int = 0
    tail_kept: int = 0
    tail_overflow: int = 0
    redis_cpu_s: float = 0.0
    redis_commands: int = 0
    aggregate_requests: int = 0
    spans_stored: int = 0

    @property
    def service_requests(self) -> int:
        return self.requests * SERVICES_PER_TRACE

    @property
    def redis_bytes(self) -> int:
        return sum(self.bytes_by_class.values())


def _service(number: int, request: int, parent: SpanContext | None, ids: list[str]) -> None:
    """Service ``number`` of the chain answers ``request``; the gateway notes its trace id."""
    name = _SERVICES[number]
    with asynctrace.span(
        f"GET /{name}/{{id}}", kind="server", service=name, parent=parent, tags=_SERVER_TAGS
    ) as server:
        if number == 0:
            ids.append(server.trace_id)
        with asynctrace.span("SELECT orders", tags={"db.system": "postgresql"}):
            pass
        with asynctrace.span("cache get", tags={"cache.hit": "true"}):
            pass
        if number + 1 < SERVICES_PER_TRACE:
            with asynctrace.span("GET next", kind="client", tags={"http.status": "200"}) as call:
                context = SpanContext(server.trace_id, call.span_id, server.is_sampled)
                _service(number + 1, request, context, ids)
        else:
            with asynctrace.span("render", tags={"template": "order.html"}):
                if request % ERROR_EVERY == ERROR_EVERY // 2:
                    raise _Declined("card declined")
                if request % SLOW_EVERY == 0:
                    # The backend is slow, so every caller is: past the threshold by
                    # spinning (its CPU time is taken off the request path's).
                    deadline = time.perf_counter() + _SPIN_S
                    while time.perf_counter() < deadline:
                        pass


def measure(url: str, *, sample_rate: float, requests: int, seed: int = 7) -> Measured:
    """Run ``requests`` requests at ``sample_rate`` into the emptied Redis at ``url``."""
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    random.seed(seed)
    made: list[str] = []
    slow_ids: list[str] = []
    failed_ids: list[str] = []
    spin_s = 0.0
    tracer = asynctrace.configure(
        service="gateway",
        redis_url=url,
        sample_rate=sample_rate,
        slow_threshold_ms=SLOW_THRESHOLD_MS,
        max_queue=requests * SERVICES_PER_TRACE * SPANS_PER_SERVICE + 1,
        tail_max_spans=100_000,
    )
    try:
        started = time.process_time()
        for request in range(requests):
            try:
                _service(0, request, None, made)
            except _Declined:
                failed_ids.append(made[-1])
            if request % SLOW_EVERY == 0:
                slow_ids.append(made[-1])
                spin_s += _SPIN_S
        request_cpu_s = max(0.0, time.process_time() - started - spin_s)
        queued = tracer.stats().queued
        before = _redis_counters(url)
        export_cpu_s = asyncio.run(_export())
        after = _redis_counters(url)
        health = tracer.stats()
        result = Measured(
            sample_rate=sample_rate,
            requests=requests,
            spans_made=requests * SERVICES_PER_TRACE * SPANS_PER_SERVICE,
            request_cpu_s=request_cpu_s,
            export_cpu_s=export_cpu_s,
            spans_exported=health.exported,
            tail_kept=health.tail_kept,
            tail_overflow=health.tail_overflow,
            redis_cpu_s=after[0] - before[0],
            redis_commands=after[1] - before[1] - 1,  # less the INFO of the first read
        )
        if health.exported != queued or health.dropped:
            raise RuntimeError(f"the export lost spans: {health}")
    finally:
        asyncio.run(_shutdown())
    _read_memory(url, result)
    asyncio.run(_check_kept(url, result, slow_ids, failed_ids))
    return result


def _redis_counters(url: str) -> tuple[float, int]:
    """Redis's own CPU seconds (user + system) and commands processed so far."""
    with redis.Redis.from_url(url) as client:
        cpu = client.info("cpu")
        stats = client.info("stats")
    return (
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        int(stats["total_commands_processed"]),
    )


def export_cpu(url: str, *, requests: int) -> tuple[int, float]:
    """(spans exported, exporter CPU seconds) for ``requests`` sampled requests to
    ``url`` (a single Redis or a cluster node; its data is left in place)."""
    ids: list[str] = []
    tracer = asynctrace.configure(
        service="gateway",
        redis_url=url,
        slow_threshold_ms=SLOW_THRESHOLD_MS,
        max_queue=requests * SERVICES_PER_TRACE * SPANS_PER_SERVICE + 1,
    )
    try:
        asyncio.run(_export())  # connects (and detects a cluster) before the count
        for request in range(requests):
            with contextlib.suppress(_Declined):
                _service(0, request, None, ids)
        cpu_s = asyncio.run(_export())
        health = tracer.stats()
        if health.dropped or health.queued:
            raise RuntimeError(f"the export lost spans: {health}")
        return health.exported, cpu_s
    finally:
        asyncio.run(_shutdown())


async def _export() -> float:
    """CPU seconds of exporting everything queued (this process; Redis runs apart)."""
    started = time.process_time()
    if not await asynctrace.flush(timeout_s=600):
        raise RuntimeError("the export did not finish")
    return time.process_time() - started


async def _shutdown() -> None:
    await asynctrace.shutdown()
    reset_tracer()


def _classify(key: str) -> str:
    prefix = keys.DEFAULT_PREFIX
    rest = key[len(prefix) :]
    if rest.startswith("agg:"):
        return "aggregates"
    if rest == "index":
        return "index"
    if rest == "slow" or rest.startswith("errors:"):
        return "slow and error sets"
    if rest.startswith("batch:"):
        return "batch guards"  # RedisExporter's idempotency keys, kept an hour
    return "trace lists"


def _read_memory(url: str, result: Measured) -> None:
    """Bytes per key class (``MEMORY USAGE ... SAMPLES 0``: every element counted)."""
    with redis.Redis.from_url(url) as client:
        for key in client.scan_iter(match=f"{keys.DEFAULT_PREFIX}*", count=1000):
            name = key.decode()
            kind = _classify(name)
            size = int(client.memory_usage(key, samples=0) or 0)
            result.bytes_by_class[kind] = result.bytes_by_class.get(kind, 0) + size
            result.keys_by_class[kind] = result.keys_by_class.get(kind, 0) + 1
        result.index_entries = int(client.zcard(keys.index_key()))
        lists = [
            key
            for key in client.scan_iter(match=f"{keys.DEFAULT_PREFIX}*", count=1000)
            if _classify(key.decode()) == "trace lists"
        ]
        pipe = client.pipeline(transaction=False)
        for key in lists:
            pipe.llen(key)
        result.spans_stored = sum(pipe.execute())
    result.traces_stored = result.keys_by_class.get("trace lists", 0)


async def _check_kept(
    url: str, result: Measured, slow_ids: list[str], failed_ids: list[str]
) -> None:
    """How many slow and failed requests are stored whole (every span of every service)."""
    whole = SERVICES_PER_TRACE * SPANS_PER_SERVICE
    async with TraceStore.from_url(url) as store:
        for ids, attribute in ((slow_ids, "slow"), (failed_ids, "error")):
            kept = 0
            for trace_id in ids:
                trace = await store.get_trace(trace_id)
                if trace is not None and len({span.span_id for span in trace.spans}) == whole:
                    kept += 1
            setattr(result, f"{attribute}_requests", len(ids))
            setattr(result, f"{attribute}_kept_whole", kept)
        rows = await store.stats()
        result.aggregate_requests = sum(
            row.current.count for row in rows if row.service == _SERVICES[0]
        )


@dataclass(frozen=True, slots=True)
class Fleet:
    """A fleet's steady state, from one ``Measured``: ``services`` services, each
    answering ``rate_per_service`` requests/s (a request crosses ``SERVICES_PER_TRACE``
    of them, so the fleet starts ``services * rate / SERVICES_PER_TRACE`` traces/s).

    Memory is what Redis holds once every key lives its full lifetime: a day of trace
    lists (24 h TTL), the trace index (at most ``INDEX_MAX_ENTRIES``), the error-day
    sets (7 days); the aggregates are left out (their size follows the number of
    (service, operation) pairs, not traffic or sampling: see the capacity scenario).
    CPU is cores, summed over the fleet.
    """

    traces_per_s: float
    trace_list_bytes_per_day: float
    index_bytes: float
    error_set_bytes: float
    export_cores: float
    request_cores: float
    redis_cores: float

    @property
    def memory_bytes(self) -> float:
        return self.trace_list_bytes_per_day + self.index_bytes + self.error_set_bytes


def fleet(measured: Measured, *, services: int = 12, rate_per_service: float = 100.0) -> Fleet:
    """``measured`` scaled to a fleet (see ``Fleet``)."""
    traces_per_s = services * rate_per_service / SERVICES_PER_TRACE
    per_day = traces_per_s * 86_400 / measured.requests
    index_entry_bytes = measured.bytes_by_class.get("index", 0) / max(1, measured.index_entries)
    index_entries = min(measured.index_entries * per_day, keys.INDEX_MAX_ENTRIES)
    sets = measured.bytes_by_class.get("slow and error sets", 0)
    per_s = traces_per_s / measured.requests
    return Fleet(
        traces_per_s=traces_per_s,
        trace_list_bytes_per_day=measured.bytes_by_class.get("trace lists", 0) * per_day,
        index_bytes=index_entries * index_entry_bytes,
        error_set_bytes=sets * per_day * keys.ERRORS_TTL_S / 86_400,
        export_cores=measured.export_cpu_s * per_s,
        request_cores=measured.request_cpu_s * per_s,
        redis_cores=measured.redis_cpu_s * per_s,
    )
