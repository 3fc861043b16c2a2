"""Readers survive hostile stored data: cycles, deep nesting, huge spans, surrogates,
terminal escapes and wrong types, through ``show``, ``show --json``, the dashboard's
API and its pages. Each answer is a clear result or a one-line error, never a
traceback, a hang or a 500; a bad trace costs only itself."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result

from asynctrace import keys
from asynctrace.cli import main
from asynctrace.model import utc_day
from asynctrace.store import TraceStore
from asynctrace.web import create_app
from tests.faults.hostile_data import (
    OPERATION,
    SERVICE,
    T0,
    HostileTrace,
    hostile_traces,
    index_entry,
    span_json,
    store,
)

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]

CASES = hostile_traces()
# What a terminal acts on; none of it may reach stdout raw (output here is not a TTY,
# so asynctrace adds no colour codes of its own either).
ACTIVE = ("\x1b", "\r", "\x07", "\x9b", "\u202e", "\x00")


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as sync_client:
        yield sync_client


@pytest.fixture
async def dashboard(aiohttp_client: ClientFactory, redis_url: str) -> AsyncIterator[Client]:
    async with TraceStore.from_url(redis_url) as trace_store:
        yield await aiohttp_client(create_app(trace_store))


def run(redis_url: str, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["--redis-url", redis_url, *args], env={"COLUMNS": "100", "NO_COLOR": None}
    )


def assert_clean(result: Result) -> str:
    """No traceback, text a UTF-8 terminal can print, no active characters."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    output = result.output
    assert "Traceback" not in output
    output.encode("utf-8")  # strict: no lone surrogates
    for character in ACTIVE:
        assert character not in output, f"{character!r} reached the terminal"
    return output


def ids(case: HostileTrace) -> str:
    return case.name


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_show_draws_any_stored_trace_or_says_why_not(
    redis_url: str, client: redis.Redis, case: HostileTrace
) -> None:
    store(client, case)
    result = run(redis_url, "show", case.trace_id)
    output = assert_clean(result)
    if case.spans == 0:
        assert result.exit_code == 1
        assert output.startswith(f"error: no trace {case.trace_id}")
        return
    assert result.exit_code == 0, output
    assert output.startswith(f"trace {case.trace_id}")
    if case.cyclic_span_ids:
        assert "parent cycle" in output


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_show_json_prints_valid_json_for_any_stored_trace(
    redis_url: str, client: redis.Redis, case: HostileTrace
) -> None:
    store(client, case)
    result = run(redis_url, "show", "--json", case.trace_id)
    output = assert_clean(result)
    if case.spans == 0:
        assert result.exit_code == 1
        return
    assert result.exit_code == 0, output
    report = json.loads(output)
    assert report["cyclic_span_ids"] == list(case.cyclic_span_ids)
    assert report["truncated"] is False
    if case.spans is not None:
        assert report["span_count"] == len(report["spans"]) == case.spans
    if case.root_span_id is not None:
        assert report["root_span_id"] == case.root_span_id
    # Every span is shown exactly once, cycles or not.
    assert sorted(report["depths"]) == sorted(span["spanId"] for span in report["spans"])


def test_terminal_escapes_print_as_visible_text_on_one_line(
    redis_url: str, client: redis.Redis
) -> None:
    [case] = [case for case in CASES if case.name == "terminal_escapes"]
    store(client, case)
    output = assert_clean(run(redis_url, "show", case.trace_id))
    # The waterfall row, the bottleneck and the error chain name the operation; in
    # each the CR/LF is text, so "forged" never starts a line of its own.
    rows = [line for line in output.splitlines() if "forged" in line]
    assert len(rows) == 3
    for row in rows:
        assert "\\x1b[2J\\x1b[H\\r\\nforged" in row
    logs = assert_clean(run(redis_url, "logs", case.trace_id))
    assert "\\x1b]0;title\\x07" in logs
    assert_clean(run(redis_url, "logs", "--json", case.trace_id))


def test_lone_surrogates_become_replacement_characters(redis_url: str, client: redis.Redis) -> None:
    [case] = [case for case in CASES if case.name == "lone_surrogates"]
    store(client, case)
    report = json.loads(assert_clean(run(redis_url, "show", "--json", case.trace_id)))
    services = sorted(span["service"] for span in report["spans"])
    assert services == ["h\ufffd\ufffd", "raw \ufffd\ufffd bytes"]


@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_api_and_page_answer_for_any_stored_trace(
    dashboard: Client, client: redis.Redis, case: HostileTrace
) -> None:
    await asyncio.to_thread(store, client, case)
    api = await dashboard.get(f"/api/traces/{case.trace_id}")
    page = await dashboard.get(f"/traces/{case.trace_id}")
    expected = 404 if case.spans == 0 else 200
    assert (api.status, page.status) == (expected, expected)
    body = json.loads(await api.read())  # valid JSON
    html = (await page.read()).decode("utf-8")  # strict: valid UTF-8
    if expected == 200:
        assert body["cyclic_span_ids"] == list(case.cyclic_span_ids)
        assert 'id="trace-data"' in html
    if case.cyclic_span_ids:
        assert "parent cycle was found" in html


async def test_a_bad_similar_trace_costs_only_itself(
    dashboard: Client, client: redis.Redis
) -> None:
    # Every hostile trace is indexed with the healthy trace's service and operation,
    # so the dashboard loads them all as "similar" to it; one more is a key of the
    # wrong type.
    healthy = "0f" * 16

    def write() -> None:
        for case in CASES:
            store(client, case)
        wrong = "ee" * 16
        client.set(keys.trace_key(wrong), "not a list")
        client.zadd(
            keys.index_key(),
            {index_entry(wrong, "00000000000000ee", service=SERVICE, operation=OPERATION): T0},
        )
        client.rpush(keys.trace_key(healthy), span_json(healthy, "000000000000000f", None))
        client.zadd(
            keys.index_key(),
            {index_entry(healthy, "000000000000000f", service=SERVICE, operation=OPERATION): T0},
        )

    await asyncio.to_thread(write)
    api = await dashboard.get(f"/api/traces/{healthy}")
    assert api.status == 200
    comparison = (await api.json())["analysis"]["comparison"]
    assert comparison["sample_size"] >= 5  # the readable hostile traces still count
    page = await dashboard.get(f"/traces/{healthy}")
    assert page.status == 200


# -- keys of the wrong type -----------------------------------------------------------

WRONG_TRACE = "dd" * 16


def _wrong_types(client: redis.Redis) -> None:
    client.set(keys.trace_key(WRONG_TRACE), "a string where a list belongs")
    client.set(keys.index_key(), "a string where a sorted set belongs")
    client.rpush(keys.slow_key(), "a list where a sorted set belongs")
    client.hset(keys.errors_key(utc_day(T0)), "a", "a hash where a set belongs")


@pytest.mark.parametrize(
    "args",
    [
        ["show", WRONG_TRACE],
        ["show", "--json", WRONG_TRACE],
        ["logs", WRONG_TRACE],
        ["recent"],
        ["search", "--text", "x"],
        ["slow"],
        ["errors", "--day", utc_day(T0)],
    ],
    ids=" ".join,
)
def test_keys_of_the_wrong_type_are_one_error_line(
    redis_url: str, client: redis.Redis, args: list[str]
) -> None:
    _wrong_types(client)
    result = run(redis_url, *args)
    output = assert_clean(result)
    assert result.exit_code == 1
    assert output.count("\n") == 1
    assert output.startswith("error: ")
    assert "WRONGTYPE" in output


@pytest.mark.parametrize(
    "path",
    [
        f"/api/traces/{WRONG_TRACE}",
        f"/traces/{WRONG_TRACE}",
        "/api/recent",
        "/api/slow",
        f"/api/errors?day={utc_day(T0)}",
        "/",
        "/?view=slow",
        f"/?view=errors&day={utc_day(T0)}",
    ],
)
async def test_keys_of_the_wrong_type_are_a_clear_502(
    dashboard: Client, client: redis.Redis, path: str
) -> None:
    await asyncio.to_thread(_wrong_types, client)
    response = await dashboard.get(path)
    assert response.status == 502
    text = (await response.read()).decode("utf-8")
    assert "WRONGTYPE" in text
    assert "Traceback" not in text


GARBAGE_MEMBERS = [
    "not json",
    "[" * 100_000,
    "[]",
    '["' + "ab" * 16 + '"]',
    json.dumps(["ab" * 16, "00000000000000ab", "s\udcff", "op", "ok", 1.0, T0, 1, ""]),
    json.dumps([5, 6, 7, 8, 9, 10, 11, 12, 13]),
    json.dumps({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9}),
]


async def test_garbage_index_and_slow_members_are_skipped(
    dashboard: Client, client: redis.Redis, redis_url: str
) -> None:
    def write() -> None:
        members = {member: T0 + n for n, member in enumerate(GARBAGE_MEMBERS)}
        client.zadd(keys.index_key(), members)
        client.zadd(keys.slow_key(), {"not an id": 5000, "\x1b[2J" * 3: 4000, "ab" * 16: 3000})
        client.sadd(keys.errors_key(utc_day(T0)), "not an id", "[" * 1000, "ab" * 16)

    await asyncio.to_thread(write)
    for path in ("/api/recent", "/api/slow", f"/api/errors?day={utc_day(T0)}", "/"):
        response = await dashboard.get(path)
        assert response.status == 200, path
        (await response.read()).decode("utf-8")
    rows = (await (await dashboard.get("/api/recent")).json())["traces"]
    assert [row["service"] for row in rows] == ["s\ufffd"]


# -- aggregates ---------------------------------------------------------------------------


def _hostile_aggregates(client: redis.Redis) -> None:
    """This hour's aggregates with members another writer could leave: not JSON, nested
    too deeply, the wrong shape, a lone surrogate, a terminal escape, counts that are
    not numbers."""
    hour = keys.hour_of(time.time() * 1000.0)
    pair = keys.pair_member("svc", "op")
    odd = '["\\udcff","\\u001b[2J"]'
    client.sadd(keys.operation_index_key(hour), pair, "garbage", "[" * 10_000, '["a"]', odd)
    client.hset(keys.aggregate_key(hour, pair), mapping={"n": "abc", "e": "-5", "b3": "1e400"})
    client.hset(keys.aggregate_key(hour, odd), mapping={"n": "3", "e": "1", "b3": "3"})
    client.zadd(keys.max_key(hour), {pair: float("inf")})
    client.sadd(keys.edge_index_key(hour), "junk", "[" * 10_000, odd)
    client.hset(keys.edge_key(hour, odd), mapping={"n": "3", "e": "1", "b3": "3"})


@pytest.mark.parametrize("args", [["stats"], ["map"]], ids=" ".join)
def test_hostile_aggregates_print_as_escaped_text(
    redis_url: str, client: redis.Redis, args: list[str]
) -> None:
    _hostile_aggregates(client)
    result = run(redis_url, *args)
    output = assert_clean(result)
    assert result.exit_code == 0, output
    assert "\\x1b[2J" in output


def test_a_name_with_undecodable_bytes_is_a_usage_error(redis_url: str) -> None:
    result = run(redis_url, "patterns", "--service", "\udcff", "--operation", "op")
    assert_clean(result)
    assert result.exit_code == 2


@pytest.mark.parametrize("path", ["/api/stats", "/stats", "/api/map", "/map", "/patterns"])
async def test_hostile_aggregates_are_served_as_valid_text(
    dashboard: Client, client: redis.Redis, path: str
) -> None:
    await asyncio.to_thread(_hostile_aggregates, client)
    response = await dashboard.get(path)
    assert response.status == 200
    text = (await response.read()).decode("utf-8")  # strict: no lone surrogates
    assert "Traceback" not in text
