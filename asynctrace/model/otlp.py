"""The mapping between OpenTelemetry's OTLP trace data and asynctrace spans, both ways.

Pure functions over the OTLP/JSON shape of an ``ExportTraceServiceRequest``
(https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): lowerCamelCase
names, ids as hex, 64-bit integers as decimal strings (numbers accepted too), enums
as integers. Protobuf bodies are turned into this shape (and back) by
``asynctrace.export._otlp_proto``, so both encodings share one mapping.

OTLP to asynctrace (``spans_from_otlp``):

- service: the resource's ``service.name`` (``"unknown"`` without one);
- kind: SERVER and CONSUMER are ``server`` (each starts a unit of work that the
  per-operation aggregates count), CLIENT and PRODUCER ``client`` (an outgoing
  call), INTERNAL and UNSPECIFIED ``internal``. CONSUMER and PRODUCER keep their
  name in the tag ``otel.span_kind``, so ``otlp_from_spans`` restores them;
- status: ERROR is ``error`` (tag ``error=true``); its message becomes an error log
  unless an event already says it;
- attributes become tags, their typed values text as the seed tracer wrote them
  (``true``/``false``, integers and doubles as decimals, arrays and maps as JSON);
- events become logs: an ``exception`` event is an error log
  ``"{exception.type}: {exception.message}"``; other events keep their name as the
  message, a ``log.level`` attribute as the level (default ``info``) and their
  other attributes appended as ``key=value``;
- times: nanoseconds to the span JSON's milliseconds, kept to the microsecond;
- a span is a local root when its flags say its parent is remote (OTLP 1.1+), or,
  when they do not say, when it has no parent or is a server/consumer span.

Links, dropped counts, the scope and the resource's other attributes are not kept.
A span that cannot be mapped (bad id, time or value) is rejected together with the
other spans of its trace in the same request, so a trace is never stored in part.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asynctrace.ids import is_valid_span_id, is_valid_trace_id
from asynctrace.model.span import (
    DEFAULT_LIMITS,
    DROPPED_LOGS_TAG,
    DROPPED_TAGS_TAG,
    TRUNCATED_TAG,
    TRUNCATION_MARK,
    Limits,
    Span,
    SpanDecodeError,
)

__all__ = [
    "KIND_TAG",
    "OTLPDecodeError",
    "ReceivedSpans",
    "otlp_from_spans",
    "spans_from_otlp",
]

KIND_TAG = "otel.span_kind"
"""Tag keeping an OTLP kind that asynctrace's three kinds merge (producer, consumer)."""
_LEVEL_ATTRIBUTE = "log.level"

# OTLP SpanKind and StatusCode (opentelemetry/proto/trace/v1/trace.proto).
_SPAN_KIND_NAMES = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
_KIND_BY_NAME = {
    "unspecified": "internal",
    "internal": "internal",
    "server": "server",
    "client": "client",
    "producer": "client",
    "consumer": "server",
}
_OTLP_KIND = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS_ERROR = 2
# Span flags (trace.proto SpanFlags): the low byte is the W3C trace-flags; these two
# bits say whether the parent is known to be remote.
_FLAG_SAMPLED = 0x01
_FLAG_RANDOM = 0x02
_FLAG_HAS_IS_REMOTE = 0x100
_FLAG_IS_REMOTE = 0x200
_NS_PER_US = 1000
# 64-bit unsigned nanoseconds; span JSON times end in year 9999.
_MAX_NS = 253_402_300_799_999 * 1_000_000
_MAX_TRACESTATE = 512


class OTLPDecodeError(ValueError):
    """An OTLP request whose structure is not an ``ExportTraceServiceRequest``."""


@dataclass(frozen=True, slots=True)
class ReceivedSpans:
    """What ``spans_from_otlp`` made of a request: the spans to store, and the rest.

    ``rejected`` counts the spans not kept (OTLP ``rejectedSpans``); ``error_message``
    says why the first of them was rejected, or is None when all were kept.
    """

    spans: list[Span]
    rejected: int
    error_message: str | None


class _Invalid(ValueError):
    """One span cannot be mapped; its whole trace in this request is rejected."""


