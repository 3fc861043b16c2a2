"""Log correlation: ids on stdlib and structlog records, span logs, a trace's log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

import asynctrace
from asynctrace.context import current_span
from asynctrace.export import InMemoryExporter, RedisExporter
from asynctrace.logs import (
    TraceLogLine,
    format_log_lines,
    install,
    structlog_processor,
    trace_log_lines,
    uninstall,
)
from asynctrace.model import Limits, Span, SpanContext, Trace
from asynctrace.store import TraceStore
from asynctrace.tracer import Tracer, reset_tracer

T0 = 1_764_236_400_123.456  # 2025-11-27T09:40:00.123Z, epoch ms
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(autouse=True)
def _restored_record_factory() -> Iterator[None]:
    before = logging.getLogRecordFactory()
    yield
    uninstall()
    # A test that put a factory on top of ours leaves ours inert in the chain.
    logging.setLogRecordFactory(before)
    assert logging.getLogRecordFactory() is before


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    """A logger of the application, enabled down to DEBUG, restored after the test."""
    logger = logging.getLogger("tests.logs.app")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.setLevel(level)
    logger.propagate = propagate
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


def _ids(record: logging.LogRecord) -> tuple[str, str]:
    return record.__dict__["trace_id"], record.__dict__["span_id"]


def _messages(span: Span) -> list[tuple[str, str]]:
    return [(log.level, log.message) for log in span.logs]


# -- ids on stdlib records ------------------------------------------------------------


async def test_records_in_nested_spans_carry_the_innermost_span_ids(
    tracer: Tracer, app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    install()
    with asynctrace.span("outer") as outer:
        app_logger.info("in outer")
        async with asynctrace.span("inner") as inner:
            app_logger.info("in inner")
        app_logger.info("back in outer")
    app_logger.info("outside")

    assert [_ids(record) for record in caplog.records] == [
        (outer.trace_id, outer.span_id),
        (outer.trace_id, inner.span_id),
        (outer.trace_id, outer.span_id),
        ("", ""),
    ]


def test_format_strings_with_trace_ids_work_inside_and_outside_spans(
    app_logger: logging.Logger,
) -> None:
    install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(trace_id)s|%(span_id)s|%(message)s"))
    app_logger.addHandler(handler)
    app_logger.propagate = False

    app_logger.info("outside")
    with asynctrace.span("op") as span:
        app_logger.info("inside")

    assert stream.getvalue().splitlines() == [
        "||outside",
        f"{span.trace_id}|{span.span_id}|inside",
    ]


async def test_concurrent_tasks_log_with_their_own_spans(
    tracer: Tracer, app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    install(logging.INFO)
    everyone_inside = asyncio.Barrier(3)
    spans: dict[str, Span] = {}

    async def handle(name: str) -> None:
        async with asynctrace.span(name) as span:
            spans[name] = span
            app_logger.info("before %s", name)
            # All three spans are open at once while each logs its second line.
            async with asyncio.timeout(5):
                await everyone_inside.wait()
            app_logger.info("after %s", name)

    await asyncio.gather(handle("a"), handle("b"), handle("c"))

    for record in caplog.records:
        name = record.getMessage().split()[-1]
        assert _ids(record) == (spans[name].trace_id, spans[name].span_id)
    for name, span in spans.items():
        assert _messages(span) == [("info", f"before {name}"), ("info", f"after {name}")]
    assert len({span.trace_id for span in spans.values()}) == 3


async def test_a_task_created_inside_a_span_logs_to_that_span(
    tracer: Tracer, app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    install()

    async def child() -> None:
        app_logger.warning("from a child task")

    async with asynctrace.span("parent") as span:
        await asyncio.create_task(child())

    assert _ids(caplog.records[0]) == (span.trace_id, span.span_id)
    assert _messages(span) == [("warn", "from a child task")]


async def test_worker_threads_log_with_the_span_they_inherited(
    tracer: Tracer, app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    install()

    def work() -> str:
        app_logger.warning("from a worker thread")
        return threading.current_thread().name

    async with asynctrace.span("offload") as span:
        thread_name = await asyncio.to_thread(work)

    assert thread_name != threading.current_thread().name
    [record] = caplog.records
    assert _ids(record) == (span.trace_id, span.span_id)
    assert _messages(span) == [("warn", "from a worker thread")]


# -- attaching records to spans -------------------------------------------------------


async def test_records_at_or_above_the_level_are_attached_with_span_levels(
    tracer: Tracer, app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    install(logging.INFO)
    async with asynctrace.span("op") as span:
        app_logger.debug("too detailed")
        app_logger.info("cache miss for %s", "user:1")
        app_logger.log(25, "a custom level")
        app_logger.warning("slow")
        app_logger.error("failed")
        app_logger.critical("on fire")

    assert _messages(span) == [
        ("info", "cache miss for user:1"),
        ("info", "a custom level"),
        ("warn", "slow"),
        ("error", "failed"),
        ("critical", "on fire"),
    ]
    attached = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [log.timestamp for log in span.logs] == [r.created * 1000.0 for r in attached]
    assert span.status == "ok"  # a log line never changes the span's outcome


async def test_the_default_level_is_warning(tracer: Tracer, app_logger: logging.Logger) -> None:
    install()
    async with asynctrace.span("op") as span:
        app_logger.info("routine")
        app_logger.warning("unusual")

    assert _messages(span) == [("warn", "unusual")]


async def test_exception_type_and_message_are_appended(
    tracer: Tracer, app_logger: logging.Logger
) -> None:
    install()
    async with asynctrace.span("op") as span:
        try:
            raise ConnectionResetError("peer went away")
        except ConnectionResetError:
            app_logger.exception("call to payments failed")
        try:
            raise KeyError
        except KeyError as exc:
            app_logger.warning("", exc_info=exc)
        app_logger.error("no exception here", exc_info=(None, None, None))

    assert _messages(span) == [
        ("error", "call to payments failed (ConnectionResetError: peer went away)"),
        ("warn", "KeyError"),
        ("error", "no exception here"),
    ]


@pytest.fixture
async def limited_tracer(exporter: InMemoryExporter) -> AsyncIterator[Tracer]:
    tracer = asynctrace.configure(service="limited", exporter=exporter, limits=Limits(max_logs=2))
    try:
        yield tracer
    finally:
        await asynctrace.shutdown()
        reset_tracer()


async def test_attached_records_respect_the_log_limit_and_count_drops(
    limited_tracer: Tracer, exporter: InMemoryExporter, app_logger: logging.Logger
) -> None:
    install()
    async with asynctrace.span("noisy"):
        for number in range(5):
            app_logger.warning("retry %d", number)
    assert await asynctrace.flush()

    [span] = exporter.spans
    assert _messages(span) == [("warn", "retry 0"), ("warn", "retry 1")]
    assert span.tags["asynctrace.dropped_logs"] == "3"


async def test_asynctrace_internal_records_carry_ids_but_are_not_attached(
    tracer: Tracer, caplog: pytest.LogCaptureFixture
) -> None:
    install(logging.DEBUG)
    async with asynctrace.span("op") as span:
        logging.getLogger("asynctrace").warning("internal")
        logging.getLogger("asynctrace.export").error("internal child")
        span.set_status("neither ok nor error")  # reported by asynctrace itself

    assert span.logs == []
    internal = [r for r in caplog.records if r.name.startswith("asynctrace")]
    assert len(internal) == 3
    assert {_ids(record) for record in internal} == {(span.trace_id, span.span_id)}


async def test_a_logger_named_like_asynctrace_is_still_attached(tracer: Tracer) -> None:
    install()
    async with asynctrace.span("op") as span:
        logging.getLogger("asynctrace_app").warning("an application logger")

    assert _messages(span) == [("warn", "an application logger")]


async def test_records_of_a_non_propagating_logger_are_attached(
    tracer: Tracer, app_logger: logging.Logger
) -> None:
    root_handlers = list(logging.getLogger().handlers)
    app_logger.propagate = False
    app_logger.addHandler(logging.NullHandler())
    install()

    async with asynctrace.span("op") as span:
        app_logger.warning("seen by no root handler")

    assert _messages(span) == [("warn", "seen by no root handler")]
    # No handler was added: logging.basicConfig() and lastResort keep working.
    assert logging.getLogger().handlers == root_handlers


async def test_with_a_logger_only_its_tree_is_attached(
    tracer: Tracer, app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    install(logger=app_logger)
    async with asynctrace.span("op") as span:
        app_logger.warning("own")
        logging.getLogger("tests.logs.app.db").warning("child")
        logging.getLogger("tests.logs.application").warning("sibling with a longer name")
        logging.getLogger("tests.other").warning("other")

    assert _messages(span) == [("warn", "own"), ("warn", "child")]
    assert {_ids(record) for record in caplog.records} == {(span.trace_id, span.span_id)}


async def test_install_with_the_root_logger_attaches_every_logger(tracer: Tracer) -> None:
    install(logger=logging.getLogger())
    async with asynctrace.span("op") as span:
        logging.getLogger("tests.anything").warning("any logger")

    assert _messages(span) == [("warn", "any logger")]


async def test_bad_format_arguments_never_raise_into_the_caller(
    tracer: Tracer, app_logger: logging.Logger
) -> None:
    app_logger.propagate = False
    app_logger.addHandler(logging.NullHandler())  # a formatting handler would complain
    install()
    async with asynctrace.span("op") as span:
        app_logger.warning("%d items", "many")

    assert _messages(span) == [("warn", "%d items")]


async def test_records_rebuilt_from_a_dict_are_not_attached(tracer: Tracer) -> None:
    install(logging.DEBUG)
    async with asynctrace.span("op") as span:
        received = logging.makeLogRecord(
            {"name": "remote", "levelno": logging.ERROR, "msg": "x", "trace_id": "a" * 32}
        )

    assert received.__dict__["trace_id"] == "a" * 32  # the sender's ids win
    assert span.logs == []


def test_install_rejects_a_level_that_is_not_a_number() -> None:
    with pytest.raises(TypeError, match="level"):
        install("WARNING")  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(TypeError, match="logger"):
        install(logger="app")  # type: ignore[arg-type]  # the mistake under test


# -- install / uninstall --------------------------------------------------------------


async def test_installing_twice_installs_once_and_may_change_the_level(
    tracer: Tracer, app_logger: logging.Logger
) -> None:
    original = logging.getLogRecordFactory()
    install()
    installed = logging.getLogRecordFactory()
    install()
    assert logging.getLogRecordFactory() is installed
    async with asynctrace.span("op") as span:
        app_logger.warning("once")
    assert _messages(span) == [("warn", "once")]

    install(logging.ERROR)
    assert logging.getLogRecordFactory() is installed
    async with asynctrace.span("op") as span:
        app_logger.warning("below the new level")
        app_logger.error("at the new level")
    assert _messages(span) == [("error", "at the new level")]

    uninstall()
    assert logging.getLogRecordFactory() is original


async def test_uninstall_restores_the_previous_factory(
    tracer: Tracer, app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    original = logging.getLogRecordFactory()
    install()
    uninstall()
    uninstall()  # twice is harmless

    assert logging.getLogRecordFactory() is original
    async with asynctrace.span("op") as span:
        app_logger.warning("not correlated")
    assert span.logs == []
    assert "trace_id" not in caplog.records[0].__dict__


async def test_uninstall_leaves_a_factory_installed_on_top_working(
    tracer: Tracer, app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    install()
    ours = logging.getLogRecordFactory()

    def theirs(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = ours(*args, **kwargs)
        record.__dict__["tenant"] = "acme"
        return record

    logging.setLogRecordFactory(theirs)
    uninstall()
    assert logging.getLogRecordFactory() is theirs

    async with asynctrace.span("op") as span:
        app_logger.warning("passed through")
    assert span.logs == []
    assert caplog.records[-1].__dict__["tenant"] == "acme"
    assert "trace_id" not in caplog.records[-1].__dict__

    install()  # on top of theirs; the old one stays inert below
    assert logging.getLogRecordFactory() is not theirs
    async with asynctrace.span("op") as span:
        app_logger.warning("correlated again, once")
    assert _messages(span) == [("warn", "correlated again, once")]
    assert _ids(caplog.records[-1]) == (span.trace_id, span.span_id)
    assert caplog.records[-1].__dict__["tenant"] == "acme"

    uninstall()
    assert logging.getLogRecordFactory() is theirs


async def test_install_after_the_factory_was_replaced_installs_again(
    tracer: Tracer, app_logger: logging.Logger
) -> None:
    original = logging.getLogRecordFactory()
    install()
    logging.setLogRecordFactory(original)  # e.g. a test harness resetting logging
    install()

    assert logging.getLogRecordFactory() is not original
    async with asynctrace.span("op") as span:
        app_logger.warning("still correlated")
    assert _messages(span) == [("warn", "still correlated")]


# -- structlog ------------------------------------------------------------------------


@pytest.fixture
def structlog_json() -> Iterator[Any]:
    """structlog rendering JSON through ``structlog_processor``; returns each line."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog_processor,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    try:
        yield structlog.get_logger()
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()


