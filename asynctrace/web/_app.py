"""The dashboard's routes: pages, the JSON API and static files, and ``serve``."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_response import StreamResponse

from asynctrace._loopback import is_loopback_host, listening_url, valid_token
from asynctrace.analysis import format_ms, trace_report
from asynctrace.errors import InvalidQueryError
from asynctrace.ids import is_valid_trace_id
from asynctrace.model import Trace, utc_day
from asynctrace.store import TraceStore
from asynctrace.web._aggregates import (
    format_rate,
    heat_legend,
    heat_rows,
    map_json,
    map_view,
    pattern_json,
    since_ms,
    spot_views,
    stats_json,
)
from asynctrace.web._assets import Assets
from asynctrace.web._errors import TraceNotFound, error_middleware, error_response
from asynctrace.web._queries import Listing, list_traces, similar_traces
from asynctrace.web._security import add_security_headers, security_middleware
from asynctrace.web._views import (
    format_time,
    service_class,
    summary_json,
    trace_view,
)

__all__ = ["create_app", "serve"]

_logger = logging.getLogger("asynctrace.web")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STORE = web.AppKey("asynctrace.store", TraceStore)
ASSETS = web.AppKey("asynctrace.assets", Assets)
_CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("asynctrace.clock")

_FILTERS: dict[str, Callable[..., str]] = {
    "ms": format_ms,
    "rate": format_rate,
    "utc": format_time,
    "service_class": service_class,
}
_VIEWS = ("recent", "slow", "errors", "search")
_SEARCH_FIELDS = ("trace_id", "service", "operation", "status", "min_duration_ms", "text")
_DEFAULT_LIMIT = 100
_MAX_LIMIT = 1000
_COMPRESS_FROM_BYTES = 64 * 1024
_DEFAULT_SIMILAR = 20
_MAX_SIMILAR = 50


def create_app(
    store: TraceStore, *, token: str | None = None, clock: Callable[[], float] = time.time
) -> web.Application:
    """The dashboard as an aiohttp application reading through ``store``.

    With ``token``, every request must carry it (see ``asynctrace.web``). The app
    never closes ``store``: it belongs to the caller. Templates and static files are
    read on startup, in a worker thread. Raises ``ValueError`` for an empty token.
    ``clock`` (epoch seconds, ``time.time`` by default) is what "today" and periods
    such as "the last 24 h" count from; tests fix it to the instant their data has.
    """
    token = valid_token(token, server="dashboard")
    app = web.Application(
        middlewares=[
            security_middleware(token, error_response),
            error_middleware(),
            _compress_large_bodies,
        ]
    )
    assets = Assets()
    app[STORE] = store
    app[ASSETS] = assets
    app[_CLOCK] = clock
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.DictLoader(assets.templates),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
        default_helpers=False,
        filters=_FILTERS,
    )
    app.on_startup.append(_load_assets)
    app.on_response_prepare.append(add_security_headers)
    app.router.add_get("/", _traces_page, name="traces")
    app.router.add_get("/traces/{trace_id}", _trace_page, name="trace")
    app.router.add_get("/stats", _stats_page, name="stats")
    app.router.add_get("/patterns", _patterns_page, name="patterns")
    app.router.add_get("/map", _map_page, name="map")
    app.router.add_get("/api/stats", _api_stats, name="api-stats")
    app.router.add_get("/api/patterns", _api_patterns, name="api-patterns")
    app.router.add_get("/api/map", _api_map, name="api-map")
    app.router.add_get("/api/health", _api_health, name="api-health")
    app.router.add_get("/api/recent", _api_recent, name="api-recent")
    app.router.add_get("/api/slow", _api_slow, name="api-slow")
    app.router.add_get("/api/errors", _api_errors, name="api-errors")
    app.router.add_get("/api/search", _api_search, name="api-search")
    app.router.add_get("/api/traces/{trace_id}", _api_trace, name="api-trace")
    app.router.add_get("/static/{name}", _static, name="static")
    app.router.add_get("/favicon.ico", _favicon, name="favicon")
    return app


async def serve(
    store: TraceStore,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    on_listening: Callable[[str], object] | None = None,
) -> None:
    """Serve the dashboard on ``host``:``port`` until cancelled.

    ``on_listening`` is called once with the URL actually bound (the real port when
    ``port`` is 0) as soon as the socket listens.

    Binding anything but a loopback address without ``token`` raises ``ValueError``
    before a socket is opened, as do an empty token and an invalid port. ``OSError``
    when the port is taken. On cancellation the server stops and the cancellation
    propagates; ``store`` stays open.
    """
    token = valid_token(token, server="dashboard")
    if token is None and not is_loopback_host(host):
        raise ValueError(
            f"refusing to serve traces on {host!r} without a token: anyone who can reach "
            "that address could read them. Pass a token (asynctrace serve --token, or "
            "ASYNCTRACE_TOKEN), or bind 127.0.0.1."
        )
    if not 0 <= port <= 65535:
        raise ValueError("port must be an integer from 0 to 65535")
    app = create_app(store, token=token)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=logging.getLogger("asynctrace.web.access"),
        access_log_class=_AccessLogger,
        # The dashboard reads no request body: one left unread closes the connection
        # instead of being drained, where a body that fails to decompress made aiohttp
        # log an "Unhandled exception" traceback.
        lingering_time=0,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        url = listening_url(runner, "/")
        _logger.info("asynctrace dashboard listening on %s", url)
        if on_listening is not None:
            on_listening(url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class _AccessLogger(AbstractAccessLogger):
    """One line per request, with the path but never the query string.

    A ``?token=`` link must not end up in a log file; search terms stay out too.
    """

    def log(self, request: web.BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.1f ms",
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000.0,
        )


async def _load_assets(app: web.Application) -> None:
    await app[ASSETS].load()


@web.middleware
async def _compress_large_bodies(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Compress big pages and JSON (a 1,000-span waterfall is about a megabyte of HTML).

    aiohttp compresses large bodies in a worker thread, off the event loop, and only
    when the client accepts it.
    """
    response = await handler(request)
    if (
        isinstance(response, web.Response)
        and (response.content_length or 0) >= _COMPRESS_FROM_BYTES
    ):
        response.enable_compression()
    return response


