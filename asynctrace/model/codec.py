"""Span JSON text: the exporter's fast encoders, the decoder and the trace index entry.

Every byte of span JSON that reaches Redis is written here; ``tests/test_model_codec.py``
holds the fast paths to ``json.dumps`` of ``Span.to_dict()``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asynctrace.ids import is_valid_span_id, is_valid_trace_id
from asynctrace.model.span import (
    _FAST_MS_LIMIT,
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

    Byte for byte ``json.dumps(span.to_dict(), separators=(",", ":"),
    ensure_ascii=False)`` with lone surrogates replaced by U+FFFD (``valid_utf8``:
    what is stored is valid UTF-8 text, whatever bytes a header held), about three
    times as fast (the exporter encodes every span; ``tests/test_model_codec.py``
    holds the two to the same bytes). Raises what that ``json.dumps`` would raise
    for a value JSON cannot hold.
    """
    try:
        text = _encode_span_fast(span)
    except Exception:
        text = None  # an unusual value: the reference path encodes it, or raises
    # A surrogate can only sit inside a JSON string, so replacing it in the text is
    # replacing it in the value; isascii() makes this free for nearly every span.
    if text is None:
        return _encode_span_reference(span)
    return text if text.isascii() else valid_utf8(text)


def _encode_span_reference(span: Span) -> str:
    return valid_utf8(json.dumps(span.to_dict(), separators=(",", ":"), ensure_ascii=False))


# The fast encoder writes the fixed field order itself and leaves strings to json's
# own C string encoder, so escaping is exactly json.dumps's. None without the C
# accelerator (PyPy): encode_span then always takes the reference path.
_json_string: Callable[[str], str] | None = getattr(json.encoder, "c_encode_basestring", None)
_make_json_encoder: Any = getattr(json.encoder, "c_make_encoder", None)


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# Tags are encoded by json's C encoder with json.dumps's settings, except that it does
# not look for reference cycles (markers=None): a cyclic value recurses until
# RecursionError, and the reference path then raises json.dumps's own error.
_json_object = (
    _make_json_encoder(None, _not_json, _json_string, None, ":", ",", False, False, True)
    if _make_json_encoder is not None and _json_string is not None
    else None
)
# The decimals of 0..999 microseconds as repr writes them: no trailing zeros ("5" for
# 500, "0" for 0).
_DECIMALS = tuple(f"{micros:03d}".rstrip("0") or "0" for micros in range(1000))


def _ms_json(value: float) -> str:
    """``json.dumps(round_ms(value))`` for a plain float in [0, 2**42), else raise."""
    if type(value) is not float or not 0.0 <= value < _FAST_MS_LIMIT:
        raise ValueError("not a plain float in range")
    micros = round(value * 1000.0)
    return f"{micros // 1000}.{_DECIMALS[micros % 1000]}"


def _encode_span_fast(span: Span) -> str | None:
    string = _json_string
    encode_object = _json_object
    if string is None or encode_object is None:
        return None
    times = _times_json(span)
    if times is None:
        return None
    start, end, duration = times
    parent = span.parent_span_id
    tags = span._tags
    logs = span._logs
    # The seed's field order; _encode_indexed_fast writes the same layout.
    return (
        f'{{"traceId":{string(span.trace_id)},"spanId":{string(span.span_id)},'
        f'"parentSpanId":{"null" if parent is None else string(parent)},'
        f'"service":{string(span.service)},"operation":{string(span.operation)},'
        f'"kind":{string(span.kind)},'
        f'"startTime":{start},"endTime":{end},"duration":{duration},'
        f'"status":{string(span.status)},'
        f'"tags":{"".join(encode_object(tags, 0)) if tags else "{}"},'
        f'"logs":{_encode_logs_fast(logs) if logs else "[]"}}}'
    )


def _times_json(span: Span) -> tuple[str, str, str] | None:
    """The JSON of a span's (start, end, duration), or None for the reference path."""
    start = span.start_time
    duration = span.duration
    end = start + duration
    # _ms_json inlined for the three times: this runs for every exported span.
    if not (
        type(start) is float
        and type(end) is float
        and type(duration) is float
        and 0.0 <= start < _FAST_MS_LIMIT
        and 0.0 <= end < _FAST_MS_LIMIT
        and 0.0 <= duration < _FAST_MS_LIMIT
    ):
        return None
    decimals = _DECIMALS
    micros = round(start * 1000.0)
    start_text = f"{micros // 1000}.{decimals[micros % 1000]}"
    micros = round(end * 1000.0)
    end_text = f"{micros // 1000}.{decimals[micros % 1000]}"
    micros = round(duration * 1000.0)
    duration_text = f"{micros // 1000}.{decimals[micros % 1000]}"
    return start_text, end_text, duration_text


