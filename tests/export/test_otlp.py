"""``OTLPExporter``: what it sends decodes field for field, it retries as OTLP says, and
beside other exporters it neither holds them up nor blurs the counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

import asynctrace
from asynctrace.export import InMemoryExporter, OTLPExporter, RedisExporter
from asynctrace.export.fanout import ExportQueues
from asynctrace.export.otlp import OTLPExportError
from asynctrace.model import Span
from asynctrace.receiver import TRACES_PATH, create_app
from asynctrace.store import TraceStore
from asynctrace.testing import free_port
from asynctrace.tracer import reset_tracer


@dataclass
class Endpoint:
    """A fake OTLP endpoint: answers from ``replies`` in turn (then 200), keeps requests."""

    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    replies: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)

    def decoded(self, index: int = -1) -> ExportTraceServiceRequest:
        headers, body = self.requests[index]
        assert headers["Content-Type"] == "application/x-protobuf"
        assert headers["Content-Encoding"] == "gzip"  # aiohttp decoded it for us
        decoded: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(body)
        return decoded


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    state = Endpoint(url="")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        state.requests.append((dict(request.headers), body))
        state.received.set()
        status, headers = state.replies.pop(0) if state.replies else (200, {})
        return web.Response(status=status, headers=headers, body=b"")

    app = web.Application()
    app.router.add_post(TRACES_PATH, handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url(TRACES_PATH))
    try:
        yield state
    finally:
        await server.close()


@pytest.fixture
async def configured() -> AsyncIterator[Callable[..., asynctrace.tracer.Tracer]]:
    yield lambda **options: asynctrace.configure(service="orders", **options)
    await asynctrace.shutdown()
    reset_tracer()


async def _make_trace() -> None:
    async with asynctrace.span("GET /orders/{id}", kind="server", tags={"http.method": "GET"}):
        async with asynctrace.span("charge card", kind="client") as charge:
            charge.set_tag("card.brand", "visa")
            charge.log("retrying", level="warn")
            charge.set_status("error", "card declined")
        async with asynctrace.span("render"):
            pass


def _attributes(proto: ProtoSpan) -> dict[str, str]:
    return {item.key: item.value.string_value for item in proto.attributes}


async def test_every_field_decodes_with_opentelemetry_proto(
    endpoint: Endpoint, configured: Callable[..., object]
) -> None:
    kept = InMemoryExporter()
    configured(exporter=[OTLPExporter(endpoint.url), kept])
    await _make_trace()
    assert await asynctrace.flush()
    (request,) = [endpoint.decoded(index) for index in range(len(endpoint.requests))]
    (resource,) = request.resource_spans
    assert [(a.key, a.value.string_value) for a in resource.resource.attributes] == [
        ("service.name", "orders")
    ]
    (scope,) = resource.scope_spans
    assert scope.scope.name == "asynctrace"
    by_id = {proto.span_id.hex(): proto for proto in scope.spans}
    assert sorted(by_id) == sorted(span.span_id for span in kept.spans)
    kinds = {"server": ProtoSpan.SPAN_KIND_SERVER, "client": ProtoSpan.SPAN_KIND_CLIENT}
    for span in kept.spans:
        proto = by_id[span.span_id]
        assert proto.trace_id.hex() == span.trace_id
        assert proto.parent_span_id.hex() == (span.parent_span_id or "")
        assert proto.name == span.operation
        assert proto.kind == kinds.get(span.kind, ProtoSpan.SPAN_KIND_INTERNAL)
        # Times to the microsecond, the precision span JSON keeps.
        assert proto.start_time_unix_nano == round(span.start_time * 1000) * 1000
        assert proto.end_time_unix_nano == round(span.end_time * 1000) * 1000
        assert _attributes(proto) == span.tags
        assert [
            (event.time_unix_nano, event.name, _attributes(event)) for event in proto.events
        ] == [
            (round(log.timestamp * 1000) * 1000, log.message, {"log.level": log.level})
            for log in span.logs
        ]
        is_error = span.status == "error"
        assert proto.status.code == (Status.STATUS_CODE_ERROR if is_error else 0)
        assert proto.status.message == ("card declined" if is_error else "")
        # W3C flags: sampled and random (trace started here); the parent is local.
        assert proto.flags == 0x100 | 0x03 | (
            0x200 if span.parent_span_id and span.is_local_root else 0
        )
    assert {span.operation: span.tags for span in kept.spans}["charge card"] == {
        "card.brand": "visa",
        "error": "true",
    }


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
async def test_spans_round_trip_through_asynctrace_receive(
    redis_url: str, configured: Callable[..., object], encoding: str
) -> None:
    server = TestServer(create_app(RedisExporter(redis_url)), host="127.0.0.1")
    await server.start_server()
    try:
        kept = InMemoryExporter()
        exporter = OTLPExporter(str(server.make_url(TRACES_PATH)), encoding=encoding)  # type: ignore[arg-type]  # the two literals
        configured(exporter=[exporter, kept])
        await _make_trace()
        assert await asynctrace.flush()
    finally:
        await server.close()
    (trace_id,) = {span.trace_id for span in kept.spans}
    async with TraceStore.from_url(redis_url) as store:
        trace = await store.get_trace(trace_id)
    assert trace is not None
    back = sorted((span.to_dict() for span in trace.spans), key=_span_id)
    sent = sorted((span.to_dict() for span in kept.spans), key=_span_id)
    # Start and end times are kept to the microsecond; the duration a receiver
    # computes from them may differ from the measured one by that microsecond.
    assert [
        abs(a["duration"] - b["duration"]) <= 0.0011 for a, b in zip(back, sent, strict=True)
    ] == [True] * 3
    assert [{**span, "duration": 0} for span in back] == [{**span, "duration": 0} for span in sent]


def _span_id(span: Any) -> str:
    return str(span["spanId"])


def _span_at(start_ms: float) -> Span:
    span = Span("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", None, "s", "op")
    span.start_time = start_ms
    return span


class _Waits:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.mark.parametrize(
    ("replies", "waits"),
    [
        pytest.param(
            [(503, {"Retry-After": "0"}), (503, {"Retry-After": "2"})], [0.0, 2.0], id="retry-after"
        ),
        pytest.param([(429, {}), (502, {}), (504, {})], [0.5, 1.0, 2.0], id="backoff"),
        pytest.param([(503, {"Retry-After": "3600"})], [0.5], id="retry-after-too-long"),
    ],
)
async def test_retryable_answers_are_retried_then_succeed(
    endpoint: Endpoint, replies: list[tuple[int, dict[str, str]]], waits: list[float]
) -> None:
    endpoint.replies = list(replies)
    sleep = _Waits()
    exporter = OTLPExporter(endpoint.url, sleep=sleep, max_attempts=4)
    try:
        await exporter.export([_span_at(1_764_236_400_000.0)])
    finally:
        await exporter.shutdown()
    assert len(endpoint.requests) == len(replies) + 1
    assert sleep.delays == waits


async def test_an_endpoint_that_stays_down_raises_connection_error(endpoint: Endpoint) -> None:
    endpoint.replies = [(503, {})] * 3
    sleep = _Waits()
    exporter = OTLPExporter(endpoint.url, sleep=sleep, max_attempts=3)
    with pytest.raises(ConnectionError, match="HTTP 503"):
        await exporter.export([_span_at(1_764_236_400_000.0)])
    assert (len(endpoint.requests), sleep.delays) == (3, [0.5, 1.0])
    unreachable = OTLPExporter(f"http://127.0.0.1:{free_port()}/v1/traces", sleep=sleep)
    with pytest.raises(ConnectionError, match="unavailable"):
        await unreachable.export([_span_at(1_764_236_400_000.0)])
    await exporter.shutdown()
    await unreachable.shutdown()


async def test_a_refusal_is_not_retried(endpoint: Endpoint) -> None:
    endpoint.replies = [(400, {})]
    exporter = OTLPExporter(endpoint.url, sleep=_Waits())
    with pytest.raises(OTLPExportError, match="HTTP 400"):
        await exporter.export([_span_at(1_764_236_400_000.0)])
    await exporter.shutdown()
    assert len(endpoint.requests) == 1


async def test_a_failing_exporter_does_not_stop_the_others_and_counts_stay_true(
    endpoint: Endpoint, configured: Callable[..., asynctrace.tracer.Tracer]
) -> None:
    endpoint.replies = [(400, {})]  # the first batch is refused for good: dropped
    kept = InMemoryExporter()
    tracer = configured(exporter=[OTLPExporter(endpoint.url, sleep=_Waits()), kept])
    await _make_trace()
    await asynctrace.flush()  # the OTLP batch is refused: dropped, not retried
    assert len(kept.spans) == 3
    queues = tracer.queue
    assert isinstance(queues, ExportQueues)
    (otlp_stats, memory_stats) = [stats for _, stats in queues.exporter_stats()]
    assert (otlp_stats.exported, otlp_stats.dropped, otlp_stats.failed_batches) == (0, 3, 1)
    assert (memory_stats.exported, memory_stats.dropped) == (3, 0)
    total = asynctrace.stats()
    assert (total.exported, total.dropped, total.queued, total.failed_batches) == (3, 3, 0, 1)
    assert total.last_error is not None
    assert total.last_error.startswith("OTLPExporter: OTLPExportError")
    # The next batch goes through: nothing is stuck.
    await _make_trace()
    assert await asynctrace.flush()
    assert (len(kept.spans), len(endpoint.requests)) == (6, 2)


async def test_unsampled_ok_spans_reach_only_the_aggregating_exporter(
    endpoint: Endpoint, redis_url: str, configured: Callable[..., asynctrace.tracer.Tracer]
) -> None:
    tracer = configured(
        exporter=[OTLPExporter(endpoint.url), RedisExporter(redis_url)], sample_rate=0.0
    )
    async with asynctrace.span("GET /ok", kind="server"):
        pass
    with pytest.raises(RuntimeError):
        async with asynctrace.span("GET /fails", kind="server"):
            raise RuntimeError("boom")
    assert await asynctrace.flush()
    sent = [proto.name for proto in endpoint.decoded().resource_spans[0].scope_spans[0].spans]
    assert sent == ["GET /fails"]
    queues = tracer.queue
    assert isinstance(queues, ExportQueues)
    assert [stats.exported for _, stats in queues.exporter_stats()] == [1, 2]
    async with TraceStore.from_url(redis_url) as store:
        rows = await store.stats(service="orders")
    assert sorted((row.operation, row.current.count) for row in rows) == [
        ("GET /fails", 1),
        ("GET /ok", 1),
    ]


def test_bad_arguments_fail_at_setup() -> None:
    kwargs: dict[str, Any]
    for kwargs in (
        {"endpoint": "ftp://x/v1/traces"},
        {"encoding": "xml"},
        {"compression": "br"},
        {"max_attempts": 0},
        {"backoff_initial_s": 5.0, "backoff_max_s": 1.0},
    ):
        with pytest.raises(ValueError, match="must"):
            OTLPExporter(**kwargs)
    # opentelemetry-proto is in the dev extra: protobuf is the default then.
    assert OTLPExporter().encoding == "protobuf"


async def test_a_full_batch_is_encoded_off_the_loop_and_arrives_whole(endpoint: Endpoint) -> None:
    spans = [_span_at(1_764_236_400_000.0 + index) for index in range(100)]
    for index, span in enumerate(spans):
        span.span_id = f"{index + 1:016x}"
    exporter = OTLPExporter(endpoint.url)
    try:
        await exporter.export(spans)
    finally:
        await exporter.shutdown()
    (scope,) = endpoint.decoded().resource_spans[0].scope_spans
    assert [proto.span_id.hex() for proto in scope.spans] == [span.span_id for span in spans]


def test_the_fast_protobuf_encoding_equals_protobufs_own() -> None:
    from google.protobuf import json_format

    from asynctrace.export import _otlp_proto
    from asynctrace.model.otlp import otlp_from_spans

    span = _span_at(1_764_236_400_000.0)
    span.parent_span_id = "b7ad6b7169203331"
    span.tracestate = "asynctrace=s"
    span.set_tag("http.method", "GET")
    span.log("retrying", level="warn")
    span.set_status("error", "failed")
    data = otlp_from_spans([span], scope_version="1")
    reference = _otlp_proto._copy(data)
    _otlp_proto._convert_ids(reference, _otlp_proto._hex_to_base64)
    expected = json_format.ParseDict(reference, ExportTraceServiceRequest())
    assert ExportTraceServiceRequest.FromString(_otlp_proto.encode_request(data)) == expected
    # A field the fast path does not know goes through ParseDict, not lost.
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["droppedAttributesCount"] = 3
    decoded = ExportTraceServiceRequest.FromString(_otlp_proto.encode_request(data))
    assert decoded.resource_spans[0].scope_spans[0].spans[0].dropped_attributes_count == 3


async def test_headers_carry_the_receivers_token(redis_url: str) -> None:
    server = TestServer(create_app(RedisExporter(redis_url), token="s3cret"), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url(TRACES_PATH))
    with_token = OTLPExporter(url, headers={"Authorization": "Bearer s3cret"})
    without = OTLPExporter(url)
    try:
        await with_token.export([_span_at(1_764_236_400_000.0)])
        with pytest.raises(OTLPExportError, match="HTTP 401"):
            await without.export([_span_at(1_764_236_400_000.0)])
    finally:
        await with_token.shutdown()
        await without.shutdown()
        await server.close()


def test_several_exporters_need_at_least_one_and_hand_over_each_span_once() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ExportQueues([])
    first, second = InMemoryExporter(), InMemoryExporter()
    queues = ExportQueues([first, second])
    spans = [_span_at(1_764_236_400_000.0 + index) for index in range(3)]
    for span in spans:
        queues.append(span)  # no loop: queued, no export task yet
    assert queues.stats().queued == 6
    handed: list[Span] = []
    queues.hand_over(handed.append)
    assert handed == spans
    assert (first.spans, second.spans) == ([], [])
