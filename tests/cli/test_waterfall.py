"""The terminal waterfall, rendered to a fixed width without colour and compared exactly."""

from __future__ import annotations

import re

import pytest

from asynctrace.model import Trace
from asynctrace.terminal import render_waterfall
from tests.analysis.span_builder import TraceBuilder

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def sequential() -> Trace:
    """The gateway calls auth, then orders; orders calls payment at its end."""
    builder = TraceBuilder(1)
    builder.add("gateway", 0, 100, service="api-gateway", operation="GET /orders/{id}")
    builder.add("auth", 5, 15, parent="gateway", service="auth", operation="POST /verify")
    builder.add("orders", 20, 95, parent="gateway", service="orders", operation="GET /orders/{id}")
    builder.add("payment", 70, 90, parent="orders", service="payment", operation="POST /charges")
    return builder.build()


def parallel() -> Trace:
    """Two concurrent calls: only the one that ends last holds the request up."""
    builder = TraceBuilder(2)
    builder.add("orders", 0, 100, service="orders", operation="GET /orders/{id}")
    builder.add("stock", 10, 60, parent="orders", service="inventory", operation="GET /stock")
    builder.add("price", 10, 90, parent="orders", service="pricing", operation="GET /price")
    return builder.build()


def failing() -> Trace:
    """Payment fails; orders and the gateway answer 502 because of it."""
    builder = TraceBuilder(3)
    builder.add(
        "gateway",
        0,
        80,
        service="api-gateway",
        operation="POST /checkout",
        status="error",
        tags={"http.status": "502"},
    )
    builder.add(
        "orders",
        10,
        70,
        parent="gateway",
        service="orders",
        operation="POST /orders",
        status="error",
        tags={"http.status": "502"},
    )
    builder.add(
        "payment",
        20,
        60,
        parent="orders",
        service="payment",
        operation="POST /charges",
        status="error",
        logs=[("error", "CardProcessorError: unavailable")],
    )
    return builder.build()


def orphaned() -> Trace:
    """An inventory span whose parent never reached the store."""
    builder = TraceBuilder(4)
    builder.add("gateway", 0, 100, service="api-gateway", operation="GET /")
    builder.add("auth", 10, 30, parent="gateway", service="auth", operation="POST /verify")
    builder.add("late", 40, 100, parent="lost", service="inventory", operation="GET /stock")
    return builder.build()


def test_sequential_calls_show_the_root_waiting_and_the_critical_path() -> None:
    assert render_waterfall(sequential(), width=80, color=False) == "\n".join(
        [
            "trace 00000000000000000000000000000001  100 ms  4 spans  4 services",
            "                               0 ms                                100 ms",
            "  api-gateway GET /orders/{id} ███░░░███░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░███ 100 ms",
            "    auth POST /verify            █████                                     10 ms",
            "    orders GET /orders/{id}            ██████████████████████░░░░░░░███    75 ms",
            "      payment POST /charges                                 █████████      20 ms",
            "█ critical path  ░ other time",
        ]
    )


def test_parallel_calls_leave_the_earlier_one_off_the_critical_path() -> None:
    assert render_waterfall(parallel(), width=80, color=False) == "\n".join(
        [
            "trace 00000000000000000000000000000002  100 ms  3 spans  3 services",
            "                          0 ms                                     100 ms",
            "  orders GET /orders/{id} █████░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░█████ 100 ms",
            "    inventory GET /stock      ░░░░░░░░░░░░░░░░░░░░░░░░░                    50 ms",
            "    pricing GET /price        ███████████████████████████████████████      80 ms",
            "█ critical path  ░ other time",
        ]
    )


def test_error_spans_are_marked() -> None:
    assert render_waterfall(failing(), width=80, color=False) == "\n".join(
        [
            "trace 00000000000000000000000000000003  80 ms  3 spans  3 services  3 errors",
            "                             0 ms                                    80 ms",
            "✗ api-gateway POST /checkout ██████░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░██████ 80 ms",
            "✗   orders POST /orders           ███████░░░░░░░░░░░░░░░░░░░░░███████      60 ms",
            "✗     payment POST /charges             ███████████████████████            40 ms",
            "█ critical path  ░ other time  ✗ error",
        ]
    )


