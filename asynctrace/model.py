"""Spans, traces and their seed-compatible JSON codec.

The span JSON is camelCase as the original TypeScript tracer wrote it; this module is
the only place that spelling appears. Decoding is lenient where the seed was (integer
times, ``parentSpanId`` "" or null, unknown fields) and strict where a bad value could
travel further (ids are validated, so a corrupt entry never reaches a key or a page).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter as _perf_counter
from typing import Any, Literal, NamedTuple, TypedDict

from asynctrace import clock
from asynctrace._ratelimit import report_internal_error
from asynctrace.ids import is_valid_span_id, is_valid_trace_id

__all__ = [
    "DEFAULT_LIMITS",
    "IndexEntry",
    "Limits",
    "Span",
    "SpanContext",
    "SpanDecodeError",
    "SpanDict",
    "SpanKind",
    "SpanLog",
    "SpanLogDict",
    "SpanStatus",
    "Trace",
    "decode_span",
    "encode_index_entry",
    "encode_indexed_span",
    "encode_span",
    "round_ms",
    "spans_of",
    "utc_day",
]

SpanKind = Literal["server", "client", "internal"]
SpanStatus = Literal["ok", "error"]

_KINDS: frozenset[str] = frozenset(("server", "client", "internal"))
TRUNCATION_MARK = "…[truncated]"
DROPPED_TAGS_TAG = "asynctrace.dropped_tags"
DROPPED_LOGS_TAG = "asynctrace.dropped_logs"
TRUNCATED_TAG = "asynctrace.truncated"


class SpanLogDict(TypedDict):
    timestamp: float
    message: str
    level: str


class SpanDict(TypedDict):
    traceId: str
    spanId: str
    parentSpanId: str | None
    service: str
    operation: str
    kind: str
    startTime: float
    endTime: float
    duration: float
    status: str
    tags: dict[str, str]
    logs: list[SpanLogDict]


class SpanDecodeError(ValueError):
    """A stored or imported span is not valid span JSON."""


@dataclass(frozen=True, slots=True)
class SpanLog:
    """One log line attached to a span; ``timestamp`` is Unix epoch milliseconds."""

    timestamp: float
    message: str
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on what one span may hold; going over is marked on the span, never silent."""

    max_tags: int = 64
    max_logs: int = 128
    max_string_length: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_tags", "max_logs", "max_string_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1")


DEFAULT_LIMITS = Limits()


class SpanContext(NamedTuple):
    """A parent span that lives in another process, as read from propagation headers.

    A named tuple rather than a frozen dataclass: every traced request that arrives
    with trace headers builds one, and a tuple costs a fifth as much to make.
    """

    trace_id: str
    span_id: str | None
    is_sampled: bool = True
    tracestate: str = ""


