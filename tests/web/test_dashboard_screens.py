"""The dashboard as a new user sees it: headless Chromium at 1400 x 1000 on the demo's data.

Each test serves the demo's traces (and four weeks of history for the Patterns
page; see ``demo_data.py``) to Chromium, checks what issue 15 found wrong on one
page, and saves a screenshot of the page (``screenshots.py`` says where).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest
from demo_data import PATTERN_OPERATION, PATTERN_SERVICE, DemoData
from page_problems import PageProblems
from screenshots import screenshot_path

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1400, 1000


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def _screenshot(page: Page, name: str) -> None:
    await page.screenshot(path=await screenshot_path(f"{name}.png"), full_page=True)


def _rgb(css: str) -> tuple[float, float, float]:
    """A computed colour, ``rgb(1, 2, 3)`` or Chromium's ``color(srgb 0.1 0.2 0.3)``
    (what ``color-mix`` computes to), as 0..1 channels."""
    numbers = [float(part) for part in re.findall(r"[0-9.]+", css)]
    if css.startswith("color("):
        return numbers[0], numbers[1], numbers[2]
    return numbers[0] / 255, numbers[1] / 255, numbers[2] / 255


def _contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two computed colours (1 to 21)."""

    def luminance(css: str) -> float:
        channels = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in _rgb(css)]
        return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


async def _background(page: Page, selector: str) -> str:
    color = await page.locator(selector).first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert isinstance(color, str)
    return color


async def _is_cut(locator: Locator) -> bool:
    """Whether the element's text is clipped (by an ellipsis or overflow)."""
    return bool(await locator.evaluate("e => e.scrollWidth > e.clientWidth + 0.5"))


async def test_the_trace_page_gives_the_timeline_the_room_and_shows_whole_names(
    page: Page, demo_url: str, demo_data: DemoData
) -> None:
    problems = PageProblems(page)
    await page.goto(f"{demo_url}traces/{demo_data.result.slow_trace_id}")
    await _screenshot(page, "trace-slow")

    timeline = await page.locator(".span-row .timeline").first.bounding_box()
    label = await page.locator(".span-row .label").first.bounding_box()
    assert timeline is not None
    assert label is not None
    assert timeline["width"] >= 0.45 * WIDTH
    assert timeline["width"] >= 3 * label["width"]

    # Every operation name is whole, inside the timeline, and on the row's tooltip.
    rows = await page.locator(".span-row").all()
    api = await page.request.get(f"{demo_url}api/traces/{demo_data.result.slow_trace_id}")
    report = await api.json()
    assert len(rows) == len(report["spans"]) >= 9  # the demo's services and its queries
    for row in rows:
        name = row.locator(".bar-label")
        operation = await name.locator(".op").inner_text()
        assert not await _is_cut(name.locator(".op")), operation
        box = await name.bounding_box()
        assert box is not None
        assert timeline["x"] <= box["x"]
        assert box["x"] + box["width"] <= timeline["x"] + timeline["width"]
        title = await row.get_attribute("title") or ""
        assert title.startswith(f"{await row.locator('.svc').inner_text()} · {operation} · ")
    assert "HTTP POST 127.0.0.1:" in await page.locator(".bar-label").nth(1).inner_text()
    # A narrower window moves the names along (on the next frames), still inside.
    await page.set_viewport_size({"width": 1180, "height": HEIGHT})
    await page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    narrow = await page.locator(".span-row .timeline").first.bounding_box()
    assert narrow is not None
    for name in await page.locator(".bar-label").all():
        box = await name.bounding_box()
        assert box is not None
        assert narrow["x"] <= box["x"]
        assert box["x"] + box["width"] <= narrow["x"] + narrow["width"] + 0.5
    await page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    await rows[1].click()
    assert (await page.locator(".details-op").inner_text()).startswith("HTTP POST 127.0.0.1:")

    # The critical path is solid colour, plainly darker than the rest of a bar.
    orders = page.locator(".span-row.bottleneck")
    crit = await orders.locator(".crit").first.evaluate("e => getComputedStyle(e).backgroundColor")
    rest = await orders.locator(".bar").evaluate("e => getComputedStyle(e).backgroundColor")
    assert _contrast(crit, rest) >= 3.0, (crit, rest)
    # The span holding the critical path longest (orders' slow query, whose time is
    # orders' own) is solid across nearly all of its bar, at the bar's full height.
    coverage = []
    for row in await page.locator(".span-row").all():
        bar_box = await row.locator(".bar").bounding_box()
        crit_boxes = [await c.bounding_box() for c in await row.locator(".crit").all()]
        boxes = [box for box in crit_boxes if box is not None]
        if bar_box is not None and boxes:
            coverage.append((sum(box["width"] for box in boxes), bar_box, boxes))
    widest, bar_box, boxes = max(coverage, key=lambda item: item[0])
    assert widest >= 0.9 * bar_box["width"]
    assert min(box["height"] for box in boxes) >= bar_box["height"] - 2

    # The difference is stated once, at the span whose own time took it: orders' slow
    # query (the demo's orders does its slow work as a database query).
    card = page.locator(".compare-finding .deviations li")
    big = [text for text in await card.all_inner_texts() if re.match(r"\+\d,\d{3} ms", text)]
    assert len(big) == 1, big
    assert "orders postgres SELECT" in big[0]
    slower_rows = page.locator(".span-row:has(.delta.slower)")
    slower = await slower_rows.locator(".delta.slower").all_inner_texts()
    assert len([text for text in slower if re.match(r"\+\d,\d{3} ms", text)]) == 1
    query = slower_rows.filter(has_text="SELECT")
    assert await query.count() == 1
    assert await orders.locator(".delta.inherited").count() == 1  # slower only through it
    assert await page.locator(".span-row .delta.inherited").count() >= 3  # and its callers
    assert problems.messages == []