async def test_structlog_processor_adds_ids_inside_a_span_only(
    tracer: Tracer, structlog_json: Any
) -> None:
    outside = json.loads(structlog_json.info("outside", user="u1"))
    async with asynctrace.span("op") as span:
        inside = json.loads(structlog_json.info("inside", user="u1"))
        inside_thread = json.loads(await asyncio.to_thread(structlog_json.warning, "thread"))

    assert outside == {"event": "outside", "level": "info", "user": "u1"}
    assert inside == {
        "event": "inside",
        "level": "info",
        "user": "u1",
        "trace_id": span.trace_id,
        "span_id": span.span_id,
    }
    assert (inside_thread["trace_id"], inside_thread["span_id"]) == (span.trace_id, span.span_id)


async def test_structlog_processor_replaces_stale_bound_ids(
    tracer: Tracer, structlog_json: Any
) -> None:
    structlog.contextvars.bind_contextvars(trace_id="0" * 31 + "1", span_id="0" * 15 + "1")
    async with asynctrace.span("op") as span:
        inside = json.loads(structlog_json.info("inside"))
    outside = json.loads(structlog_json.info("outside"))

    assert (inside["trace_id"], inside["span_id"]) == (span.trace_id, span.span_id)
    assert outside["trace_id"] == "0" * 31 + "1"  # outside a span, bound values are left alone


