"""Milliseconds for a person: one set of rules for every sentence, table and page."""

from __future__ import annotations

import pytest

from asynctrace.analysis import format_ms


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0 ms"),
        (-3.0, "0 ms"),
        (0.04, "<0.1 ms"),
        (0.25, "0.2 ms"),
        (0.4, "0.4 ms"),
        (4.5, "4.5 ms"),
        (5.0, "5 ms"),
        (9.96, "10 ms"),
        (10.0, "10 ms"),
        (42.4, "42 ms"),
        (999.0, "999 ms"),
        (2500.444, "2,500 ms"),
        (2565.4, "2,565 ms"),
        (5100.0, "5,100 ms"),
    ],
)
def test_durations_read_in_milliseconds_at_a_useful_precision(value: float, text: str) -> None:
    assert format_ms(value) == text
