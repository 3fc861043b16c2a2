"""The OTLP <-> span mapping (asynctrace.model.otlp), field by field."""

from __future__ import annotations

from typing import Any

import pytest

from asynctrace.model import DROPPED_TAGS_TAG, Limits, Span, SpanLog
from asynctrace.model.otlp import KIND_TAG, OTLPDecodeError, otlp_from_spans, spans_from_otlp

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
PARENT_ID = "b7ad6b7169203331"
START_NS = 1_764_236_400_123_456_789
END_NS = START_NS + 2_500_444_321


def _span(**fields: Any) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "parentSpanId": PARENT_ID,
        "name": "GET /orders/{id}",
        "kind": 2,
        "startTimeUnixNano": str(START_NS),
        "endTimeUnixNano": str(END_NS),
    }
    span.update(fields)
    return span


def _request(*spans: dict[str, Any], service: str | None = "orders") -> dict[str, Any]:
    resource: dict[str, Any] = {"attributes": []}
    if service is not None:
        resource["attributes"].append({"key": "service.name", "value": {"stringValue": service}})
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": list(spans)}]}]}


def _one(**fields: Any) -> Span:
    received = spans_from_otlp(_request(_span(**fields)))
    assert received.rejected == 0, received.error_message
    (span,) = received.spans
    return span


def test_a_server_span_maps_field_by_field() -> None:
    span = _one()
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE_ID, SPAN_ID, PARENT_ID)
    assert (span.service, span.operation, span.kind, span.status) == (
        "orders",
        "GET /orders/{id}",
        "server",
        "ok",
    )
    # Nanoseconds to milliseconds, kept to the microsecond (rounded).
    assert span.start_time == 1_764_236_400_123.457
    assert span.duration == 2_500.444
    assert span.is_ended


@pytest.mark.parametrize(
    ("kind", "expected", "kind_tag"),
    [
        (0, "internal", None),
        (1, "internal", None),
        (2, "server", None),
        (3, "client", None),
        (4, "client", "producer"),
        (5, "server", "consumer"),
        ("SPAN_KIND_CLIENT", "client", None),
    ],
)
def test_kinds_map_onto_three(kind: object, expected: str, kind_tag: str | None) -> None:
    span = _one(kind=kind)
    assert span.kind == expected
    assert span.tags.get(KIND_TAG) == kind_tag