def test_structlog_processor_is_a_plain_function_of_the_event_dict() -> None:
    event = {"event": "x"}
    assert structlog_processor(None, "info", event) is event
    assert event == {"event": "x"}
    assert current_span() is None


# -- a trace's log lines ------------------------------------------------------------


def _stored(
    span_id: str,
    parent: str | None,
    service: str,
    operation: str,
    start: float,
    logs: list[tuple[float, str, str]],
) -> Span:
    return Span.from_dict(
        {
            "traceId": TRACE_ID,
            "spanId": span_id,
            "parentSpanId": parent,
            "service": service,
            "operation": operation,
            "startTime": start,
            "duration": 100.0,
            "logs": [
                {"timestamp": when, "level": level, "message": message}
                for when, level, message in logs
            ],
        }
    )


GATEWAY = "00f067aa0ba902b7"
ORDERS = "1111111111111111"
PAYMENTS = "2222222222222222"


def _trace() -> Trace:
    return Trace.from_spans(
        [
            _stored(PAYMENTS, ORDERS, "payments", "POST /charge", T0 + 20, [
                (T0 + 30, "warn", "issuer slow"),
                (T0 + 40, "error", "declined"),
            ]),
            _stored(GATEWAY, None, "gateway", "GET /checkout", T0, [
                (T0 + 40, "error", "upstream failed"),
                (T0 + 1, "info", "routing"),
            ]),
            _stored(ORDERS, GATEWAY, "orders", "POST /orders/{id}/pay", T0 + 10, [
                (T0 + 35, "info", "waiting for payments"),
            ]),
        ]
    )  # fmt: skip


