"""The ``asynctrace`` commands end to end against the session's real redis-server.

Spans are exported through ``RedisExporter`` first, then the click commands run in
``CliRunner``. The tests are synchronous on purpose: every command calls
``asyncio.run`` itself, which cannot happen inside a running loop.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner, Result

from asynctrace.cli import main
from asynctrace.model import Span, utc_day
from asynctrace.testing import free_port
from tests.cli.cli_traces import (
    FAILED_ID,
    FAST_ID,
    SEED_ID,
    export,
    failed_trace,
    fast_trace,
    recent_start,
    seed_trace,
)

T0 = recent_start()


def run(redis_url: str | None, *args: str, env: dict[str, str] | None = None) -> Result:
    """Invoke the CLI as a terminal of 80 columns would; exceptions are not swallowed."""
    options = ["--redis-url", redis_url] if redis_url is not None else []
    return CliRunner().invoke(
        main,
        [*options, *args],
        env={"COLUMNS": "80", "REDIS_URL": None, **(env or {})},
        catch_exceptions=False,
    )


def rows(result: Result) -> list[list[str]]:
    """A listing's lines split into their columns (separated by two or more spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in result.stdout.splitlines()]


def started(epoch_ms: float) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%m-%d %H:%M:%S")


@pytest.fixture
def stored(redis_url: str) -> str:
    """The seed trace, a failed checkout and a fast health check, in real Redis."""
    export(redis_url, [*seed_trace(T0), *failed_trace(T0 + 5000), *fast_trace(T0 + 9000)])
    return redis_url


# -- show ----------------------------------------------------------------------------------


def test_show_tells_the_seed_story(stored: str) -> None:
    result = run(stored, "show", SEED_ID)
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout == "\n".join(
        [
            "trace 4bf92f3577b34da6a3ce929d0e0e4736  2,565 ms  4 spans  4 services",
            "                               0 ms                            2,565 ms",
            "  api-gateway GET /orders/{id} █░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░ 2,565 ms",
            "    auth POST /verify          █                                           10 ms",
            "    orders GET /orders/{id}    ████████████████████████████████████████ 2,550 ms",
            "      payment POST /charges                                           █    50 ms",
            "█ critical path  ░ other time",
            "",
            "orders is the bottleneck: 2,500 ms of 2,565 ms (97%) on the critical path, "
            "in GET /orders/{id}",
            "",
        ]
    )


def test_show_names_where_the_error_started(stored: str) -> None:
    result = run(stored, "show", FAILED_ID.upper())
    assert result.exit_code == 0
    assert result.stdout.splitlines()[2:5] == [
        "✗ api-gateway POST /checkout ██████░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░██████ 80 ms",
        "✗   orders POST /orders           ███████░░░░░░░░░░░░░░░░░░░░░███████      60 ms",
        "✗     payment POST /charges             ███████████████████████            40 ms",
    ]
    assert result.stdout.splitlines()[-1] == (
        "payment failed first: CardProcessorError: card processor unavailable "
        "(in POST /charges), surfacing as HTTP 502 at api-gateway"
    )


def test_show_json_is_span_json_plus_the_analysis(stored: str) -> None:
    result = run(stored, "show", FAILED_ID, "--json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["trace_id"] == FAILED_ID
    assert document["status"] == "error"
    assert document["services"] == ["api-gateway", "orders", "payment"]
    assert document["is_complete"] is True
    # The spans are the seed's span JSON, in tree order, and decode back unchanged.
    exported = {span.span_id: span.to_dict() for span in failed_trace(T0 + 5000)}
    assert [span["spanId"] for span in document["spans"]] == list(exported)
    for span in document["spans"]:
        assert Span.from_dict(span).to_dict() == exported[span["spanId"]]
    analysis = document["analysis"]
    assert analysis["bottleneck"]["service"] == "payment"
    assert analysis["error_chain"]["origin_span_id"] == "2000000000000003"
    assert analysis["error_chain"]["message"] == "CardProcessorError: card processor unavailable"
    assert [hop["http_status"] for hop in analysis["error_chain"]["path"]] == [None, 502, 502]
    assert sum(segment["duration_ms"] for segment in analysis["critical_path"]) == 80
    assert analysis["self_time_ms"] == {
        "2000000000000001": 20.0,
        "2000000000000002": 20.0,
        "2000000000000003": 40.0,
    }


def test_show_json_of_a_trace_without_errors_has_no_error_chain(stored: str) -> None:
    document = json.loads(run(stored, "show", SEED_ID, "--json").stdout)
    assert document["analysis"]["error_chain"] is None
    assert document["analysis"]["bottleneck"]["sentence"].startswith("orders is the bottleneck")


def test_show_unknown_trace_is_one_line_and_status_1(redis_url: str) -> None:
    result = run(redis_url, "show", SEED_ID)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: no trace {SEED_ID} (it may have expired after 24 h)\n"


@pytest.mark.parametrize("trace_id", ["4bf9", "0" * 32, "g" * 32, SEED_ID + "00"])
def test_show_invalid_trace_id_is_a_usage_error(redis_url: str, trace_id: str) -> None:
    result = run(redis_url, "show", trace_id)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: Invalid value for 'TRACE_ID': a trace id is 32 hex digits, not all zero "
        "(see 'asynctrace show --help')\n"
    )


# -- listings ------------------------------------------------------------------------------


def test_slow_lists_the_slow_trace_with_its_root(stored: str) -> None:
    result = run(stored, "slow")
    assert result.exit_code == 0
    assert rows(result) == [
        ["TRACE ID", "STARTED UTC", "DURATION", "STATUS", "ROOT"],
        [SEED_ID, started(T0), "2,565 ms", "ok", "api-gateway GET /orders/{id}"],
    ]


