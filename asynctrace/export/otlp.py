"""``OTLPExporter``: spans to any OpenTelemetry backend over OTLP/HTTP.

Batches come from the export queue, as for ``RedisExporter``: the queue keeps them
bounded, counts drops, and retries a batch the exporter reports as not written
(``ConnectionError``). The body is OTLP protobuf when ``opentelemetry-proto`` is
installed (``pip install 'asynctrace[otlp]'``), else OTLP/JSON; both carry the same
fields (``asynctrace.model.otlp``). aiohttp is the HTTP client.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

import aiohttp
from yarl import URL

from asynctrace._ratelimit import report_internal_error
from asynctrace.export import _otlp_proto as otlp_proto
from asynctrace.export.protocol import BatchRejected
from asynctrace.model import Span
from asynctrace.model.otlp import otlp_from_spans

__all__ = ["DEFAULT_ENDPOINT", "OTLPExportError", "OTLPExporter"]

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
# OTLP/HTTP: these answers (and connection failures) mean "try again later".
_RETRYABLE_STATUSES = frozenset((429, 502, 503, 504))
_JSON = "application/json"
# Batches above this are encoded and compressed in a thread, not on the loop.
_ENCODE_INLINE_SPANS = 32

Sleep = Callable[[float], Awaitable[None]]


class OTLPExportError(BatchRejected):
    """The endpoint refused a batch for good (a 4xx other than 429): it is dropped,
    counted, and logged as one line (an expected condition, not a bug of ours)."""


class OTLPExporter:
    """Sends spans as OTLP/HTTP ``POST`` requests to ``endpoint`` (``…/v1/traces``).

    Args:
        endpoint: the full traces URL of a collector, Jaeger, Tempo or ``asynctrace
            receive``; ``http`` or ``https``.
        headers: extra request headers (e.g. ``{"Authorization": "Bearer …"}``).
        encoding: ``"protobuf"`` or ``"json"``; default protobuf when
            ``opentelemetry-proto`` is installed, else JSON.
        compression: ``"gzip"`` (default) or None.
        timeout_s: bound on one request.
        max_attempts: requests per batch before it goes back to the queue; a 429,
            502, 503, 504 or a connection failure is retried with doubling backoff
            (``backoff_initial_s`` to ``backoff_max_s``), or after the reply's
            ``Retry-After`` when it fits within ``backoff_max_s``.

    ``export`` raises ``ConnectionError`` when the endpoint stayed unavailable (the
    queue keeps the batch and retries it later) and ``OTLPExportError`` when it
    refused the batch (the queue drops and counts it). Spans the endpoint rejects in
    a partial success are counted in ``rejected_spans`` (the endpoint's message in
    ``last_rejection``). Only sampled spans, and the
    error spans of unsampled traces, are sent. The constructor raises
    ``ValueError`` for bad arguments (``encoding="protobuf"`` without
    ``opentelemetry-proto`` too); nothing here blocks the loop.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        headers: Mapping[str, str] | None = None,
        encoding: Literal["protobuf", "json"] | None = None,
        compression: Literal["gzip"] | None = "gzip",
        timeout_s: float = 10.0,
        max_attempts: int = 4,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        url = URL(endpoint)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("endpoint must be an http:// or https:// URL")
        if encoding not in (None, "protobuf", "json"):
            raise ValueError("encoding must be 'protobuf' or 'json'")
        if compression not in (None, "gzip"):
            raise ValueError("compression must be 'gzip' or None")
        if not 0 < timeout_s < math.inf or max_attempts < 1:
            raise ValueError("timeout_s must be positive and max_attempts at least 1")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("backoff delays must satisfy 0 < backoff_initial_s <= backoff_max_s")
        if encoding is None:
            encoding = "protobuf" if otlp_proto.is_available() else "json"
        elif encoding == "protobuf" and not otlp_proto.is_available():
            # Refused here: every batch would otherwise fail and be dropped.
            raise ValueError(
                "encoding='protobuf' needs opentelemetry-proto: "
                "pip install 'asynctrace[otlp]', or pass encoding='json'"
            )
        self.endpoint = endpoint
        self.encoding: Literal["protobuf", "json"] = encoding
        self.compression = compression
        self.timeout_s = float(timeout_s)
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.rejected_spans = 0
        self.last_rejection: str | None = None
        self._sleep = sleep
        content_type = otlp_proto.PROTOBUF_CONTENT_TYPE if encoding == "protobuf" else _JSON
        self._headers = {**(headers or {}), "Content-Type": content_type}
        if compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    async def export(self, spans: Sequence[Span]) -> None:
        """Send ``spans`` in one request, retrying as the class says. See the class."""
        sendable = [span for span in spans if span.is_sampled or span.status == "error"]
        if not sendable:
            return
        if len(sendable) > _ENCODE_INLINE_SPANS:
            # Encoding costs about 10-20 us a span: a full batch would hold the loop
            # for milliseconds, so it is made in a thread (ended spans do not change).
            body = await asyncio.to_thread(self._body, sendable)
        else:
            body = self._body(sendable)
        delay = self.backoff_initial_s
        cause = ""
        for attempt in range(1, self.max_attempts + 1):
            wait: float | None
            try:
                status, reply, retry_after = await self._post(body)
            except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
                cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                wait = None
            else:
                if 200 <= status < 300:
                    self._note_partial_success(reply)
                    return
                cause = f"HTTP {status}: {_reply_text(reply)}"
                if status not in _RETRYABLE_STATUSES:
                    raise OTLPExportError(f"{self.endpoint} refused {len(sendable)} spans: {cause}")
                wait = retry_after
            if attempt == self.max_attempts:
                break
            if wait is None or wait > self.backoff_max_s:
                wait = delay
                delay = min(delay * 2, self.backoff_max_s)
            await self._sleep(wait)
        raise ConnectionError(f"OTLP endpoint {self.endpoint} unavailable: {cause}")

    async def shutdown(self) -> None:
        """Close the HTTP session. Never raises."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                await session.close()
            except Exception as exc:
                report_internal_error("closing the OTLP session failed", exc)

    def _body(self, spans: Sequence[Span]) -> bytes:
        data = otlp_from_spans(spans)
        if self.encoding == "protobuf":
            body = otlp_proto.encode_request(data)
        else:
            body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return gzip.compress(body, 6) if self.compression == "gzip" else body

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._session_loop is not loop:
            # A session belongs to one loop; the old one is left to its loop's end.
            session = self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
            self._session_loop = loop
        return session

    async def _post(self, body: bytes) -> tuple[int, bytes, float | None]:
        session = self._session_here()
        async with session.post(self.endpoint, data=body, headers=self._headers) as response:
            reply = await response.read()
            return response.status, reply, _retry_after_s(response.headers.get("Retry-After"))

    def _note_partial_success(self, reply: bytes) -> None:
        rejected, message = 0, ""
        try:
            if self.encoding == "protobuf":
                rejected, message = otlp_proto.decode_response(reply) if reply else (0, "")
            elif reply:
                partial = json.loads(reply).get("partialSuccess") or {}
                rejected = int(partial.get("rejectedSpans") or 0)
                message = str(partial.get("errorMessage") or "")
        except (ValueError, AttributeError, TypeError):
            return  # an answer we cannot read says nothing about rejections
        if rejected > 0:
            self.rejected_spans += rejected
            # The endpoint's own message is not logged: it may quote span data.
            report_internal_error("the OTLP endpoint rejected spans", detail=f"{rejected} spans")
            self.last_rejection = message[:500]


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _reply_text(reply: bytes) -> str:
    text = reply[:200].decode("utf-8", "replace")
    return " ".join(text.split()) or "(no body)"