def test_trace_log_lines_are_in_time_order_across_services() -> None:
    lines = trace_log_lines(_trace())

    assert [(round(line.timestamp - T0), line.service, line.message) for line in lines] == [
        (1, "gateway", "routing"),
        (30, "payments", "issuer slow"),
        (35, "orders", "waiting for payments"),
        # A tie keeps span start order: the gateway span started first.
        (40, "gateway", "upstream failed"),
        (40, "payments", "declined"),
    ]
    assert lines[0] == TraceLogLine(
        T0 + 1, "gateway", "GET /checkout", GATEWAY, "info", "routing", TRACE_ID
    )


def test_a_trace_without_logs_has_no_log_lines() -> None:
    trace = Trace.from_spans([_stored(GATEWAY, None, "gateway", "GET /", T0, [])])
    assert trace_log_lines(trace) == []
    assert format_log_lines([], json=False) == ""
    assert format_log_lines([], json=True) == ""


def test_text_format_aligns_columns_in_utc() -> None:
    rows = format_log_lines(trace_log_lines(_trace()), json=False).splitlines()

    assert [row[:26] for row in rows] == [
        "2025-11-27T09:40:00.124Z  ",
        "2025-11-27T09:40:00.153Z  ",
        "2025-11-27T09:40:00.158Z  ",
        "2025-11-27T09:40:00.163Z  ",
        "2025-11-27T09:40:00.163Z  ",
    ]
    assert [row[26:] for row in rows] == [
        "info   gateway   GET /checkout          00f067aa0ba902b7  routing",
        "warn   payments  POST /charge           2222222222222222  issuer slow",
        "info   orders    POST /orders/{id}/pay  1111111111111111  waiting for payments",
        "error  gateway   GET /checkout          00f067aa0ba902b7  upstream failed",
        "error  payments  POST /charge           2222222222222222  declined",
    ]