def encode_indexed_span(span: Span) -> tuple[str, str, str]:
    """``(encode_span(span), score, encode_index_entry(span))`` for a span the trace
    index takes, where ``score`` is its start time as text naming the double
    ``round_ms(start_time)``.

    The exporter's path for local roots and error spans: both JSON documents hold the
    same ids, names and times, which are encoded once here (a time's text costs as
    much as all of a span's strings). Raises what ``encode_span`` raises.
    """
    try:
        texts = _encode_indexed_fast(span)
    except Exception:
        texts = None  # an unusual value: the reference paths encode it, or raise
    if texts is not None:
        entry, score, index_entry = texts
        if entry.isascii():  # then so is the index entry: its texts come from the span's
            return texts
        return valid_utf8(entry), score, valid_utf8(index_entry)
    return encode_span(span), repr(round_ms(span.start_time)), encode_index_entry(span)


# string(_index_error(span)) of a span whose status is not "error".
_NO_ERROR_JSON = '""'


def _encode_indexed_fast(span: Span) -> tuple[str, str, str] | None:
    string = _json_string
    encode_object = _json_object
    if string is None or encode_object is None:
        return None
    times = _times_json(span)
    if times is None:
        return None
    start, end, duration = times
    trace_id = string(span.trace_id)
    span_id = string(span.span_id)
    service = string(span.service)
    operation = string(span.operation)
    status_text = span.status
    status = string(status_text)
    parent = span.parent_span_id
    tags = span._tags
    logs = span._logs
    # The layout of _encode_span_fast, then of _index_json_fast, from the same texts.
    span_json = (
        f'{{"traceId":{trace_id},"spanId":{span_id},'
        f'"parentSpanId":{"null" if parent is None else string(parent)},'
        f'"service":{service},"operation":{operation},"kind":{string(span.kind)},'
        f'"startTime":{start},"endTime":{end},"duration":{duration},"status":{status},'
        f'"tags":{"".join(encode_object(tags, 0)) if tags else "{}"},'
        f'"logs":{_encode_logs_fast(logs) if logs else "[]"}}}'
    )
    index_json = (
        f"[{trace_id},{span_id},{service},{operation},{status},{duration},"
        f"{start},{1 if parent is None else 0},"
        f"{string(_index_error(span)) if status_text == 'error' else _NO_ERROR_JSON}]"
    )
    return span_json, start, index_json


def _encode_logs_fast(logs: list[SpanLog]) -> str:
    string = _json_string
    assert string is not None
    entries = [
        f'{{"timestamp":{_ms_json(log.timestamp)},"message":{string(log.message)},'
        f'"level":{string(log.level)}}}'
        for log in logs
    ]
    return f"[{','.join(entries)}]"


def decode_span(raw: str | bytes, *, limits: Limits | None = None) -> Span:
    """Parse one span JSON entry. Raises ``SpanDecodeError`` for anything invalid,
    and for nothing else: JSON nested too deeply for the parser is invalid too.

    Bytes that are not UTF-8 become U+FFFD rather than costing the whole span.
    ``limits``: see ``Span.from_dict``.
    """
    return Span.from_dict(_json_of(raw, "not valid JSON"), limits=limits)


def _json_of(raw: str | bytes, problem: str) -> Any:
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8", "replace")
    elif not isinstance(raw, str):
        raise SpanDecodeError(problem)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # RecursionError: "[" * 100_000, say; the C parser gives up, as it should.
        raise SpanDecodeError(problem) from exc


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
    string = _json_string
    if string is None:
        return None
    try:
        return (
            f"[{string(trace_id)},{string(span_id)},{string(service)},"
            f"{string(operation)},{string(status)},{_ms_json(duration)},"
            f"{_ms_json(start_time)},{1 if is_root else 0},{string(error)}]"
        )
    except Exception:
        return None  # an unusual value: the reference path encodes it, or raises


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
        return valid_utf8(fast) if fast is not None else self._encode_reference()

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
