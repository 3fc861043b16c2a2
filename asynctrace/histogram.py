"""Fixed log-spaced duration buckets, and the sparse histogram that counts into them.

Every process, every hour and every service uses the same bucket bounds, so
histograms merge exactly: adding the counts of 24 hour-histograms gives the
histogram of all the day's samples, bucket for bucket. That is what lets weeks of
per-hour aggregates answer "p95 over the last 7 days" without keeping samples.

Bucket 0 holds everything below ``MIN_MS``; bucket ``i >= 1`` holds
``[MIN_MS * GROWTH**(i-1), MIN_MS * GROWTH**i)``; the last bucket (``BUCKET_COUNT - 1``)
also takes everything above ``MAX_MS``. A quantile is answered with the
representative value of the bucket the exact nearest-rank sample falls into,
``2 * low * high / (low + high)``, whose relative error to any value of the bucket
is at most ``(GROWTH - 1) / (GROWTH + 1)``: 4.8 % for ``GROWTH = 1.1``
(``RELATIVE_ERROR``). Below ``MIN_MS`` and above ``MAX_MS`` the error is unbounded,
which no request-level question notices (10 µs; 1 hour).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "BUCKET_COUNT",
    "GROWTH",
    "MAX_MS",
    "MIN_MS",
    "RELATIVE_ERROR",
    "Histogram",
    "bucket_bounds",
    "bucket_of",
    "bucket_value",
]

GROWTH = 1.1
MIN_MS = 0.01
MAX_MS = 3_600_000.0
_LOG_GROWTH = math.log(GROWTH)
# Buckets 1..N-2 are the log-spaced ones up to MAX_MS; N-1 is the overflow bucket.
BUCKET_COUNT = math.ceil(math.log(MAX_MS / MIN_MS) / _LOG_GROWTH) + 2
RELATIVE_ERROR = (GROWTH - 1.0) / (GROWTH + 1.0)
"""Largest relative error of a quantile between ``MIN_MS`` and ``MAX_MS`` (4.8 %)."""
# The exclusive high bound of buckets 0..N-2, computed as ``bucket_bounds`` does.
_UPPER_BOUNDS = tuple(MIN_MS * GROWTH**index for index in range(BUCKET_COUNT - 1))


def bucket_of(duration_ms: float) -> int:
    """The bucket a duration in milliseconds counts into (0..``BUCKET_COUNT - 1``)."""
    if not duration_ms >= MIN_MS:  # also NaN and negatives
        return 0
    # The bounds below it, counted by binary search in C: exact at every bound, and a
    # third of the cost of a log (the exporter buckets every server span).
    return bisect_right(_UPPER_BOUNDS, duration_ms)


def bucket_bounds(index: int) -> tuple[float, float]:
    """``(low, high)`` milliseconds of bucket ``index``: low inclusive, high exclusive.

    Bucket 0 is ``(0, MIN_MS)``; the overflow bucket's high is ``math.inf``.
    """
    if index <= 0:
        return 0.0, MIN_MS
    high = math.inf if index >= BUCKET_COUNT - 1 else MIN_MS * GROWTH**index
    return MIN_MS * GROWTH ** (index - 1), high


def bucket_value(index: int) -> float:
    """The value a quantile in bucket ``index`` is reported as, in milliseconds."""
    low, high = bucket_bounds(index)
    if index <= 0:
        return MIN_MS / 2.0
    if math.isinf(high):
        return low
    # Minimises the largest relative error over [low, high): (g - 1) / (g + 1).
    return 2.0 * low * high / (low + high)


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts per bucket (sparse: absent buckets are 0). Immutable; ``merge`` adds."""

    counts: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, durations_ms: Iterable[float]) -> Histogram:
        """The histogram of these samples."""
        counts: dict[int, int] = {}
        for duration in durations_ms:
            index = bucket_of(duration)
            counts[index] = counts.get(index, 0) + 1
        return cls(counts)

    @property
    def total(self) -> int:
        """How many samples were counted."""
        return sum(self.counts.values())

    def merge(self, *others: Histogram) -> Histogram:
        """The histogram of this one's samples and theirs together (exact)."""
        counts = dict(self.counts)
        for other in others:
            for index, count in other.counts.items():
                counts[index] = counts.get(index, 0) + count
        return Histogram(counts)

    def quantile(self, q: float) -> float | None:
        """The nearest-rank ``q`` quantile (0 < q <= 1) in ms, as its bucket's value.

        None when the histogram is empty. Within ``RELATIVE_ERROR`` of the exact
        nearest-rank quantile of the samples (between ``MIN_MS`` and ``MAX_MS``).
        """
        if not 0.0 < q <= 1.0:
            raise ValueError("q must be in (0, 1]")
        total = self.total
        if total <= 0:
            return None
        rank = max(1, math.ceil(q * total - 1e-9))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return bucket_value(index)
        return bucket_value(max(self.counts))

    def count_at_least(self, threshold_ms: float) -> int:
        """Samples whose bucket's value is at least ``threshold_ms``.

        Buckets are counted whole, so a sample is judged by its bucket's value: the
        count is exact for samples more than ``RELATIVE_ERROR`` from the threshold.
        """
        return sum(
            count for index, count in self.counts.items() if bucket_value(index) >= threshold_ms
        )
