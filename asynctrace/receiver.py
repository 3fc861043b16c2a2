"""The OTLP/HTTP receiver: OpenTelemetry-instrumented services' spans into asynctrace.

``asynctrace receive`` serves ``POST /v1/traces`` (OTLP/HTTP 1.x,
https://opentelemetry.io/docs/specs/otlp/#otlphttp) and writes what it receives
through ``RedisExporter``, so the slow and error indexes, the aggregates and the
service map fill as for spans asynctrace made itself. Point an OpenTelemetry SDK at
it with ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces``.

- Bodies: ``application/json`` (OTLP/JSON) always; ``application/x-protobuf`` with
  the ``otlp`` extra (``pip install 'asynctrace[otlp]'``), else 415. gzip and
  deflate ``Content-Encoding`` are decoded (another encoding, or a body that does
  not decode, is a 400); the decoded body is limited (``max_body_bytes``, 413
  beyond it).
- The whole request is decoded and mapped (``asynctrace.model.otlp``) before
  anything is written: a malformed request is a 400 and writes nothing; a span that
  cannot be mapped is rejected with the rest of its trace, and the reply's
  ``partialSuccess`` (``rejectedSpans``, ``errorMessage``) says so.
- Replies use the request's encoding. 503 with ``Retry-After`` when Redis is
  unreachable (OTLP clients retry it); 415, 400 and 413 are not retried.
- Security as the dashboard's: loopback only without a token, and then only
  requests naming a loopback host (DNS rebinding); with a token every request needs
  ``Authorization: Bearer <token>`` (OpenTelemetry SDKs send it from
  ``OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from asynctrace import keys
from asynctrace._loopback import host_name, is_loopback_host, listening_url, valid_token
from asynctrace.export import RedisExporter, SpanExporter
from asynctrace.export import _otlp_proto as otlp_proto
from asynctrace.model import DEFAULT_LIMITS, Limits
from asynctrace.model.otlp import OTLPDecodeError, ReceivedSpans, spans_from_otlp

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_PORT", "TRACES_PATH", "create_app", "serve"]

DEFAULT_PORT = 4318
TRACES_PATH = "/v1/traces"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body, decoded, that is read (the Collector's default is 20 MiB)."""

_JSON = "application/json"
_RETRY_AFTER_S = "5"
_DECODE_INLINE_BYTES = 64 * 1024
_EXPORTER = web.AppKey("asynctrace_otlp_exporter", SpanExporter)
_LOCK = web.AppKey("asynctrace_otlp_lock", asyncio.Lock)
_LIMITS = web.AppKey("asynctrace_otlp_limits", Limits)
_MAX_BODY = web.AppKey("asynctrace_otlp_max_body_bytes", int)
_logger = logging.getLogger("asynctrace.receiver")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    exporter: SpanExporter,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    limits: Limits = DEFAULT_LIMITS,
) -> web.Application:
    """The receiver's aiohttp application, writing received spans to ``exporter``.

    Without ``token`` it answers only requests addressed to a loopback host name.
    Raises ``ValueError`` for an empty token or a non-positive body limit.
    """
    token = valid_token(token, server="receiver")
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be at least 1")
    app = web.Application(client_max_size=max_body_bytes, middlewares=[_access_middleware(token)])
    app[_EXPORTER] = exporter
    app[_LOCK] = asyncio.Lock()
    app[_LIMITS] = limits
    app[_MAX_BODY] = max_body_bytes
    app.router.add_post(TRACES_PATH, _receive_traces)
    return app