def spans_from_otlp(request: object, *, limits: Limits = DEFAULT_LIMITS) -> ReceivedSpans:
    """Map an OTLP/JSON ``ExportTraceServiceRequest`` (decoded JSON) to ended spans.

    Raises ``OTLPDecodeError`` when the request's structure is wrong (not an object,
    ``resourceSpans`` not a list of objects, ...): nothing of it should be stored.
    A span that cannot be mapped is rejected with the rest of its trace; the count
    and the first reason are in the result. Tags, logs and texts are capped by
    ``limits``, and a cap reached is marked on the span as for live spans.
    """
    resource_spans = _list(_object(request, "the request").get("resourceSpans"), "resourceSpans")
    mapped: list[Span] = []
    bad_traces: set[str] = set()
    rejected = 0
    first_error: str | None = None
    for resource_entry in resource_spans:
        resource = _object(resource_entry, "a resourceSpans entry")
        service = _service_of(resource.get("resource"), limits)
        for scope_entry in _list(resource.get("scopeSpans"), "scopeSpans"):
            scope = _object(scope_entry, "a scopeSpans entry")
            for raw in _list(scope.get("spans"), "spans"):
                otlp_span = _object(raw, "a span")
                try:
                    mapped.append(_span_of(otlp_span, service, limits))
                except (_Invalid, SpanDecodeError) as exc:
                    rejected += 1
                    first_error = first_error or str(exc)
                    trace_id = otlp_span.get("traceId")
                    if isinstance(trace_id, str):
                        bad_traces.add(trace_id.lower())
    if bad_traces:
        kept = [span for span in mapped if span.trace_id not in bad_traces]
        rejected += len(mapped) - len(kept)
        mapped = kept
    _name_callers(mapped)
    return ReceivedSpans(mapped, rejected, first_error)


def otlp_from_spans(
    spans: Iterable[Span], *, scope_name: str = "asynctrace", scope_version: str = ""
) -> dict[str, Any]:
    """The OTLP/JSON ``ExportTraceServiceRequest`` for ``spans``: one resource per service.

    Times are written to the microsecond (span JSON's precision) in nanoseconds;
    tags become string attributes, logs events with a ``log.level`` attribute. An
    error span's status message is its first error log. Never raises for spans
    made by asynctrace.
    """
    by_service: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_service.setdefault(span.service, []).append(_otlp_span(span))
    scope: dict[str, Any] = {"name": scope_name}
    if scope_version:
        scope["version"] = scope_version
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attribute("service.name", service)]},
                "scopeSpans": [{"scope": scope, "spans": otlp_spans}],
            }
            for service, otlp_spans in by_service.items()
        ]
    }


# -- OTLP to span ------------------------------------------------------------------------


def _span_of(otlp: Mapping[str, Any], service: str, limits: Limits) -> Span:
    trace_id = _hex_id(otlp.get("traceId"), "traceId", 32)
    span_id = _hex_id(otlp.get("spanId"), "spanId", 16)
    raw_parent = otlp.get("parentSpanId")
    parent = None if raw_parent in (None, "") else _hex_id(raw_parent, "parentSpanId", 16)
    start_us = _time_us(otlp.get("startTimeUnixNano"), "startTimeUnixNano")
    end_us = _time_us(otlp.get("endTimeUnixNano"), "endTimeUnixNano")
    if end_us < start_us:
        raise _Invalid(f"span {span_id} ends before it starts")
    kind_name = _kind_name(otlp.get("kind", 0))
    kind = _KIND_BY_NAME[kind_name]
    tags = _Tags(limits)
    for key, value in _key_values(otlp.get("attributes"), "attributes"):
        tags.add(key, value)
    if kind_name in ("producer", "consumer"):
        tags.add(KIND_TAG, kind_name)
    events = _list(otlp.get("events"), "events", error=_Invalid)
    logs = [_log_of(event, limits) for event in events]
    status = _object(otlp.get("status") or {}, "status", error=_Invalid)
    is_error = _integer(status.get("code", 0), "status.code") == _STATUS_ERROR
    if is_error:
        tags.add("error", "true", force=True)
        message = status.get("message")
        if not isinstance(message, str | type(None)):
            raise _Invalid("status.message must be a string")
        if message and not any(log["message"] == message for log in logs):
            logs.append({"timestamp": end_us / 1000, "message": message, "level": "error"})
    if len(logs) > limits.max_logs:
        tags.add(DROPPED_LOGS_TAG, str(len(logs) - limits.max_logs), force=True)
        logs = logs[: limits.max_logs]
    name = otlp.get("name", "")
    if not isinstance(name, str):
        raise _Invalid("name must be a string")
    span = Span.from_dict(
        {
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "service": service,
            "operation": tags.clip(name),
            "kind": kind,
            "startTime": start_us / 1000,
            "duration": (end_us - start_us) / 1000,
            "status": "error" if is_error else "ok",
            "tags": tags.values,
            "logs": logs,
        }
    )
    flags = _integer(otlp.get("flags", 0), "flags")
    if flags & _FLAG_HAS_IS_REMOTE:
        span.is_local_root = parent is None or bool(flags & _FLAG_IS_REMOTE)
    else:
        span.is_local_root = parent is None or kind == "server"
    span.is_random = bool(flags & _FLAG_RANDOM)
    trace_state = otlp.get("traceState")
    if isinstance(trace_state, str) and len(trace_state) <= _MAX_TRACESTATE:
        # Read only for our own entry (the caller's service), which is validated there.
        span.tracestate = trace_state
    return span


