"""The web dashboard: trace listings, the waterfall, and a read-only JSON API.

``create_app(store, token=None)`` builds the aiohttp application; ``serve(store,
host=..., port=..., token=...)`` runs it until cancelled. Install the ``web`` extra
(``pip install 'asynctrace[web]'``).

Pages:

- ``GET /``: traces. ``?view=recent`` (default), ``slow`` (the top-100 slow index),
  ``errors`` (``&day=YYYY-MM-DD``, default today UTC) or ``search`` (``&trace_id=``
  jumps to that trace; ``service``, ``operation``, ``status``, ``min_duration_ms``,
  ``text`` filter). ``limit`` caps the rows (1-1000, default 100).
- ``GET /traces/{trace_id}``: the waterfall with the critical path, bottleneck,
  error chain, span details and the comparison with similar traces.
- ``GET /stats?service=&since=``: requests, rate, error %, p50/p95/p99 and max per
  service and operation (``since`` is ``1h``, ``24h`` (default), ``7d``, ``30d``).
- ``GET /patterns?service=&operation=&weeks=``: the hour-of-week heatmap of p95 and
  the recurring hot spots; hot hours link to their slow traces while kept.
- ``GET /map?since=``: the service map as an SVG graph and a table of edges.

JSON API (all ``GET``; listing rows are ``{trace_id, operation, service, services,
duration_ms, status, start_time, error}``, times in epoch ms):

- ``/api/stats?service=&since=``: ``{"rows": [{service, operation, current,
  previous}]}``; ``current``/``previous`` hold ``count, errors, error_rate,
  rate_per_s, p50_ms, p95_ms, p99_ms, max_ms, seconds``. ``since`` is ``24h``/``7d``/
  ``2w`` back from now or epoch ms.
- ``/api/patterns?service=&operation=&weeks=``: ``{grid: 7 x 24 of {count, p95_ms,
  slow}, hot_spots: [{sentence, ...}], ...}``, Monday first, UTC.
- ``/api/map?since=``: ``{"edges": [{caller, callee, calls, calls_per_s,
  error_rate, p95_ms}]}``.
- ``/api/health``: ``{"status": "ok", "redis": "reachable", ...}``, 503 when Redis
  does not answer.
- ``/api/recent?limit=&since=``: ``{"traces": [row, ...]}``, newest first.
- ``/api/slow?limit=``: ``{"traces": [row + slow_duration_ms], "expired_trace_ids"}``,
  slowest first; ids whose spans expired are listed apart.
- ``/api/errors?day=&limit=``: ``{"day", "total", "traces", "expired_trace_ids",
  "not_shown"}``, traces with an error span that UTC day, newest first.
- ``/api/search?service=&operation=&status=&min_duration_ms=&text=&trace_id=&since=
  &until=&limit=``: ``{"traces": [row, ...]}``; every filter given must match.
- ``/api/traces/{trace_id}?similar=``: the trace: its spans as span JSON (the
  seed's camelCase format) in tree order, ``depths`` by span id, and ``analysis``:
  ``critical_path``, ``bottleneck``, ``error_chain``, ``self_time_ms`` and
  ``comparison`` against up to ``similar`` (0-50, default 20) recent traces with
  the same root service and operation.

Errors are ``{"error": {"status", "message"}}`` under ``/api/`` and a page
elsewhere: 400 for a malformed id or parameter, 401 without the token, 404 for an
unknown trace, 503 when Redis is unreachable, 502 when it refuses a query.

Security: the server binds 127.0.0.1 by default and refuses any other address
without a token. With a token, every request needs ``Authorization: Bearer
<token>``, or a visit to any page with ``?token=<token>``, which sets an HttpOnly,
SameSite=Strict session cookie and redirects to the same URL without it. Without
a token, only requests addressed to a loopback host name are answered (DNS
rebinding). Every response carries a strict Content-Security-Policy; all span text
is escaped; the app only answers GET and HEAD.
"""

from __future__ import annotations

# Imported here, before the modules that use them, so a missing extra is one clear line.
try:
    import aiohttp_jinja2  # noqa: F401
    import jinja2  # noqa: F401
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        "asynctrace.web needs the 'web' extra: pip install 'asynctrace[web]'", name=exc.name
    ) from exc

from asynctrace.web._app import create_app, serve

__all__ = ["create_app", "serve"]
