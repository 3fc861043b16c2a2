"""The stats, patterns and map pages and their JSON API, on aggregates in real Redis."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from asynctrace.export import RedisExporter
from asynctrace.model import Span
from asynctrace.store import TraceStore
from asynctrace.web import create_app

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]
XSS = "<img src=x onerror=alert(1)>"


def _server_span(
    number: int,
    *,
    service: str,
    operation: str,
    caller: str | None,
    duration: float,
    status: str = "ok",
    start: float | None = None,
) -> Span:
    span = Span.from_dict(
        {
            "traceId": f"{number + 1:032x}",
            "spanId": f"{number + 1:016x}",
            "parentSpanId": "a" * 16 if caller else None,
            "service": service,
            "operation": operation,
            "kind": "server",
            "startTime": time.time() * 1000.0 - 60_000 if start is None else start,
            "duration": duration,
            "status": status,
            "tags": {"peer.service": caller} if caller else {},
        }
    )
    return span


@pytest.fixture
async def client(aiohttp_client: ClientFactory, store: TraceStore, redis_url: str) -> Client:
    spans = (
        [
            _server_span(n, service="gateway", operation="GET /checkout", caller=None, duration=300)
            for n in range(10)
        ]
        + [
            _server_span(
                100 + n,
                service="payments",
                operation="POST /charge",
                caller="gateway",
                duration=120,
                status="error" if n == 0 else "ok",
            )
            for n in range(10)
        ]
        # Caller names are validated before they reach a key; a service name from an
        # imported span is not, so the XSS-shaped name rides on the callee side.
        + [_server_span(200, service=XSS, operation=XSS, caller="gateway", duration=5)]
    )
    exporter = RedisExporter(redis_url)
    try:
        await exporter.export(spans)
    finally:
        await exporter.shutdown()
    return await aiohttp_client(create_app(store))


async def test_api_stats_lists_every_operation_with_its_numbers(client: Client) -> None:
    response = await client.get("/api/stats", params={"service": "payments", "since": "1h"})
    assert response.status == 200
    (row,) = (await response.json())["rows"]
    assert (row["service"], row["operation"]) == ("payments", "POST /charge")
    assert row["current"]["count"] == 10
    assert row["current"]["errors"] == 1
    assert row["current"]["error_rate"] == 0.1
    assert 114 < row["current"]["p95_ms"] <= 120
    assert row["previous"] is None


async def test_api_map_lists_the_edges(client: Client) -> None:
    body = await (await client.get("/api/map")).json()
    assert [(e["caller"], e["callee"], e["calls"]) for e in body["edges"]] == [
        ("gateway", "payments", 10),
        ("gateway", XSS, 1),
    ]
    assert body["edges"][0]["error_rate"] == 0.1


async def test_api_patterns_is_a_seven_by_twenty_four_grid(client: Client) -> None:
    response = await client.get(
        "/api/patterns", params={"service": "gateway", "operation": "GET /checkout"}
    )
    body = await response.json()
    assert len(body["grid"]) == 7
    assert all(len(day) == 24 for day in body["grid"])
    assert body["days"][0] == "Monday"
    assert body["hot_spots"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/patterns?service=gateway",
        "/api/patterns?service=a&operation=b&weeks=9",
        "/api/stats?since=yesterday",
        "/api/map?since=-5",
    ],
)
async def test_bad_aggregate_queries_are_400(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 400


@pytest.mark.parametrize(
    "path",
    ["/stats", "/stats?since=7d", "/map", "/patterns", "/patterns?service=auth&operation=x"],
)
async def test_aggregate_pages_render_escaped_without_inline_code(
    client: Client, path: str
) -> None:
    response = await client.get(path)
    assert response.status == 200
    text = await response.text()
    assert XSS not in text
    assert " style=" not in text
    assert "<style" not in text
    assert "<script" not in text
    assert 'aria-current="page"' in text


async def test_the_stats_page_shows_the_table_and_links_to_patterns(client: Client) -> None:
    text = await (await client.get("/stats")).text()
    assert "POST /charge" in text
    assert "/patterns?service=payments&amp;operation=POST+%2Fcharge" in text


async def test_the_map_page_draws_services_and_edges(client: Client) -> None:
    text = await (await client.get("/map")).text()
    assert text.count('<g class="node ') == 3
    assert text.count('<g class="edge') == 2
    assert re.search(r'<g class="edge failing"[^>]*>\s*<title>gateway → payments', text)
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


async def test_the_patterns_page_without_a_choice_lists_operations(client: Client) -> None:
    text = await (await client.get("/patterns")).text()
    assert "/patterns?service=gateway&amp;operation=GET+%2Fcheckout" in text


async def test_the_patterns_page_draws_the_heatmap(client: Client) -> None:
    text = await (
        await client.get("/patterns", params={"service": "gateway", "operation": "GET /checkout"})
    ).text()
    assert text.count("<tr><th>") == 7 + 1  # the hour header, then a row per day
    assert "No recurring hot spots." in text
    assert len(re.findall(r'<td class="heat-[0-7]', text)) >= 1


async def test_a_hot_hour_still_kept_links_to_its_slow_traces(
    aiohttp_client: ClientFactory, store: TraceStore, redis_url: str
) -> None:
    hour_ms = 3_600_000.0
    week_ms = 7 * 24 * hour_ms
    # One clock for the data and the dashboard: the hour cannot turn between them.
    now_s = time.time()
    this_hour = now_s * 1000.0 // hour_ms * hour_ms
    spans: list[Span] = []
    for week in range(4):
        for offset, duration in [(2, 5000.0)] + [(hours, 400.0) for hours in range(5, 15)]:
            start = this_hour - offset * hour_ms - week * week_ms + 60_000
            spans += [
                _server_span(
                    len(spans) + sample,
                    service="orders",
                    operation="GET /orders/{id}",
                    caller=None,
                    duration=duration + sample,
                    start=start,
                )
                for sample in range(25)
            ]
    exporter = RedisExporter(redis_url)
    try:
        await exporter.export(spans)
    finally:
        await exporter.shutdown()
    client = await aiohttp_client(create_app(store, clock=lambda: now_s))

    body = await (
        await client.get(
            "/api/patterns", params={"service": "orders", "operation": "GET /orders/{id}"}
        )
    ).json()
    (spot,) = body["hot_spots"]
    assert spot["weeks_hot"] == 4
    page = await (
        await client.get("/patterns", params={"service": "orders", "operation": "GET /orders/{id}"})
    ).text()
    assert spot["sentence"] in page
    since = f"{this_hour - 2 * hour_ms:.0f}"
    link = re.search(r'<td class="heat-\d hot"[^>]*><a href="([^"]+)"', page)
    assert link is not None
    assert link[1] == (
        "/?view=search&amp;service=orders&amp;operation=GET+%2Forders%2F%7Bid%7D"
        f"&amp;min_duration_ms=824&amp;since={since}&amp;until={int(since) + 3_600_000}"
    )
    found = await (await client.get(link[1].replace("&amp;", "&"))).text()
    assert found.count('class="op" href="/traces/') == 25
    # The sentence above the heatmap links to the same traces.
    assert f'<li>{spot["sentence"]} &middot; <a href="{link[1]}">example traces</a></li>' in page