def _name_callers(spans: Sequence[Span]) -> None:
    """Tag ``peer.service`` on server spans whose caller's span came in the same request.

    OpenTelemetry callers do not name themselves in ``tracestate`` as asynctrace
    does; when both sides of a call arrive together the edge is still known. (The
    aggregates check the name before it reaches a key.)
    """
    service_of = {span.span_id: span.service for span in spans}
    for span in spans:
        if span.kind == "server" and span.parent_span_id in service_of:
            caller = service_of[span.parent_span_id]
            if caller != span.service and "peer.service" not in span.tags:
                span.tags["peer.service"] = caller


def _service_of(resource: object, limits: Limits) -> str:
    if resource is None:
        return "unknown"
    attributes = _object(resource, "resource").get("attributes")
    try:
        for key, value in _key_values(attributes, "resource.attributes"):
            if key == "service.name":
                name = _value_text(value)
                return name[: limits.max_string_length] if name else "unknown"
    except _Invalid as exc:
        raise OTLPDecodeError(str(exc)) from None
    return "unknown"


class _Tags:
    """Tags within the span limits, their overflow marked as on live spans."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.values: dict[str, str] = {}
        self.dropped = 0

    def clip(self, text: str) -> str:
        limit = self.limits.max_string_length
        if len(text) <= limit:
            return text
        self.values[TRUNCATED_TAG] = "true"
        return text[: max(0, limit - len(TRUNCATION_MARK))] + TRUNCATION_MARK

    def add(self, key: str, value: object, *, force: bool = False) -> None:
        text = value if isinstance(value, str) else _value_text(value)
        if not force and key not in self.values and len(self.values) >= self.limits.max_tags:
            self.dropped += 1
            self.values[DROPPED_TAGS_TAG] = str(self.dropped)
            return
        self.values[self.clip(key)] = self.clip(text)


def _log_of(event_entry: object, limits: Limits) -> dict[str, Any]:
    event = _object(event_entry, "an event", error=_Invalid)
    when_us = _time_us(event.get("timeUnixNano"), "event timeUnixNano")
    name = event.get("name", "")
    if not isinstance(name, str):
        raise _Invalid("event name must be a string")
    attributes = dict(_key_values(event.get("attributes"), "event attributes"))
    texts = {key: _value_text(value) for key, value in attributes.items()}
    if name == "exception":
        kind = texts.pop("exception.type", "")
        detail = texts.pop("exception.message", "")
        message = f"{kind}: {detail}" if kind and detail else kind or detail or "exception"
        level = "error"
    else:
        level = texts.pop(_LEVEL_ATTRIBUTE, "") or "info"
        message = name
    rest = " ".join(f"{key}={text}" for key, text in texts.items() if key != "exception.stacktrace")
    if rest:
        message = f"{message} {rest}" if message else rest
    limit = limits.max_string_length
    if len(message) > limit:
        message = message[: max(0, limit - len(TRUNCATION_MARK))] + TRUNCATION_MARK
    return {"timestamp": when_us / 1000, "message": message, "level": level[:limit]}


def _value_text(value: object) -> str:
    """An OTLP ``AnyValue`` as tag text (the seed's String(value) for scalars)."""
    return _scalar_text(_native(value))


def _scalar_text(native: object) -> str:
    if native is None:
        return ""
    if isinstance(native, bool):
        return "true" if native else "false"
    if isinstance(native, str):
        return native
    if isinstance(native, int):
        return str(native)
    if isinstance(native, float):
        return _double_text(native)
    return json.dumps(native, separators=(",", ":"), ensure_ascii=False)


def _double_text(value: float) -> str:
    # JavaScript's String(2.0) is "2", as the seed tracer wrote numbers; String(NaN)
    # and String(Infinity) are also what OTLP/JSON writes for them.
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _native(value: object) -> object:
    """An OTLP ``AnyValue`` as a JSON-ready Python value; raises ``_Invalid``."""
    entry = _object(value, "an attribute value", error=_Invalid)
    if not entry:
        return None
    if "stringValue" in entry:
        text = entry["stringValue"]
        if isinstance(text, str):
            return text
    elif "boolValue" in entry:
        flag = entry["boolValue"]
        if isinstance(flag, bool):
            return flag
    elif "intValue" in entry:
        return _integer(entry["intValue"], "intValue")
    elif "doubleValue" in entry:
        number = entry["doubleValue"]
        if isinstance(number, str) and number in ("NaN", "Infinity", "-Infinity"):
            return number
        if isinstance(number, int | float) and not isinstance(number, bool):
            return float(number)
    elif "bytesValue" in entry:
        data = entry["bytesValue"]
        if isinstance(data, str):
            return data  # base64, as OTLP/JSON writes bytes
    elif "arrayValue" in entry:
        array = _object(entry["arrayValue"] or {}, "arrayValue", error=_Invalid)
        return [_native(item) for item in _list(array.get("values"), "values", error=_Invalid)]
    elif "kvlistValue" in entry:
        kvlist = _object(entry["kvlistValue"] or {}, "kvlistValue", error=_Invalid)
        return {key: _native(item) for key, item in _key_values(kvlist.get("values"), "values")}
    raise _Invalid("an attribute value has no valid typed field")


def _key_values(entries: object, name: str) -> Iterable[tuple[str, object]]:
    for entry in _list(entries, name, error=_Invalid):
        pair = _object(entry, f"an entry of {name}", error=_Invalid)
        key = pair.get("key")
        if not isinstance(key, str):
            raise _Invalid(f"a key of {name} must be a string")
        yield key, pair.get("value") or {}


def _hex_id(value: object, name: str, digits: int) -> str:
    if isinstance(value, str):
        lowered = value.lower()
        is_valid = is_valid_trace_id if digits == 32 else is_valid_span_id
        if is_valid(lowered):
            return lowered
    raise _Invalid(f"{name} is not {digits} hex digits (or is all zeros)")


def _time_us(value: object, name: str) -> int:
    """OTLP nanoseconds, rounded to the microsecond span JSON keeps."""
    nanoseconds = _integer(value, name)
    if not 0 < nanoseconds <= _MAX_NS:
        raise _Invalid(f"{name} must be nanoseconds after 1970 and before 10000")
    return (nanoseconds + _NS_PER_US // 2) // _NS_PER_US


def _integer(value: object, name: str) -> int:
    # OTLP/JSON writes 64-bit integers as decimal strings; numbers are accepted too.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and 0 < len(value) <= 20 and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Invalid(f"{name} must be an integer")


def _kind_name(value: object) -> str:
    if isinstance(value, str) and value.startswith("SPAN_KIND_"):
        name = value[len("SPAN_KIND_") :].lower()
        if name in _KIND_BY_NAME:
            return name
    number = _integer(value, "kind")
    if number not in _SPAN_KIND_NAMES:
        raise _Invalid("kind must be a SpanKind from 0 to 5")
    return _SPAN_KIND_NAMES[number]


def _object(
    value: object, name: str, *, error: type[ValueError] = OTLPDecodeError
) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise error(f"{name} must be an object")
    return value


def _list(value: object, name: str, *, error: type[ValueError] = OTLPDecodeError) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise error(f"{name} must be a list")
    return value


# -- span to OTLP ------------------------------------------------------------------------


def _otlp_span(span: Span) -> dict[str, Any]:
    tags = span._tags or {}
    kind_name = tags.get(KIND_TAG)
    if kind_name not in ("producer", "consumer") or _KIND_BY_NAME[kind_name] != span.kind:
        kind_name = span.kind if span.kind in _OTLP_KIND else "internal"
    # The times the span JSON stores (each rounded to the microsecond): a receiver's
    # duration, end - start, may then differ from the measured one by 1 µs.
    start_us = round(span.start_time * 1000)
    end_us = max(start_us, round(span.end_time * 1000))
    flags = _FLAG_HAS_IS_REMOTE
    if span.is_sampled:
        flags |= _FLAG_SAMPLED
    if span.is_random:
        flags |= _FLAG_RANDOM
    if span.parent_span_id is not None and span.is_local_root:
        flags |= _FLAG_IS_REMOTE
    otlp: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.operation,
        "kind": _OTLP_KIND[kind_name],
        "startTimeUnixNano": str(start_us * _NS_PER_US),
        "endTimeUnixNano": str(end_us * _NS_PER_US),
        "flags": flags,
        "attributes": [_attribute(key, value) for key, value in tags.items() if key != KIND_TAG],
    }
    if span.parent_span_id is not None:
        otlp["parentSpanId"] = span.parent_span_id
    if span.tracestate:
        otlp["traceState"] = span.tracestate
    logs = span._logs or ()
    if logs:
        otlp["events"] = [
            {
                "timeUnixNano": str(round(log.timestamp * 1000) * _NS_PER_US),
                "name": log.message,
                "attributes": [_attribute(_LEVEL_ATTRIBUTE, log.level)],
            }
            for log in logs
        ]
    if span.status == "error":
        status: dict[str, Any] = {"code": _STATUS_ERROR}
        message = next((log.message for log in logs if log.level == "error"), "")
        if message:
            status["message"] = message
        otlp["status"] = status
    return otlp


def _attribute(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}
