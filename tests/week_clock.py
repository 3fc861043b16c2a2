"""A fixed-shape clock for aggregate tests: the next Monday 12:30 UTC.

Aggregates expire a lifetime after their hour (``EXPIREAT``) on the test session's
real redis-server, which keeps real time, so a pinned calendar date rots: once the
date is older than the lifetime, Redis deletes what the test just wrote. A "now" on
the next Monday keeps the weekday and hour the tests build on, and every hour a test
writes (up to five weeks before it) stays alive on any date it runs.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

__all__ = ["HOUR_MS", "next_monday_1230_ms", "utc_text"]

HOUR_MS = 3_600_000.0


def next_monday_1230_ms(present_s: float | None = None) -> float:
    """Epoch ms of the first Monday 12:30 UTC strictly after ``present_s`` (default: now)."""
    present = datetime.fromtimestamp(time.time() if present_s is None else present_s, UTC)
    monday = (present - timedelta(days=present.weekday())).replace(
        hour=12, minute=30, second=0, microsecond=0
    )
    while monday <= present:
        monday += timedelta(days=7)
    return monday.timestamp() * 1000.0


def utc_text(epoch_ms: float, pattern: str = "%Y-%m-%d %H:%M") -> str:
    """``epoch_ms`` formatted in UTC, as the CLI prints and reads times."""
    return datetime.fromtimestamp(epoch_ms / 1000.0, UTC).strftime(pattern)