def test_errors_lists_the_failed_trace_of_its_day(stored: str) -> None:
    result = run(stored, "errors", "--day", utc_day(T0 + 5000))
    assert result.exit_code == 0
    assert rows(result) == [
        ["TRACE ID", "STARTED UTC", "DURATION", "STATUS", "ROOT", "ERROR"],
        [
            FAILED_ID,
            started(T0 + 5000),
            "80 ms",
            "error",
            "api-gateway POST /checkout",
            "CardProcessorError: card processor unavailable",
        ],
    ]


def test_errors_default_to_today(redis_url: str) -> None:
    now = recent_start(0)
    # The same trace a minute on too: the command may run after midnight UTC.
    export(redis_url, [*failed_trace(now), *failed_trace(now + 60_000)])
    result = run(redis_url, "errors")
    assert result.exit_code == 0
    assert [row[0] for row in rows(result)] == ["TRACE ID", FAILED_ID]


@pytest.mark.parametrize("seconds_into_the_day", [0, 1, 86_399])
def test_errors_default_to_the_day_of_the_commands_clock(
    redis_url: str, seconds_into_the_day: int
) -> None:
    # The hidden --now fixes the clock the default day is taken from, so the test
    # can place itself at midnight and at 23:59:59 UTC on any date.
    today_start = recent_start(0) // 86_400_000 * 86_400_000
    now = today_start + seconds_into_the_day * 1000.0
    export(redis_url, failed_trace(now))
    now_text = datetime.fromtimestamp(now / 1000, UTC).isoformat()
    result = run(redis_url, "--now", now_text, "errors")
    assert result.exit_code == 0, result.output
    assert [row[0] for row in rows(result)] == ["TRACE ID", FAILED_ID]
    before = run(redis_url, "--now", now_text, "errors", "--day", utc_day(now - 86_400_000))
    assert before.stdout.startswith("no traces with errors on ")


def test_errors_on_a_quiet_day_say_so(stored: str) -> None:
    result = run(stored, "errors", "--day", "2020-02-29")
    assert result.exit_code == 0
    assert result.stdout == "no traces with errors on 2020-02-29 (UTC)\n"


@pytest.mark.parametrize("day", ["2025-13-01", "2025-02-30", "yesterday", "2025-1-1"])
def test_errors_invalid_day_is_a_usage_error(redis_url: str, day: str) -> None:
    result = run(redis_url, "errors", "--day", day)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: Invalid value for '--day': day must be a calendar date written YYYY-MM-DD "
        "(see 'asynctrace errors --help')\n"
    )


def test_recent_lists_newest_first(stored: str) -> None:
    result = run(stored, "recent", "--limit", "2")
    assert result.exit_code == 0
    assert [row[0] for row in rows(result)] == ["TRACE ID", FAST_ID, FAILED_ID]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--service", "api-gateway"], [FAILED_ID, SEED_ID]),
        # The index holds roots and error spans: payment is seen where it failed.
        (["--service", "payment"], [FAILED_ID]),
        (["--status", "error"], [FAILED_ID]),
        (["--status", "ok", "--min-duration", "1000"], [SEED_ID]),
        (["--operation", "health"], [FAST_ID]),
        (["--text", "card processor"], [FAILED_ID]),
        (["--service", "nobody"], []),
    ],
)
def test_search_applies_every_filter(stored: str, filters: list[str], expected: list[str]) -> None:
    result = run(stored, "search", *filters)
    assert result.exit_code == 0
    if expected:
        assert [row[0] for row in rows(result)][1:] == expected
    else:
        assert result.stdout == "no recent traces match\n"


def test_empty_store_listings_say_so(redis_url: str) -> None:
    assert run(redis_url, "slow").stdout == "no slow traces stored\n"
    assert run(redis_url, "recent").stdout == "no traces in the last 24 h\n"


@pytest.mark.parametrize(
    "args",
    [["slow", "--limit", "0"], ["recent", "--limit", "x"], ["search", "--status", "maybe"]],
)
def test_bad_options_are_one_line_usage_errors(redis_url: str, args: list[str]) -> None:
    result = run(redis_url, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1


# -- connection ----------------------------------------------------------------------------


def test_redis_url_comes_from_the_environment(stored: str) -> None:
    result = run(None, "slow", env={"REDIS_URL": stored})
    assert result.exit_code == 0
    assert SEED_ID in result.stdout


def test_unreachable_redis_is_one_line_without_the_password() -> None:
    port = free_port()
    result = run(f"redis://:s3cret-pw@127.0.0.1:{port}/0", "recent")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: Redis at 127.0.0.1:{port} is unavailable: ")
    assert result.stderr.count("\n") == 1
    assert "s3cret-pw" not in result.output


def test_malformed_redis_url_is_a_usage_error_without_the_password() -> None:
    result = run("http://user:s3cret-pw@example.com/0", "slow")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Invalid value for '--redis-url': invalid Redis URL")
    assert "s3cret-pw" not in result.output


def test_serve_refuses_a_public_address_without_a_token(redis_url: str) -> None:
    result = run(redis_url, "serve", "--host", "0.0.0.0", env={"ASYNCTRACE_TOKEN": ""})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: refusing to serve traces on '0.0.0.0' without a token")


def test_help_lists_every_command() -> None:
    result = run(None, "--help")
    assert result.exit_code == 0
    for command in ("show", "slow", "errors", "recent", "search", "demo", "serve"):
        assert re.search(rf"^  {command} ", result.stdout, re.MULTILINE)