ATTRIBUTES = [
    ({"stringValue": "GET"}, "GET"),
    ({"boolValue": True}, "true"),
    ({"boolValue": False}, "false"),
    ({"intValue": "200"}, "200"),
    ({"intValue": 200}, "200"),
    ({"intValue": "-9223372036854775808"}, "-9223372036854775808"),
    ({"doubleValue": 2.0}, "2"),
    ({"doubleValue": 0.25}, "0.25"),
    ({"doubleValue": "NaN"}, "NaN"),
    ({"bytesValue": "AAE="}, "AAE="),
    ({"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}]}}, '["a",1]'),
    ({"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}}, '{"k":true}'),
    ({}, ""),
]


@pytest.mark.parametrize(("value", "text"), ATTRIBUTES)
def test_attribute_values_become_tag_text(value: dict[str, Any], text: str) -> None:
    span = _one(attributes=[{"key": "a", "value": value}])
    assert span.tags == {"a": text}


def test_error_status_marks_the_span_and_logs_its_message_once() -> None:
    span = _one(status={"code": 2, "message": "card declined"})
    assert span.status == "error"
    assert span.tags["error"] == "true"
    assert [(log.message, log.level) for log in span.logs] == [("card declined", "error")]
    # An exception event saying the same thing is not repeated.
    event = {
        "timeUnixNano": str(START_NS + 1000),
        "name": "exception",
        "attributes": [
            {"key": "exception.type", "value": {"stringValue": "CardError"}},
            {"key": "exception.message", "value": {"stringValue": "declined"}},
            {"key": "exception.stacktrace", "value": {"stringValue": "Traceback..."}},
        ],
    }
    span = _one(status={"code": 2, "message": "CardError: declined"}, events=[event])
    assert [(log.message, log.level) for log in span.logs] == [("CardError: declined", "error")]
    assert _one(status={"code": 1}).status == "ok"


def test_events_become_logs() -> None:
    events = [
        {"timeUnixNano": str(START_NS + 5_000_000), "name": "cache miss"},
        {
            "timeUnixNano": str(START_NS + 6_000_000),
            "name": "retrying",
            "attributes": [
                {"key": "log.level", "value": {"stringValue": "warn"}},
                {"key": "attempt", "value": {"intValue": "2"}},
            ],
        },
    ]
    span = _one(events=events)
    assert span.logs == [
        SpanLog(1_764_236_400_128.457, "cache miss", "info"),
        SpanLog(1_764_236_400_129.457, "retrying attempt=2", "warn"),
    ]


@pytest.mark.parametrize(
    ("flags", "parent", "kind", "is_local_root"),
    [
        (0x300, PARENT_ID, 3, True),  # parent known remote
        (0x100, PARENT_ID, 2, False),  # parent known local, even for a server span
        (0, PARENT_ID, 2, True),  # unknown: a server span starts the local work
        (0, PARENT_ID, 1, False),
        (0, "", 1, True),  # no parent
    ],
)
def test_local_roots_follow_the_remote_parent_flags(
    flags: int, parent: str, kind: int, is_local_root: bool
) -> None:
    assert _one(flags=flags, parentSpanId=parent, kind=kind).is_local_root is is_local_root


def test_service_defaults_to_unknown_and_ids_may_be_uppercase() -> None:
    received = spans_from_otlp(_request(_span(traceId=TRACE_ID.upper()), service=None))
    assert [(span.service, span.trace_id) for span in received.spans] == [("unknown", TRACE_ID)]


def test_a_bad_span_rejects_its_whole_trace_and_nothing_else() -> None:
    other_trace = "0af7651916cd43dd8448eb211c80319c"
    request = _request(
        _span(),
        _span(spanId="1111111111111111", endTimeUnixNano=str(START_NS - 10_000)),
        _span(traceId=other_trace),
    )
    received = spans_from_otlp(request)
    assert [span.trace_id for span in received.spans] == [other_trace]
    assert received.rejected == 2
    assert received.error_message == "span 1111111111111111 ends before it starts"


BAD_SPANS = [
    pytest.param({"traceId": "0" * 32}, id="zero-trace-id"),
    pytest.param({"spanId": "xyz"}, id="bad-span-id"),
    pytest.param({"parentSpanId": "00"}, id="short-parent-id"),
    pytest.param({"startTimeUnixNano": "0"}, id="unset-start"),
    pytest.param({"endTimeUnixNano": "soon"}, id="text-time"),
    pytest.param({"kind": 9}, id="unknown-kind"),
    pytest.param({"attributes": [{"key": "a", "value": {"stringValue": 3}}]}, id="mistyped-value"),
    pytest.param({"attributes": [{"key": 1, "value": {}}]}, id="non-text-key"),
    pytest.param({"events": [{"name": "x"}]}, id="event-without-time"),
    pytest.param({"status": {"code": 2, "message": 5}}, id="status-message-number"),
    pytest.param({"name": 5}, id="name-number"),
]


@pytest.mark.parametrize("fields", BAD_SPANS)
def test_a_span_that_cannot_be_mapped_is_rejected(fields: dict[str, Any]) -> None:
    received = spans_from_otlp(_request(_span(**fields)))
    assert (received.spans, received.rejected) == ([], 1)
    assert received.error_message


@pytest.mark.parametrize(
    "request_data",
    [
        [],
        "text",
        {"resourceSpans": {}},
        {"resourceSpans": [1]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [1]}]}]},
        {"resourceSpans": [{"resource": {"attributes": [{"key": 5}]}}]},
    ],
)
def test_a_malformed_request_raises(request_data: object) -> None:
    with pytest.raises(OTLPDecodeError):
        spans_from_otlp(request_data)


def test_an_empty_request_is_nothing_to_store() -> None:
    received = spans_from_otlp({})
    assert (received.spans, received.rejected, received.error_message) == ([], 0, None)


def test_tags_over_the_limit_are_counted() -> None:
    attributes = [{"key": f"k{index}", "value": {"stringValue": "v"}} for index in range(5)]
    received = spans_from_otlp(_request(_span(attributes=attributes)), limits=Limits(max_tags=3))
    (span,) = received.spans
    assert span.tags == {"k0": "v", "k1": "v", "k2": "v", DROPPED_TAGS_TAG: "2"}


def test_a_server_span_learns_its_caller_from_the_same_request() -> None:
    caller = _span(spanId=PARENT_ID, parentSpanId="", kind=3)
    request = {
        "resourceSpans": [
            *_request(caller, service="frontend")["resourceSpans"],
            *_request(_span())["resourceSpans"],
        ]
    }
    server = next(span for span in spans_from_otlp(request).spans if span.span_id == SPAN_ID)
    assert server.tags["peer.service"] == "frontend"


def test_spans_round_trip_through_otlp() -> None:
    root = Span(TRACE_ID, PARENT_ID, None, "orders", "GET /", kind="server", is_random=True)
    root.start_time = 1_764_236_400_123.457
    root.duration = 12.5
    child = Span(TRACE_ID, SPAN_ID, PARENT_ID, "orders", "publish", kind="client")
    child.start_time = 1_764_236_400_124.001
    child.duration = 3.001
    child.tags.update({KIND_TAG: "producer", "topic": "orders"})
    child.logs.append(SpanLog(1_764_236_400_125.002, "boom", "error"))
    child.set_status("error")
    data = otlp_from_spans([root, child])
    assert data["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["kind"] == 4
    back = spans_from_otlp(data).spans
    assert [span.to_dict() for span in back] == [root.to_dict(), child.to_dict()]
    assert [span.is_local_root for span in back] == [True, False]
    assert [span.is_random for span in back] == [True, False]
