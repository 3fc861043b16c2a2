"""The test session's throwaway redis-server (see ``asynctrace.testing``)."""

from __future__ import annotations

from asynctrace.testing import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