class Span:
    """One timed operation. Mutable until it ends; it ends exactly once.

    Times are Unix epoch milliseconds (``start_time``, ``end_time``); ``duration`` is
    milliseconds measured with a monotonic clock, and ``end_time`` is
    ``start_time + duration``. Tag values are strings. Every mutator is a no-op after
    the span ended and never raises into the caller.
    """

    __slots__ = (
        "_ended",
        "_logs",
        "_on_end",
        "_start_perf",
        "_tags",
        "duration",
        "is_local_root",
        "is_sampled",
        "kind",
        "limits",
        "operation",
        "parent_span_id",
        "service",
        "span_id",
        "start_time",
        "status",
        "trace_id",
        "tracestate",
    )

    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str
    operation: str
    kind: str
    start_time: float
    duration: float
    status: str
    _tags: dict[str, str] | None
    _logs: list[SpanLog] | None
    is_sampled: bool
    is_local_root: bool
    tracestate: str
    limits: Limits

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        service: str,
        operation: str,
        *,
        kind: str = "internal",
        is_sampled: bool = True,
        is_local_root: bool | None = None,
        tracestate: str = "",
        limits: Limits = DEFAULT_LIMITS,
        on_end: Callable[[Span], None] | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.service = service
        self.operation = operation
        self.kind = kind
        self.status = "ok"
        self._tags = None
        self._logs = None
        self.is_sampled = is_sampled
        self.is_local_root = parent_span_id is None if is_local_root is None else is_local_root
        self.tracestate = tracestate
        self.limits = limits
        self._on_end = on_end
        self._ended = False
        self._start_perf = start = _perf_counter()
        self.start_time = clock.wall_ms(start)
        self.duration = 0.0

    def __repr__(self) -> str:
        return (
            f"<Span {self.service}:{self.operation} trace={self.trace_id} "
            f"span={self.span_id} parent={self.parent_span_id} status={self.status}>"
        )

    @property
    def end_time(self) -> float:
        """Epoch ms: ``start_time + duration`` (``start_time`` while the span is open)."""
        return self.start_time + self.duration

    # Most spans never get a tag or a log line: their dict and list are made on first
    # use, which keeps span creation cheap and the garbage collector's work small.
    @property
    def tags(self) -> dict[str, str]:
        """Tags as strings; the dict is created on first access."""
        tags = self._tags
        if tags is None:
            tags = self._tags = {}
        return tags

    @tags.setter
    def tags(self, value: dict[str, str]) -> None:
        self._tags = value

    @property
    def logs(self) -> list[SpanLog]:
        """Log lines in the order they were added; the list is created on first access."""
        logs = self._logs
        if logs is None:
            logs = self._logs = []
        return logs

    @logs.setter
    def logs(self, value: list[SpanLog]) -> None:
        self._logs = value

    @property
    def is_ended(self) -> bool:
        """True once ``end()`` ran (or the span was decoded from storage)."""
        return self._ended

    @property
    def is_error(self) -> bool:
        return self.status == "error"

    # -- mutators: guarded, never raise ------------------------------------------

    def _clip(self, text: str) -> str:
        limit = self.limits.max_string_length
        if len(text) <= limit:
            return text
        self.tags[TRUNCATED_TAG] = "true"
        return text[:limit] + TRUNCATION_MARK

    def set_tag(self, key: str, value: object) -> None:
        """Set a tag; the value is stored as a string. Over the limit, the drop is counted."""
        if self._ended:
            return
        try:
            self._set_tag(key, value)
        except Exception as exc:
            report_internal_error("set_tag failed", exc)

    def _set_tag(self, key: str, value: object) -> None:
        text = value if type(value) is str else _tag_text(value)
        if type(key) is not str:
            key = str(key)
        tags = self._tags
        if tags is None:
            tags = self._tags = {}
        limits = self.limits
        if key not in tags and len(tags) >= limits.max_tags:
            tags[DROPPED_TAGS_TAG] = str(int(tags.get(DROPPED_TAGS_TAG, "0")) + 1)
            return
        longest = limits.max_string_length
        if len(key) <= longest and len(text) <= longest:
            tags[key] = text  # the common case: nothing to clip
        else:
            tags[self._clip(key)] = self._clip(text)

    def set_tags(self, tags: Mapping[str, object]) -> None:
        """Set several tags at once (see ``set_tag``)."""
        if self._ended:
            return
        try:
            if self._tags is None:
                # A new span's tags (span(..., tags=...)) that are strings within the
                # limits need no conversion, clipping or counting: one copy, not a
                # call per tag.
                limits = self.limits
                longest = limits.max_string_length
                if len(tags) <= limits.max_tags:
                    for key, value in tags.items():
                        if not (
                            type(key) is str
                            and type(value) is str
                            and len(key) <= longest
                            and len(value) <= longest
                        ):
                            break
                    else:
                        self._tags = dict(tags)  # type: ignore[arg-type]  # checked: all str
                        return
            for key, value in tags.items():
                self._set_tag(key, value)
        except Exception as exc:
            report_internal_error("set_tags failed", exc)

    def log(self, message: str, *, level: str = "info", timestamp: float | None = None) -> None:
        """Attach a log line. ``timestamp`` is epoch ms and defaults to now."""
        if self._ended:
            return
        try:
            if len(self.logs) >= self.limits.max_logs:
                self.tags[DROPPED_LOGS_TAG] = str(int(self.tags.get(DROPPED_LOGS_TAG, "0")) + 1)
                return
            when = clock.now_ms() if timestamp is None else float(timestamp)
            if not _EARLIEST_MS <= when <= _LATEST_MS:  # NaN fails too: it would not decode
                when = clock.now_ms()
            self.logs.append(SpanLog(when, self._clip(str(message)), self._clip(str(level))))
        except Exception as exc:
            report_internal_error("span log failed", exc)

    def set_status(self, status: str, description: str | None = None) -> None:
        """Set ``"ok"`` or ``"error"``; an error may carry a description, logged at error."""
        if self._ended:
            return
        if status not in ("ok", "error"):
            report_internal_error("invalid span status", detail="expected 'ok' or 'error'")
            return
        self.status = status
        if status == "error":
            self.tags["error"] = "true"
            if description:
                self.log(description, level="error")

    def record_exception(self, exc: BaseException) -> None:
        """Mark the span failed by ``exc``: status error, ``error=true``, a log line."""
        if self._ended:
            return
        try:
            self.status = "error"
            self.tags["error"] = "true"
            self.set_tag("error.type", type(exc).__name__)
            text = str(exc)
            self.log(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, level="error")
        except Exception as inner:
            report_internal_error("record_exception failed", inner)

    def end(self) -> None:
        """End the span and hand it to ``on_end``. Idempotent; never raises."""
        # The spans of span() are context.ActiveSpan, which ends its own way: it hands
        # itself to the tracer configured when it ends, not to a callable of its own.
        if self._ended:
            return
        self._ended = True
        duration = (_perf_counter() - self._start_perf) * 1000.0
        self.duration = duration
        on_end = self._on_end
        if on_end is not None:
            try:
                on_end(self)
            except Exception as exc:
                report_internal_error("span export hand-off failed", exc)

    # -- codec --------------------------------------------------------------------

    def to_dict(self) -> SpanDict:
        """The span as seed-compatible span JSON (a dict ready for ``json.dumps``)."""
        return {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentSpanId": self.parent_span_id,
            "service": self.service,
            "operation": self.operation,
            "kind": self.kind,
            "startTime": round_ms(self.start_time),
            "endTime": round_ms(self.end_time),
            "duration": round_ms(self.duration),
            "status": self.status,
            "tags": self._tags if self._tags is not None else {},
            "logs": [
                {"timestamp": round_ms(log.timestamp), "message": log.message, "level": log.level}
                for log in self._logs or ()
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Span:
        """Build an ended span from span JSON, as written by asynctrace or the seed tracer.

        Raises ``SpanDecodeError`` when a required field is missing or invalid.
        """
        if not isinstance(data, Mapping):
            raise SpanDecodeError("a span must be a JSON object")
        trace_id = _id(data.get("traceId"), "traceId", is_valid_trace_id)
        span_id = _id(data.get("spanId"), "spanId", is_valid_span_id)
        raw_parent = data.get("parentSpanId")
        parent = (
            None if raw_parent in (None, "") else _id(raw_parent, "parentSpanId", is_valid_span_id)
        )
        start = _epoch_ms(data.get("startTime"), "startTime")
        duration_raw = data.get("duration")
        if duration_raw is None:
            duration = _number(data.get("endTime"), "endTime") - start
        else:
            duration = _number(duration_raw, "duration")
        if duration < 0:
            raise SpanDecodeError("duration must not be negative")
        status = data.get("status", "ok")
        if status not in ("ok", "error"):
            raise SpanDecodeError("status must be 'ok' or 'error'")
        kind = data.get("kind")
        span = cls.__new__(cls)
        span.trace_id = trace_id
        span.span_id = span_id
        span.parent_span_id = parent
        span.service = _text(data.get("service", "unknown"), "service")
        span.operation = _text(data.get("operation", ""), "operation")
        span.kind = kind if isinstance(kind, str) and kind in _KINDS else "internal"
        span.start_time = start
        span.duration = duration
        span.status = status
        span.tags = _decode_tags(data.get("tags"))
        span.logs = _decode_logs(data.get("logs"))
        span.is_sampled = True
        span.is_local_root = parent is None
        span.tracestate = ""
        span.limits = DEFAULT_LIMITS
        span._on_end = None
        span._ended = True
        span._start_perf = 0.0
        return span


def _tag_text(value: object) -> str:
    # The seed was JavaScript: String(true) is "true", keep that for readers of both.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return str(value)


def _id(value: object, name: str, is_valid: Callable[[object], bool]) -> str:
    if isinstance(value, str):
        value = value.lower()
        if is_valid(value):
            return value
    raise SpanDecodeError(f"{name} is not a valid id")


# Times a span may carry: the Unix epoch to the end of year 9999, the range a UTC day
# or hour key can name. Anything else would fail later, when a key is built.
_EARLIEST_MS = 0.0
_LATEST_MS = 253_402_300_799_999.0


def _epoch_ms(value: object, name: str) -> float:
    number = _number(value, name)
    if not _EARLIEST_MS <= number <= _LATEST_MS:
        raise SpanDecodeError(f"{name} must be epoch milliseconds between 1970 and 9999")
    return number


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpanDecodeError(f"{name} must be a number")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise SpanDecodeError(f"{name} must be finite")
    return number


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise SpanDecodeError(f"{name} must be a string")
    return value


def _decode_tags(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpanDecodeError("tags must be an object")
    return {str(key): _tag_text(item) for key, item in value.items()}


def _decode_logs(value: object) -> list[SpanLog]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpanDecodeError("logs must be a list")
    logs = []
    for item in value:
        if not isinstance(item, Mapping):
            raise SpanDecodeError("a log entry must be an object")
        logs.append(
            SpanLog(
                _number(item.get("timestamp"), "log timestamp"),
                _text(item.get("message", ""), "log message"),
                _text(item.get("level", "info"), "log level"),
            )
        )
    return logs


def encode_span(span: Span) -> str:
    """Compact span JSON, as the seed's ``JSON.stringify`` wrote it.

    Byte for byte ``json.dumps(span.to_dict(), separators=(",", ":"),
    ensure_ascii=False)``, about three times as fast (the exporter encodes every
    span; ``tests/test_model_codec.py`` holds the two to the same bytes).
    Raises what that ``json.dumps`` would raise for a value JSON cannot hold.
    """
    try:
        text = _encode_span_fast(span)
    except Exception:
        text = None  # an unusual value: the reference path encodes it, or raises
    return text if text is not None else _encode_span_reference(span)


def _encode_span_reference(span: Span) -> str:
    return json.dumps(span.to_dict(), separators=(",", ":"), ensure_ascii=False)


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

# Span JSON writes times rounded to the microsecond. Below 2**42 (year 2109 in epoch
# ms) ``value * 1000`` is below 2**52, so rounding it gives an exact integer count of
# microseconds, and neighbouring floats are less than 0.001 apart: a number with at
# most three decimals names exactly one float, whose repr is those digits. Writing
# the count's integer part and its decimals from a table avoids formatting the float
# to three places (dtoa's big-number division): 6-9 % fewer instructions per exported
# span (python -m benchmarks.instructions export).
_FAST_MS_LIMIT = 2.0**42
# The decimals of 0..999 microseconds as repr writes them: no trailing zeros ("5" for
# 500, "0" for 0).
_DECIMALS = tuple(f"{micros:03d}".rstrip("0") or "0" for micros in range(1000))


def round_ms(value: float) -> float:
    """``value`` (milliseconds) rounded to the microsecond, as span JSON writes it.

    ``round(value * 1000) / 1000`` for a float in [0, 2**42), which differs from
    ``round(value, 3)`` only on a tie in the last place; ``round(value, 3)`` otherwise.
    """
    if type(value) is float and 0.0 <= value < _FAST_MS_LIMIT:
        return round(value * 1000.0) / 1000.0
    return round(value, 3)


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
        return texts
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


def decode_span(raw: str | bytes) -> Span:
    """Parse one span JSON entry. Raises ``SpanDecodeError`` for anything invalid."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpanDecodeError("not valid JSON") from exc
    return Span.from_dict(data)


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
        return fast if fast is not None else self._encode_reference()

    def _encode_reference(self) -> str:
        return json.dumps(
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

    @classmethod
    def decode(cls, raw: str | bytes) -> IndexEntry:
        """Raises ``SpanDecodeError`` for an entry that is not an index entry."""
        try:
            items = json.loads(raw)
            trace_id, span_id, service, operation, status, duration, start, is_root, error = items
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise SpanDecodeError("not a trace index entry") from exc
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


@dataclass(frozen=True, slots=True)
class Trace:
    """All stored spans of one trace, arranged as a tree.

    ``spans`` are sorted by start time. ``root`` is the span without a parent or, when
    that span is missing, the earliest span whose parent is missing. ``orphans`` are
    the other spans whose parent is not in the trace: they are kept and shown at the
    top level, never lost. ``corrupt_entries`` counts stored entries that could not
    be decoded and were skipped.
    """

    trace_id: str
    spans: tuple[Span, ...]
    root: Span
    orphans: tuple[Span, ...]
    children: Mapping[str, tuple[Span, ...]]
    services: tuple[str, ...]
    has_errors: bool
    total_duration: float
    start_time: float
    corrupt_entries: int = 0
    duplicate_spans: int = 0
    by_id: Mapping[str, Span] = field(default_factory=dict)

    @property
    def is_complete(self) -> bool:
        """True when the trace has its true root and no orphans."""
        return self.root.parent_span_id is None and not self.orphans

    @classmethod
    def from_spans(cls, spans: Iterable[Span], *, corrupt_entries: int = 0) -> Trace:
        """Arrange spans of one trace. Raises ``ValueError`` for no spans or mixed traces."""
        by_id: dict[str, Span] = {}
        duplicates = 0
        for span in spans:
            if span.span_id in by_id:
                duplicates += 1
                continue
            by_id[span.span_id] = span
        if not by_id:
            raise ValueError("a trace needs at least one span")
        ordered = tuple(sorted(by_id.values(), key=lambda s: (s.start_time, s.span_id)))
        trace_ids = {span.trace_id for span in ordered}
        if len(trace_ids) != 1:
            raise ValueError("spans of several traces cannot form one trace")

        detached = [s for s in ordered if s.parent_span_id is None or s.parent_span_id not in by_id]
        true_roots = [s for s in detached if s.parent_span_id is None]
        root = true_roots[0] if true_roots else detached[0] if detached else ordered[0]
        orphans = tuple(s for s in detached if s is not root)
        detached_ids = {s.span_id for s in detached}

        children: dict[str, list[Span]] = {}
        for span in ordered:
            if span.span_id in detached_ids or span.parent_span_id is None:
                continue
            children.setdefault(span.parent_span_id, []).append(span)

        services: dict[str, None] = {}
        for span in ordered:
            services.setdefault(span.service, None)
        start = min(s.start_time for s in ordered)
        if root.parent_span_id is None:
            total = root.duration
        else:
            total = max(s.end_time for s in ordered) - start
        return cls(
            trace_id=ordered[0].trace_id,
            spans=ordered,
            root=root,
            orphans=orphans,
            children={key: tuple(value) for key, value in children.items()},
            services=tuple(services),
            has_errors=any(s.status == "error" for s in ordered),
            total_duration=total,
            start_time=start,
            corrupt_entries=corrupt_entries,
            duplicate_spans=duplicates,
            by_id=by_id,
        )

    def children_of(self, span: Span) -> tuple[Span, ...]:
        """Direct children of ``span``, by start time."""
        return self.children.get(span.span_id, ())

    def depth_first(self) -> list[tuple[Span, int]]:
        """Every span once with its depth: the root's tree, then each orphan's tree."""
        out: list[tuple[Span, int]] = []
        seen: set[str] = set()
        for top in (self.root, *self.orphans):
            stack = [(top, 0)]
            while stack:
                span, depth = stack.pop()
                if span.span_id in seen:  # a cycle in corrupt data must not loop forever
                    continue
                seen.add(span.span_id)
                out.append((span, depth))
                stack.extend((child, depth + 1) for child in reversed(self.children_of(span)))
        # Spans only reachable through a cycle (a -> b -> a) are still shown.
        out.extend((span, 0) for span in self.spans if span.span_id not in seen)
        return out


def spans_of(entries: Sequence[str | bytes]) -> tuple[list[Span], int]:
    """Decode stored entries, skipping (and counting) the corrupt ones."""
    spans: list[Span] = []
    corrupt = 0
    for raw in entries:
        try:
            spans.append(decode_span(raw))
        except SpanDecodeError:
            corrupt += 1
    return spans, corrupt
