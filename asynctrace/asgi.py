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
    wraps the application's middleware stack so that page carries the header too.
    It does so on the first event it sees: servers such as uvicorn start with the
    lifespan event, so every request is covered; without lifespan, the first
    request's 500 page (only) goes without it. Exceptions are recorded and
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
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan and anything newer: untouched
            return
        try:
            exchange = self._start(scope)
        except Exception as exc:
            report_internal_error("server span start failed", exc)
            exchange = None
        if exchange is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, exchange.sending_to(send))
        except BaseException as exc:
            exchange.fail(exc)
            raise
        exchange.finish()

    def _start(self, scope: Scope) -> _Exchange | None:
        """Start the span of a request or connection; None for an excluded path."""
        path = scope.get("path") or "/"
        if self.exclude_paths and path in self.exclude_paths:
            return None
        is_websocket = scope.get("type") == "websocket"
        # A WebSocket handshake is a GET (RFC 6455 section 4.1).
        method = "GET" if is_websocket else scope.get("method") or "GET"
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
        first = _websocket_name(None) if is_websocket else unmatched_name(method)
        server = span(first, kind="server", service=self.service, parent=parent)
        client = scope.get("client")
        remote = client[0] if client else None
        tag_request(server, method, path, None, host, remote if isinstance(remote, str) else None)
        if is_websocket:
            server.set_tag("websocket", "true")
        if parent is not None:
            tag_caller(server, parent)
        scope[_SCOPE_TRACE_ID] = server.trace_id
        server.__enter__()
        return _Exchange(server, scope, self.error_status, is_websocket=is_websocket)

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


class _Exchange:
    """One traced request or WebSocket: its span, and the status its messages show."""

    __slots__ = ("error_status", "is_websocket", "scope", "server", "status", "trace_id")

    def __init__(
        self, server: ActiveSpan, scope: Scope, error_status: int, *, is_websocket: bool
    ) -> None:
        self.server = server
        self.scope = scope
        self.error_status = error_status
        self.is_websocket = is_websocket
        self.trace_id = server.trace_id.encode("ascii")
        self.status: int | None = None

    def sending_to(self, send: Send) -> Send:
        """``send``, seeing each message the application sends on its way out."""

        async def traced_send(message: Message) -> None:
            try:
                message = self._seen(message)
            except Exception as exc:
                report_internal_error("server span update failed", exc)
            await send(message)

        return traced_send

    def _seen(self, message: Message) -> Message:
        kind = message.get("type")
        if kind in ("http.response.start", "websocket.http.response.start"):
            # The latter: a WebSocket refused with an HTTP response (ASGI extension).
            self.status = int(message.get("status", 500))
            return _with_trace_id(message, self.trace_id)
        if kind == "websocket.accept":
            self.status = _ACCEPTED_WEBSOCKET
            return _with_trace_id(message, self.trace_id)
        if kind == "websocket.close":
            if self.status is None:
                self.status = _REJECTED_WEBSOCKET
            code = message.get("code")
            if code is not None:
                self.server.set_tag("websocket.close_code", code)
        return message

    def finish(self) -> None:
        """End the span of an application that returned."""
        self._name()
        status = self.status
        if status is None:
            # No response at all: the server answers for the application (ASGI spec:
            # 500 for a request, 403 for a WebSocket never accepted).
            status = _REJECTED_WEBSOCKET if self.is_websocket else 500
        _record_status(self.server, status, self.error_status)
        self.server.__exit__(None, None, None)

    def fail(self, exc: BaseException) -> None:
        """End the span of an application that raised (or was cancelled)."""
        self._name()
        server = self.server
        if self.status is None and not self.is_websocket:
            # Starlette's error middleware answers 500 for every exception.
            fail_server_span(server, exc, timeout_status="500")
            return
        if self.status is not None:
            # The response had started: its status stands, the failure is recorded.
            _record_status(server, self.status, self.error_status)
        server.__exit__(type(exc), exc, exc.__traceback__)

    def _name(self) -> None:
        """Name the span by the route the router matched, now that it has run."""
        try:
            template = _template_of(self.scope)
            if template is None:
                return
            self.server.set_tag("http.route", template)
            if self.is_websocket:
                self.server.operation = _websocket_name(template)
            else:
                method = self.scope.get("method") or "GET"
                self.server.operation = f"{method_name(method)} {template}"
        except Exception as exc:
            report_internal_error("server span naming failed", exc)


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
