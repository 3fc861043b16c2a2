"""Tracing for aiohttp: a server middleware, a client ``TraceConfig`` and ``setup(app)``.

The middleware makes one ``server`` span per request, continued from the caller's
trace headers and current while the handler runs; every response carries
``X-Trace-ID``. The client ``TraceConfig`` makes one ``client`` span per outgoing
request and injects the trace headers into it. Like all of asynctrace, nothing here
raises into the application because of tracing: internal failures are counted and
reported once, and the request goes on untraced.
"""

from __future__ import annotations

import math
from collections.abc import Collection
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
from asynctrace._http import (
    LONGEST_TAG_KEY,
    STATUS_TEXT,
    client_operation,
    fail_server_span,
    method_name,
    record_client_error,
    record_status,
    tag_caller,
    tag_request,
    unmatched_name,
    valid_paths,
    valid_service,
    valid_status,
)
from asynctrace._ratelimit import report_internal_error
from asynctrace.context import ActiveSpan, span
from asynctrace.model import Span
from asynctrace.propagation import TRACE_ID_HEADER, TRACEPARENT_HEADER, extract, inject

__all__ = ["client_trace_config", "middleware", "setup"]

# istr keys skip multidict's case folding on every lookup and assignment.
_TRACEPARENT = istr(TRACEPARENT_HEADER)
_TRACE_ID = istr(TRACE_ID_HEADER)
_HOST = hdrs.HOST

# Routes are made at startup, so the cache stays small; the bound only matters for a
# process that keeps building applications (tests), which must not grow it forever.
_MAX_CACHED_ROUTES = 1024

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
        valid_service(service),
        valid_status(error_status),
        valid_paths(exclude_paths),
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
        valid_service(service),
        valid_status(error_status),
        valid_paths(exclude_paths),
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
    hooks = _ClientHooks(valid_status(error_status))
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
        # The request path reads its settings from the closure, not from self, and
        # starts the span inline (no start() call): a call and a few attribute loads
        # per request.
        finish = self.finish
        names_of = self._names_of
        names = self.names
        service = self.service
        error_status = self.error_status
        exclude_paths = self.exclude_paths
        stores = self.stores

        @web.middleware
        async def asynctrace_middleware(
            request: web.Request, handler: Handler
        ) -> web.StreamResponse:
            server: ActiveSpan | None = None
            try:
                # rel_url.path is request.path without reify's first-access cost.
                path = request.rel_url.path
                if not exclude_paths or path not in exclude_paths:
                    method = request.method
                    route = request.match_info.route
                    named = names.get(route)
                    if named is None:
                        named = names_of(route, method)
                    operation, template = named
                    headers = request.headers
                    # Most requests carry no context: skip the parser for them.
                    parent = (
                        extract(headers)
                        if _TRACEPARENT in headers or _TRACE_ID in headers
                        else None
                    )
                    server = span(operation, kind="server", service=service, parent=parent)
                    # The Host header itself, not request.host: for a request without
                    # one, aiohttp before the fix of aio-libs/aiohttp#9308 falls back to
                    # socket.getfqdn(), a blocking call on the loop. No header, no tag.
                    host = headers.get(_HOST)
                    tag_request(server, method, path, template, host, request.remote)
                    if parent is not None:
                        tag_caller(server, parent)
                    if stores:
                        request[_TRACE_ID_KEY] = server.trace_id
                    server.__enter__()
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
                fail_server_span(server, exc)
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
                    and limits.max_string_length >= LONGEST_TAG_KEY
                ):
                    response.headers[_TRACE_ID] = server.trace_id
                    tags["http.status"] = STATUS_TEXT.get(status) or str(status)
                    server.__exit__(None, None, None)
                    return response
            except Exception:  # finish() below records the status or reports the failure
                pass
            finish(server, response)
            return response

        return asynctrace_middleware

    def _names_of(self, route: AbstractRoute, method: str) -> tuple[str, str | None]:
        resource = route.resource
        if resource is None:
            # A SystemRoute (404/405): made per request, so never cached.
            return unmatched_name(method), None
        template = resource.canonical
        if route.method == "*":
            # The request's method varies per request: not cacheable by route.
            return f"{method_name(method)} {template}", template
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
            record_status(server, status, self.error_status)
        except Exception as exc:
            report_internal_error("server span finish failed", exc)
        finally:
            # Restores the previous current span before aiohttp sends the response:
            # the next request on this keep-alive connection runs in the same task.
            server.__exit__(None, None, None)


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
            client = span(client_operation(method, _host_of(url)), kind="client")
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
            if isinstance(exc, ClientResponseError) and exc.status:
                client.set_tag("http.status", exc.status)
            record_client_error(client, exc)
        except Exception as inner:
            report_internal_error("client span end failed", inner)
        finally:
            client.end()


def _host_of(url: URL) -> str:
    # host_port_subcomponent (yarl >= 1.13) keeps a non-default port and brackets IPv6.
    host: str | None = getattr(url, "host_port_subcomponent", None) or url.raw_host
    return host or ""


def _safe_url(url: URL) -> str:
    # Each with_*() builds a new URL: only ask for the ones there is something to cut.
    # (yarl drops an empty "?" or "#" itself; a password can come without a user.)
    if url.raw_user is not None or url.raw_password is not None:
        url = url.with_user(None)
    if url.raw_query_string:
        url = url.with_query(None)
    if url.raw_fragment:
        url = url.with_fragment(None)
    return str(url)
