"""Correlating log lines with traces, in both directions.

``install()`` stamps every stdlib ``LogRecord`` with the current span's ``trace_id``
and ``span_id`` and attaches records at or above a level to that span's logs;
``structlog_processor`` adds the same ids to structlog events; ``trace_log_lines``
reads a stored trace's log lines back in time order (``asynctrace logs TRACE_ID``).

Both jobs of ``install()`` happen in a ``LogRecord`` factory, not in a handler. The
factory runs for every record any logger makes, before logger filters, propagation
and handlers, in the thread and context of the logging call. A handler on the root
logger would miss loggers with ``propagate = False``, would be removed by
``logging.config.dictConfig``, and would turn ``logging.basicConfig()`` (which does
nothing once the root logger has a handler) and ``logging.lastResort`` off for a
service that had not configured logging yet. The price: a logger's own filters run
after the factory, so a record such a filter drops (or rewrites) is attached to the
span as it was made.
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asynctrace._ratelimit import report_internal_error
from asynctrace.context import current_span
from asynctrace.model import Span, Trace

__all__ = [
    "TraceLogLine",
    "format_log_lines",
    "install",
    "structlog_processor",
    "trace_log_lines",
    "uninstall",
]

# asynctrace reports its own failures on this logger; attaching those records to the
# span being traced could feed back into the failing code (span.log), so they only
# get the ids.
_INTERNAL_LOGGER = "asynctrace"
_INTERNAL_PREFIX = _INTERNAL_LOGGER + "."


def _span_level(levelno: int) -> str:
    """The span log level for a stdlib level number (custom levels round down).

    CRITICAL stays ``"critical"``: it is information a reader wants, and the error
    chain analysis already treats it as an error level.
    """
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class _RecordStamper:
    """The installed ``LogRecord`` factory; wraps the factory that was there before."""

    __slots__ = ("is_active", "level", "previous", "scope", "scope_prefix")

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous
        self.is_active = False
        self.level = logging.WARNING
        self.scope: str | None = None  # None: records of every logger are attached
        self.scope_prefix = ""

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if not self.is_active:
            return record
        fields = record.__dict__
        try:
            span = current_span()
            if span is None:
                fields["trace_id"] = ""
                fields["span_id"] = ""
                return record
            fields["trace_id"] = span.trace_id
            fields["span_id"] = span.span_id
            # logging.makeLogRecord() calls the factory with level and name None.
            levelno: object = record.levelno
            if isinstance(levelno, int) and levelno >= self.level and self._attaches(record.name):
                _attach(span, record)
        except Exception as exc:
            fields.setdefault("trace_id", "")
            fields.setdefault("span_id", "")
            report_internal_error("log record correlation failed", exc)
        return record

    def _attaches(self, name: object) -> bool:
        if not isinstance(name, str) or name == _INTERNAL_LOGGER:
            return False
        if name.startswith(_INTERNAL_PREFIX):
            return False
        scope = self.scope
        return scope is None or name == scope or name.startswith(self.scope_prefix)


def _attach(span: Span, record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:
        # Arguments that do not fit the format string: the user's bug, which the
        # stdlib reports when a handler formats the record. Keep the template.
        message = str(record.msg)
    exc_info = record.exc_info
    if exc_info and exc_info[1] is not None:
        exc = exc_info[1]
        try:
            text = str(exc)
        except Exception:
            text = ""
        described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        message = f"{message} ({described})" if message else described
    span.log(message, level=_span_level(record.levelno), timestamp=record.created * 1000.0)


_lock = threading.Lock()
_stamper: _RecordStamper | None = None
_STAMPED_FIELDS = ("trace_id", "span_id")
_original_make_record: Callable[..., logging.LogRecord] | None = None


def _make_record(
    self: logging.Logger,
    name: str,
    level: int,
    fn: str,
    lno: int,
    msg: object,
    args: Any,
    exc_info: Any,
    func: str | None = None,
    extra: Mapping[str, object] | None = None,
    sinfo: str | None = None,
) -> logging.LogRecord:
    """``Logger.makeRecord`` that lets a caller's ``extra`` ids win over ours.

    The stdlib raises ``KeyError`` when ``extra`` names an attribute the record
    already has; with the factory stamping ``trace_id``/``span_id`` that would turn
    old hand-made correlation (``extra={"trace_id": ...}``) into a crash.
    """
    original = _original_make_record
    assert original is not None  # only installed after saving the original
    if not extra or not any(key in extra for key in _STAMPED_FIELDS):
        return original(self, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo)
    own = {key: extra[key] for key in _STAMPED_FIELDS if key in extra}
    rest = {key: value for key, value in extra.items() if key not in own}
    record = original(self, name, level, fn, lno, msg, args, exc_info, func, rest or None, sinfo)
    record.__dict__.update(own)
    return record


def install(level: int = logging.WARNING, *, logger: logging.Logger | None = None) -> None:
    """Correlate stdlib logging with spans, process-wide.

    Every ``LogRecord`` made from now on, by any logger, gets ``trace_id`` and
    ``span_id``: the current span's ids, or empty strings outside a span, so
    ``%(trace_id)s`` in a format string always works. Records at or above ``level``
    made inside a span are also attached to that span's logs (message, span log level
    ``debug``/``info``/``warn``/``error``/``critical``, the record's time; with
    ``exc_info``, the exception's type and message in parentheses), within the
    span's log limits. With ``logger``, only records of that logger and its children
    are attached; the ids still go on every record. Records of asynctrace's own
    ``asynctrace`` logger are never attached.

    Records are made in the logging call's thread and context: tasks and
    ``asyncio.to_thread`` inherit the span, a bare ``threading.Thread`` or
    ``loop.run_in_executor`` does not. ``install()`` changes no logger levels: a
    record below a logger's effective level is never made, so never attached.
    A logging call's own ``extra={"trace_id": ...}`` (or ``span_id``) still works
    and wins over the span's ids.

    Calling it again changes ``level`` and ``logger``; one factory stays active.
    Raises ``TypeError`` for a ``level`` that is not an int or a ``logger`` that is
    not a ``logging.Logger``; never blocks, and logging never raises because of it.
    """
    global _stamper
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError("level must be a logging level number, such as logging.WARNING")
    if logger is not None and not isinstance(logger, logging.Logger):
        raise TypeError("logger must be a logging.Logger")
    scope = None if logger is None or isinstance(logger, logging.RootLogger) else logger.name
    with _lock:
        stamper = _stamper
        current = logging.getLogRecordFactory()
        if stamper is not current:
            # Ours is not on top: someone wrapped it (it is still in the chain) or
            # replaced it (it is gone). Either way a new one on top is the only one
            # active; a wrapped old one passes records through untouched.
            if stamper is not None:
                stamper.is_active = False
            stamper = _RecordStamper(current)
        stamper.level = level
        stamper.scope_prefix = f"{scope}." if scope is not None else ""
        stamper.scope = scope
        stamper.is_active = True
        if stamper is not current:
            logging.setLogRecordFactory(stamper)
            _stamper = stamper
        _patch_make_record()


def _patch_make_record() -> None:
    global _original_make_record
    if logging.Logger.makeRecord is not _make_record:
        _original_make_record = logging.Logger.makeRecord
        # A class attribute swap, undone by uninstall(): the only way to keep
        # extra={"trace_id": ...} working once every record carries the field.
        logging.Logger.makeRecord = _make_record  # type: ignore[method-assign]


def uninstall() -> None:
    """Undo ``install()``: records get no ids and are not attached. Safe to call twice.

    The previous ``LogRecord`` factory is restored. If another library installed its
    own factory on top of asynctrace's since, unhooking ours would unhook that one
    too; ours then stays in that chain and passes records through untouched.
    """
    global _stamper
    with _lock:
        stamper = _stamper
        if stamper is None:
            return
        stamper.is_active = False
        if logging.getLogRecordFactory() is stamper:
            logging.setLogRecordFactory(stamper.previous)
        _stamper = None
        if logging.Logger.makeRecord is _make_record and _original_make_record is not None:
            logging.Logger.makeRecord = _original_make_record  # type: ignore[method-assign]


def structlog_processor(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor adding ``trace_id`` and ``span_id`` of the current span.

    Outside a span it adds nothing: structlog has no format string a missing key
    could break, and empty fields would be noise on every line. Inside one, the
    span's ids replace any bound earlier. Never raises, never blocks.
    """
    try:
        span = current_span()
        if span is not None:
            event_dict["trace_id"] = span.trace_id
            event_dict["span_id"] = span.span_id
    except Exception as exc:
        report_internal_error("structlog correlation failed", exc)
    return event_dict


