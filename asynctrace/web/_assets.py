"""The dashboard's templates and static files, read once into memory off the event loop.

Templates and static files ship inside the package. Reading them is file I/O, so it
happens in a worker thread when the app starts (``load``), never inside a request;
after that, rendering a page or serving a script touches no disk.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from importlib import resources

__all__ = ["Asset", "Assets"]

_PACKAGE = "asynctrace.web"
_CONTENT_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, content type and a strong ETag."""

    body: bytes
    content_type: str
    etag: str


class Assets:
    """Templates (name to source) and static files (name to ``Asset``), empty until loaded.

    ``templates`` is the very dict a ``jinja2.DictLoader`` is built over, so the loader
    sees the sources once ``load`` has filled it.
    """

    def __init__(self) -> None:
        self.templates: dict[str, str] = {}
        self.static: dict[str, Asset] = {}

    async def load(self) -> None:
        """Read every template and static file in a worker thread. Idempotent."""
        if self.templates:
            return
        templates, static = await asyncio.to_thread(_read_all)
        self.templates.update(templates)
        self.static.update(static)


def _read_all() -> tuple[dict[str, str], dict[str, Asset]]:
    root = resources.files(_PACKAGE)
    templates = {
        item.name: item.read_text(encoding="utf-8")
        for item in root.joinpath("templates").iterdir()
        if item.name.endswith(".html")
    }
    static: dict[str, Asset] = {}
    for item in root.joinpath("static").iterdir():
        suffix = item.name[item.name.rfind(".") :]
        content_type = _CONTENT_TYPES.get(suffix)
        if content_type is None:
            continue
        body = item.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        static[item.name] = Asset(body, content_type, etag)
    return templates, static
