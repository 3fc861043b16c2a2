"""What a benchmark run was asked for: how long, and which load generator."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Options"]


@dataclass(frozen=True, slots=True)
class Options:
    """``quick``: a short pass that checks the scenarios run (numbers are not meaningful).
    ``load_tool``: "auto" (wrk, installed from Debian's packages if missing and
    possible, else the aiohttp loop), "wrk" or "loop"."""

    quick: bool = False
    load_tool: str = "auto"
