"""Who may read the dashboard, and the security headers on every response.

Two rules, both in one middleware that runs before any handler:

- With a token, every request (page, API, static file) must prove it knows the
  token: an ``Authorization: Bearer`` header, or the session cookie that a
  ``?token=`` link sets. Comparisons are constant time (``hmac.compare_digest``).
- Without a token the server only listens on loopback (``serve`` enforces that),
  and requests must name a loopback host: a page on another site that rebinds its
  DNS name to 127.0.0.1 would otherwise read traces through the browser.

``add_security_headers`` runs for every response aiohttp prepares, its own error
pages included: a strict Content-Security-Policy (no inline script or style at
all), ``nosniff``, no referrer, no framing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from asynctrace._loopback import host_name, is_loopback_host

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "COOKIE_NAME",
    "add_security_headers",
    "security_middleware",
]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
COOKIE_NAME = "asynctrace_session"
_QUERY_PARAMETER = "token"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Renders a refusal (status, title, message) as a page or JSON, as the request wants.
Refuse = Callable[[web.Request, int, str, str], web.StreamResponse]

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: the security headers, and no caching of trace data."""
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    # Static files carry their own ETag-based caching; everything else is live data.
    response.headers.setdefault("Cache-Control", "no-store")


def security_middleware(token: str | None, refuse: Refuse) -> Middleware:
    """The middleware enforcing the token (when given) or a loopback Host (when not)."""
    return _token_middleware(token, refuse) if token is not None else _host_middleware(refuse)


def _host_middleware(refuse: Refuse) -> Middleware:
    @web.middleware
    async def loopback_host_only(request: web.Request, handler: _Handler) -> web.StreamResponse:
        # Read the header itself: aiohttp's request.host falls back to a blocking
        # getfqdn() when it is missing. A request without Host did not come from a
        # browser (they always send one), so it cannot be a rebinding attack.
        header = request.headers.get("Host")
        if header is not None and not is_loopback_host(host_name(header)):
            return refuse(
                request,
                403,
                "Host not allowed",
                "Without a token this dashboard answers only to localhost or a loopback "
                "address. Start it with a token to reach it under another name.",
            )
        return await handler(request)

    return loopback_host_only


def _token_middleware(token: str, refuse: Refuse) -> Middleware:
    expected = token.encode("utf-8")
    # The cookie holds a value derived from the token, not the token itself, so the
    # token never sits in the browser's cookie store in clear.
    session = hmac.new(expected, b"asynctrace dashboard session", hashlib.sha256).hexdigest()
    session_bytes = session.encode("ascii")

    def is_token(candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), expected)

    @web.middleware
    async def token_required(request: web.Request, handler: _Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and is_token(credential.strip()):
            return await handler(request)
        cookie = request.cookies.get(COOKIE_NAME, "")
        if cookie and hmac.compare_digest(cookie.encode("utf-8", "surrogateescape"), session_bytes):
            return await handler(request)
        given = request.query.get(_QUERY_PARAMETER)
        if given is not None and is_token(given):
            if request.path.startswith("/api/"):
                return await handler(request)
            return _strip_token(request, session)
        response = refuse(
            request,
            401,
            "Token required",
            "This dashboard needs its access token (asynctrace serve --token or "
            "ASYNCTRACE_TOKEN). Open it once as /?token=<token>, which signs this browser "
            "in, or send the header 'Authorization: Bearer <token>'.",
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="asynctrace"'
        return response

    return token_required


def _strip_token(request: web.Request, session: str) -> web.StreamResponse:
    """Set the session cookie and send the browser to the same URL without the token.

    The token leaves the address bar and the history. The path is forced to start
    with exactly one slash, so a request for ``//evil.example`` cannot turn the
    redirect into one to another site.
    """
    query = [(key, value) for key, value in request.query.items() if key != _QUERY_PARAMETER]
    location = request.rel_url.with_query(query)
    target = "/" + str(location).lstrip("/\\")
    response = web.Response(status=303, headers={"Location": target}, text="See Other")
    response.set_cookie(
        COOKIE_NAME,
        session,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response
