"""Who may reach asynctrace's local servers (the dashboard, the OTLP receiver).

Both bind loopback unless given a token, and without one answer only requests that
name a loopback host (DNS rebinding). The rules live here, below both, so that the
receiver does not need the dashboard's ``web`` extra to share them.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

__all__ = ["host_name", "is_loopback_host", "listening_url", "valid_token"]


def valid_token(token: str | None, *, server: str) -> str | None:
    """``token`` itself, or None for no token. ``ValueError`` naming ``server`` for an
    empty one or one with spaces or control characters (it travels in a header)."""
    if token is None:
        return None
    if not token.strip():
        raise ValueError(f"the {server} token must be a non-empty string")
    if token != token.strip() or any(ord(char) < 0x21 or ord(char) == 0x7F for char in token):
        raise ValueError(f"the {server} token must not contain spaces or control characters")
    return token


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.1``, ``::1``)."""
    name = host.strip().rstrip(".").lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a Host header: ``[::1]:8080`` is ``::1``, ``localhost:80`` is ``localhost``."""
    header = header.strip()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


def listening_url(runner: web.AppRunner, path: str) -> str:
    """The URL of ``path`` on the address ``runner`` listens on (the real port for 0)."""
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"
