"""Tracing for aiohttp: a server middleware, a client ``TraceConfig`` and ``setup(app)``.

The middleware makes one ``server`` span per request, continued from the caller's
trace headers and current while the handler runs; every response carries
``X-Trace-ID``. The client ``TraceConfig`` makes one ``client`` span per outgoing
request and injects the trace headers into it. Like all of asynctrace, nothing here
raises into the application because of tracing: internal failures are counted and
reported once, and the request goes on untraced.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Collection, Iterable
from types import SimpleNamespace
from typing import Any

from aiohttp import ClientResponseError, ClientSession, TraceConfig, hdrs, web
from aiohttp.tracing import (
    TraceRequestEndParams,
    TraceRequestExceptionParams,
    TraceRequestStartParams,
)
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute
from multidict import istr
from yarl import URL

from asynctrace import tracer as _tracing
from asynctrace._ratelimit import report_internal_error
from asynctrace.context import ActiveSpan, span
from asynctrace.model import Span
from asynctrace.propagation import (
    PEER_SERVICE_TAG,
    TRACE_ID_HEADER,
    TRACEPARENT_HEADER,
    caller_service,
    extract,
    inject,
)

__all__ = ["client_trace_config", "middleware", "setup"]

# istr keys skip multidict's case folding on every lookup and assignment.
_TRACEPARENT = istr(TRACEPARENT_HEADER)
_TRACE_ID = istr(TRACE_ID_HEADER)
_HOST = hdrs.HOST

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

# Routes are made at startup, so the cache stays small; the bound only matters for a
# process that keeps building applications (tests), which must not grow it forever.
_MAX_CACHED_ROUTES = 1024
# Tags the middleware writes, at most: http.method, http.path, http.route, http.host,
# net.peer.ip, http.status, plus error and error.type from a failure.
_SERVER_TAG_COUNT = 8
# Our longest tag key; keys are clipped like values, so the limit must fit it too.
_LONGEST_TAG_KEY = len(PEER_SERVICE_TAG)

_STATUS_TEXT = {status: str(status) for status in range(100, 600)}

# aiohttp >= 3.13 warns on plain-string request keys and offers typed ones.
_TRACE_ID_KEY: Any = (
    web.RequestKey("asynctrace_trace_id", str)
    if hasattr(web, "RequestKey")
    else "asynctrace_trace_id"
)
_SETUP_DONE = web.AppKey("asynctrace_setup_done", bool)
_FLUSH_TIMEOUT_S = web.AppKey("asynctrace_flush_timeout_s", float)
# Apps set up here that started and have not cleaned up yet, in this process: the
# last one to stop shuts the tracer down, the others only flush.
_running_apps = 0


def middleware(
    *,
    service: str | None = None,
    error_status: int = 400,
    exclude_paths: Collection[str] = (),
) -> Middleware:
    """Return an aiohttp middleware that traces every request as a ``server`` span.

    Args:
        service: the service name of this app's spans (default: ``configure()``'s).
        error_status: responses with this status or above mark the span ``error``.
        exclude_paths: request paths (exact, e.g. ``"/health"``) served untraced.

    The span continues the caller's trace (``traceparent``, else ``X-Trace-ID``),
    is named ``"{METHOD} {route template}"`` (``"GET (unmatched)"`` when no route
    matched) and is current while the handler runs. The response gets an
    ``X-Trace-ID`` header, error responses included; raised ``web.HTTPException``
    are recorded by their status, other exceptions as errors, and every exception is
    re-raised unchanged. Use ``setup(app)`` to put the header on responses aiohttp
    renders itself (its 500 page) and on responses prepared inside the handler.

    Raises ``ValueError`` for invalid options; the middleware itself never raises
    because of tracing.
    """
    return _ServerTracing(
        _valid_service(service),
        _valid_status(error_status),
        _valid_paths(exclude_paths),
        stores_trace_id=False,
    ).middleware


def setup(
    app: web.Application,
    service: str | None = None,
    *,
    error_status: int = 400,
    exclude_paths: Collection[str] = (),
    flush_timeout_s: float = 5.0,
) -> None:
    """Trace ``app``: add the middleware as the outermost one, a response hook, and
    a flush when the app stops.

    The ``on_response_prepare`` hook puts ``X-Trace-ID`` on every response the
    middleware cannot reach: the 500 page aiohttp renders for an unhandled exception
    and streamed responses prepared inside the handler. On the app's cleanup (after
    SIGTERM or Ctrl-C under ``web.run_app``), the spans finished so far are written
    within ``flush_timeout_s``; when the last app set up in this process stops, the
    tracer is shut down, and what could not be written in time is counted as
    dropped and logged in one line. Other options are those of ``middleware()``.
    Call it before the app starts; raises ``ValueError`` for invalid options or when
    ``app`` is already set up, ``RuntimeError`` (from aiohttp) when the app is frozen.
    """
    tracing = _ServerTracing(
        _valid_service(service),
        _valid_status(error_status),
        _valid_paths(exclude_paths),
        stores_trace_id=True,
    )
    timeout: object = flush_timeout_s
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ValueError("flush_timeout_s must be a number of seconds")
    if not 0 < timeout < math.inf:
        raise ValueError("flush_timeout_s must be above 0 and finite")
    if app.get(_SETUP_DONE):
        raise ValueError("asynctrace.aiohttp.setup() already ran for this application")
    app.middlewares.insert(0, tracing.middleware)
    app.on_response_prepare.append(_add_trace_id_on_prepare)
    app.on_startup.append(_count_running_app)
    app.on_cleanup.append(_flush_on_cleanup)
    app[_FLUSH_TIMEOUT_S] = float(timeout)
    app[_SETUP_DONE] = True


async def _count_running_app(app: web.Application) -> None:
    global _running_apps
    _running_apps += 1


async def _flush_on_cleanup(app: web.Application) -> None:
    """Write what is finished within the app's timeout; the last app to stop also
    shuts the tracer down (which counts and logs what it could not write)."""
    global _running_apps
    _running_apps = max(0, _running_apps - 1)
    tracer = _tracing.get_tracer()
    if tracer is None:
        return
    timeout_s = app[_FLUSH_TIMEOUT_S]
    try:
        if _running_apps:
            await tracer.flush(timeout_s)
        else:
            await tracer.shutdown(timeout_s)
    except Exception as exc:
        report_internal_error("flushing spans when the app stopped failed", exc)


def client_trace_config(*, error_status: int = 400) -> TraceConfig:
    """Return an ``aiohttp.TraceConfig`` that traces each outgoing request.

    Each request becomes a ``client`` span, a child of the current span, named
    ``"HTTP {METHOD} {host[:port]}"`` with tags ``http.method``, ``http.url`` (no
    query string, fragment or userinfo) and ``http.status``. It is an error when the
    request fails (connection, timeout, ``raise_for_status``) or the status is
    ``error_status`` or above. Redirects stay in the one span (tag
    ``http.redirects``). The span ends when the response is released (body read,
    ``release()``, or leaving ``async with``), so it covers the body download.
    ``traceparent``, ``tracestate``, ``X-Trace-ID`` and ``X-Span-ID`` are added to
    the request unless the caller set them. Raises ``ValueError`` for invalid options.
    """
    hooks = _ClientHooks(_valid_status(error_status))
    config = TraceConfig()
    config.on_request_start.append(hooks.on_request_start)
    config.on_request_end.append(hooks.on_request_end)
    config.on_request_exception.append(hooks.on_request_exception)
    return config


# -- server ----------------------------------------------------------------------------


class _ServerTracing:
    """One middleware's settings and its route-name cache."""

    __slots__ = ("error_status", "exclude_paths", "middleware", "names", "service", "stores")

    def __init__(
        self,
        service: str | None,
        error_status: int,
        exclude_paths: frozenset[str],
        *,
        stores_trace_id: bool,
    ) -> None:
        self.service = service
        self.error_status = error_status
        self.exclude_paths = exclude_paths
        self.stores = stores_trace_id
        # route -> (operation, route template)
        self.names: dict[AbstractRoute, tuple[str, str | None]] = {}
        self.middleware = self._make_middleware()

    def _make_middleware(self) -> Middleware:
        start = self.start
        finish = self.finish
        error_status = self.error_status

        @web.middleware
        async def asynctrace_middleware(
            request: web.Request, handler: Handler
        ) -> web.StreamResponse:
            try:
                server = start(request)
            except Exception as exc:
                report_internal_error("server span start failed", exc)
                server = None
            if server is None:
                return await handler(request)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                # Control flow (redirects, 404): a status, not a crash.
                finish(server, exc)
                raise
            except BaseException as exc:
                _fail(server, exc)
                raise
            # finish(server, response), inline for its common case (a response under the
            # error status, and room for the status tag): it saves a call per request.
            try:
                status = response.status
                tags = server._tags
                limits = server.limits
                if (
                    status < error_status
                    and tags is not None
                    and len(tags) < limits.max_tags
                    and limits.max_string_length >= _LONGEST_TAG_KEY
                ):
                    response.headers[_TRACE_ID] = server.trace_id
                    tags["http.status"] = _STATUS_TEXT.get(status) or str(status)
                    server.__exit__(None, None, None)
                    return response
            except Exception:  # finish() below records the status or reports the failure
                pass
            finish(server, response)
            return response

        return asynctrace_middleware

    def start(self, request: web.Request) -> ActiveSpan | None:
        """Start the request's span and make it current; None for an excluded path."""
        # rel_url.path is request.path without reify's first-access cost.
        path = request.rel_url.path
        if self.exclude_paths and path in self.exclude_paths:
            return None
        method = request.method
        route = request.match_info.route
        names = self.names.get(route)
        if names is None:
            names = self._names_of(route, method)
        operation, template = names

        headers = request.headers
        # Most requests carry no context: skip the parser for them.
        parent = extract(headers) if _TRACEPARENT in headers or _TRACE_ID in headers else None
        server = span(operation, kind="server", service=self.service, parent=parent)

        # The Host header itself, not request.host: for a request without one, aiohttp
        # before the fix of aio-libs/aiohttp#9308 falls back to socket.getfqdn(), a
        # blocking call on the loop. No header, no http.host tag.
        host = headers.get(_HOST)
        remote = request.remote
        limits = server.limits
        longest = limits.max_string_length
        if (
            limits.max_tags >= _SERVER_TAG_COUNT
            and longest >= _LONGEST_TAG_KEY
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
        if parent is not None and parent.tracestate:
            # The caller's service, when it is traced by asynctrace too: the service
            # map's edge, and kept with the span for imports and readers.
            caller = caller_service(parent.tracestate)
            if caller is not None:
                # As above: with room and nothing to clip, no set_tag() call.
                written = server._tags
                if (
                    written is not None
                    and len(written) < limits.max_tags
                    and longest >= _LONGEST_TAG_KEY
                    and len(caller) <= longest
                ):
                    written[PEER_SERVICE_TAG] = caller
                else:
                    server.set_tag(PEER_SERVICE_TAG, caller)
        if self.stores:
            request[_TRACE_ID_KEY] = server.trace_id
        server.__enter__()
        return server

    def _names_of(self, route: AbstractRoute, method: str) -> tuple[str, str | None]:
        resource = route.resource
        if resource is None:
            # A SystemRoute (404/405): made per request, so never cached.
            return _UNMATCHED_NAMES.get(method, _OTHER_UNMATCHED_NAME), None
        template = resource.canonical
        if route.method == "*":
            # The request's method varies per request: not cacheable by route.
            known = method if method in _KNOWN_METHODS else _OTHER_METHOD
            return f"{known} {template}", template
        names = (f"{route.method} {template}", template)
        cache = self.names
        if len(cache) >= _MAX_CACHED_ROUTES:
            cache.clear()
        cache[route] = names
        return names

    def finish(self, server: ActiveSpan, response: web.StreamResponse) -> None:
        """Record the response status, add ``X-Trace-ID`` and end the span."""
        try:
            try:
                status = response.status
                headers = response.headers
            except AttributeError:
                # The handler returned something else (None, say): aiohttp logs it
                # and answers 500 itself; that is the app's bug, not ours to report.
                status = 500
            else:
                headers[_TRACE_ID] = server.trace_id
            text = _STATUS_TEXT.get(status) or str(status)
            tags = server._tags  # start() made it (None only for a fallback span)
            limits = server.limits
            if (
                tags is not None
                and len(tags) < limits.max_tags
                and limits.max_string_length >= _LONGEST_TAG_KEY
            ):
                tags["http.status"] = text
            else:
                server.set_tag("http.status", text)  # counts the drop or clips
            if status >= self.error_status:
                server.set_status("error")
        except Exception as exc:
            report_internal_error("server span finish failed", exc)
        finally:
            # Restores the previous current span before aiohttp sends the response:
            # the next request on this keep-alive connection runs in the same task.
            server.__exit__(None, None, None)


def _fail(server: ActiveSpan, exc: BaseException) -> None:
    """End the span for a handler that raised: an error, or a cancellation."""
    try:
        if isinstance(exc, Exception):
            # What aiohttp answers for an unhandled exception (web_protocol.py).
            server.set_tag("http.status", "504" if isinstance(exc, asyncio.TimeoutError) else "500")
    except Exception as inner:
        report_internal_error("server span finish failed", inner)
    finally:
        # Records the exception (error, logged) or the cancellation (cancelled=true).
        server.__exit__(type(exc), exc, exc.__traceback__)


async def _add_trace_id_on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    try:
        headers = response.headers
        if _TRACE_ID in headers:
            return  # the middleware's finish() set it: the common case, checked first
        trace_id = request.get(_TRACE_ID_KEY)
        if trace_id is not None:
            headers[_TRACE_ID] = trace_id
    except Exception as exc:
        report_internal_error("X-Trace-ID response hook failed", exc)


# -- client ----------------------------------------------------------------------------

_UPGRADE_STATUS = 101


class _ClientHooks:
    """The ``TraceConfig`` signal handlers of one ``client_trace_config()``."""

    __slots__ = ("error_status",)

    def __init__(self, error_status: int) -> None:
        self.error_status = error_status

    async def on_request_start(
        self, session: ClientSession, ctx: SimpleNamespace, params: TraceRequestStartParams
    ) -> None:
        try:
            url = params.url
            method = params.method
            client = span(f"HTTP {method} {_host_of(url)}", kind="client")
            client.set_tag("http.method", method)
            client.set_tag("http.url", _safe_url(url))
            ctx.asynctrace_span = client
            # The caller's own headers win (inject never overwrites); the same
            # headers object is reused for every redirect hop.
            inject(params.headers, client)
        except Exception as exc:
            report_internal_error("client span start failed", exc)

    async def on_request_end(
        self, session: ClientSession, ctx: SimpleNamespace, params: TraceRequestEndParams
    ) -> None:
        client: Span | None = getattr(ctx, "asynctrace_span", None)
        if client is None:
            return
        try:
            response = params.response
            status = response.status
            client.set_tag("http.status", status)
            if response.history:
                client.set_tag("http.redirects", len(response.history))
            if status >= self.error_status:
                client.set_status("error")
            connection = response.connection
            if connection is None or status == _UPGRADE_STATUS:
                # The body is already in (the connection went back to the pool when
                # its end arrived), or the connection became a websocket whose
                # lifetime is not this request's.
                client.end()
            else:
                # aiohttp has no "response released" trace signal. The connection
                # calls its callbacks when the response releases or closes it (body
                # read to the end, release(), async with, close, garbage collection)
                # - the hook the session itself uses to stop its timeout.
                connection.add_callback(client.end)
        except Exception as exc:
            report_internal_error("client span end failed", exc)
            client.end()

    async def on_request_exception(
        self, session: ClientSession, ctx: SimpleNamespace, params: TraceRequestExceptionParams
    ) -> None:
        client: Span | None = getattr(ctx, "asynctrace_span", None)
        if client is None:
            return
        try:
            exc = params.exception
            if isinstance(exc, asyncio.CancelledError):
                client.set_tag("cancelled", "true")
            elif isinstance(exc, Exception):
                if isinstance(exc, ClientResponseError) and exc.status:
                    client.set_tag("http.status", exc.status)
                client.set_tag("error.type", type(exc).__name__)
                # Not record_exception(): aiohttp's messages quote the full URL, and
                # its query string may hold secrets.
                text = _without_url_secrets(str(exc))
                name = type(exc).__name__
                client.set_status("error", f"{name}: {text}" if text else name)
        except Exception as inner:
            report_internal_error("client span end failed", inner)
        finally:
            client.end()


def _host_of(url: URL) -> str:
    # host_port_subcomponent (yarl >= 1.13) keeps a non-default port and brackets IPv6.
    host: str | None = getattr(url, "host_port_subcomponent", None) or url.raw_host
    return host or ""


def _safe_url(url: URL) -> str:
    return str(url.with_user(None).with_query(None).with_fragment(None))


# scheme://, then userinfo (dropped), then host and path (kept), then ?query#fragment
# (dropped), each ending at whitespace or a quote as aiohttp's messages quote URLs.
_URL_SECRETS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://)(?:[^/\s'\"@?#]*@)?([^\s'\"?#]*)[^\s'\"]*")


def _without_url_secrets(text: str) -> str:
    """``text`` with userinfo, query strings and fragments cut out of any URL in it."""
    return _URL_SECRETS.sub(r"\1\2", text)


# -- option validation -----------------------------------------------------------------


def _valid_service(service: object) -> str | None:
    if service is None:
        return None
    if not isinstance(service, str) or not service.strip():
        raise ValueError("service must be a non-empty string or None")
    return service


def _valid_status(error_status: object) -> int:
    if isinstance(error_status, bool) or not isinstance(error_status, int):
        raise ValueError("error_status must be an int HTTP status")
    if not 100 <= error_status <= 999:
        raise ValueError("error_status must be between 100 and 999")
    return error_status


def _valid_paths(paths: object) -> frozenset[str]:
    # Options are checked as objects: callers without a type checker pass anything.
    if isinstance(paths, str) or not isinstance(paths, Iterable):
        raise ValueError("exclude_paths must be a collection of paths (not one string)")
    result = frozenset(paths)
    for path in result:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("exclude_paths must hold paths starting with '/'")
    return result