async def test_the_failed_trace_keeps_badges_and_error_hops_on_one_line(
    page: Page, demo_url: str, demo_data: DemoData
) -> None:
    problems = PageProblems(page)
    await page.goto(f"{demo_url}traces/{demo_data.result.error_trace_id}")
    await _screenshot(page, "trace-failed")

    payment = page.locator(".span-row.origin")
    assert await payment.locator(".svc").inner_text() == "payment"
    assert not await _is_cut(payment.locator(".svc"))
    assert not await _is_cut(payment.locator(".bar-label .op"))
    badges = await payment.locator(".badge").all_inner_texts()
    assert badges == ["origin", "bottleneck"]

    hops = await page.locator("#error-chain .hops li a").all()
    assert len(hops) == 5
    for hop in hops:
        box = await hop.bounding_box()
        assert box is not None
        assert box["height"] < 30, await hop.inner_text()  # one line
        for part in (".hop-service", ".hop-op"):
            assert not await _is_cut(hop.locator(part)), await hop.inner_text()
    services = await page.locator("#error-chain .hop-service").all_inner_texts()
    assert services == ["payment", "orders", "orders", "api-gateway", "api-gateway"]
    assert await page.locator("#error-chain .hop-http").all_inner_texts() == [
        "HTTP 500",
        "HTTP 500",
        "HTTP 502",
        "HTTP 502",
        "HTTP 502",
    ]
    assert problems.messages == []


_UNIT_S = {"s": 1.0, "min": 60.0, "h": 3600.0}


def _per_s(text: str) -> tuple[float, float]:
    """``1.39/h`` as a rate per second and the rounding of its last digit (per second);
    the number must read at least 1 unless in hours."""
    matched = re.fullmatch(r"([0-9][0-9,]*)(?:\.([0-9]+))?/(s|min|h)", text)
    assert matched is not None, text
    value = float(matched[1].replace(",", "") + "." + (matched[2] or "0"))
    assert value > 0, text
    assert value >= 1 or matched[3] == "h", text
    unit_s = _UNIT_S[matched[3]]
    return value / unit_s, 0.5 * 10 ** -len(matched[2] or "") / unit_s


async def test_stats_and_map_show_rates_in_a_unit_that_gives_a_real_number(
    page: Page, demo_url: str
) -> None:
    problems = PageProblems(page)
    await page.goto(f"{demo_url}stats")
    await _screenshot(page, "stats")
    api = await (await page.request.get(f"{demo_url}api/stats?since=24h")).json()
    expected = {(row["service"], row["operation"]): row["current"] for row in api["rows"]}
    rows = await page.locator("table.stats tbody tr").all()
    assert len(rows) == len(expected) >= 8
    for row in rows:
        cells = await row.locator("td").all_inner_texts()
        current = expected[(cells[0], cells[1])]
        # The shown rate is the stored one, rounded in its last digit.
        shown, rounding = _per_s(cells[3])
        assert abs(shown - current["count"] / current["seconds"]) <= rounding * 1.0001

    await page.goto(f"{demo_url}map")
    rates = await page.locator("table.traces tbody td:nth-child(4)").all_inner_texts()
    assert len(rates) == 4
    assert all(_per_s(rate)[0] > 0 for rate in rates)
    labels = await page.locator("svg.service-map .edge text").all_text_contents()
    assert all(_per_s(label.split(" · ")[0])[0] > 0 for label in labels)
    assert problems.messages == []


