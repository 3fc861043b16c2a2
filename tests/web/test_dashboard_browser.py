"""The dashboard in real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dashboard_traces import (
    SLOW_TRACE_ID,
    XSS_IMG,
    XSS_SCRIPT,
    error_trace,
    export,
    fast_checkout,
    slow_checkout,
    wide_trace,
    xss_trace,
)
from page_problems import PageProblems
from screenshots import screenshot_path

from asynctrace.model import utc_day

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
README_SCREENSHOT = REPO / "docs" / "screenshot-slow-trace.png"
SEED_START_MS = 1_795_772_400_000.0  # 2026-11-27 09:40:00 UTC
ERROR_TRACE_ID = "e1" * 16
XSS_TRACE_ID = "c0" * 16
WIDE_TRACE_ID = "d0" * 16


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def seeded(redis_url: str) -> str:
    """The traces the pages show; returns the failed checkout's UTC day."""
    failed = error_trace(ERROR_TRACE_ID)
    await export(
        redis_url,
        slow_checkout(),
        *(fast_checkout(number) for number in range(5)),
        failed,
        xss_trace(XSS_TRACE_ID),
    )
    # Named, not "today": the test may run across midnight UTC.
    return utc_day(failed[0].start_time)


async def test_trace_page_draws_one_bar_per_span_with_the_critical_path(
    page: Page, dashboard_url: str, seeded: None
) -> None:
    problems = PageProblems(page)
    await page.goto(f"{dashboard_url}traces/{SLOW_TRACE_ID}")
    rows = page.locator(".span-row")
    assert await rows.count() == 4
    assert await page.locator(".span-row .bar").count() == 4
    # Bars are placed by the script (the CSP forbids inline styles): check the geometry.
    boxes = [await bar.bounding_box() for bar in await page.locator(".bar").all()]
    assert all(box is not None and box["width"] >= 1 for box in boxes)
    gateway, auth, orders, payment = (box for box in boxes if box is not None)
    assert gateway["x"] <= auth["x"] < orders["x"] < payment["x"]
    assert orders["width"] > 0.9 * gateway["width"]
    assert payment["x"] + payment["width"] <= orders["x"] + orders["width"] + 1
    # The critical path: every span holds it for a while; orders for 2,500 ms.
    assert await page.locator(".span-row.critical").count() == 4
    critical = page.locator("#span-" + await _span_id(page, "orders") + " .crit")
    assert await critical.count() == 2  # before and after its payment call
    crit_widths = [
        box["width"] for box in [await c.bounding_box() for c in await critical.all()] if box
    ]
    assert sum(crit_widths) > 0.9 * orders["width"]
    bottleneck = page.locator(".bottleneck-finding")
    assert "orders is the bottleneck: 2,500 ms of 2,565 ms (97%)" in await bottleneck.inner_text()
    assert (
        "+2,470 ms"
        in await page.locator(f"#span-{await _span_id(page, 'orders')} .cmp").inner_text()
    )
    assert problems.messages == []


async def test_clicking_a_span_shows_its_tags_and_logs(
    page: Page, dashboard_url: str, seeded: None
) -> None:
    problems = PageProblems(page)
    await page.goto(f"{dashboard_url}traces/{SLOW_TRACE_ID}")
    await page.locator(".span-row", has_text="auth").click()
    details = page.locator(".details")
    assert await details.locator(".details-op").inner_text() == "POST /verify"
    assert await details.locator(".details-tags th").all_inner_texts() == ["user.id"]
    assert await details.locator(".details-tags td").all_inner_texts() == ["42"]
    await page.locator(".span-row", has_text="GET /orders/{id}").click()
    assert "order.id" in await details.locator(".details-tags").inner_text()
    assert (
        "cache miss, loading from database" in await details.locator(".details-logs").inner_text()
    )
    assert await page.locator(".span-row.selected").count() == 1
    assert problems.messages == []


async def test_collapsing_a_subtree_hides_its_children(
    page: Page, dashboard_url: str, seeded: None
) -> None:
    problems = PageProblems(page)
    await page.goto(f"{dashboard_url}traces/{SLOW_TRACE_ID}")
    root = page.locator(".span-row").first
    await root.locator(".toggle").click()
    assert await page.locator(".span-row:visible").count() == 1
    assert await root.locator(".hidden-count").inner_text() == "3 hidden"
    await root.locator(".toggle").click()
    assert await page.locator(".span-row:visible").count() == 4
    # A subtree folded on its own stays folded when its parent opens again.
    orders = page.locator(".span-row", has_text="GET /orders/{id}")
    await orders.locator(".toggle").click()
    await root.locator(".toggle").click()
    await root.locator(".toggle").click()
    assert await page.locator(".span-row:visible").count() == 3
    assert not await page.locator(".span-row", has_text="POST /charge").is_visible()
    assert problems.messages == []


