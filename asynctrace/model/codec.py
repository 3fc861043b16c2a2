"""Span JSON text: the exporter's fast encoders, the decoder and the trace index entry.

Every byte of span JSON that reaches Redis is written here; ``tests/test_model_codec.py``
holds the fast paths to ``json.dumps`` of ``Span.to_dict()``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from asynctrace.ids import is_valid_span_id, is_valid_trace_id
from asynctrace.model.span import (
    _FAST_MS_LIMIT,
    ROUNDER,
    Limits,
    Span,
    SpanDecodeError,
    SpanLog,
    _id,
    _number,
    _text,
    round_ms,
    valid_utf8,
)

__all__ = [
    "IndexEntry",
    "decode_span",
    "encode_index_entry",
    "encode_indexed_span",
    "encode_span",
    "spans_of",
    "utc_day",
]


def encode_span(span: Span) -> str:
    """Compact span JSON, as the seed's ``JSON.stringify`` wrote it.

    For string tags (``Span.tags`` is ``dict[str, str]``) byte for byte
    ``json.dumps(span.to_dict(), separators=(",", ":"), ensure_ascii=False)`` with lone
    surrogates replaced by U+FFFD (``valid_utf8``: what is stored is valid UTF-8 text,
    whatever bytes a header held), written by orjson in a fraction of the time (the
    exporter encodes every span; ``tests/test_model_codec.py`` holds the two to the
    same bytes). Raises what that ``json.dumps`` would raise for a value JSON cannot
    hold.
    """
    try:
        fields = _span_fields(span)
        if fields is not None:
            # orjson refuses lone surrogates, so a fast text never holds one: only the
            # reference path replaces them.
            return _dumps(fields).decode()
    except Exception:
        pass  # an unusual value: the reference path encodes it, or raises
    return _encode_span_reference(span)


def _encode_span_reference(span: Span) -> str:
    return valid_utf8(json.dumps(span.to_dict(), separators=(",", ":"), ensure_ascii=False))


# orjson writes what json.dumps(..., separators=(",", ":"), ensure_ascii=False) writes
# for str, None, int and the floats span JSON holds: multiples of 0.001 below 2**42,
# which both print as their shortest round-trip digits with no exponent (checked on
# millions of values; the property tests hold the two encoders to the same bytes).
# It refuses lone surrogates, which json.dumps writes through: the reference path
# takes those spans.
_dumps = orjson.dumps

# The decimals of 0..999 microseconds as repr writes them: no trailing zeros ("5" for
# 500, "0" for 0). The index score is written from them: no float formatting at all.
_DECIMALS = tuple(f"{micros:03d}".rstrip("0") or "0" for micros in range(1000))


def _ms_json(value: float) -> str:
    """``json.dumps(round_ms(value))`` for a plain float in [0, 2**42), else raise;
    the index score's text, written without formatting a float."""
    micros = round(_checked_ms(value) * 1000.0)
    return f"{micros // 1000}.{_DECIMALS[micros % 1000]}"


def _span_fields(span: Span) -> dict[str, Any] | None:
    """The span JSON object with times rounded to the microsecond, for orjson; None
    when a time is not a plain float in [0, 2**42) (the reference path rounds it)."""
    start = span.start_time
    duration = span.duration
    end = start + duration
    if not (
        type(start) is float
        and type(duration) is float
        and 0.0 <= start < _FAST_MS_LIMIT
        and 0.0 <= end < _FAST_MS_LIMIT
        and 0.0 <= duration < _FAST_MS_LIMIT
    ):
        return None
    logs = span._logs
    # round_ms inlined for the three times: this runs for every exported span.
    rounder = ROUNDER
    return {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "parentSpanId": span.parent_span_id,
        "service": span.service,
        "operation": span.operation,
        "kind": span.kind,
        "startTime": (start * 1000.0 + rounder - rounder) / 1000.0,
        "endTime": (end * 1000.0 + rounder - rounder) / 1000.0,
        "duration": (duration * 1000.0 + rounder - rounder) / 1000.0,
        "status": span.status,
        "tags": span._tags or {},
        "logs": _logs_fields(logs) if logs else [],
    }


def _logs_fields(logs: list[SpanLog]) -> list[dict[str, Any]]:
    """The logs for orjson; raises for a timestamp that is not a plain float in
    [0, 2**42) (orjson writes NaN and infinities as null, json.dumps as NaN and
    Infinity: the reference path encodes those)."""
    return [
        {
            "timestamp": round_ms(_checked_ms(log.timestamp)),
            "message": log.message,
            "level": log.level,
        }
        for log in logs
    ]


def encode_indexed_span(span: Span) -> tuple[str, str, str]:
    """``(encode_span(span), score, encode_index_entry(span))`` for a span the trace
    index takes, where ``score`` is its start time as text naming the double
    ``round_ms(start_time)``.

    The exporter's path for local roots and error spans: both JSON documents hold the
    same ids, names and times, which are rounded once here. Raises what
    ``encode_span`` raises.
    """
    try:
        texts = _encode_indexed_fast(span)
    except Exception:
        texts = None  # an unusual value: the reference paths encode it, or raise
    if texts is not None:
        return texts  # orjson refuses lone surrogates: nothing to replace
    return encode_span(span), repr(round_ms(span.start_time)), encode_index_entry(span)