def test_text_format_indents_further_message_lines_and_escapes_controls() -> None:
    lines = [
        TraceLogLine(T0, "svc", "op", GATEWAY, "error", "first\nsecond", TRACE_ID),
        TraceLogLine(T0, "svc\x1b[2J", "op", GATEWAY, "info", "red \x1b[31m\r\u202eevil", TRACE_ID),
    ]

    rows = format_log_lines(lines, json=False).splitlines()

    assert [row[26:] for row in rows] == [
        "error  svc         op  00f067aa0ba902b7  first",
        "                                         second",
        "info   svc\\x1b[2J  op  00f067aa0ba902b7  red \\x1b[31m\\x0d\\u202eevil",
    ]
    assert rows[1] == " " * 67 + "second"


def test_text_format_shows_an_impossible_time_as_a_number() -> None:
    line = TraceLogLine(1e300, "svc", "op", GATEWAY, "info", "from a broken clock", TRACE_ID)
    assert format_log_lines([line], json=False).startswith("1000000")


def test_json_format_is_one_object_per_line() -> None:
    text = format_log_lines(trace_log_lines(_trace())[:2], json=True)

    assert [json.loads(row) for row in text.split("\n")] == [
        {
            "timestamp": round(T0 + 1, 3),
            "trace_id": TRACE_ID,
            "span_id": GATEWAY,
            "service": "gateway",
            "operation": "GET /checkout",
            "level": "info",
            "message": "routing",
        },
        {
            "timestamp": round(T0 + 30, 3),
            "trace_id": TRACE_ID,
            "span_id": PAYMENTS,
            "service": "payments",
            "operation": "POST /charge",
            "level": "warn",
            "message": "issuer slow",
        },
    ]