def test_orphans_are_shown_at_the_top_level_and_marked() -> None:
    assert render_waterfall(orphaned(), width=80, color=False) == "\n".join(
        [
            "trace 00000000000000000000000000000004  100 ms  3 spans  3 services",
            "                         0 ms                                      100 ms",
            "  api-gateway GET /      █████░░░░░░░░░██████████████████████████████████ 100 ms",
            "    auth POST /verify        ███████████                                   20 ms",
            "  ? inventory GET /stock                    ░░░░░░░░░░░░░░░░░░░░░░░░░░░░░  60 ms",
            "█ critical path  ░ other time  ? parent span missing",
        ]
    )


def test_narrow_terminal_cuts_names_not_bars() -> None:
    assert render_waterfall(sequential(), width=40, color=False) == "\n".join(
        [
            "trace 00000000000000000000000000000001 …",
            "                  0 ms     100 ms",
            "  api-gateway GE… █░█░░░░░░░░░░░█ 100 ms",
            "    auth POST /v… ███              10 ms",
            "    orders GET /…    ████████░░██  75 ms",
            "      payment PO…           ████   20 ms",
            "█ critical path  ░ other time",
        ]
    )


def test_ascii_only_draws_with_ascii() -> None:
    text = render_waterfall(failing(), width=80, color=False, ascii_only=True)
    assert text.isascii()
    assert "x   orders POST /orders           #######-------" in text


def test_no_critical_path_given_highlights_nothing() -> None:
    text = render_waterfall(sequential(), width=80, color=False, critical=())
    assert "█" not in text.split("\n", 2)[2].rsplit("\n", 1)[0]


@pytest.mark.parametrize("build", [sequential, parallel, failing, orphaned])
@pytest.mark.parametrize("width", [40, 57, 80, 133])
def test_every_line_fits_the_width(build: object, width: int) -> None:
    assert callable(build)
    for line in render_waterfall(build(), width=width, color=False).splitlines():
        assert len(line) <= width


@pytest.mark.parametrize("build", [sequential, failing, orphaned])
def test_colour_adds_escape_codes_and_nothing_else(build: object) -> None:
    assert callable(build)
    plain = render_waterfall(build(), width=80, color=False)
    coloured = render_waterfall(build(), width=80, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[" in coloured
    assert _ANSI.sub("", coloured) == plain


def test_services_get_different_colours_and_errors_red() -> None:
    coloured = render_waterfall(failing(), width=80, color=True)
    rows = coloured.splitlines()[2:5]
    codes = [re.findall(r"\x1b\[([0-9;]*)m", row) for row in rows]
    assert all(row_codes[0] == "1;31" for row_codes in codes)  # the error mark
    services = [[code for code in row_codes if code not in ("0", "1;31")] for row_codes in codes]
    assert len({row_codes[0] for row_codes in services}) == 3  # one colour per service


def test_a_trace_lasting_0_ms_still_draws_every_span() -> None:
    builder = TraceBuilder(5)
    builder.add("root", 0, 0, service="api-gateway", operation="GET /health")
    builder.add("child", 0, 0, parent="root", service="auth", operation="noop")
    lines = render_waterfall(builder.build(), width=60, color=False).splitlines()
    assert lines[2].startswith("  api-gateway GET /health ░")
    assert lines[3].startswith("    auth noop             ░")
    assert lines[2].endswith(" 0 ms")


def test_a_very_deep_trace_keeps_names_readable() -> None:
    builder = TraceBuilder(6)
    for depth in range(60):
        parent = f"s{depth - 1}" if depth else None
        builder.add(f"s{depth}", depth, 200 - depth, parent=parent, service=f"svc{depth}")
    lines = render_waterfall(builder.build(), width=80, color=False).splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "svc59" in lines[-2]