def _encode_indexed_fast(span: Span) -> tuple[str, str, str] | None:
    fields = _span_fields(span)
    if fields is None:
        return None
    start = fields["startTime"]
    index = [
        fields["traceId"],
        fields["spanId"],
        fields["service"],
        fields["operation"],
        fields["status"],
        fields["duration"],
        start,
        1 if fields["parentSpanId"] is None else 0,
        _index_error(span) if fields["status"] == "error" else "",
    ]
    return (
        _dumps(fields).decode(),
        _ms_json(start),  # start is rounded already: rounding again keeps it
        _dumps(index).decode(),
    )


def decode_span(raw: str | bytes, *, limits: Limits | None = None) -> Span:
    """Parse one span JSON entry. Raises ``SpanDecodeError`` for anything invalid,
    and for nothing else: JSON nested too deeply for the parser is invalid too.

    Bytes that are not UTF-8 become U+FFFD rather than costing the whole span.
    ``limits``: see ``Span.from_dict``.
    """
    data = _json_of(raw, "not valid JSON")
    try:
        return Span.from_dict(data, limits=limits)
    except RecursionError as exc:
        # A tag value nested nearly as deep as the parser allows, turned into text.
        raise SpanDecodeError("nested too deeply") from exc


def _json_of(raw: str | bytes, problem: str) -> Any:
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8", "replace")
    elif not isinstance(raw, str):
        raise SpanDecodeError(problem)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise SpanDecodeError(problem) from exc
    except RecursionError as exc:
        # "[" * 100_000, say: the C parser gives up, as it should.
        raise SpanDecodeError(f"{problem}: nested too deeply") from exc


def utc_day(epoch_ms: float) -> str:
    """The UTC calendar day (``YYYY-MM-DD``) of an epoch-millisecond time."""
    return datetime.fromtimestamp(epoch_ms / 1000.0, UTC).strftime("%Y-%m-%d")


def encode_index_entry(span: Span) -> str:
    """The trace index's entry for ``span`` as JSON (the exporter's hot path encodes it
    with the span, in ``encode_indexed_span``; this is its reference)."""
    return IndexEntry.of(span).encode()


def _index_error(span: Span) -> str:
    """The error text an index entry keeps: the first error log line, capped."""
    if span.status != "error":
        return ""
    error = next((log.message for log in span._logs or () if log.level == "error"), "error")
    return error[:512]


def _index_json_fast(
    trace_id: str,
    span_id: str,
    service: str,
    operation: str,
    status: str,
    duration: float,
    start_time: float,
    is_root: bool,
    error: str,
) -> str | None:
    """An index entry's compact JSON array, or None when a value needs the reference path."""
    try:
        return _dumps(
            [
                trace_id,
                span_id,
                service,
                operation,
                status,
                round_ms(_checked_ms(duration)),
                round_ms(_checked_ms(start_time)),
                1 if is_root else 0,
                error,
            ]
        ).decode()
    except Exception:
        return None  # an unusual value: the reference path encodes it, or raises


def _checked_ms(value: float) -> float:
    """``value`` when it is a plain float in [0, 2**42), else raise."""
    if type(value) is not float or not 0.0 <= value < _FAST_MS_LIMIT:
        raise ValueError("not a plain float in range")
    return value


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """What the trace index keeps of one local-root or error span, for listing and search."""

    trace_id: str
    span_id: str
    service: str
    operation: str
    status: str
    duration: float
    start_time: float
    is_root: bool
    error: str = ""

    @classmethod
    def of(cls, span: Span) -> IndexEntry:
        return cls(
            span.trace_id,
            span.span_id,
            span.service,
            span.operation,
            span.status,
            span.duration,
            span.start_time,
            span.parent_span_id is None,
            _index_error(span),
        )

    def encode(self) -> str:
        """Compact JSON array; byte for byte the ``json.dumps`` of ``_encode_reference``."""
        fast = _index_json_fast(
            self.trace_id,
            self.span_id,
            self.service,
            self.operation,
            self.status,
            self.duration,
            self.start_time,
            self.is_root,
            self.error,
        )
        return fast if fast is not None else self._encode_reference()

    def _encode_reference(self) -> str:
        return valid_utf8(
            json.dumps(
                [
                    self.trace_id,
                    self.span_id,
                    self.service,
                    self.operation,
                    self.status,
                    round_ms(self.duration),
                    round_ms(self.start_time),
                    int(self.is_root),
                    self.error,
                ],
                separators=(",", ":"),
                ensure_ascii=False,
            )
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> IndexEntry:
        """Raises ``SpanDecodeError`` for an entry that is not an index entry."""
        items = _json_of(raw, "not a trace index entry")
        if not isinstance(items, list) or len(items) != 9:
            raise SpanDecodeError("not a trace index entry")
        trace_id, span_id, service, operation, status, duration, start, is_root, error = items
        return cls(
            _id(trace_id, "traceId", is_valid_trace_id),
            _id(span_id, "spanId", is_valid_span_id),
            _text(service, "service"),
            _text(operation, "operation"),
            "error" if status == "error" else "ok",
            _number(duration, "duration"),
            _number(start, "startTime"),
            bool(is_root),
            _text(error, "error"),
        )


def spans_of(entries: Sequence[object]) -> tuple[list[Span], int]:
    """Decode stored entries, skipping (and counting) the corrupt ones: anything
    that is not span JSON text, including a reply that is not text at all."""
    spans: list[Span] = []
    corrupt = 0
    for raw in entries:
        if not isinstance(raw, str | bytes):
            corrupt += 1
            continue
        try:
            spans.append(decode_span(raw))
        except SpanDecodeError:
            corrupt += 1
    return spans, corrupt
