"""HTTP spans whatever the framework: operation names, request tags, status, option checks.

The aiohttp and ASGI server middleware and the aiohttp and httpx clients make the same
spans: the same names (``"GET /orders/{order_id}"``, ``"HTTP POST payment:8080"``),
the same tags and the same rules for what is an error. They share this module so the
dashboard and the aggregates cannot tell which framework served a request.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from asynctrace._ratelimit import report_internal_error
from asynctrace.context import ActiveSpan
from asynctrace.model import Span, SpanContext
from asynctrace.propagation import PEER_SERVICE_TAG, caller_service

__all__ = [
    "LONGEST_TAG_KEY",
    "STATUS_TEXT",
    "client_operation",
    "fail_server_span",
    "method_name",
    "record_client_error",
    "record_status",
    "tag_caller",
    "tag_request",
    "unmatched_name",
    "valid_paths",
    "valid_service",
    "valid_status",
    "without_url_secrets",
]

# Methods RFC 9110 (and RFC 5789, PATCH) define. Any other method is a client's free
# choice, so it is named "HTTP" in an operation: operation names feed per-operation
# aggregates and must stay low-cardinality. The http.method tag keeps the real one.
_KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
_OTHER_METHOD = "HTTP"
# Requests no route matched (404, 405) share one operation per method, never the
# raw path, which is whatever a scanner made up.
_UNMATCHED = "(unmatched)"
_UNMATCHED_NAMES = {method: f"{method} {_UNMATCHED}" for method in _KNOWN_METHODS}
_OTHER_UNMATCHED_NAME = f"{_OTHER_METHOD} {_UNMATCHED}"

# Tags a server span gets, at most: http.method, http.path, http.route, http.host,
# net.peer.ip, http.status, plus error and error.type from a failure.
_SERVER_TAG_COUNT = 8
LONGEST_TAG_KEY = len(PEER_SERVICE_TAG)
"""Our longest tag key; keys are clipped like values, so the limit must fit it too."""

STATUS_TEXT = {status: str(status) for status in range(100, 600)}
"""Tag text of every HTTP status, made once."""


def method_name(method: str) -> str:
    """``method`` as an operation name writes it: itself when RFC 9110 defines it, else HTTP."""
    return method if method in _KNOWN_METHODS else _OTHER_METHOD


def unmatched_name(method: str) -> str:
    """The operation of a request no route matched: ``"GET (unmatched)"``."""
    return _UNMATCHED_NAMES.get(method, _OTHER_UNMATCHED_NAME)


def client_operation(method: str, host: str) -> str:
    """The operation of an outgoing request: ``"HTTP POST payment:8080"``."""
    return f"HTTP {method} {host}"


def tag_request(
    server: Span,
    method: str,
    path: str,
    template: str | None,
    host: str | None,
    remote: str | None,
) -> None:
    """Tag a server span with its request: method, path, route, Host header, peer address.

    ``None`` values are left out. Never raises (``set_tag`` does not).
    """
    limits = server.limits
    longest = limits.max_string_length
    if (
        limits.max_tags >= _SERVER_TAG_COUNT
        and longest >= LONGEST_TAG_KEY
        and len(path) <= longest
        and len(method) <= longest
        and (template is None or len(template) <= longest)
        and (host is None or len(host) <= longest)
        and (remote is None or len(remote) <= longest)
    ):
        # Nothing here needs clipping or counting: write the dict directly, in
        # one literal when every tag is there (a fifth of the cost of set_tag()).
        if template is not None and host is not None and remote is not None:
            server._tags = {
                "http.method": method,
                "http.path": path,
                "http.route": template,
                "http.host": host,
                "net.peer.ip": remote,
            }
        else:
            tags = server._tags = {"http.method": method, "http.path": path}
            if template is not None:
                tags["http.route"] = template
            if host is not None:
                tags["http.host"] = host
            if remote is not None:
                tags["net.peer.ip"] = remote
    else:
        server.set_tag("http.method", method)
        server.set_tag("http.path", path)
        if template is not None:
            server.set_tag("http.route", template)
        if host is not None:
            server.set_tag("http.host", host)
        if remote is not None:
            server.set_tag("net.peer.ip", remote)


def tag_caller(server: Span, parent: SpanContext) -> None:
    """Tag ``peer.service`` with the caller named in ``parent``'s tracestate, if any.

    The caller's service, when it is traced by asynctrace too: the service map's
    edge, and kept with the span for imports and readers. Never raises.
    """
    if not parent.tracestate:
        return
    caller = caller_service(parent.tracestate)
    if caller is None:
        return
    # With room and nothing to clip, no set_tag() call.
    written = server._tags
    limits = server.limits
    if (
        written is not None
        and len(written) < limits.max_tags
        and limits.max_string_length >= LONGEST_TAG_KEY
        and len(caller) <= limits.max_string_length
    ):
        written[PEER_SERVICE_TAG] = caller
    else:
        server.set_tag(PEER_SERVICE_TAG, caller)


def record_status(server: Span, status: int, error_status: int) -> None:
    """Tag ``http.status``, and mark the span ``error`` at ``error_status`` or above."""
    text = STATUS_TEXT.get(status) or str(status)
    tags = server._tags
    limits = server.limits
    if (
        tags is not None
        and len(tags) < limits.max_tags
        and limits.max_string_length >= LONGEST_TAG_KEY
    ):
        tags["http.status"] = text
    else:
        server.set_tag("http.status", text)  # counts the drop or clips
    if status >= error_status:
        server.set_status("error")


def fail_server_span(
    server: ActiveSpan, exc: BaseException, *, timeout_status: str = "504"
) -> None:
    """End the span of a request whose handler raised: an error, or a cancellation.

    The status tag is what the framework answers for an unhandled exception: 500,
    and ``timeout_status`` for a timeout (aiohttp answers 504; Starlette 500).
    """
    try:
        if isinstance(exc, Exception):
            timed_out = isinstance(exc, asyncio.TimeoutError)
            server.set_tag("http.status", timeout_status if timed_out else "500")
    except Exception as inner:
        report_internal_error("server span finish failed", inner)
    finally:
        # Records the exception (error, logged) or the cancellation (cancelled=true).
        server.__exit__(type(exc), exc, exc.__traceback__)


def record_client_error(client: Span, exc: BaseException) -> None:
    """Record why an outgoing request failed: cancelled, or the error without URL secrets."""
    if isinstance(exc, asyncio.CancelledError):
        client.set_tag("cancelled", "true")
    elif isinstance(exc, Exception):
        name = type(exc).__name__
        client.set_tag("error.type", name)
        # Not record_exception(): client libraries' messages quote the full URL, and
        # its query string may hold secrets.
        text = without_url_secrets(str(exc))
        client.set_status("error", f"{name}: {text}" if text else name)


# scheme://, then userinfo (dropped), then host and path (kept), then ?query#fragment
# (dropped), each ending at whitespace or a quote as client libraries quote URLs.
_URL_SECRETS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://)(?:[^/\s'\"@?#]*@)?([^\s'\"?#]*)[^\s'\"]*")


def without_url_secrets(text: str) -> str:
    """``text`` with userinfo, query strings and fragments cut out of any URL in it."""
    return _URL_SECRETS.sub(r"\1\2", text)


# -- option validation -----------------------------------------------------------------


def valid_service(service: object) -> str | None:
    """``service`` if it is None or a non-blank string; raises ``ValueError`` otherwise."""
    if service is None:
        return None
    if not isinstance(service, str) or not service.strip():
        raise ValueError("service must be a non-empty string or None")
    return service


def valid_status(error_status: object) -> int:
    """``error_status`` if it is an int from 100 to 999; raises ``ValueError`` otherwise."""
    if isinstance(error_status, bool) or not isinstance(error_status, int):
        raise ValueError("error_status must be an int HTTP status")
    if not 100 <= error_status <= 999:
        raise ValueError("error_status must be between 100 and 999")
    return error_status


def valid_paths(paths: object) -> frozenset[str]:
    """``paths`` as a frozenset of paths starting with "/"; raises ``ValueError`` otherwise."""
    # Options are checked as objects: callers without a type checker pass anything.
    if isinstance(paths, str) or not isinstance(paths, Iterable):
        raise ValueError("exclude_paths must be a collection of paths (not one string)")
    result = frozenset(paths)
    for path in result:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("exclude_paths must hold paths starting with '/'")
    return result
