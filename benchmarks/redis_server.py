"""The benchmarks' own redis-server (see ``asynctrace.testing``); never the shared 6379."""

from __future__ import annotations

from asynctrace.testing import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
