"""``asynctrace import``, ``stats``, ``patterns`` and ``map`` end to end on real Redis.

Synthetic weeks of spans are written as JSON lines (the seed tracer's format), loaded
with ``import`` and questioned with the commands, all under a fixed clock (the hidden
``--now``): nothing waits. Synchronous tests, as every command runs its own loop.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from asynctrace.cli import main
from asynctrace.export import RedisCommandError, RedisExporter
from tests.week_clock import HOUR_MS, next_monday_1230_ms, utc_text

WEEK_MS = 7 * 24 * HOUR_MS
# The next Monday 12:30 UTC: a fixed weekday and hour whose data Redis keeps on any date.
NOW = next_monday_1230_ms()
NOW_TEXT = utc_text(NOW, "%Y-%m-%dT%H:%M")
OPERATION = "GET /orders/{id}"
PER_HOUR = 24


def run(redis_url: str, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["--redis-url", redis_url, "--now", NOW_TEXT, *args],
        env={"COLUMNS": "100", "REDIS_URL": None},
        catch_exceptions=False,
    )


def _seed_span(number: int, start: float, duration: float, **extra: Any) -> dict[str, Any]:
    """Span JSON as the original TypeScript tracer wrote it: no ``kind``."""
    return {
        "traceId": f"{number + 1:032x}",
        "spanId": f"{number + 1:016x}",
        "parentSpanId": None,
        "service": "orders",
        "operation": OPERATION,
        "startTime": start,
        "endTime": start + duration,
        "duration": duration,
        "status": "ok",
        "tags": {},
        "logs": [],
        **extra,
    }


def _weeks(slow: set[tuple[int, int]], *, seed: int) -> Iterator[dict[str, Any]]:
    """Four weeks before NOW's hour, PER_HOUR requests an hour around 400 ms; the
    (week, hour of week) cells in ``slow`` around 5 s. Week 0 is the latest."""
    rng = random.Random(seed)
    end = NOW // HOUR_MS * HOUR_MS
    number = 0
    for hour_index in range(4 * 168):
        hour_ms = end - (hour_index + 1) * HOUR_MS
        week = hour_index // 168
        hour_of_week = int((hour_ms // HOUR_MS + 72) % 168)  # 1970-01-01 was a Thursday
        median = 5000.0 if (week, hour_of_week) in slow else 400.0
        for _ in range(PER_HOUR):
            number += 1
            yield _seed_span(
                number, hour_ms + rng.random() * HOUR_MS, median * rng.lognormvariate(0, 0.3)
            )


def _write(path: Path, spans: Iterator[dict[str, Any]]) -> Path:
    with path.open("w") as out:
        for span in spans:
            out.write(json.dumps(span) + "\n")
    return path


MONDAY_9 = 9


def test_a_monday_morning_spike_imported_over_four_weeks_is_named(
    redis_url: str, tmp_path: Path
) -> None:
    spans = _write(tmp_path / "spans.jsonl", _weeks({(w, MONDAY_9) for w in range(4)}, seed=1))
    imported = run(redis_url, "import", str(spans))
    assert imported.exit_code == 0, imported.output
    assert f"imported {4 * 168 * PER_HOUR:,} spans from spans.jsonl; 0 bad lines skipped" in (
        imported.stdout
    )

    result = run(redis_url, "patterns", "--service", "orders", "--operation", OPERATION)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"orders {OPERATION}: p95 by hour of the week (UTC), last 4 weeks"
    assert len(lines) == 2 + 7 + 2
    monday = lines[2]
    assert monday.startswith("Mon  ")
    grid = monday[5:]
    assert len(grid) == 24
    assert grid[MONDAY_9] == "█"
    assert set(grid[:MONDAY_9] + grid[MONDAY_9 + 1 :]) <= {"░", "▒"}
    assert lines[-1].startswith(f"{OPERATION}: Mondays 09:00\u201310:00 UTC, p95 ")
    assert lines[-1].endswith(
        f"typical, in 4 of the last 4 weeks, {4 * PER_HOUR} of {4 * PER_HOUR} requests over "
        + lines[-1].split(" vs ")[1].split(" typical")[0]
    )


def _uniform_weeks(per_hour: int, *, seed: int) -> Iterator[dict[str, Any]]:
    """Issue 19's new user: four weeks before NOW's hour at ``per_hour`` requests an
    hour, 250-500 ms, and 4.5-5.5 s every Monday 09:00-10:00 UTC."""
    rng = random.Random(seed)
    end = NOW // HOUR_MS * HOUR_MS
    number = 0
    for hour_index in range(4 * 168):
        hour_ms = end - (hour_index + 1) * HOUR_MS
        hour_of_week = int((hour_ms // HOUR_MS + 72) % 168)  # 1970-01-01 was a Thursday
        low, high = (4500.0, 5500.0) if hour_of_week == MONDAY_9 else (250.0, 500.0)
        for _ in range(per_hour):
            number += 1
            yield _seed_span(number, hour_ms + rng.random() * HOUR_MS, rng.uniform(low, high))


def test_twelve_requests_an_hour_are_enough_to_name_monday_nine(
    redis_url: str, tmp_path: Path
) -> None:
    spans = _write(tmp_path / "spans.jsonl", _uniform_weeks(12, seed=19))
    assert run(redis_url, "import", str(spans)).exit_code == 0

    result = run(redis_url, "patterns", "--service", "orders", "--operation", OPERATION)

    assert result.exit_code == 0, result.output
    spot = result.stdout.splitlines()[-1]
    assert spot.startswith(f"{OPERATION}: Mondays 09:00\u201310:00 UTC, p95 ")
    assert spot.endswith(
        " typical, in 4 of the last 4 weeks, 48 of 48 requests over "
        + (spot.split(" vs ")[1].split(" typical")[0])
    )


def test_a_deploy_that_stays_slower_is_a_step_in_stats_not_a_weekly_pattern(
    redis_url: str, tmp_path: Path
) -> None:
    rng = random.Random(3)
    end = NOW // HOUR_MS * HOUR_MS
    deploy = end - 6 * 24 * HOUR_MS + 2 * HOUR_MS  # Tuesday 14:00 UTC, six days ago
    spans = [
        _seed_span(
            number,
            start,
            (1200.0 if start >= deploy else 400.0) * rng.lognormvariate(0, 0.2),
        )
        for number, start in enumerate(
            end - 14 * 24 * HOUR_MS + index * HOUR_MS / 12 for index in range(14 * 24 * 12)
        )
    ]
    imported = run(redis_url, "import", str(_write(tmp_path / "deploy.jsonl", iter(spans))))
    assert imported.exit_code == 0

    stats = run(redis_url, "stats")
    patterns = run(redis_url, "patterns", "--service", "orders", "--operation", OPERATION)

    assert stats.exit_code == 0, stats.output
    step = re.fullmatch(
        r"orders: p95 of GET /orders/\{id\} went from ([0-9,]+) ms to ([0-9,]+) ms on "
        rf"Tuesday 14:00 UTC \({utc_text(deploy, '%Y-%m-%d')}\) and stayed",
        stats.stdout.splitlines()[-1],
    )
    assert step is not None, stats.stdout
    before, after = (float(text.replace(",", "")) for text in step.groups())
    assert 400 < before < 700
    assert 1200 < after < 2100
    assert patterns.stdout.splitlines()[-1] == "no recurring hot spots"


def test_noise_a_single_bad_hour_and_one_slow_week_are_not_named(
    redis_url: str, tmp_path: Path
) -> None:
    slow = {(2, MONDAY_9)} | {(1, hour) for hour in range(168)}
    spans = _write(tmp_path / "spans.jsonl", _weeks(slow, seed=2))
    assert run(redis_url, "import", str(spans)).exit_code == 0

    result = run(redis_url, "patterns", "--service", "orders", "--operation", OPERATION)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "no recurring hot spots"


def test_import_skips_bad_lines_by_number_and_writes_the_good_ones(
    redis_url: str, tmp_path: Path
) -> None:
    good = _seed_span(1, NOW - 1000, 250.0)
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps(good),
                "{not json",
                "",
                json.dumps({**good, "traceId": "nope"}),
                json.dumps(_seed_span(2, NOW - 2000, 750.0, status="error")),
                "[" * 100_000,
            ]
        )
        + "\n"
    )

    result = run(redis_url, "import", str(path))

    assert result.exit_code == 1
    assert "skipped line 2: not valid JSON" in result.stderr
    assert "skipped line 4: traceId is not a valid id" in result.stderr
    assert "skipped line 6: " in result.stderr
    assert "imported 2 spans from mixed.jsonl; 3 bad lines skipped" in result.stdout
    stats = run(redis_url, "stats")
    assert stats.exit_code == 0, stats.output
    assert stats.stdout.splitlines() == [
        f"requests from {utc_text(NOW - 24.5 * HOUR_MS)} to {utc_text(NOW)} UTC (24.5 h); "
        "change against the period before",
        "SERVICE  OPERATION         REQUESTS    RATE  ERRORS     P50     P95     P99     MAX"
        "  RATE +/-  P95 +/-",
        "orders   GET /orders/{id}         2  0.08/h   50.0%  256 ms  730 ms  730 ms  750 ms"
        "       new      new",
    ]


def test_import_of_a_start_time_past_year_9999_ends_without_a_traceback(
    redis_url: str, tmp_path: Path
) -> None:
    path = _write(
        tmp_path / "far.jsonl",
        iter([_seed_span(1, NOW - 1000, 250.0), _seed_span(2, 1e17, 250.0)]),
    )

    result = run(redis_url, "import", str(path))  # catch_exceptions=False: no traceback

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    # Reported as a bad line by the decoder, or as the import's one error line.
    assert all(
        line.startswith(("skipped line 2: ", "error: ", "importing far.jsonl"))
        for line in result.stderr.splitlines()
    ), result.stderr


@pytest.mark.parametrize(
    "failure",
    [
        ValueError("year 3170843 is out of range"),
        RedisCommandError("1 of 9 Redis commands failed, first: WRONGTYPE"),
    ],
)
def test_import_reports_a_failed_batch_as_one_error_line(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    async def failing(self: RedisExporter, spans: object) -> None:
        raise failure

    monkeypatch.setattr(RedisExporter, "export", failing)
    path = _write(tmp_path / "spans.jsonl", iter([_seed_span(1, NOW - 1000, 250.0)]))

    result = run(redis_url, "import", str(path))

    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert str(failure) in errors[0]
    assert "Traceback" not in result.output
    assert "imported" not in result.stdout


def test_stats_since_a_week_and_for_one_service(redis_url: str, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "spans.jsonl",
        iter([_seed_span(1, NOW - 3 * 24 * HOUR_MS, 100.0), _seed_span(2, NOW - 1000, 100.0)]),
    )
    assert run(redis_url, "import", str(path)).exit_code == 0
    assert "         1  " in run(redis_url, "stats").stdout
    week = run(redis_url, "stats", "--since", "7d", "--service", "orders")
    assert "         2  " in week.stdout
    assert run(redis_url, "stats", "--service", "payments").stdout.startswith(
        "no requests aggregated from"
    )


@pytest.mark.parametrize("since", ["yesterday", "7x", "2026-13-01"])
def test_a_bad_since_is_a_usage_error(redis_url: str, since: str) -> None:
    result = run(redis_url, "stats", "--since", since)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Invalid value for '--since'")


def test_map_lists_edges_between_services(redis_url: str, tmp_path: Path) -> None:
    spans = [
        {
            **_seed_span(
                number, NOW - 60_000, 100.0 + number, status="error" if number < 2 else "ok"
            ),
            "service": "payments",
            "operation": "POST /charge",
            "kind": "server",
            "parentSpanId": "a" * 16,
            "tags": {"peer.service": "checkout"},
        }
        for number in range(20)
    ]
    path = _write(tmp_path / "calls.jsonl", iter(spans))
    assert run(redis_url, "import", str(path)).exit_code == 0

    result = run(redis_url, "map", "--since", "1h")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [
        "CALLER        CALLEE    CALLS     RATE  ERRORS     P95",
        "checkout  ->  payments     20  13.33/h   10.0%  119 ms",
    ]


def test_map_without_edges_says_so(redis_url: str) -> None:
    result = run(redis_url, "map")
    assert result.exit_code == 0
    expected = f"no calls between services from {utc_text(NOW - 24.5 * HOUR_MS)}"
    assert result.stdout.startswith(expected)


def test_patterns_without_data_says_so(redis_url: str) -> None:
    result = run(redis_url, "patterns", "--service", "orders", "--operation", "GET /")
    assert result.stdout == "no requests aggregated for orders GET / in the last 4 weeks\n"