# -- pages ---------------------------------------------------------------------------


async def _traces_page(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    view = request.query.get("view", "recent")
    if view not in _VIEWS:
        raise InvalidQueryError(f"view must be one of: {', '.join(_VIEWS)}")
    context: dict[str, Any] = {
        "view": view,
        "rows": [],
        "listing": None,
        "slow_scores": {},
        "day": "",
        "previous_day": "",
        "next_day": "",
        "today": _today(request),
        "form": {field: request.query.get(field, "") for field in _SEARCH_FIELDS},
        "searched": False,
    }
    if view == "recent":
        context["rows"] = await store.recent_traces(limit=_limit(request))
    elif view == "slow":
        slow = await store.slow_traces(limit=_limit(request, maximum=_MAX_LIMIT))
        listing = await list_traces(store, [trace_id for trace_id, _ in slow], limit=len(slow))
        context["listing"] = listing
        context["rows"] = listing.rows
        context["slow_scores"] = dict(slow)
    elif view == "errors":
        day = request.query.get("day") or context["today"]
        ids = await store.error_traces(day=day)
        listing = await list_traces(store, ids, limit=_limit(request), newest_first=True)
        context["listing"] = listing
        context["rows"] = listing.rows
        context["day"] = day
        context["previous_day"], context["next_day"] = _neighbours(day, context["today"])
    else:
        trace_id = _trace_id_param(request)
        if trace_id is not None:
            raise web.HTTPSeeOther(location=f"/traces/{trace_id}")
        filters = _search_filters(request)
        if any(value is not None for value in filters.values()):
            context["rows"] = await store.search(**filters, limit=_limit(request))
            context["searched"] = True
    return aiohttp_jinja2.render_template("traces.html", request, context)


async def _trace_page(request: web.Request) -> web.StreamResponse:
    trace, similar = await _trace_with_similar(request)

    def render() -> str:
        view = trace_view(trace, similar)
        context = {"view": view, "trace": view.trace, "data": view.page_data()}
        return aiohttp_jinja2.render_string("trace.html", request, context)

    # Analysing and drawing thousands of spans is CPU work: a worker thread does it,
    # so the loop keeps answering other requests (/api/health) meanwhile.
    text = await asyncio.to_thread(render)
    return web.Response(text=text, content_type="text/html", charset="utf-8")


# -- aggregates: stats, patterns, map --------------------------------------------------

_PERIODS = ("1h", "24h", "7d", "30d")


def _text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name, "").strip()
    return value or None


