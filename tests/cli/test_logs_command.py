"""``asynctrace logs`` against the session's real redis-server, two services."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner

from asynctrace.cli import main
from asynctrace.export import RedisExporter
from asynctrace.model import Span

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def two_service_spans() -> list[Span]:
    orders = Span.from_dict(
        {
            "traceId": TRACE,
            "spanId": "00f067aa0ba902b7",
            "parentSpanId": None,
            "service": "orders",
            "operation": "GET /orders/{id}",
            "startTime": 1764236400000.0,
            "duration": 2500.0,
            "status": "error",
            "logs": [
                {"timestamp": 1764236400002.0, "message": "loading order 42", "level": "info"},
                {"timestamp": 1764236402490.0, "message": "payment failed", "level": "error"},
            ],
        }
    )
    payments = Span.from_dict(
        {
            "traceId": TRACE,
            "spanId": "53995c3f42cd8ad8",
            "parentSpanId": "00f067aa0ba902b7",
            "service": "payments",
            "operation": "POST /charge",
            "startTime": 1764236400010.0,
            "duration": 2460.0,
            "status": "error",
            "logs": [
                {"timestamp": 1764236402470.0, "message": "charge failed", "level": "error"},
            ],
        }
    )
    return [orders, payments]


def store_spans(redis_url: str, spans: list[Span]) -> None:
    async def write() -> None:
        exporter = RedisExporter(redis_url)
        await exporter.export(spans)
        await exporter.shutdown()

    asyncio.run(write())


def test_logs_prints_lines_of_both_services_in_time_order(redis_url: str) -> None:
    store_spans(redis_url, two_service_spans())
    result = CliRunner().invoke(main, ["--redis-url", redis_url, "logs", TRACE])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[2] for line in lines] == ["orders", "payments", "orders"]
    assert lines[1].endswith("charge failed")


def test_logs_json_is_one_object_per_line(redis_url: str) -> None:
    store_spans(redis_url, two_service_spans())
    result = CliRunner().invoke(main, ["--redis-url", redis_url, "logs", TRACE, "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [row["service"] for row in rows] == ["orders", "payments", "orders"]
    assert {row["trace_id"] for row in rows} == {TRACE}


def test_logs_of_an_unknown_trace_is_a_one_line_error(redis_url: str) -> None:
    result = CliRunner().invoke(main, ["--redis-url", redis_url, "logs", "a" * 32])
    assert result.exit_code == 1
    assert "no trace" in result.output
