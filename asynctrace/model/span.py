"""Spans: the one timed operation, its logs, limits and remote parent, and its dict form.

``Span.to_dict``/``Span.from_dict`` are the span JSON as a dict (camelCase, as the
original TypeScript tracer wrote it); decoding is lenient where the seed was (integer
times, ``parentSpanId`` "" or null, unknown fields) and strict where a bad value could
travel further (ids are validated, so a corrupt entry never reaches a key or a page).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter as _perf_counter
from typing import Any, Literal, NamedTuple, TypedDict

from asynctrace import clock
from asynctrace._ratelimit import report_internal_error
from asynctrace.ids import is_valid_span_id, is_valid_trace_id

__all__ = [
    "DEFAULT_LIMITS",
    "DROPPED_LOGS_TAG",
    "DROPPED_TAGS_TAG",
    "TRUNCATED_TAG",
    "TRUNCATION_MARK",
    "Limits",
    "Span",
    "SpanContext",
    "SpanDecodeError",
    "SpanDict",
    "SpanKind",
    "SpanLog",
    "SpanLogDict",
    "SpanStatus",
    "round_ms",
    "valid_utf8",
]

# Span JSON writes times rounded to the microsecond. Below 2**42 (year 2109 in epoch
# ms) ``value * 1000`` is below 2**52, so rounding it gives an exact integer count of
# microseconds, and neighbouring floats are less than 0.001 apart: a number with at
# most three decimals names exactly one float, whose repr is those digits. Writing
# the count's integer part and its decimals from a table avoids formatting the float
# to three places (dtoa's big-number division): 6-9 % fewer instructions per exported
# span (python -m benchmarks.instructions export).
_FAST_MS_LIMIT = 2.0**42
# Adding 2**52 to a float in [0, 2**52) and taking it off again rounds it to an
# integer, ties to even, in two float operations: what round() gives, as a float,
# without making an int (a third of the instructions of round(value * 1000) / 1000).
ROUNDER = 2.0**52


def round_ms(value: float) -> float:
    """``value`` (milliseconds) rounded to the microsecond, as span JSON writes it.

    ``round(value * 1000) / 1000`` for a float in [0, 2**42), which differs from
    ``round(value, 3)`` only on a tie in the last place; ``round(value, 3)`` otherwise.
    """
    if type(value) is float and 0.0 <= value < _FAST_MS_LIMIT:
        return (value * 1000.0 + ROUNDER - ROUNDER) / 1000.0
    return round(value, 3)


# Surrogate code points never stand for a character in a str: JSON's "\udcff" and
# aiohttp's "surrogateescape" header bytes both make them, and UTF-8 cannot encode one.
_SURROGATES = re.compile("[\ud800-\udfff]")


def valid_utf8(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so it encodes as UTF-8.

    O(1) for ASCII text (``str.isascii``); one scan otherwise.
    """
    if text.isascii():
        return text
    return _SURROGATES.sub("\ufffd", text)


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
    is_random: bool = False
    """W3C Level 2 random trace-id flag: the caller's trace id is random (0x02)."""


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
        "is_random",
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
    is_random: bool
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
        is_random: bool = False,
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
        self.is_random = is_random
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
    def from_dict(cls, data: Mapping[str, Any], *, limits: Limits | None = None) -> Span:
        """Build an ended span from span JSON, as written by asynctrace or the seed tracer.

        Raises ``SpanDecodeError`` when a required field is missing or invalid. Text
        is made valid UTF-8 (lone surrogates become U+FFFD). With ``limits`` the span
        is held to them as a live span is (``asynctrace import`` passes the default
        limits): longer names, tag keys and values and log lines are cut and tagged
        ``asynctrace.truncated``, tags and logs over the count are dropped and counted
        in ``asynctrace.dropped_tags``/``asynctrace.dropped_logs``.
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
        if start + duration > _LATEST_MS:
            # The end is a time too: a span cannot end after the last time a day or
            # hour key can name (and readers never meet a duration near 1e308).
            raise SpanDecodeError("a span must end before the year 10000")
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
        span.is_random = False
        span.tracestate = ""
        span.limits = DEFAULT_LIMITS if limits is None else limits
        span._on_end = None
        span._ended = True
        span._start_perf = 0.0
        if limits is not None:
            _hold_to_limits(span, limits)
        return span


def _hold_to_limits(span: Span, limits: Limits) -> None:
    """Cut a decoded span down to ``limits``, marking what was cut, as ``set_tag`` and
    ``log`` do for a live span."""
    longest = limits.max_string_length
    is_cut = False

    def clip(text: str) -> str:
        nonlocal is_cut
        if len(text) <= longest:
            return text
        is_cut = True
        return text[:longest] + TRUNCATION_MARK

    span.service = clip(span.service)
    span.operation = clip(span.operation)
    tags = span._tags or {}
    # A writer's own drop counts are kept and added to.
    dropped_tags = _count_tag(tags.pop(DROPPED_TAGS_TAG, None))
    dropped_logs = _count_tag(tags.pop(DROPPED_LOGS_TAG, None))
    was_cut = tags.pop(TRUNCATED_TAG, None) == "true"
    kept: dict[str, str] = {}
    for key, value in tags.items():
        if len(kept) >= limits.max_tags:
            dropped_tags += 1
            continue
        kept[clip(key)] = clip(value)
    logs = span._logs or []
    dropped_logs += max(0, len(logs) - limits.max_logs)
    span._logs = [
        SpanLog(log.timestamp, clip(log.message), clip(log.level))
        for log in logs[: limits.max_logs]
    ]
    if dropped_tags:
        kept[DROPPED_TAGS_TAG] = str(dropped_tags)
    if dropped_logs:
        kept[DROPPED_LOGS_TAG] = str(dropped_logs)
    if is_cut or was_cut:
        kept[TRUNCATED_TAG] = "true"
    span._tags = kept


def _count_tag(value: str | None) -> int:
    try:
        return max(0, int(value)) if value is not None and len(value) < 20 else 0
    except ValueError:
        return 0


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
    return valid_utf8(value)


def _decode_tags(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpanDecodeError("tags must be an object")
    return {valid_utf8(str(key)): _stored_tag_text(item) for key, item in value.items()}


def _stored_tag_text(value: object) -> str:
    """A stored tag value as text; JSON containers (never written by asynctrace, nor
    by the seed) are kept as their JSON, which is bounded by the entry's own size."""
    if isinstance(value, dict | list):
        try:
            return valid_utf8(json.dumps(value, ensure_ascii=False))
        except (ValueError, RecursionError) as exc:
            raise SpanDecodeError("a tag value is nested too deeply") from exc
    return valid_utf8(_tag_text(value))


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