def _weeks(request: web.Request) -> int:
    return _limit(request, "weeks", default=4, maximum=5)


async def _stats_page(request: web.Request) -> web.StreamResponse:
    now_ms = _now_ms(request)
    period = request.query.get("since") or "24h"
    service = _text(request, "service")
    rows = await request.app[STORE].stats(service, since_ms(period, now_ms), now=now_ms)
    context = {
        "view": "stats",
        "rows": rows,
        "service": service or "",
        "period": period,
        "periods": _PERIODS,
    }
    return aiohttp_jinja2.render_template("stats.html", request, context)


async def _patterns_page(request: web.Request) -> web.StreamResponse:
    now_ms = _now_ms(request)
    service, operation = _text(request, "service"), _text(request, "operation")
    weeks = _weeks(request)
    context: dict[str, Any] = {
        "view": "patterns",
        "service": service or "",
        "operation": operation or "",
        "weeks": weeks,
        "pattern": None,
        "rows": [],
        "spots": [],
        "choices": [],
    }
    store = request.app[STORE]
    if service is not None and operation is not None:
        pattern = await store.patterns(service, operation, weeks, now=now_ms)
        context["pattern"] = pattern
        context["rows"] = heat_rows(pattern, now_ms)
        context["legend"] = heat_legend(pattern)
        context["spots"] = spot_views(pattern, now_ms)
    else:
        # Offer the busiest operations of the last week to pick from.
        context["choices"] = (await store.stats(since=now_ms - 7 * 86_400_000.0, now=now_ms))[:50]
    return aiohttp_jinja2.render_template("patterns.html", request, context)


async def _map_page(request: web.Request) -> web.StreamResponse:
    now_ms = _now_ms(request)
    period = request.query.get("since") or "24h"
    edges = await request.app[STORE].service_map(since_ms(period, now_ms), now=now_ms)
    context = {
        "view": "map",
        "edges": edges,
        "map": map_view(edges),
        "period": period,
        "periods": _PERIODS,
    }
    return aiohttp_jinja2.render_template("map.html", request, context)


async def _api_stats(request: web.Request) -> web.StreamResponse:
    now_ms = _now_ms(request)
    since = since_ms(request.query.get("since"), now_ms)
    rows = await request.app[STORE].stats(_text(request, "service"), since, now=now_ms)
    return web.json_response({"rows": stats_json(rows)})


async def _api_patterns(request: web.Request) -> web.StreamResponse:
    service, operation = _text(request, "service"), _text(request, "operation")
    if service is None or operation is None:
        raise InvalidQueryError("give a service and an operation")
    pattern = await request.app[STORE].patterns(service, operation, _weeks(request))
    return web.json_response(pattern_json(pattern))


async def _api_map(request: web.Request) -> web.StreamResponse:
    now_ms = _now_ms(request)
    since = since_ms(request.query.get("since"), now_ms)
    edges = await request.app[STORE].service_map(since, now=now_ms)
    return web.json_response({"edges": map_json(edges)})


# -- JSON API ------------------------------------------------------------------------