async def test_the_map_flows_left_to_right_with_names_in_their_boxes_and_labels_off_the_lines(
    page: Page, demo_url: str
) -> None:
    problems = PageProblems(page)
    await page.goto(f"{demo_url}map")
    await _screenshot(page, "map")
    geometry = await page.locator("svg.service-map").evaluate(_MAP_GEOMETRY)

    nodes = geometry["nodes"]
    assert set(nodes) == {"api-gateway", "auth", "orders", "payment", "inventory"}
    for name, node in nodes.items():
        assert node["text"]["width"] <= node["rect"]["width"] - 12, name  # the name fits
    for edge in geometry["edges"]:
        caller, callee = nodes[edge["caller"]]["rect"], nodes[edge["callee"]]["rect"]
        assert caller["x"] + caller["width"] < callee["x"], edge  # callers left
    columns = {round(node["rect"]["x"] + node["rect"]["width"] / 2) for node in nodes.values()}
    assert len(columns) == 3  # gateway; auth and orders; payment and inventory

    # No label touches a line, another label or a box.
    labels = [edge["label"] for edge in geometry["edges"]]
    for edge in geometry["edges"]:
        for point in edge["points"]:
            for label in labels:
                assert not _inside(point, label, margin=1.0), (edge["caller"], edge["callee"])
    boxes = labels + [node["rect"] for node in nodes.values()]
    for index, first in enumerate(boxes):
        for second in boxes[index + 1 :]:
            assert not _overlap(first, second), (first, second)

    # The drawing fills the page's width.
    svg = await page.locator("svg.service-map").bounding_box()
    main = await page.locator("main .page-head").bounding_box()
    assert svg is not None
    assert main is not None
    assert svg["width"] >= 0.85 * main["width"]
    assert problems.messages == []


_MAP_GEOMETRY = """svg => {
  const box = (e) => {
    const b = e.getBBox();
    return {x: b.x, y: b.y, width: b.width, height: b.height};
  };
  const nodes = {};
  for (const g of svg.querySelectorAll(".node")) {
    const rect = box(g.querySelector("rect"));
    nodes[g.dataset.service] = {rect, text: box(g.querySelector("text"))};
  }
  const edges = [];
  for (const g of svg.querySelectorAll(".edge")) {
    const path = g.querySelector("path");
    const length = path.getTotalLength();
    const points = [];
    for (let at = 0; at <= length; at += 3) {
      const p = path.getPointAtLength(at);
      points.push([p.x, p.y]);
    }
    const label = box(g.querySelector("text"));
    edges.push({caller: g.dataset.caller, callee: g.dataset.callee, label, points});
  }
  return {nodes, edges};
}"""


def _inside(point: list[float], box: dict[str, float], *, margin: float) -> bool:
    x, y = point
    return (
        box["x"] - margin <= x <= box["x"] + box["width"] + margin
        and box["y"] - margin <= y <= box["y"] + box["height"] + margin
    )


def _overlap(first: dict[str, float], second: dict[str, float]) -> bool:
    return (
        first["x"] < second["x"] + second["width"]
        and second["x"] < first["x"] + first["width"]
        and first["y"] < second["y"] + second["height"]
        and second["y"] < first["y"] + first["height"]
    )


async def test_the_patterns_heatmap_makes_hot_hours_stand_out_with_a_legend(
    page: Page, demo_url: str, demo_data: DemoData
) -> None:
    problems = PageProblems(page)
    query = urlencode({"service": PATTERN_SERVICE, "operation": PATTERN_OPERATION})
    await page.goto(f"{demo_url}patterns?{query}")
    await _screenshot(page, "patterns")

    # One spot, or two when the two hours straddle the week's end (Sunday, Monday).
    assert await page.locator(".hot-spots li").count() in (1, 2)
    hot = await page.locator("table.heatmap td.hot").all()
    assert len(hot) == len(demo_data.hot_hours_ago)
    # The hot hours are the darkest cells, far from the typical ones and from hours
    # without requests.
    hot_colour = await hot[0].evaluate("e => getComputedStyle(e).backgroundColor")
    typical_colour = await _background(page, "table.heatmap td.heat-2")
    empty_colour = await _background(page, "table.heatmap td.heat-none")
    assert _contrast(hot_colour, typical_colour) >= 4.5
    assert _contrast(hot_colour, empty_colour) >= 4.5
    # The legend names the scale, the typical p95 of the sentence and the markings.
    legend = page.locator(".heat-legend")
    sentence = await page.locator(".hot-spots li").first.inner_text()
    typical = re.search(r"vs ([0-9,.]+ ms) typical", sentence)
    assert typical is not None
    assert typical[1] in await legend.locator(".heat-legend-title").inner_text()
    assert await legend.locator(".heat-scale li").count() == 8
    hot_class = (await hot[0].get_attribute("class") or "").split()[0]
    swatch = legend.locator(f".heat-scale .{hot_class}")
    assert await swatch.count() == 1
    assert await swatch.evaluate("e => getComputedStyle(e).backgroundColor") == hot_colour
    assert "2\u00d7 typical" in await legend.inner_text()
    assert "no requests" in await legend.inner_text()
    assert "recurring hot hour" in await legend.inner_text()
    assert problems.messages == []
