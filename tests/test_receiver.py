"""``asynctrace receive``: OTLP/HTTP in, through RedisExporter, into the session's redis-server."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from asynctrace.cli import main
from asynctrace.export import RedisExporter
from asynctrace.export import _otlp_proto as otlp_proto
from asynctrace.receiver import TRACES_PATH, create_app, serve
from asynctrace.store import TraceStore
from asynctrace.testing import free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "00f067aa0ba902b7"
CHILD_ID = "b7ad6b7169203331"

ClientMaker = Callable[..., Awaitable[TestClient[Any, Any]]]


def _now_ns() -> int:
    # Recent, so the trace index and the per-hour aggregates keep it: from the clock
    # the exporter itself uses, never a pinned date.
    from asynctrace import clock

    return int(clock.now_ms()) * 1_000_000


def _request(trace_id: str = TRACE_ID, *, bad_child: bool = False) -> dict[str, Any]:
    start = _now_ns()
    child_end = start + 1_000 if bad_child else start + 2_000_000_000
    spans = [
        {
            "traceId": trace_id,
            "spanId": SPAN_ID,
            "name": "GET /orders",
            "kind": 2,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 3_000_000_000),
            "attributes": [{"key": "http.status_code", "value": {"intValue": "500"}}],
            "status": {"code": 2, "message": "upstream failed"},
        },
        {
            "traceId": trace_id,
            "spanId": CHILD_ID,
            "parentSpanId": SPAN_ID,
            "name": "SELECT orders",
            "kind": 3,
            "startTimeUnixNano": str(start + 1_000_000),
            "endTimeUnixNano": str(child_end if not bad_child else start - 5_000),
        },
    ]
    service = {"key": "service.name", "value": {"stringValue": "orders"}}
    return {
        "resourceSpans": [{"resource": {"attributes": [service]}, "scopeSpans": [{"spans": spans}]}]
    }


@pytest.fixture
async def receiver(aiohttp_client: ClientMaker, redis_url: str) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(RedisExporter(redis_url), max_body_bytes=64_000))


async def _stored(redis_url: str, trace_id: str = TRACE_ID) -> list[tuple[str, str]]:
    async with TraceStore.from_url(redis_url) as store:
        trace = await store.get_trace(trace_id)
    return [] if trace is None else [(span.span_id, span.operation) for span in trace.spans]


async def _key_count(redis_url: str) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return int(await client.dbsize())
    finally:
        await client.aclose()


async def test_json_spans_are_stored_like_native_ones(
    receiver: TestClient[Any, Any], redis_url: str
) -> None:
    response = await receiver.post(TRACES_PATH, json=_request())
    assert (response.status, await response.json()) == (200, {})
    assert await _stored(redis_url) == [(SPAN_ID, "GET /orders"), (CHILD_ID, "SELECT orders")]
    async with TraceStore.from_url(redis_url) as store:
        # The indexes and aggregates a native root span fills.
        assert (TRACE_ID, 3000.0) in await store.slow_traces()
        assert TRACE_ID in await store.error_traces()
        assert [row.trace_id for row in await store.recent_traces()] == [TRACE_ID]
        rows = await store.stats(service="orders")
        assert [(row.operation, row.current.count, row.current.errors) for row in rows] == [
            ("GET /orders", 1, 1)
        ]


async def test_gzip_bodies_are_decoded(receiver: TestClient[Any, Any], redis_url: str) -> None:
    body = gzip.compress(json.dumps(_request()).encode())
    response = await receiver.post(
        TRACES_PATH,
        data=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status == 200
    assert len(await _stored(redis_url)) == 2


async def test_protobuf_bodies_are_decoded(receiver: TestClient[Any, Any], redis_url: str) -> None:
    response = await receiver.post(
        TRACES_PATH,
        data=otlp_proto.encode_request(_request()),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status == 200
    assert response.content_type == "application/x-protobuf"
    assert otlp_proto.decode_response(await response.read()) == (0, "")
    assert len(await _stored(redis_url)) == 2


async def test_a_bad_span_rejects_its_trace_with_a_partial_success(
    receiver: TestClient[Any, Any], redis_url: str
) -> None:
    request = _request(bad_child=True)
    request["resourceSpans"] += _request(OTHER_TRACE_ID)["resourceSpans"]
    response = await receiver.post(TRACES_PATH, json=request)
    assert response.status == 200
    assert await response.json() == {
        "partialSuccess": {
            "rejectedSpans": "2",
            "errorMessage": f"span {CHILD_ID} ends before it starts",
        }
    }
    assert await _stored(redis_url) == []  # never half a trace
    assert len(await _stored(redis_url, OTHER_TRACE_ID)) == 2
    proto = await receiver.post(
        TRACES_PATH,
        data=otlp_proto.encode_request(_request(bad_child=True)),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert otlp_proto.decode_response(await proto.read()) == (
        2,
        f"span {CHILD_ID} ends before it starts",
    )


REFUSED = [
    pytest.param(b"{not json", {"Content-Type": "application/json"}, 400, id="bad-json"),
    pytest.param(b'{"resourceSpans": {}}', {"Content-Type": "application/json"}, 400, id="shape"),
    pytest.param(b"\xff\xfe", {"Content-Type": "application/json"}, 400, id="not-utf8"),
    pytest.param(
        b"\x0a\x05garbage", {"Content-Type": "application/x-protobuf"}, 400, id="bad-protobuf"
    ),
    pytest.param(
        b"not gzip",
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        400,
        id="bad-gzip",
    ),
    pytest.param(b"{}", {"Content-Type": "text/plain"}, 415, id="text-plain"),
    pytest.param(
        b"{}", {"Content-Type": "application/json", "Content-Encoding": "zstd"}, 400, id="zstd"
    ),
    pytest.param(
        gzip.compress(b'{"resourceSpans": []' + b" " * 100_000 + b"}"),
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        413,
        id="too-big-once-decoded",
    ),
    pytest.param(b"[" * 70_000, {"Content-Type": "application/json"}, 413, id="too-big"),
]


@pytest.mark.parametrize(("body", "headers", "status"), REFUSED)
async def test_a_refused_request_writes_nothing(
    receiver: TestClient[Any, Any],
    redis_url: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    response = await receiver.post(TRACES_PATH, data=body, headers=headers)
    assert response.status == status
    assert await response.text()
    assert await _key_count(redis_url) == 0


async def test_an_undecodable_body_is_a_400_that_closes_without_an_unhandled_exception(
    receiver: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp drained the unread body after the reply, which raised the decoding error
    # again and logged it as "Unhandled exception" with a traceback. Raw HTTP, read to
    # the server's close: whatever the server logs for this request is logged by then.
    body = b"not gzip"
    request = (
        f"POST {TRACES_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with caplog.at_level(logging.DEBUG, logger="aiohttp"):
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(receiver.host, receiver.port)
            try:
                writer.write(request)
                reply = await reader.read()
            finally:
                writer.close()
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nConnection: close\r\n" in reply
    assert [
        record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR
    ] == []


async def test_deeply_nested_json_is_a_400(receiver: TestClient[Any, Any]) -> None:
    response = await receiver.post(
        TRACES_PATH,
        data=b"[" * 30_000 + b"]" * 30_000,
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400


async def test_protobuf_without_the_extra_is_a_415(
    receiver: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otlp_proto, "is_available", lambda: False)
    response = await receiver.post(
        TRACES_PATH, data=b"", headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status == 415
    assert "asynctrace[otlp]" in (await response.json())["message"]


async def test_an_unreachable_redis_is_a_retryable_503(aiohttp_client: ClientMaker) -> None:
    exporter = RedisExporter(f"redis://127.0.0.1:{free_port()}/0", timeout_s=2.0)
    client = await aiohttp_client(create_app(exporter))
    response = await client.post(TRACES_PATH, json=_request())
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"


async def test_with_a_token_every_request_must_bear_it(
    aiohttp_client: ClientMaker, redis_url: str
) -> None:
    client = await aiohttp_client(create_app(RedisExporter(redis_url), token="s3cret"))
    refused = await client.post(TRACES_PATH, json=_request())
    wrong = await client.post(
        TRACES_PATH, json=_request(), headers={"Authorization": "Bearer nope"}
    )
    assert (refused.status, wrong.status) == (401, 401)
    assert await _key_count(redis_url) == 0
    accepted = await client.post(
        TRACES_PATH, json=_request(), headers={"Authorization": "Bearer s3cret"}
    )
    assert accepted.status == 200


async def test_without_a_token_only_loopback_host_names_are_answered(
    receiver: TestClient[Any, Any], redis_url: str
) -> None:
    response = await receiver.post(
        TRACES_PATH, json=_request(), headers={"Host": "rebound.example:4318"}
    )
    assert response.status == 403
    assert await _key_count(redis_url) == 0


async def test_serve_refuses_a_public_address_without_a_token(redis_url: str) -> None:
    with pytest.raises(ValueError, match="without a token"):
        await serve(redis_url, host="0.0.0.0")
    with pytest.raises(ValueError, match="non-empty"):
        await serve(redis_url, token=" ")


def test_receive_command_refuses_a_public_address_without_a_token(redis_url: str) -> None:
    result = CliRunner().invoke(
        main,
        ["--redis-url", redis_url, "receive", "--host", "0.0.0.0"],
        env={"ASYNCTRACE_TOKEN": None},
    )
    assert result.exit_code == 2
    assert "without a token" in result.stderr


async def test_a_large_request_is_decoded_off_the_loop_and_stored(
    aiohttp_client: ClientMaker, redis_url: str
) -> None:
    client = await aiohttp_client(create_app(RedisExporter(redis_url)))
    request = _request()
    spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    template = spans[1]
    spans += [{**template, "spanId": f"{index:016x}", "name": "x" * 300} for index in range(1, 400)]
    body = json.dumps(request).encode()
    assert len(body) > 64 * 1024
    response = await client.post(
        TRACES_PATH, data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 200
    assert len(await _stored(redis_url)) == 401


def test_without_opentelemetry_proto_json_still_works() -> None:
    # A bare `pip install asynctrace`: the OTLP paths import protobuf only when used.
    script = """
import sys
sys.modules["opentelemetry.proto"] = None  # as if opentelemetry-proto were missing
import asynctrace.receiver
from asynctrace.export import OTLPExporter
from asynctrace.export import _otlp_proto
assert not _otlp_proto.is_available()
assert OTLPExporter().encoding == "json"
print("ok")
"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)  # this tree, not another install
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr
