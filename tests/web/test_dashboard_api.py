"""The dashboard's JSON API and pages against a real Redis, data written by RedisExporter."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient
from dashboard_traces import (
    SLOW_TRACE_ID,
    SpanSpec,
    build,
    day_safe_now_ms,
    error_trace,
    export,
    fast_checkout,
    now_ms,
    slow_checkout,
    wide_trace,
)

from asynctrace import keys
from asynctrace.model import utc_day
from asynctrace.store import TraceStore
from asynctrace.testing import free_port
from asynctrace.web import create_app

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]

ERROR_TRACE_ID = "e1" * 16
UNKNOWN_TRACE_ID = "ab" * 16


@pytest.fixture
def now() -> float:
    """The dashboard's fixed clock (epoch ms): the failed checkout is 30 s before it,
    on the same UTC day, so "today" holds it at any hour, midnight included."""
    return day_safe_now_ms()


@pytest.mark.parametrize(
    "present",
    [
        "2026-12-31T23:59:59.999",  # the last instant of a day, a month and a year
        "2027-01-01T00:00:00",  # the first of the next
        "2027-01-01T00:00:59.999",
        "2028-02-29T00:00:30",  # a leap day
        "2027-03-01T12:00:00",
    ],
)
def test_the_fixed_clock_holds_the_minute_before_it_on_its_own_day(present: str) -> None:
    present_ms = datetime.fromisoformat(present).replace(tzinfo=UTC).timestamp() * 1000.0
    fixed = day_safe_now_ms(present_ms)
    assert 0 <= fixed - present_ms <= 60_000
    assert utc_day(fixed - 60_000) == utc_day(fixed) == utc_day(present_ms)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, store: TraceStore, now: float) -> Client:
    return await aiohttp_client(create_app(store, clock=lambda: now / 1000.0))


@pytest.fixture
async def seeded(redis_url: str, now: float) -> None:
    """The seed's slow checkout, five typical ones and a failed checkout."""
    await export(
        redis_url,
        slow_checkout(),
        *(fast_checkout(number) for number in range(5)),
        error_trace(ERROR_TRACE_ID, start=now - 30_000),
    )


@pytest.fixture
async def offline_client(aiohttp_client: ClientFactory) -> Client:
    """A dashboard whose Redis is a port nothing listens on."""
    store = TraceStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        return await aiohttp_client(create_app(store))
    finally:
        await store.aclose()


# -- JSON API ------------------------------------------------------------------------


async def test_health_says_redis_is_reachable(client: Client) -> None:
    response = await client.get("/api/health")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["redis"] == "reachable"


async def test_recent_lists_traces_newest_first(client: Client, seeded: None) -> None:
    response = await client.get("/api/recent")
    assert response.status == 200
    rows = (await response.json())["traces"]
    assert [row["trace_id"] for row in rows][:2] == [ERROR_TRACE_ID, SLOW_TRACE_ID]
    assert len(rows) == 7
    slow = rows[1]
    assert slow == {
        "trace_id": SLOW_TRACE_ID,
        "operation": "GET /checkout",
        "service": "api-gateway",
        "services": ["api-gateway"],
        "duration_ms": 2565.0,
        "status": "ok",
        "start_time": slow["start_time"],
        "error": "",
    }
    starts = [row["start_time"] for row in rows]
    assert starts == sorted(starts, reverse=True)


async def test_recent_honours_limit_and_since(client: Client, seeded: None) -> None:
    assert len((await (await client.get("/api/recent?limit=2")).json())["traces"]) == 2
    since = now_ms() - 45_000
    rows = (await (await client.get(f"/api/recent?since={since}")).json())["traces"]
    assert [row["trace_id"] for row in rows] == [ERROR_TRACE_ID]


async def test_slow_lists_only_traces_over_the_threshold(client: Client, seeded: None) -> None:
    response = await client.get("/api/slow")
    assert response.status == 200
    body = await response.json()
    assert [row["trace_id"] for row in body["traces"]] == [SLOW_TRACE_ID]
    assert body["traces"][0]["slow_duration_ms"] == 2565.0
    assert body["traces"][0]["operation"] == "GET /checkout"
    assert body["expired_trace_ids"] == []


async def test_slow_lists_ids_whose_spans_expired_apart(
    client: Client, seeded: None, redis_url: str
) -> None:
    async with aioredis.Redis.from_url(redis_url) as redis:
        await redis.zadd(keys.slow_key(), {UNKNOWN_TRACE_ID: 9000.0})
    body = await (await client.get("/api/slow")).json()
    assert [row["trace_id"] for row in body["traces"]] == [SLOW_TRACE_ID]
    assert body["expired_trace_ids"] == [UNKNOWN_TRACE_ID]


async def test_slow_rows_come_from_the_trace_when_the_index_lost_it(
    client: Client, redis_url: str
) -> None:
    await export(redis_url, slow_checkout())
    async with aioredis.Redis.from_url(redis_url) as redis:
        await redis.delete(keys.index_key())
    body = await (await client.get("/api/slow")).json()
    assert [row["trace_id"] for row in body["traces"]] == [SLOW_TRACE_ID]
    assert body["traces"][0]["services"] == ["api-gateway", "auth", "orders", "payment"]


async def test_errors_lists_todays_failed_traces(client: Client, seeded: None, now: float) -> None:
    response = await client.get("/api/errors")
    assert response.status == 200
    body = await response.json()
    assert body["day"] == utc_day(now)
    assert body["total"] == 1
    assert [row["trace_id"] for row in body["traces"]] == [ERROR_TRACE_ID]
    assert body["traces"][0]["status"] == "error"
    assert body["traces"][0]["error"] == "CardDeclined: card declined"


async def test_errors_of_another_day(client: Client, redis_url: str, now: float) -> None:
    three_days_ago = datetime.fromtimestamp(now / 1000.0, UTC) - timedelta(days=3)
    await export(redis_url, error_trace(ERROR_TRACE_ID, start=three_days_ago.timestamp() * 1000))
    day = three_days_ago.strftime("%Y-%m-%d")
    body = await (await client.get(f"/api/errors?day={day}")).json()
    assert body["day"] == day
    assert [row["trace_id"] for row in body["traces"]] == [ERROR_TRACE_ID]
    today = await (await client.get("/api/errors")).json()
    assert today["traces"] == []


async def test_today_is_the_day_of_the_dashboards_clock(
    aiohttp_client: ClientFactory, store: TraceStore, redis_url: str
) -> None:
    then = day_safe_now_ms(now_ms() - 3 * 86_400_000)
    await export(redis_url, error_trace(ERROR_TRACE_ID, start=then - 30_000))
    client = await aiohttp_client(create_app(store, clock=lambda: then / 1000.0))
    body = await (await client.get("/api/errors")).json()
    assert body["day"] == utc_day(then)
    assert [row["trace_id"] for row in body["traces"]] == [ERROR_TRACE_ID]
    page = await (await client.get("/?view=errors")).text()
    assert f'name="day" value="{utc_day(then)}"' in page
    assert "&rarr;" not in page  # no day after the clock's today


@pytest.mark.parametrize("day", ["yesterday", "2026-02-30", "2026-1-1", "../x"])
async def test_errors_rejects_a_bad_day(client: Client, day: str) -> None:
    response = await client.get("/api/errors", params={"day": day})
    assert response.status == 400
    assert "YYYY-MM-DD" in (await response.json())["error"]["message"]


async def test_search_filters(client: Client, seeded: None) -> None:
    async def ids(**params: str) -> list[str]:
        response = await client.get("/api/search", params=params)
        assert response.status == 200, await response.text()
        return [row["trace_id"] for row in (await response.json())["traces"]]

    assert await ids(status="error") == [ERROR_TRACE_ID]
    assert await ids(min_duration_ms="1000") == [SLOW_TRACE_ID]
    assert await ids(text="card declined") == [ERROR_TRACE_ID]
    assert await ids(service="payment") == [ERROR_TRACE_ID]
    assert await ids(operation="post /checkout") == [ERROR_TRACE_ID]
    assert await ids(trace_id=SLOW_TRACE_ID.upper()) == [SLOW_TRACE_ID]
    assert len(await ids(operation="GET /checkout")) == 6
    assert len(await ids(operation="GET /checkout", limit="3")) == 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "failed"}, "status must be 'ok' or 'error'"),
        ({"min_duration_ms": "fast"}, "min_duration_ms must be a number"),
        ({"min_duration_ms": "-1"}, "min_duration_ms must be a number"),
        ({"min_duration_ms": "nan"}, "min_duration_ms must be a number"),
        ({"limit": "0"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "ten"}, "limit must be an integer from 1 to 1000"),
        ({"trace_id": "xyz"}, "32 hex digits"),
        ({"trace_id": SLOW_TRACE_ID, "text": "x"}, "either trace_id or text"),
    ],
)
async def test_search_rejects_bad_parameters(
    client: Client, params: dict[str, str], message: str
) -> None:
    response = await client.get("/api/search", params=params)
    assert response.status == 400
    body = await response.json()
    assert message in body["error"]["message"]
    assert body["error"]["status"] == 400


async def test_trace_api_has_spans_and_analysis(client: Client, seeded: None) -> None:
    response = await client.get(f"/api/traces/{SLOW_TRACE_ID}")
    assert response.status == 200
    body = await response.json()
    assert body["trace_id"] == SLOW_TRACE_ID
    assert body["duration_ms"] == 2565.0
    assert [span["service"] for span in body["spans"]] == [
        "api-gateway",
        "auth",
        "orders",
        "payment",
    ]
    assert body["spans"][0]["traceId"] == SLOW_TRACE_ID  # span JSON, as stored
    orders = body["spans"][2]["spanId"]
    assert body["depths"][orders] == 1
    analysis = body["analysis"]
    assert analysis["bottleneck"]["sentence"] == (
        "orders is the bottleneck: 2,500 ms of 2,565 ms (97%) on the critical path, "
        "in GET /orders/{id}"
    )
    assert analysis["bottleneck"]["span_id"] == orders
    critical = analysis["critical_path"]
    assert sum(segment["duration_ms"] for segment in critical) == pytest.approx(2565.0)
    assert analysis["error_chain"] is None
    assert analysis["self_time_ms"][orders] == pytest.approx(2500.0)
    comparison = analysis["comparison"]
    assert comparison["sample_size"] == 5
    assert comparison["median_duration_ms"] == 100.0
    top = comparison["deviations"][0]
    assert (top["service"], top["diff_ms"]) == ("orders", 2470.0)


async def test_trace_api_similar_parameter(client: Client, seeded: None) -> None:
    body = await (await client.get(f"/api/traces/{SLOW_TRACE_ID}?similar=2")).json()
    assert body["analysis"]["comparison"]["sample_size"] == 2
    body = await (await client.get(f"/api/traces/{SLOW_TRACE_ID}?similar=0")).json()
    assert body["analysis"]["comparison"]["sample_size"] == 0
    response = await client.get(f"/api/traces/{SLOW_TRACE_ID}?similar=51")
    assert response.status == 400


async def test_trace_api_error_chain_points_at_the_failing_payment(
    client: Client, seeded: None
) -> None:
    body = await (await client.get(f"/api/traces/{ERROR_TRACE_ID}")).json()
    assert body["status"] == "error"
    chain = body["analysis"]["error_chain"]
    payment = next(span for span in body["spans"] if span["service"] == "payment")
    assert chain["origin_span_id"] == payment["spanId"]
    assert chain["message"] == "CardDeclined: card declined"
    assert [hop["service"] for hop in chain["path"]] == ["payment", "orders", "api-gateway"]
    assert chain["path"][-1]["http_status"] == 500
    assert chain["sentence"].startswith("payment failed first: CardDeclined: card declined")


async def test_unknown_trace_is_404(client: Client) -> None:
    response = await client.get(f"/api/traces/{UNKNOWN_TRACE_ID}")
    assert response.status == 404
    assert "expired" in (await response.json())["error"]["message"]
    page = await client.get(f"/traces/{UNKNOWN_TRACE_ID}")
    assert page.status == 404
    assert page.content_type == "text/html"
    assert "Trace not found" in await page.text()


@pytest.mark.parametrize("trace_id", ["xyz", "0" * 32, "g" * 32, "a" * 31, "a" * 33])
async def test_invalid_trace_id_is_400(client: Client, trace_id: str) -> None:
    response = await client.get(f"/api/traces/{trace_id}")
    assert response.status == 400
    assert "32 hex digits" in (await response.json())["error"]["message"]
    page = await client.get(f"/traces/{trace_id}")
    assert page.status == 400
    assert "32 hex digits" in await page.text()


@pytest.mark.parametrize(
    "path",
    [
        "/api/health",
        "/api/recent",
        "/api/slow",
        "/api/errors",
        "/api/search?status=error",
        f"/api/traces/{SLOW_TRACE_ID}",
    ],
)
async def test_unreachable_redis_is_503_json(offline_client: Client, path: str) -> None:
    response = await offline_client.get(path)
    assert response.status == 503
    message = (await response.json())["error"]["message"]
    assert "unavailable" in message
    assert "127.0.0.1" in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    "path",
    ["/", "/?view=slow", "/?view=errors", "/?view=search&service=x", f"/traces/{SLOW_TRACE_ID}"],
)
async def test_unreachable_redis_is_503_page(offline_client: Client, path: str) -> None:
    response = await offline_client.get(path)
    assert response.status == 503
    text = await response.text()
    assert "Redis is unavailable" in text
    assert "Traceback" not in text


async def test_unknown_route_is_404_and_writes_are_405(client: Client) -> None:
    page = await client.get("/nothing/here")
    assert page.status == 404
    assert "There is no page at this address" in await page.text()
    api = await client.get("/api/nothing")
    assert api.status == 404
    assert (await api.json())["error"]["status"] == 404
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = await client.request(method, "/api/recent")
        assert response.status == 405
        assert "read-only" in (await response.json())["error"]["message"]
    head = await client.head("/api/recent")
    assert head.status == 200


async def test_a_bug_is_a_bare_500_logged_once(
    client: Client,
    store: TraceStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(store, "recent_traces", broken)
    with caplog.at_level(logging.WARNING, logger="asynctrace"):
        page = await client.get("/")
        api = await client.get("/api/recent")
    assert page.status == 500
    assert api.status == 500
    for text in (await page.text(), await api.text()):
        assert "secret" not in text
        assert "Traceback" not in text
        assert "details are in its log" in text
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 2  # one per route, each with its traceback
    assert all(record.exc_info and record.exc_info[0] is RuntimeError for record in logged)


# -- pages ---------------------------------------------------------------------------


async def test_traces_page_lists_recent_traces_with_links(client: Client, seeded: None) -> None:
    response = await client.get("/")
    assert response.status == 200
    text = await response.text()
    assert f'href="/traces/{SLOW_TRACE_ID}"' in text
    assert f'href="/traces/{ERROR_TRACE_ID}"' in text
    assert "2,565 ms" in text
    assert "CardDeclined: card declined" in text
    assert text.count('<tr class="') == 7


async def test_traces_page_views(client: Client, seeded: None, now: float) -> None:
    slow = await (await client.get("/?view=slow")).text()
    assert f"/traces/{SLOW_TRACE_ID}" in slow
    assert f"/traces/{ERROR_TRACE_ID}" not in slow
    errors = await (await client.get("/?view=errors")).text()
    assert f"/traces/{ERROR_TRACE_ID}" in errors
    today = utc_day(now)
    assert f'name="day" value="{today}"' in errors
    yesterday = utc_day(now - 86_400_000)
    assert f'href="/?view=errors&amp;day={yesterday}"' in errors
    assert "&rarr;" not in errors  # no day after today
    search = await (await client.get("/?view=search&service=payment")).text()
    assert f"/traces/{ERROR_TRACE_ID}" in search
    assert f"/traces/{SLOW_TRACE_ID}" not in search
    empty_search = await (await client.get("/?view=search")).text()
    assert "Fill in at least one field" in empty_search


async def test_search_page_jumps_to_a_trace_id(client: Client) -> None:
    response = await client.get(
        f"/?view=search&trace_id={SLOW_TRACE_ID.upper()}", allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == f"/traces/{SLOW_TRACE_ID}"
    bad = await client.get("/?view=search&trace_id=nope")
    assert bad.status == 400


async def test_traces_page_rejects_an_unknown_view(client: Client) -> None:
    response = await client.get("/?view=everything")
    assert response.status == 400
    assert "view must be one of" in await response.text()


async def test_expired_error_traces_are_counted_not_linked(
    client: Client, redis_url: str, now: float
) -> None:
    day = utc_day(now)
    async with aioredis.Redis.from_url(redis_url) as redis:
        await redis.sadd(keys.errors_key(day), UNKNOWN_TRACE_ID)
    text = await (await client.get("/?view=errors")).text()
    assert f"/traces/{UNKNOWN_TRACE_ID}" not in text
    assert "1 more trace has expired" in text


async def test_trace_page_renders_the_waterfall(client: Client, seeded: None) -> None:
    response = await client.get(f"/traces/{SLOW_TRACE_ID}")
    assert response.status == 200
    text = await response.text()
    rows = re.findall(r'<div class="span-row ([^"]*)"', text)
    assert len(rows) == 4
    assert all("critical" in classes for classes in rows)  # each holds the path a while
    assert "bottleneck" in rows[2]
    assert "orders is the bottleneck: 2,500 ms of 2,565 ms (97%)" in text
    assert "+2,470 ms" in text  # orders against the typical 80 ms
    assert 'id="trace-data"' in text
    assert "Error chain" not in text


async def test_trace_page_shows_the_error_chain(client: Client, seeded: None) -> None:
    text = await (await client.get(f"/traces/{ERROR_TRACE_ID}")).text()
    assert "Error chain" in text
    assert "payment failed first: CardDeclined: card declined" in text
    assert "surfacing as HTTP 500 at api-gateway" in text
    assert re.search(r'<div class="span-row [^"]*\berror\b[^"]*\borigin\b', text)


async def test_trace_page_of_a_thousand_spans(client: Client, redis_url: str) -> None:
    trace_id = "d0" * 16
    await export(redis_url, wide_trace(trace_id, 1200))
    response = await client.get(f"/traces/{trace_id}")
    assert response.status == 200
    text = await response.text()
    assert text.count('<div class="span-row ') == 1191
    assert 'data-descendants="1190"' in text  # the root can fold everything


async def test_big_pages_are_compressed(client: Client, redis_url: str) -> None:
    trace_id = "d0" * 16
    await export(redis_url, wide_trace(trace_id, 1200))
    response = await client.get(f"/traces/{trace_id}", headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    small = await client.get("/api/health", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers


async def test_a_root_operation_longer_than_a_search_filter_still_compares(
    client: Client, redis_url: str
) -> None:
    long_operation = "GET /" + "x" * 3000
    traces = [
        build(
            f"{number + 1:032x}",
            now_ms() - 1000 * (number + 1),
            [SpanSpec("root", None, "api-gateway", long_operation, 0, 10 + number)],
        )
        for number in range(3)
    ]
    await export(redis_url, *traces)
    body = await (await client.get(f"/api/traces/{1:032x}")).json()
    assert body["analysis"]["comparison"]["sample_size"] == 2


async def test_static_files_are_served_from_memory_with_etags(client: Client) -> None:
    response = await client.get("/static/trace.js")
    assert response.status == 200
    assert response.content_type == "text/javascript"
    etag = response.headers["ETag"]
    again = await client.get("/static/trace.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert (await client.get("/static/app.css")).content_type == "text/css"
    assert (await client.get("/static/../_app.py")).status == 404
    assert (await client.get("/static/nothing.js")).status == 404