async def serve(
    redis_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    prefix: str = keys.DEFAULT_PREFIX,
    slow_threshold_ms: float = 1000.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_listening: Callable[[str], object] | None = None,
) -> None:
    """Receive OTLP/HTTP on ``host``:``port`` into the Redis at ``redis_url``, until cancelled.

    ``on_listening`` is called once with the traces URL actually bound (the real
    port when ``port`` is 0) as soon as the socket listens.

    Binding anything but a loopback address without ``token`` raises ``ValueError``
    before a socket is opened; ``OSError`` when the port is taken. On cancellation
    the server stops and the cancellation propagates.
    """
    token = valid_token(token, server="receiver")
    if token is None and not is_loopback_host(host):
        raise ValueError(
            f"refusing to receive traces on {host!r} without a token: anyone who can reach "
            "that address could write them. Pass a token (asynctrace receive --token, or "
            "ASYNCTRACE_TOKEN), or bind 127.0.0.1."
        )
    if not 0 <= port <= 65535:
        raise ValueError("port must be an integer from 0 to 65535")
    exporter = RedisExporter(redis_url, prefix=prefix, slow_threshold_ms=slow_threshold_ms)
    app = create_app(exporter, token=token, max_body_bytes=max_body_bytes)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        url = listening_url(runner, TRACES_PATH)
        _logger.info("asynctrace OTLP receiver listening on %s", url)
        if on_listening is not None:
            on_listening(url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await exporter.shutdown()


async def _receive_traces(request: web.Request) -> web.Response:
    content_type = request.content_type
    is_protobuf = content_type == otlp_proto.PROTOBUF_CONTENT_TYPE
    if content_type != _JSON and not is_protobuf:
        return _error(
            415,
            f"unsupported content type {content_type!r}; send {_JSON} or "
            f"{otlp_proto.PROTOBUF_CONTENT_TYPE}",
            is_protobuf=False,
        )
    if is_protobuf and not otlp_proto.is_available():
        return _error(
            415,
            "protobuf bodies need opentelemetry-proto (pip install 'asynctrace[otlp]'); "
            f"send {_JSON} or install it",
            is_protobuf=False,
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(
            413,
            f"request body over {request.app[_MAX_BODY]} bytes (decoded)",
            is_protobuf=is_protobuf,
        )
    except (web.RequestPayloadError, web.HTTPException, ConnectionError, ValueError) as exc:
        # aiohttp decodes Content-Encoding itself (gzip, deflate; br and zstd when their
        # libraries are installed) and reports a body it cannot decode as a payload error.
        # The rest of the body is never read: marked at its end, aiohttp does not try to
        # drain it after the reply (which re-raised the error as an "Unhandled exception"
        # traceback in the log), and the connection closes rather than being reused.
        request.content.feed_eof()
        response = _error(400, f"unreadable body: {exc}", is_protobuf=is_protobuf)
        response.force_close()
        return response
    limits = request.app[_LIMITS]
    try:
        if len(body) > _DECODE_INLINE_BYTES:
            # A large request takes a while to decode: off the loop, which keeps serving.
            received = await asyncio.to_thread(_decode, body, is_protobuf, limits)
        else:
            received = _decode(body, is_protobuf, limits)
    except (OTLPDecodeError, ValueError, RecursionError) as exc:
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors.
        return _error(400, f"malformed OTLP request: {exc}", is_protobuf=is_protobuf)
    if received.spans:
        try:
            async with request.app[_LOCK]:
                await request.app[_EXPORTER].export(received.spans)
        except (ConnectionError, TimeoutError) as exc:
            response = _error(503, f"trace store unavailable: {exc}", is_protobuf=is_protobuf)
            response.headers["Retry-After"] = _RETRY_AFTER_S
            return response
        except Exception as exc:
            _logger.warning("writing received spans failed: %s", exc)
            return _error(500, f"writing spans failed: {exc}", is_protobuf=is_protobuf)
    if is_protobuf:
        return web.Response(
            body=otlp_proto.encode_response(received.rejected, received.error_message),
            content_type=otlp_proto.PROTOBUF_CONTENT_TYPE,
        )
    reply: dict[str, Any] = {}
    if received.rejected:
        reply["partialSuccess"] = {
            "rejectedSpans": str(received.rejected),
            "errorMessage": received.error_message or "",
        }
    return web.json_response(reply)


def _decode(body: bytes, is_protobuf: bool, limits: Limits) -> ReceivedSpans:
    data: Any = otlp_proto.decode_request(body) if is_protobuf else json.loads(body)
    return spans_from_otlp(data, limits=limits)


def _error(status: int, message: str, *, is_protobuf: bool) -> web.Response:
    """An error reply; its body is the message, as JSON for JSON clients."""
    if is_protobuf:
        return web.Response(status=status, text=message)
    return web.json_response({"code": status, "message": message}, status=status)


def _access_middleware(token: str | None) -> Middleware:
    expected = None if token is None else token.encode("utf-8")

    @web.middleware
    async def access(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if expected is not None:
            scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
            given = credential.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
                response = _error(401, "token required (Authorization: Bearer)", is_protobuf=False)
                response.headers["WWW-Authenticate"] = 'Bearer realm="asynctrace"'
                return response
        else:
            # A browser page whose name was rebound to 127.0.0.1 must not write traces.
            header = request.headers.get("Host")
            if header is not None and not is_loopback_host(host_name(header)):
                return _error(403, "without a token only loopback hosts", is_protobuf=False)
        return await handler(request)

    return access
