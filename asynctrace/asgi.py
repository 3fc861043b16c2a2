"""Tracing for ASGI applications (FastAPI, Starlette, any ASGI 3 app): ``TraceMiddleware``.

The middleware makes one ``server`` span per HTTP request and one per WebSocket
connection (for its whole life), continued from the caller's trace headers and
current while the application runs; every response carries ``X-Trace-ID``. Spans
are named and tagged as the aiohttp middleware names and tags them (``asynctrace._http``),
so a trace crossing both frameworks reads as one. Lifespan events pass through
untouched. Nothing here imports a framework: route templates are read from what
Starlette's router leaves in the scope (``scope["route"]``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from typing import Any, cast

from asynctrace._http import (
    fail_server_span,
    method_name,
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
from asynctrace.propagation import (
    SPAN_ID_HEADER,
    TRACE_ID_HEADER,
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    extract,
)

__all__ = ["TraceMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_TRACE_ID = TRACE_ID_HEADER.lower().encode("ascii")
# The request headers the middleware reads, as ASGI servers send them: lowercase bytes.
_CONTEXT_HEADERS = frozenset(
    name.lower().encode("ascii")
    for name in (TRACEPARENT_HEADER, TRACESTATE_HEADER, TRACE_ID_HEADER, SPAN_ID_HEADER)
)
_HOST = b"host"
# Where the request's trace id waits for the framework's own error response (below).
_SCOPE_TRACE_ID = "asynctrace.trace_id"
_WEBSOCKET = "WS"
# What servers answer a WebSocket closed before it was accepted (ASGI spec: 403).
_REJECTED_WEBSOCKET = 403
_ACCEPTED_WEBSOCKET = 101


class TraceMiddleware:
    """Trace every HTTP request and WebSocket connection of an ASGI application.

    ``app.add_middleware(TraceMiddleware, service="orders")`` in Starlette or FastAPI,
    or ``TraceMiddleware(app, service="orders")`` around any ASGI 3 application.

    Args:
        app: the ASGI application to trace.
        service: the service name of this app's spans (default: ``configure()``'s).
        error_status: responses with this status or above mark the span ``error``.
        exclude_paths: request paths (exact, e.g. ``"/health"``) served untraced.

    A request's span continues the caller's trace (``traceparent``, else
    ``X-Trace-ID``), is named ``"{METHOD} {route template}"`` (``"GET
    /orders/{order_id}"``; ``"GET (unmatched)"`` when no route matched) and lasts
    until the application returns, so a streamed body is inside it. A WebSocket is
    one span, ``"WS {route template}"``, from the handshake to the close. Responses
    and WebSocket handshakes get an ``X-Trace-ID`` header. In Starlette and FastAPI
    the framework's own 500 page is rendered outside user middleware; the middleware
    wraps the application's middleware stack so that page carries the header too,
    from the first lifespan event or request on. Exceptions are recorded and
    re-raised unchanged. Raises ``ValueError`` for invalid options; never raises
    because of tracing.
    """

    def __init__(
        self,
        app: App,
        *,
        service: str | None = None,
        error_status: int = 400,
        exclude_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.service = valid_service(service)
        self.error_status = valid_status(error_status)
        self.exclude_paths = valid_paths(exclude_paths)
        self._is_outer_wrapped = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._is_outer_wrapped:
            self._wrap_outer_app(scope)
        kind = scope.get("type")
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)  # lifespan and anything newer: untouched

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            server = self._start(scope, scope.get("method") or "GET")
        except Exception as exc:
            report_internal_error("server span start failed", exc)
            server = None
        if server is None:
            await self.app(scope, receive, send)
            return
        trace_id = server.trace_id.encode("ascii")
        status: int | None = None

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                try:
                    status = int(message.get("status", 500))
                    message = _with_trace_id(message, trace_id)
                except Exception as exc:
                    report_internal_error("X-Trace-ID response header failed", exc)
            await send(message)

        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            self._name(server, scope)
            if status is None:
                fail_server_span(server, exc)
            else:
                # The response had started: its status stands, the failure is recorded.
                _record_status(server, status, self.error_status)
                server.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._name(server, scope)
        # No response at all: the server answers 500 for the application.
        _record_status(server, 500 if status is None else status, self.error_status)
        server.__exit__(None, None, None)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            server = self._start(scope, "GET")
        except Exception as exc:
            report_internal_error("server span start failed", exc)
            server = None
        if server is None:
            await self.app(scope, receive, send)
            return
        trace_id = server.trace_id.encode("ascii")
        status: int | None = None

        async def traced_send(message: Message) -> None:
            nonlocal status
            try:
                kind = message.get("type")
                if kind == "websocket.accept":
                    status = _ACCEPTED_WEBSOCKET
                    message = _with_trace_id(message, trace_id)
                elif kind == "websocket.close":
                    if status is None:
                        status = _REJECTED_WEBSOCKET
                    code = message.get("code")
                    if code is not None:
                        server.set_tag("websocket.close_code", code)
            except Exception as exc:
                report_internal_error("websocket span update failed", exc)
            await send(message)

        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            self._name(server, scope)
            if status is not None:
                _record_status(server, status, self.error_status)
            server.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._name(server, scope)
        _record_status(server, _REJECTED_WEBSOCKET if status is None else status, self.error_status)
        server.__exit__(None, None, None)

    def _start(self, scope: Scope, method: str) -> ActiveSpan | None:
        """Start the span of a request or connection; None for an excluded path."""
        path = scope.get("path") or "/"
        if self.exclude_paths and path in self.exclude_paths:
            return None
        context_lines: dict[str, list[str]] = {}
        host = None
        for name, value in scope.get("headers") or ():
            if name in _CONTEXT_HEADERS:
                context_lines.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
            elif name == _HOST:
                host = value.decode("latin-1")
        # extract() reads a multidict through getall(), keeping repeated lines apart.
        lines = cast("Mapping[str, str]", _Lines(context_lines))
        parent = extract(lines) if context_lines else None
        first = unmatched_name(method) if scope.get("type") == "http" else _websocket_name(None)
        server = span(first, kind="server", service=self.service, parent=parent)
        client = scope.get("client")
        remote = client[0] if client else None
        tag_request(server, method, path, None, host, remote if isinstance(remote, str) else None)
        if scope.get("type") == "websocket":
            server.set_tag("websocket", "true")
        if parent is not None:
            tag_caller(server, parent)
        scope[_SCOPE_TRACE_ID] = server.trace_id
        server.__enter__()
        return server

    def _name(self, server: ActiveSpan, scope: Scope) -> None:
        """Name the span by the route the router matched, now that it has run."""
        try:
            template = _template_of(scope)
            if template is None:
                return
            server.set_tag("http.route", template)
            if scope.get("type") == "websocket":
                server.operation = _websocket_name(template)
            else:
                server.operation = f"{method_name(scope.get('method') or 'GET')} {template}"
        except Exception as exc:
            report_internal_error("server span naming failed", exc)

    def _wrap_outer_app(self, scope: Scope) -> None:
        """Let the framework's own error page carry ``X-Trace-ID``.

        Starlette renders a 500 for an unhandled exception in its outermost
        middleware, outside every user middleware, with the server's ``send``: no
        middleware added by ``add_middleware`` can touch that response. So the
        application's middleware stack (on this instance only) is wrapped once in
        ``_ErrorPageTraceId``, which adds the header the request's span left in the
        scope. Any other ASGI app is left alone.
        """
        self._is_outer_wrapped = True
        try:
            app = scope.get("app")
            stack = getattr(app, "middleware_stack", None)
            if stack is None or isinstance(stack, _ErrorPageTraceId):
                return
            app.middleware_stack = _ErrorPageTraceId(stack)  # type: ignore[union-attr]  # checked above
        except Exception as exc:
            report_internal_error("ASGI error page wrapping failed", exc)


class _ErrorPageTraceId:
    """Adds the request's ``X-Trace-ID`` to a response that lacks it (the 500 page)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_trace_id(message: Message) -> None:
            if message.get("type") == "http.response.start":
                try:
                    trace_id = scope.get(_SCOPE_TRACE_ID)
                    if isinstance(trace_id, str):
                        message = _with_trace_id(message, trace_id.encode("ascii"))
                except Exception as exc:
                    report_internal_error("X-Trace-ID response header failed", exc)
            await send(message)

        await self.app(scope, receive, send_with_trace_id)


class _Lines:
    """The context headers of a request as ``extract()`` reads a multidict."""

    __slots__ = ("lines",)

    def __init__(self, lines: dict[str, list[str]]) -> None:
        self.lines = lines

    def getall(self, name: str, default: list[str]) -> list[str]:
        return self.lines.get(name, default)


def _with_trace_id(message: Message, trace_id: bytes) -> Message:
    """A copy of a response start (or WebSocket accept) with ``X-Trace-ID`` added, once."""
    headers = list(message.get("headers") or ())
    if any(name.lower() == _TRACE_ID for name, _ in headers):
        return message
    headers.append((_TRACE_ID, trace_id))
    return {**message, "headers": headers}


def _record_status(server: ActiveSpan, status: int, error_status: int) -> None:
    try:
        record_status(server, status, error_status)
    except Exception as exc:
        report_internal_error("server span finish failed", exc)


def _websocket_name(template: str | None) -> str:
    return f"{_WEBSOCKET} {template if template is not None else '(unmatched)'}"


def _template_of(scope: Scope) -> str | None:
    """The matched route's template, with the prefix of any mount it sits under.

    Starlette's router stores the matched route in ``scope["route"]``; its
    ``path_format`` is the template without converters (``/items/{item_id}`` for
    ``/items/{item_id:int}``; a mount's is ``/static/{path}``). A route inside a
    mounted app is relative to the mount, whose matched prefix Starlette appends to
    ``root_path`` (beyond the server's own, kept in ``app_root_path``).
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        template = route if isinstance(route, str) else None
    if template is None:
        return None
    root_path = scope.get("root_path") or ""
    app_root_path = scope.get("app_root_path") or ""
    if (
        isinstance(root_path, str)
        and isinstance(app_root_path, str)
        and root_path.startswith(app_root_path)
    ):
        template = root_path[len(app_root_path) :] + template
    return template
