"""Span timestamps: Unix epoch milliseconds from one monotonic clock read.

A span needs a wall-clock start (to place it in time) and a monotonic duration (so
a clock step cannot make it negative). Reading both clocks at every start costs a
second clock read on the request path; instead the offset between them is kept here
and a start is ``perf_counter() * 1000 + offset_ms``. Both clocks are slewed alike
by NTP, so the offset only moves when the wall clock is stepped; the export task
calls ``resync()`` before every batch, which follows such a step within one batch.
"""

from __future__ import annotations

from time import perf_counter, time

__all__ = ["RESYNC_THRESHOLD_MS", "now_ms", "offset_ms", "resync", "wall_ms"]

# Below this the two clocks are taken to agree: re-reading them differs by the time
# between the two reads, and moving the offset by that would only add jitter.
RESYNC_THRESHOLD_MS = 1.0


def _measured_offset_ms() -> float:
    return time() * 1000.0 - perf_counter() * 1000.0


# Wall-clock milliseconds minus perf_counter() milliseconds. Read as
# ``clock.offset_ms`` (the span path adds it inline); written only by resync().
offset_ms = _measured_offset_ms()


def wall_ms(perf_s: float) -> float:
    """The epoch milliseconds of a ``perf_counter()`` reading."""
    return perf_s * 1000.0 + offset_ms


def now_ms() -> float:
    """Epoch milliseconds now, on the same clock as span start times."""
    return perf_counter() * 1000.0 + offset_ms


def resync() -> bool:
    """Follow a step of the wall clock; True when the offset moved. Never blocks."""
    global offset_ms
    measured = _measured_offset_ms()
    if abs(measured - offset_ms) <= RESYNC_THRESHOLD_MS:
        return False
    offset_ms = measured
    return True
