"""OTLP protobuf bodies to and from the OTLP/JSON shape that ``model.otlp`` maps.

Needs ``opentelemetry-proto`` (``pip install 'asynctrace[otlp]'``), imported on first
use only. The JSON shape differs from protobuf's own JSON mapping in one way: ids
(``traceId``, ``spanId``, ``parentSpanId``, a link's ids) are hex, not base64.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

__all__ = [
    "PROTOBUF_CONTENT_TYPE",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "is_available",
]

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def is_available() -> bool:
    """True when ``opentelemetry-proto`` can be imported."""
    try:
        import opentelemetry.proto.collector.trace.v1.trace_service_pb2  # noqa: F401
    except ImportError:
        return False
    return True


def decode_request(body: bytes) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` in OTLP/JSON shape. ``ValueError`` if malformed.

    ``ImportError`` without ``opentelemetry-proto``.
    """
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        message = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise ValueError(f"not an ExportTraceServiceRequest: {exc}") from None
    try:
        return _request_dict(message)
    except _Unknown:
        pass
    # A value kind newer than this code knows: protobuf's generic (slower) mapping.
    data: dict[str, Any] = json_format.MessageToDict(message, use_integers_for_enums=True)
    _convert_ids(data, _base64_to_hex)
    return data


class _Unknown(Exception):
    """An AnyValue of a kind _value_dict does not know."""


