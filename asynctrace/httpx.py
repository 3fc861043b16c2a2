"""Tracing for httpx: a transport that makes one ``client`` span per outgoing request.

``httpx.AsyncClient(transport=asynctrace.httpx.transport())`` is all it takes. The
span is named and tagged as the aiohttp client's (``asynctrace._http``), the trace
headers are injected into the request, and the span ends when the response body is
closed, so it covers the download.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

try:
    import httpx
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        "asynctrace.httpx needs httpx: pip install 'asynctrace[httpx]'", name=exc.name
    ) from exc

from asynctrace._http import client_operation, record_client_error, valid_status
from asynctrace._ratelimit import report_internal_error
from asynctrace.context import ActiveSpan, span
from asynctrace.propagation import headers_to_add

__all__ = ["transport"]


def transport(
    wrapped: httpx.AsyncBaseTransport | None = None, *, error_status: int = 400
) -> httpx.AsyncBaseTransport:
    """An ``httpx.AsyncBaseTransport`` that traces each request sent through ``wrapped``.

    ``wrapped`` defaults to a new ``httpx.AsyncHTTPTransport()``; pass your own to
    keep its settings (retries, HTTP/2, limits, a mock). Each request becomes a
    ``client`` span, a child of the current span, named ``"HTTP {METHOD}
    {host[:port]}"``, with tags ``http.method``, ``http.url`` (no query string,
    fragment or userinfo) and ``http.status``. It is an error when the request fails
    (connection, timeout) or the status is ``error_status`` or above. The span ends
    when the response is closed (body read, ``aclose()``, leaving ``async with``).
    ``traceparent``, ``tracestate``, ``X-Trace-ID`` and ``X-Span-ID`` are added unless
    the caller set them. Closing the transport closes ``wrapped``. Raises
    ``ValueError`` for invalid options; never raises because of tracing.
    """
    return _TracingTransport(
        wrapped if wrapped is not None else httpx.AsyncHTTPTransport(),
        valid_status(error_status),
    )


class _TracingTransport(httpx.AsyncBaseTransport):
    def __init__(self, wrapped: httpx.AsyncBaseTransport, error_status: int) -> None:
        self.wrapped = wrapped
        self.error_status = error_status

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        client = _start(request)
        if client is None:
            return await self.wrapped.handle_async_request(request)
        try:
            response = await self.wrapped.handle_async_request(request)
        except BaseException as exc:
            try:
                record_client_error(client, exc)
            except Exception as inner:
                report_internal_error("client span end failed", inner)
            finally:
                client.end()
            raise
        try:
            status = response.status_code
            client.set_tag("http.status", status)
            if status >= self.error_status:
                client.set_status("error")
            stream = response.stream
            if response.is_closed or not isinstance(stream, httpx.AsyncByteStream):
                client.end()  # made with its body in memory (a mock): nothing to download
            else:
                response.stream = _EndOnClose(stream, client)
        except Exception as exc:
            report_internal_error("client span end failed", exc)
            client.end()
        return response

    async def aclose(self) -> None:
        await self.wrapped.aclose()


def _start(request: httpx.Request) -> ActiveSpan | None:
    try:
        url = request.url
        # netloc is host[:port] as a URL writes it (IPv6 bracketed, lowercase, IDNA),
        # without userinfo; raw_path keeps the path percent-encoded, as sent.
        host = url.netloc.decode("ascii")
        path = url.raw_path.partition(b"?")[0].decode("ascii")
        method = request.method
        client = span(
            client_operation(method, host),
            kind="client",
            tags={"http.method": method, "http.url": f"{url.scheme}://{host}{path}"},
        )
        # The caller's own headers win. httpx's Headers decode every name on each
        # read: the raw names are read once instead (a third of inject()'s cost).
        headers = request.headers
        present = {name.decode("latin-1").lower() for name, _ in headers.raw}
        for name, value in headers_to_add(present, client).items():
            headers[name] = value
        return client
    except Exception as exc:
        report_internal_error("client span start failed", exc)
        return None


class _EndOnClose(httpx.AsyncByteStream):
    """The response body, ending the request's span when it is closed.

    An iterator class, not an async generator: asyncio registers every async
    generator it starts (a weak set, a finaliser), a cost per request for nothing.
    """

    def __init__(self, stream: httpx.AsyncByteStream, client: ActiveSpan) -> None:
        self.stream = stream
        self.client = client
        self.chunks: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        self.chunks = self.stream.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        assert self.chunks is not None  # __aiter__ ran: httpx iterates with async for
        try:
            return await self.chunks.__anext__()
        except StopAsyncIteration:
            raise
        except BaseException as exc:
            # A body cut off half way (timeout, reset): the request failed after all.
            try:
                record_client_error(self.client, exc)
            except Exception as inner:
                report_internal_error("client span end failed", inner)
            raise

    async def aclose(self) -> None:
        try:
            await self.stream.aclose()
        finally:
            self.client.end()