# -- end to end: two services, real Redis ------------------------------------------


@pytest.fixture
def service_loggers() -> Iterator[tuple[logging.Logger, logging.Logger]]:
    orders = logging.getLogger("tests.logs.orders")
    payments = logging.getLogger("tests.logs.payments")
    levels = orders.level, payments.level
    orders.setLevel(logging.INFO)
    payments.setLevel(logging.INFO)
    yield orders, payments
    orders.setLevel(levels[0])
    payments.setLevel(levels[1])


def _utc(epoch_ms: float) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000.0, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def test_log_lines_of_two_services_come_back_from_redis_in_time_order(
    redis_url: str, service_loggers: tuple[logging.Logger, logging.Logger]
) -> None:
    orders_log, payments_log = service_loggers
    install(logging.INFO)
    asynctrace.configure(service="orders", exporter=RedisExporter(redis_url))
    try:
        async with asynctrace.span("GET /orders/{id}", kind="server") as root:
            orders_log.info("loading order %s", 42)
            async with asynctrace.span("POST /payments", kind="client") as call:
                # The payments service continues the trace from the propagated headers.
                remote_parent = SpanContext(call.trace_id, call.span_id)
                async with asynctrace.span(
                    "POST /charge", kind="server", service="payments", parent=remote_parent
                ) as charge:
                    payments_log.warning("card issuer slow")
                    try:
                        raise TimeoutError("no answer")
                    except TimeoutError:
                        payments_log.exception("charge failed")
            orders_log.error("payment failed for order %s", 42)
        assert await asynctrace.flush(timeout_s=10)
    finally:
        await asynctrace.shutdown()
        reset_tracer()

    async with TraceStore.from_url(redis_url) as store:
        trace = await store.get_trace(root.trace_id)
    assert trace is not None
    assert set(trace.services) == {"orders", "payments"}

    lines = trace_log_lines(trace)
    expected = [
        ("orders", "GET /orders/{id}", root.span_id, "info", "loading order 42"),
        ("payments", "POST /charge", charge.span_id, "warn", "card issuer slow"),
        (
            "payments",
            "POST /charge",
            charge.span_id,
            "error",
            "charge failed (TimeoutError: no answer)",
        ),
        ("orders", "GET /orders/{id}", root.span_id, "error", "payment failed for order 42"),
    ]
    assert [
        (line.service, line.operation, line.span_id, line.level, line.message) for line in lines
    ] == expected
    assert [line.timestamp for line in lines] == sorted(line.timestamp for line in lines)

    # The exact look is pinned above; here each row shows what came back from Redis.
    assert format_log_lines(lines, json=False).splitlines() == [
        f"{_utc(line.timestamp)}  {level:<5}  {service:<8}  {operation:<16}  {span_id}  {message}"
        for line, (service, operation, span_id, level, message) in zip(lines, expected, strict=True)
    ]

    rows = [json.loads(row) for row in format_log_lines(lines, json=True).splitlines()]
    assert [row["trace_id"] for row in rows] == [root.trace_id] * 4
    assert [(row["service"], row["level"]) for row in rows] == [
        ("orders", "info"),
        ("payments", "warn"),
        ("payments", "error"),
        ("orders", "error"),
    ]


def test_a_callers_own_extra_ids_win_instead_of_raising(
    tracer: Tracer, caplog: pytest.LogCaptureFixture
) -> None:
    original = logging.Logger.makeRecord
    asynctrace.logs.install()
    try:
        with caplog.at_level(logging.INFO, logger="app.legacy"):
            logging.getLogger("app.legacy").info(
                "hand-made", extra={"trace_id": "mine", "order": 7}
            )
        (record,) = [r for r in caplog.records if r.name == "app.legacy"]
        assert record.__dict__["trace_id"] == "mine"
        assert record.__dict__["span_id"] == ""
        assert record.__dict__["order"] == 7
    finally:
        asynctrace.logs.uninstall()
    assert logging.Logger.makeRecord is original
