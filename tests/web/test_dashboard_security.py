"""Token, Host and header rules of the dashboard, escaping of span text, and ``serve``."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from dashboard_traces import SLOW_TRACE_ID, XSS_IMG, XSS_SCRIPT, export, slow_checkout, xss_trace

from asynctrace.store import TraceStore
from asynctrace.testing import free_port
from asynctrace.web import create_app, serve
from asynctrace.web._security import CONTENT_SECURITY_POLICY, COOKIE_NAME

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]

TOKEN = "s3cret-Token_42"
XSS_TRACE_ID = "c0" * 16
EXPECTED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, store: TraceStore) -> Client:
    return await aiohttp_client(create_app(store))


@pytest.fixture
async def token_client(aiohttp_client: ClientFactory, store: TraceStore) -> Client:
    return await aiohttp_client(create_app(store, token=TOKEN))


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- headers -------------------------------------------------------------------------


def test_the_policy_is_the_strict_one() -> None:
    assert CONTENT_SECURITY_POLICY == EXPECTED_CSP


@pytest.mark.parametrize(
    "path",
    ["/", "/api/recent", "/static/app.css", "/nothing", f"/traces/{'ab' * 16}", "/traces/x"],
)
async def test_every_response_carries_the_security_headers(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.headers["Content-Security-Policy"] == EXPECTED_CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Cache-Control" in response.headers


async def test_refusals_carry_the_security_headers_too(token_client: Client) -> None:
    response = await token_client.get("/")
    assert response.status == 401
    assert response.headers["Content-Security-Policy"] == EXPECTED_CSP


async def test_pages_have_no_inline_script_or_style(client: Client, redis_url: str) -> None:
    await export(redis_url, slow_checkout())
    for path in ("/", "/?view=search", "/?view=errors", f"/traces/{SLOW_TRACE_ID}"):
        text = await (await client.get(path)).text()
        assert " style=" not in text
        assert "<style" not in text
        assert " on" + "click=" not in text
        scripts = re.findall(r"<script([^>]*)>", text)
        assert all(
            'src="/static/' in attrs or 'type="application/json"' in attrs for attrs in scripts
        )


# -- token ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", f"/traces/{SLOW_TRACE_ID}", "/static/trace.js"])
async def test_pages_and_static_files_need_the_token(token_client: Client, path: str) -> None:
    response = await token_client.get(path)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "access token" in await response.text()


@pytest.mark.parametrize("path", ["/api/health", "/api/recent", "/api/nothing"])
async def test_the_api_needs_the_token(token_client: Client, path: str) -> None:
    response = await token_client.get(path)
    assert response.status == 401
    assert (await response.json())["error"]["status"] == 401


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN[:-1]}", "Bearer é"],
)
async def test_a_wrong_authorization_header_is_refused(token_client: Client, header: str) -> None:
    response = await token_client.get("/api/recent", headers={"Authorization": header})
    assert response.status == 401


async def test_the_bearer_header_opens_everything(token_client: Client) -> None:
    for path in ("/", "/api/health", "/static/app.css"):
        response = await token_client.get(path, headers=_bearer())
        assert response.status == 200, path
    lower = await token_client.get("/api/health", headers={"Authorization": f"bearer {TOKEN}"})
    assert lower.status == 200


async def test_a_token_link_sets_a_strict_cookie_and_strips_itself(token_client: Client) -> None:
    response = await token_client.get(
        f"/?view=search&token={TOKEN}&service=orders", allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/?view=search&service=orders"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert TOKEN not in cookie  # a derived session value, not the token itself
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    # The test client keeps the cookie, as a browser would.
    followed = await token_client.get("/?view=search&service=orders")
    assert followed.status == 200
    assert (await token_client.get("/api/health")).status == 200


async def test_a_wrong_token_link_or_cookie_is_refused(token_client: Client) -> None:
    response = await token_client.get("/?token=wrong", allow_redirects=False)
    assert response.status == 401
    assert "Set-Cookie" not in response.headers
    forged = await token_client.get("/api/health", headers={"Cookie": f"{COOKIE_NAME}={TOKEN}"})
    assert forged.status == 401


async def test_the_api_answers_a_token_parameter_directly(token_client: Client) -> None:
    response = await token_client.get(f"/api/health?token={TOKEN}", allow_redirects=False)
    assert response.status == 200


@pytest.mark.parametrize(
    "target", ["//evil.example/path", "/\\evil.example/path", "///evil.example"]
)
async def test_the_token_redirect_never_leaves_the_site(token_client: Client, target: str) -> None:
    # A raw request line: aiohttp's client would read "//host" as another server.
    reader, writer = await asyncio.open_connection(token_client.host, token_client.port)
    try:
        writer.write(
            f"GET {target}?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        head = (await reader.read()).decode("latin-1").split("\r\n\r\n", 1)[0]
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith("HTTP/1.1 303")
    location = re.search(r"^Location: (.*)$", head, re.MULTILINE | re.IGNORECASE)
    assert location is not None
    assert location.group(1).startswith("/")
    assert not location.group(1).startswith(("//", "/\\"))


async def test_an_empty_token_is_a_setup_error(store: TraceStore) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        create_app(store, token="")
    with pytest.raises(ValueError, match="spaces or control characters"):
        create_app(store, token="two words")


# -- DNS rebinding -------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "10.0.0.5", "[2001:db8::1]:80"]
)
async def test_without_a_token_only_loopback_host_names_are_answered(
    client: Client, host: str
) -> None:
    response = await client.get("/api/health", headers={"Host": host})
    assert response.status == 403
    assert "loopback" in (await response.json())["error"]["message"]


@pytest.mark.parametrize("host", ["localhost:8080", "127.0.0.1", "[::1]:8080", "127.0.0.2:1"])
async def test_loopback_host_names_are_answered(client: Client, host: str) -> None:
    response = await client.get("/api/health", headers={"Host": host})
    assert response.status == 200


async def test_a_request_without_a_host_header_is_answered(client: Client) -> None:
    # HTTP/1.0 clients may omit Host; browsers never do, so no rebinding risk.
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(b"GET /api/health HTTP/1.0\r\n\r\n")
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1")
        await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    assert " 200 " in status_line


async def test_with_a_token_any_host_name_is_answered(token_client: Client) -> None:
    response = await token_client.get(
        "/api/health", headers={"Host": "traces.internal", **_bearer()}
    )
    assert response.status == 200


# -- escaping --------------------------------------------------------------------------


async def test_span_text_is_escaped_in_pages(client: Client, redis_url: str) -> None:
    await export(redis_url, xss_trace(XSS_TRACE_ID))
    for path in ("/", f"/traces/{XSS_TRACE_ID}", "/?view=search&operation=img"):
        text = await (await client.get(path)).text()
        assert XSS_IMG not in text
        assert "<script>window" not in text
        assert "&lt;img src=x onerror=" in text
    page = await (await client.get(f"/traces/{XSS_TRACE_ID}")).text()
    # Exactly two script elements end: the JSON data block and trace.js.
    assert page.count("</script>") == 2
    data = page.split('id="trace-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data
    assert "\\u003cimg src=x onerror=" in data


async def test_span_text_is_plain_data_in_the_api(client: Client, redis_url: str) -> None:
    await export(redis_url, xss_trace(XSS_TRACE_ID))
    response = await client.get(f"/api/traces/{XSS_TRACE_ID}")
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["operation"] == XSS_IMG
    assert body["spans"][0]["tags"]["user.agent"] == XSS_SCRIPT


# -- serve -----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "example.com"])
async def test_serve_refuses_a_public_address_without_a_token(store: TraceStore, host: str) -> None:
    with pytest.raises(ValueError, match="without a token"):
        await serve(store, host=host, port=free_port())


async def test_serve_refuses_a_bad_port(store: TraceStore) -> None:
    with pytest.raises(ValueError, match="port"):
        await serve(store, port=70000)


class _Listening(logging.Handler):
    """Sets an event when ``serve`` logs that it listens."""

    def __init__(self) -> None:
        super().__init__()
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "listening" in record.getMessage():
            self.event.set()


@pytest.fixture
def listening() -> Iterator[_Listening]:
    handler = _Listening()
    logger = logging.getLogger("asynctrace.web")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_serve_runs_until_cancelled_and_keeps_tokens_out_of_the_access_log(
    store: TraceStore, listening: _Listening, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    task = asyncio.create_task(serve(store, host="127.0.0.1", port=port, token=TOKEN))
    async with asyncio.timeout(10):
        await listening.event.wait()
    with caplog.at_level(logging.INFO, logger="asynctrace.web.access"):
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/api/health"
            async with session.get(url, params={"token": TOKEN}) as response:
                assert response.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    access = [record.getMessage() for record in caplog.records if record.name.endswith("access")]
    assert access
    assert "/api/health 200" in access[0]
    assert all(TOKEN not in line for line in access)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/api/health")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_body_that_does_not_decompress_is_answered_without_an_unhandled_exception(
    store: TraceStore, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    urls: list[str] = []
    listening = asyncio.Event()
    task = asyncio.create_task(
        serve(store, port=0, on_listening=lambda url: (urls.append(url), listening.set()))
    )
    body = b"not gzip"
    request = (
        f"{method} /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: gzip\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        with caplog.at_level(logging.DEBUG, logger="aiohttp"):
            async with asyncio.timeout(10):
                await listening.wait()
                port = int(urls[0].rsplit(":", 1)[1].rstrip("/"))
                # Read to the server's close: what it logs for the request is logged by then.
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    writer.write(request)
                    reply = await reader.read()
                finally:
                    writer.close()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert reply.startswith(b"HTTP/1.1 200 " if method == "GET" else b"HTTP/1.1 405 ")
    assert [
        record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR
    ] == []