async def test_error_chain_links_to_the_failing_payment_span(
    page: Page, dashboard_url: str, seeded: None
) -> None:
    problems = PageProblems(page)
    await page.goto(f"{dashboard_url}traces/{ERROR_TRACE_ID}")
    chain = page.locator("#error-chain")
    assert "payment failed first: CardDeclined: card declined" in await chain.inner_text()
    # The page opens on the origin of the error.
    assert await page.locator(".details-op").inner_text() == "POST /charge"
    await page.locator(".span-row").first.click()
    await chain.locator("li.origin a").click()
    selected = page.locator(".span-row.selected")
    assert "payment" in await selected.inner_text()
    assert "origin" in (await selected.get_attribute("class") or "")
    assert "CardDeclined" in await page.locator(".details-tags").inner_text()
    assert problems.messages == []


async def test_hostile_span_text_renders_as_text_and_runs_nothing(
    page: Page, dashboard_url: str, seeded: None
) -> None:
    problems = PageProblems(page)
    for path in (f"traces/{XSS_TRACE_ID}", "", "?view=search&operation=img"):
        await page.goto(dashboard_url + path)
        assert await page.evaluate("typeof window.__xss") == "undefined"
        assert await page.locator("img[src=x]").count() == 0
    await page.goto(f"{dashboard_url}traces/{XSS_TRACE_ID}")
    assert await page.locator("h1").inner_text() == XSS_IMG
    child = page.locator(".span-row").nth(1)
    assert XSS_SCRIPT in await child.inner_text()
    await child.click()
    tags = page.locator(".details-tags")
    assert await tags.locator("th").all_inner_texts() == [XSS_IMG, "q"]
    assert (await tags.locator("td").all_inner_texts())[0] == XSS_IMG
    assert await page.locator(".details-logs .log-message").inner_text() == XSS_IMG
    assert await page.evaluate("typeof window.__xss") == "undefined"
    assert problems.messages == []


async def test_a_thousand_span_trace_stays_usable(
    page: Page, dashboard_url: str, redis_url: str
) -> None:
    await export(redis_url, wide_trace(WIDE_TRACE_ID, 1200))
    problems = PageProblems(page)
    await page.goto(f"{dashboard_url}traces/{WIDE_TRACE_ID}")
    assert await page.locator(".span-row").count() == 1191
    await page.locator("[data-action=collapse-all]").click()
    assert await page.locator(".span-row:visible").count() == 11  # root and its handlers
    section = page.locator(".span-row", has_text="build section 3")
    await section.locator(".toggle").click()
    assert await page.locator(".span-row:visible").count() == 11 + 118
    await page.locator("[data-action=expand-all]").click()
    assert await page.locator(".span-row:visible").count() == 1191
    assert problems.messages == []


async def test_listings_link_to_the_trace(page: Page, dashboard_url: str, seeded: str) -> None:
    problems = PageProblems(page)
    await page.goto(f"{dashboard_url}?view=slow")
    await page.locator("a.op", has_text="GET /checkout").click()
    await page.wait_for_url(f"**/traces/{SLOW_TRACE_ID}")
    await page.goto(f"{dashboard_url}?view=errors&day={seeded}")
    await page.locator("a.op", has_text="POST /checkout").click()
    await page.wait_for_url(f"**/traces/{ERROR_TRACE_ID}")
    assert "payment" in await page.locator(".span-row.origin").inner_text()
    assert problems.messages == []


async def test_screenshot_of_the_seed_slow_trace(
    page: Page, dashboard_url: str, redis_url: str
) -> None:
    """Saves a picture of the seed's slow checkout, orders selected, to artifacts/.

    The trace has fixed times and ids, so the picture only changes when the page
    does. ``ASYNCTRACE_UPDATE_DOCS=1`` also copies it to docs/ for the README; a
    plain test run leaves the committed file alone.
    """
    await export(
        redis_url,
        slow_checkout(start=SEED_START_MS),
        *(fast_checkout(number) for number in range(5)),
    )
    problems = PageProblems(page)
    await page.set_viewport_size({"width": 1360, "height": 660})
    await page.goto(f"{dashboard_url}traces/{SLOW_TRACE_ID}")
    assert "2026-11-27 09:40:00.000 UTC" in await page.locator(".trace-meta").inner_text()
    target = await screenshot_path("slow-trace.png")
    await page.screenshot(path=target, full_page=True)
    if os.environ.get("ASYNCTRACE_UPDATE_DOCS") == "1":
        await asyncio.to_thread(README_SCREENSHOT.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, target, README_SCREENSHOT)
    assert problems.messages == []


async def _span_id(page: Page, service: str) -> str:
    row = page.locator(".span-row", has=page.locator(".svc", has_text=service)).first
    row_id = await row.get_attribute("id")
    assert row_id is not None
    return row_id.removeprefix("span-")
