"""The exceptions asynctrace raises to callers of its query and setup code.

Tracing on the request path never raises (see ``_ratelimit``); these are for the
store, the CLI and the dashboard, which report failures to a person.
"""

from __future__ import annotations

__all__ = ["AsynctraceError", "InvalidQueryError", "StoreUnavailableError"]


class AsynctraceError(Exception):
    """Root of every exception asynctrace raises on purpose."""


class StoreUnavailableError(AsynctraceError):
    """Redis could not be reached or did not answer; the message says where and why."""


class InvalidQueryError(AsynctraceError, ValueError):
    """A query argument is malformed (a trace id that is not 32 hex digits, a bad day)."""