@dataclass(frozen=True, slots=True)
class TraceLogLine:
    """One log line of a stored trace, with the span it belongs to.

    ``timestamp`` is Unix epoch milliseconds, as the span's service clock wrote it.
    """

    timestamp: float
    service: str
    operation: str
    span_id: str
    level: str
    message: str
    trace_id: str


def trace_log_lines(trace: Trace) -> list[TraceLogLine]:
    """Every log line of every span of ``trace``, oldest first, across services.

    Lines with the same timestamp keep span start order, then the order they were
    logged in. Pure; never raises for a valid ``Trace``.
    """
    lines = [
        TraceLogLine(
            log.timestamp,
            span.service,
            span.operation,
            span.span_id,
            log.level,
            log.message,
            trace.trace_id,
        )
        for span in trace.spans
        for log in span.logs
    ]
    lines.sort(key=lambda line: line.timestamp)  # stable: ties keep the order above
    return lines


# Operations longer than this are not padded to; their lines just run longer.
_MAX_OPERATION_COLUMN = 40
# Terminal control characters (C0 but newline, DEL, C1) and bidirectional overrides:
# stored messages come from any service and must not drive the reader's terminal.
_UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def format_log_lines(lines: Iterable[TraceLogLine], *, json: bool) -> str:
    """Render log lines for a terminal, or as JSON lines with ``json=True``.

    Text: one line per log line, ``time  level  service  operation  span_id  message``
    with the time in UTC (ISO 8601, milliseconds) and aligned columns; a message's
    further lines are indented under its first. Control characters are escaped.
    JSON: one object per line with ``timestamp`` (epoch ms), ``trace_id``,
    ``span_id``, ``service``, ``operation``, ``level``, ``message``. No trailing
    newline; an empty string for no lines. Pure.
    """
    items = list(lines)
    if json:
        return "\n".join(
            jsonlib.dumps(
                {
                    "timestamp": round(line.timestamp, 3),
                    "trace_id": line.trace_id,
                    "span_id": line.span_id,
                    "service": line.service,
                    "operation": line.operation,
                    "level": line.level,
                    "message": line.message,
                },
                ensure_ascii=False,
            )
            for line in items
        )
    if not items:
        return ""
    levels = [_printable(line.level) for line in items]
    services = [_printable(line.service) for line in items]
    operations = [_printable(line.operation) for line in items]
    level_width = max(map(len, levels))
    service_width = max(map(len, services))
    operation_width = min(max(map(len, operations)), _MAX_OPERATION_COLUMN)
    out: list[str] = []
    for line, level, service, operation in zip(items, levels, services, operations, strict=True):
        prefix = (
            f"{_utc(line.timestamp)}  {level:<{level_width}}  {service:<{service_width}}  "
            f"{operation:<{operation_width}}  {_printable(line.span_id)}  "
        )
        first, *rest = line.message.split("\n")
        out.append(prefix + _printable(first))
        indent = " " * len(prefix)
        out.extend(indent + _printable(more) for more in rest)
    return "\n".join(out)


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _utc(epoch_ms: float) -> str:
    try:
        moment = datetime.fromtimestamp(epoch_ms / 1000.0, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{epoch_ms:.3f}"  # a corrupt time is still shown, not fatal
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
