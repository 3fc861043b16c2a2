"""Failures as a clear page or JSON error with the right status, never a traceback.

``InvalidQueryError`` is 400, an unknown trace 404, ``StoreUnavailableError`` 503,
any other ``AsynctraceError`` (Redis refused a command) 502. aiohttp's own HTTP
errors (unknown route, wrong method) keep their status and headers. Anything else
is a bug: it is logged server-side (rate limited) and answered with a bare 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware

from asynctrace._ratelimit import report_internal_error
from asynctrace.errors import AsynctraceError, InvalidQueryError, StoreUnavailableError

__all__ = ["TraceNotFound", "error_middleware", "error_response", "wants_json"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TITLES = {
    400: "Bad request",
    401: "Token required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    500: "Internal error",
    502: "Redis refused the query",
    503: "Redis is unavailable",
}


class TraceNotFound(Exception):
    """The trace id is valid but no spans are stored under it (never stored or expired)."""


def wants_json(request: web.Request) -> bool:
    """API paths answer in JSON; everything else gets a page."""
    return request.path == "/api" or request.path.startswith("/api/")


def error_response(
    request: web.Request, status: int, title: str, message: str
) -> web.StreamResponse:
    """A JSON error under ``/api/``, an HTML page elsewhere; the message is escaped."""
    if wants_json(request):
        return web.json_response({"error": {"status": status, "message": message}}, status=status)
    try:
        return aiohttp_jinja2.render_template(
            "error.html",
            request,
            {"status": status, "title": title, "message": message},
            status=status,
        )
    except Exception as exc:  # templates not loaded yet, or a broken one: still answer
        report_internal_error("dashboard error page failed", exc)
        return web.Response(status=status, text=f"{status} {title}: {message}")


def error_middleware() -> Middleware:
    """Map exceptions leaving a handler to error responses (see module docstring)."""

    @web.middleware
    async def errors_as_responses(request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            title = _TITLES.get(exc.status, exc.reason)
            message = _http_message(exc)
            response = error_response(request, exc.status, title, message)
            for name in ("Allow", "WWW-Authenticate"):
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
            return response
        except TraceNotFound as exc:
            return error_response(request, 404, "Trace not found", str(exc))
        except InvalidQueryError as exc:
            return error_response(request, 400, _TITLES[400], str(exc))
        except StoreUnavailableError as exc:
            return error_response(request, 503, _TITLES[503], str(exc))
        except AsynctraceError as exc:
            return error_response(request, 502, _TITLES[502], str(exc))
        except Exception as exc:
            route = request.match_info.route.name or request.method
            report_internal_error(f"dashboard request failed ({route})", exc)
            return error_response(
                request,
                500,
                _TITLES[500],
                "The dashboard failed to answer this request; the details are in its log.",
            )

    return errors_as_responses


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "There is no page at this address."
    if exc.status == 405:
        return "The dashboard is read-only: only GET and HEAD requests are answered."
    return exc.reason