async def _api_health(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    # One cheap read proves Redis answers; StoreUnavailableError becomes the 503.
    await store.slow_traces(limit=1)
    return web.json_response(
        {"status": "ok", "redis": "reachable", "skipped_index_entries": store.skipped_index_entries}
    )


async def _api_recent(request: web.Request) -> web.StreamResponse:
    since = _number(request, "since")
    rows = await request.app[STORE].recent_traces(limit=_limit(request), since=since)
    return web.json_response({"traces": [summary_json(row) for row in rows]})


async def _api_slow(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    slow = await store.slow_traces(limit=_limit(request))
    listing = await list_traces(store, [trace_id for trace_id, _ in slow], limit=len(slow))
    scores = dict(slow)
    rows = []
    for row in listing.rows:
        item = summary_json(row)
        item["slow_duration_ms"] = round(scores[row.trace_id], 3)
        rows.append(item)
    return web.json_response({"traces": rows, "expired_trace_ids": list(listing.expired)})


async def _api_errors(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    day = request.query.get("day") or _today(request)
    ids = await store.error_traces(day=day)
    listing = await list_traces(store, ids, limit=_limit(request), newest_first=True)
    return web.json_response({"day": day, "total": len(ids), **_listing_json(listing)})


async def _api_search(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    filters = _search_filters(request)
    trace_id = _trace_id_param(request)
    if trace_id is not None:
        if filters["text"] is not None:
            raise InvalidQueryError("give either trace_id or text, not both")
        filters["text"] = trace_id  # the store's text filter matches a trace id exactly
    rows = await store.search(**filters, limit=_limit(request))
    return web.json_response({"traces": [summary_json(row) for row in rows]})


async def _api_trace(request: web.Request) -> web.StreamResponse:
    trace, similar = await _trace_with_similar(request)

    def report() -> str:
        return json.dumps(trace_report(trace, similar=similar))

    # As _trace_page: the analysis and its JSON run off the loop.
    return web.json_response(text=await asyncio.to_thread(report))


# -- static files --------------------------------------------------------------------


async def _static(request: web.Request) -> web.StreamResponse:
    asset = request.app[ASSETS].static.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)


async def _favicon(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently(location="/static/favicon.svg")


# -- helpers -------------------------------------------------------------------------


async def _trace_with_similar(request: web.Request) -> tuple[Trace, list[Trace]]:
    """The trace the path names and the similar traces to compare it with (``?similar=``)."""
    store = request.app[STORE]
    similar_limit = _limit(
        request, "similar", default=_DEFAULT_SIMILAR, maximum=_MAX_SIMILAR, minimum=0
    )
    trace: Trace | None = await store.get_trace(request.match_info["trace_id"])
    if trace is None:
        raise TraceNotFound(_not_found_message(request.match_info["trace_id"].lower()))
    return trace, await similar_traces(store, trace, limit=similar_limit)


def _not_found_message(trace_id: str) -> str:
    # Only called with an id the store validated: 32 hex digits, safe to echo.
    return (
        f"No spans are stored for trace {trace_id}. It never reached Redis, or it "
        "expired (traces are kept for 24 hours)."
    )


def _limit(
    request: web.Request,
    name: str = "limit",
    *,
    default: int = _DEFAULT_LIMIT,
    maximum: int = _MAX_LIMIT,
    minimum: int = 1,
) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise InvalidQueryError(f"{name} must be an integer from {minimum} to {maximum}")
    return value


def _number(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidQueryError(f"{name} must be a number, at least 0")
    return value


def _search_filters(request: web.Request) -> dict[str, Any]:
    def text(name: str) -> str | None:
        value = request.query.get(name, "").strip()
        return value or None

    return {
        "service": text("service"),
        "operation": text("operation"),
        "status": text("status"),
        "min_duration_ms": _number(request, "min_duration_ms"),
        "text": text("text"),
        "since": _number(request, "since"),
        "until": _number(request, "until"),
    }


def _listing_json(listing: Listing) -> dict[str, Any]:
    return {
        "traces": [summary_json(row) for row in listing.rows],
        "expired_trace_ids": list(listing.expired),
        "not_shown": listing.not_shown,
    }


def _trace_id_param(request: web.Request) -> str | None:
    raw = request.query.get("trace_id", "").strip().lower()
    if not raw:
        return None
    if not is_valid_trace_id(raw):
        raise InvalidQueryError("a trace id is 32 hex digits, not all zero")
    return raw


def _neighbours(day: str, today: str) -> tuple[str, str]:
    """The days before and after ``day`` (already validated by the store); none after today."""
    moment = date.fromisoformat(day)
    before = (moment - timedelta(days=1)).isoformat()
    after = (moment + timedelta(days=1)).isoformat()
    return before, after if after <= today else ""


def _now_ms(request: web.Request) -> float:
    return request.app[_CLOCK]() * 1000.0


def _today(request: web.Request) -> str:
    return utc_day(_now_ms(request))
