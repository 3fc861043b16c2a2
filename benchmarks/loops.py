"""Which event loop the benchmarks run on: asyncio's own, or uvloop (``--loop``).

Many production services run uvloop, and its costs differ from asyncio's (callbacks,
sockets, ``call_soon``), so every scenario can run on either. The choice travels to
the benchmark's own subprocesses (served apps, load loops) in an environment variable.
"""

from __future__ import annotations

import asyncio
import os

__all__ = ["LOOPS", "loop_name", "use_loop", "use_loop_from_env"]

LOOPS = ("asyncio", "uvloop")
_ENV = "ASYNCTRACE_BENCH_LOOP"


def use_loop(name: str) -> None:
    """Make ``asyncio.run`` here and in child processes use loop ``name``.

    Raises ``RuntimeError`` naming the package when uvloop is asked for and missing.
    """
    if name not in LOOPS:
        raise ValueError(f"unknown loop {name!r}; choose from {', '.join(LOOPS)}")
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise RuntimeError("uvloop is not installed (pip install uvloop)") from None
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    os.environ[_ENV] = name


def use_loop_from_env() -> None:
    """In a benchmark's subprocess: use the loop its parent chose."""
    use_loop(os.environ.get(_ENV, "asyncio"))


def loop_name() -> str:
    """The loop this process runs benchmarks on."""
    return os.environ.get(_ENV, "asyncio")
