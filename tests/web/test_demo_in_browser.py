"""Issue 6's "done when": after the demo, the dashboard leads a new user to both stories.

The demo's five real services write their traces to fakeredis; the dashboard serves
that store to headless Chromium, where a user clicks from the slow list to the
bottleneck waterfall and from the error list to the failing payment span. The demo
runs once per test session (``demo_data`` in ``conftest.py``); one test walks both
journeys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import fakeredis
import pytest
from demo_data import DemoData
from page_problems import PageProblems
from screenshots import screenshot_path

from asynctrace.demo import DemoResult
from asynctrace.model import utc_day
from asynctrace.store import TraceStore

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.browser

CARD_ERROR = "CardProcessorError: card processor unavailable (503 from acquirer)"


@pytest.fixture
def demo(demo_data: DemoData) -> DemoResult:
    return demo_data.result


@pytest.fixture
def demo_dashboard_url(demo_url: str) -> str:
    return demo_url


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1360, "height": 660})
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def test_demo_traces_lead_from_the_lists_to_the_bottleneck_and_the_failing_payment(
    page: Page, demo: DemoResult, demo_dashboard_url: str, demo_data: DemoData
) -> None:
    problems = PageProblems(page)

    # The slow list names the slow checkout; its row opens the bottleneck waterfall.
    await page.goto(f"{demo_dashboard_url}?view=slow")
    await page.locator(f'a.op[href="/traces/{demo.slow_trace_id}"]').click()
    await page.wait_for_url(f"**/traces/{demo.slow_trace_id}")
    finding = page.locator(".bottleneck-finding")
    assert (await finding.inner_text()).splitlines()[-1].startswith("orders is the bottleneck: ")
    bottleneck = page.locator(".span-row.bottleneck")
    assert await bottleneck.count() == 1
    assert await bottleneck.locator(".svc").inner_text() == "orders"
    assert await bottleneck.locator(".badge.slow").inner_text() == "bottleneck"
    assert "critical" in (await bottleneck.get_attribute("class") or "").split()
    assert await bottleneck.locator(".crit").count() >= 1
    # The sentence links to the span: following it selects orders and shows it.
    await page.locator(".span-row").first.click()
    await finding.locator("a[data-span-link]").click()
    assert await page.locator(".span-row.selected").get_attribute("id") == (
        await bottleneck.get_attribute("id")
    )
    assert await page.locator(".details-op").inner_text() == "POST /orders/{order_id}/checkout"
    await page.screenshot(path=await screenshot_path("demo-slow-trace.png"), full_page=True)

    # The error list names the failed checkout; its row opens on the error chain.
    # Its day, not "today": the demo may have run just before midnight UTC.
    client = fakeredis.FakeAsyncRedis(server=demo_data.server)
    try:
        failed = await TraceStore(client).get_trace(demo.error_trace_id)
    finally:
        await client.aclose()
    assert failed is not None
    await page.goto(f"{demo_dashboard_url}?view=errors&day={utc_day(failed.start_time)}")
    await page.locator(f'a.op[href="/traces/{demo.error_trace_id}"]').click()
    await page.wait_for_url(f"**/traces/{demo.error_trace_id}")
    chain = page.locator("#error-chain")
    assert f"payment failed first: {CARD_ERROR} (in POST /charges)" in await chain.inner_text()
    origin = chain.locator("li.origin a")
    assert await origin.locator(".hop-service").inner_text() == "payment"
    assert await origin.locator(".hop-op").inner_text() == "POST /charges"
    # Away from the origin, then back through its link: payment's span and its error.
    await page.locator(".span-row").first.click()
    assert await page.locator(".details-op").inner_text() != "POST /charges"
    await origin.click()
    selected = page.locator(".span-row.selected")
    assert await selected.locator(".svc").inner_text() == "payment"
    assert "origin" in (await selected.get_attribute("class") or "").split()
    details = page.locator(".details")
    assert await details.locator(".details-op").inner_text() == "POST /charges"
    assert "card processor unavailable (503 from acquirer)" in await details.inner_text()
    assert problems.messages == []