def _request_dict(message: Any) -> dict[str, Any]:
    """The fields ``model.otlp`` reads, straight from the message (about five times
    faster than ``MessageToDict``); links and dropped counts are not read there."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes_dict(resource.resource.attributes)},
                "scopeSpans": [
                    {"spans": [_span_dict(span) for span in scope.spans]}
                    for scope in resource.scope_spans
                ],
            }
            for resource in message.resource_spans
        ]
    }


def _span_dict(span: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "traceId": span.trace_id.hex(),
        "spanId": span.span_id.hex(),
        "parentSpanId": span.parent_span_id.hex(),
        "name": span.name,
        "kind": span.kind,
        "startTimeUnixNano": span.start_time_unix_nano,
        "endTimeUnixNano": span.end_time_unix_nano,
        "flags": span.flags,
        "traceState": span.trace_state,
        "attributes": _attributes_dict(span.attributes),
        "events": [
            {
                "timeUnixNano": event.time_unix_nano,
                "name": event.name,
                "attributes": _attributes_dict(event.attributes),
            }
            for event in span.events
        ],
    }
    if span.HasField("status"):
        data["status"] = {"code": span.status.code, "message": span.status.message}
    return data


def _attributes_dict(attributes: Any) -> list[dict[str, Any]]:
    return [{"key": item.key, "value": _value_dict(item.value)} for item in attributes]


def _value_dict(value: Any) -> dict[str, Any]:
    kind = value.WhichOneof("value")
    if kind is None:
        return {}
    if kind == "string_value":
        return {"stringValue": value.string_value}
    if kind == "bool_value":
        return {"boolValue": value.bool_value}
    if kind == "int_value":
        return {"intValue": value.int_value}
    if kind == "double_value":
        return {"doubleValue": value.double_value}
    if kind == "bytes_value":
        return {"bytesValue": base64.b64encode(value.bytes_value).decode("ascii")}
    if kind == "array_value":
        return {"arrayValue": {"values": [_value_dict(item) for item in value.array_value.values]}}
    if kind == "kvlist_value":
        return {"kvlistValue": {"values": _attributes_dict(value.kvlist_value.values)}}
    raise _Unknown(kind)


def encode_request(data: dict[str, Any]) -> bytes:
    """The protobuf bytes of an OTLP/JSON ``ExportTraceServiceRequest`` (hex ids).

    What ``model.otlp.otlp_from_spans`` writes is set field by field, about ten
    times faster than protobuf's generic ``ParseDict``, which the rest goes through.
    """
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    message = ExportTraceServiceRequest()
    try:
        _fill_request(message, data)
    except (KeyError, TypeError, ValueError, AttributeError):
        message = ExportTraceServiceRequest()
        copy = _copy(data)
        _convert_ids(copy, _hex_to_base64)
        json_format.ParseDict(copy, message)
    return bytes(message.SerializeToString())


# The keys _fill_request knows, per level; anything else takes ParseDict.
_RESOURCE_SPANS_KEYS = frozenset(("resource", "scopeSpans"))
_SCOPE_SPANS_KEYS = frozenset(("scope", "spans"))
_SPAN_KEYS = frozenset(
    (
        "traceId",
        "spanId",
        "parentSpanId",
        "name",
        "kind",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "flags",
        "attributes",
        "traceState",
        "events",
        "status",
    )
)
_EVENT_KEYS = frozenset(("timeUnixNano", "name", "attributes"))


def _fill_request(message: Any, data: dict[str, Any]) -> None:
    if set(data) - {"resourceSpans"}:
        raise KeyError("unknown field")
    for resource_data in data.get("resourceSpans", ()):
        if set(resource_data) - _RESOURCE_SPANS_KEYS:
            raise KeyError("unknown field")
        resource = message.resource_spans.add()
        resource_fields = resource_data.get("resource", {})
        if set(resource_fields) - {"attributes"}:
            raise KeyError("unknown field")
        _fill_attributes(resource.resource.attributes, resource_fields.get("attributes", ()))
        for scope_data in resource_data.get("scopeSpans", ()):
            if set(scope_data) - _SCOPE_SPANS_KEYS:
                raise KeyError("unknown field")
            scope = resource.scope_spans.add()
            scope_fields = scope_data.get("scope", {})
            if set(scope_fields) - {"name", "version"}:
                raise KeyError("unknown field")
            scope.scope.name = scope_fields.get("name", "")
            scope.scope.version = scope_fields.get("version", "")
            for span_data in scope_data.get("spans", ()):
                _fill_span(scope.spans.add(), span_data)


def _fill_span(span: Any, data: dict[str, Any]) -> None:
    if set(data) - _SPAN_KEYS:
        raise KeyError("unknown field")
    span.trace_id = bytes.fromhex(data["traceId"])
    span.span_id = bytes.fromhex(data["spanId"])
    if data.get("parentSpanId"):
        span.parent_span_id = bytes.fromhex(data["parentSpanId"])
    span.name = data.get("name", "")
    span.kind = int(data.get("kind", 0))
    span.start_time_unix_nano = int(data["startTimeUnixNano"])
    span.end_time_unix_nano = int(data["endTimeUnixNano"])
    span.flags = int(data.get("flags", 0))
    span.trace_state = data.get("traceState", "")
    _fill_attributes(span.attributes, data.get("attributes", ()))
    for event_data in data.get("events", ()):
        if set(event_data) - _EVENT_KEYS:
            raise KeyError("unknown field")
        event = span.events.add()
        event.time_unix_nano = int(event_data["timeUnixNano"])
        event.name = event_data.get("name", "")
        _fill_attributes(event.attributes, event_data.get("attributes", ()))
    status = data.get("status")
    if status is not None:
        if set(status) - {"code", "message"}:
            raise KeyError("unknown field")
        span.status.code = int(status.get("code", 0))
        span.status.message = status.get("message", "")


def _fill_attributes(target: Any, attributes: Any) -> None:
    for attribute in attributes:
        value = attribute["value"]
        if set(value) != {"stringValue"}:
            raise KeyError("not a string attribute")
        entry = target.add()
        entry.key = attribute["key"]
        entry.value.string_value = value["stringValue"]


def encode_response(rejected_spans: int, error_message: str | None) -> bytes:
    """An ``ExportTraceServiceResponse``, with ``partial_success`` when spans were rejected."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    response = ExportTraceServiceResponse()
    if rejected_spans or error_message:
        response.partial_success.rejected_spans = rejected_spans
        response.partial_success.error_message = error_message or ""
    return bytes(response.SerializeToString())


def decode_response(body: bytes) -> tuple[int, str]:
    """(rejected spans, error message) of an ``ExportTraceServiceResponse``; ``ValueError``."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    try:
        response = ExportTraceServiceResponse.FromString(body)
    except DecodeError as exc:
        raise ValueError(f"not an ExportTraceServiceResponse: {exc}") from None
    partial = response.partial_success
    return int(partial.rejected_spans), str(partial.error_message)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _convert_ids(data: dict[str, Any], convert: Callable[[str], str]) -> None:
    for resource in data.get("resourceSpans") or ():
        for scope in resource.get("scopeSpans") or ():
            for span in scope.get("spans") or ():
                _convert_fields(span, convert)
                for link in span.get("links") or ():
                    _convert_fields(link, convert)


def _convert_fields(entry: dict[str, Any], convert: Callable[[str], str]) -> None:
    for field in _ID_FIELDS:
        value = entry.get(field)
        if isinstance(value, str) and value:
            entry[field] = convert(value)


def _base64_to_hex(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return value  # left for the mapping to reject as an invalid id


def _hex_to_base64(value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    except ValueError:
        raise ValueError("ids must be hex") from None
