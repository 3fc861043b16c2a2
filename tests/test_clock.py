"""Span times: one monotonic read per timestamp, placed on the wall clock by an offset."""

from __future__ import annotations

import time

import pytest

import asynctrace
from asynctrace import clock
from asynctrace.model import Span


def test_a_span_starts_at_the_wall_clock_time_and_ends_after_its_duration() -> None:
    before = time.time() * 1000.0
    with asynctrace.span("timed") as span:
        pass
    after = time.time() * 1000.0
    # The offset was measured at import: allow what clock.resync() would tolerate.
    slack = clock.RESYNC_THRESHOLD_MS + 1.0
    assert before - slack <= span.start_time <= after + slack
    assert span.duration >= 0.0
    assert span.end_time == span.start_time + span.duration


def test_resync_follows_a_step_of_the_wall_clock_and_ignores_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = clock.offset_ms
    monkeypatch.setattr(clock, "offset_ms", original)  # restored after the test
    assert not clock.resync()  # the clocks agree: nothing moves
    assert clock.offset_ms == original

    real_time = time.time
    monkeypatch.setattr(clock, "time", lambda: real_time() + 3600.0)  # stepped an hour on
    assert clock.resync()
    assert clock.offset_ms == pytest.approx(original + 3_600_000.0, abs=50.0)
    span = Span("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", None, "svc", "later")
    assert span.start_time == pytest.approx(time.time() * 1000.0 + 3_600_000.0, abs=50.0)


def test_log_lines_use_the_span_clock() -> None:
    with asynctrace.span("logged") as span:
        span.log("inside")
    (line,) = span.logs
    # Epoch ms near 2**41 are exact to about 0.2 microseconds: allow one.
    assert span.start_time - 0.001 <= line.timestamp <= span.end_time + 0.001
