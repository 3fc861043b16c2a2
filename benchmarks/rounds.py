"""Interleaved rounds and their statistics: every variant measured side by side.

Each round runs every variant once, in an order that rotates from round to round,
so a machine that slows down (another process, a CPU frequency change) slows every
variant alike instead of whichever happened to run last. Results are summarised by
their median and their spread (interquartile range, and min/max).
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Summary",
    "interleaved",
    "interleaved_async",
    "median_difference",
    "median_ratio",
    "percentile",
]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) of ``values``, linearly interpolated."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median_ratio(values: Sequence[float], baselines: Sequence[float]) -> float:
    """The median of round-by-round ratios ``values[i] / baselines[i]``.

    Variants of one round ran side by side, so a slow spell of a shared machine
    (another tenant, a frequency change) scales both sides of a round's ratio alike:
    steadier than a ratio of medians taken over different spells.
    """
    return statistics.median(v / b for v, b in zip(values, baselines, strict=True))


def median_difference(values: Sequence[float], baselines: Sequence[float]) -> float:
    """The median of round-by-round differences ``values[i] - baselines[i]``."""
    return statistics.median(v - b for v, b in zip(values, baselines, strict=True))


@dataclass(frozen=True, slots=True)
class Summary:
    """Median and spread of one variant's samples."""

    median: float
    p25: float
    p75: float
    minimum: float
    maximum: float
    samples: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan, 0)
        return cls(
            statistics.median(values),
            percentile(values, 0.25),
            percentile(values, 0.75),
            min(values),
            max(values),
            len(values),
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median": self.median,
            "p25": self.p25,
            "p75": self.p75,
            "min": self.minimum,
            "max": self.maximum,
            "samples": self.samples,
        }


def _order(names: Sequence[str], round_number: int) -> list[str]:
    shift = round_number % len(names)
    return [*names[shift:], *names[:shift]]


def interleaved(variants: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each variant once per round (rotating the order); collect what each returns."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        for name in _order(names, round_number):
            gc.collect()
            samples[name].append(variants[name]())
    return samples


async def interleaved_async(
    variants: Mapping[str, Callable[[], Awaitable[float]]], rounds: int
) -> dict[str, list[float]]:
    """``interleaved`` for coroutine variants, run on the current loop."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        for name in _order(names, round_number):
            gc.collect()
            samples[name].append(await variants[name]())
    return samples
