"""Protobuf bodies to the OTLP/JSON shape: the fast path reads what protobuf's own
mapping reads, so both give the same spans."""

from __future__ import annotations

import math

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from asynctrace.export import _otlp_proto
from asynctrace.model.otlp import spans_from_otlp


def _values() -> list[KeyValue]:
    nested = AnyValue()
    nested.array_value.values.add().string_value = "a"
    nested.array_value.values.add().int_value = -3
    kvlist = AnyValue()
    pair = kvlist.kvlist_value.values.add()
    pair.key = "inner"
    pair.value.double_value = 0.5
    return [
        KeyValue(key="s", value=AnyValue(string_value="text")),
        KeyValue(key="b", value=AnyValue(bool_value=True)),
        KeyValue(key="i", value=AnyValue(int_value=9_007_199_254_740_993)),
        KeyValue(key="d", value=AnyValue(double_value=2.0)),
        KeyValue(key="nan", value=AnyValue(double_value=math.nan)),
        KeyValue(key="inf", value=AnyValue(double_value=-math.inf)),
        KeyValue(key="bytes", value=AnyValue(bytes_value=b"\x00\x01")),
        KeyValue(key="array", value=nested),
        KeyValue(key="kvlist", value=kvlist),
        KeyValue(key="empty", value=AnyValue()),
    ]


def _request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    scope = resource.scope_spans.add()
    scope.scope.name = "lib"
    for index, parent in enumerate((b"", bytes.fromhex("00f067aa0ba902b7"))):
        span = scope.spans.add()
        span.trace_id = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
        span.span_id = bytes.fromhex(f"{index + 1:016x}")
        span.parent_span_id = parent
        span.name = f"op {index}"
        span.kind = Span.SPAN_KIND_CONSUMER
        span.start_time_unix_nano = 1_764_236_400_123_456_789
        span.end_time_unix_nano = 1_764_236_400_223_456_789
        span.flags = 0x301
        span.trace_state = "rojo=1"
        span.attributes.extend(_values())
        event = span.events.add(time_unix_nano=1_764_236_400_124_000_000, name="exception")
        event.attributes.add(key="exception.type", value=AnyValue(string_value="KeyError"))
        span.status.code = Status.STATUS_CODE_ERROR
        span.status.message = "lost"
    return request


def test_fast_decoding_gives_the_same_spans_as_protobufs_own_mapping() -> None:
    request = _request()
    fast = spans_from_otlp(_otlp_proto.decode_request(request.SerializeToString()))
    reference = json_format.MessageToDict(request, use_integers_for_enums=True)
    _otlp_proto._convert_ids(reference, _otlp_proto._base64_to_hex)
    slow = spans_from_otlp(reference)
    assert (fast.rejected, slow.rejected) == (0, 0)
    assert [span.to_dict() for span in fast.spans] == [span.to_dict() for span in slow.spans]
    assert [span.is_local_root for span in fast.spans] == [True, True]
    assert fast.spans[1].tags == {
        "s": "text",
        "b": "true",
        "i": "9007199254740993",
        "d": "2",
        "nan": "NaN",
        "inf": "-Infinity",
        "bytes": "AAE=",
        "array": '["a",-3]',
        "kvlist": '{"inner":0.5}',
        "empty": "",
        "otel.span_kind": "consumer",
        "error": "true",
    }
    assert [(log.message, log.level) for log in fast.spans[1].logs] == [
        ("KeyError", "error"),
        ("lost", "error"),
    ]
