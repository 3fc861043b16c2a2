"""Where the browser tests save their screenshots: ``artifacts/screenshots/`` at the
top of the repository, or under ``$ASYNCTRACE_ARTIFACTS`` when it is set."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

__all__ = ["screenshot_path"]

_REPO = Path(__file__).resolve().parents[2]


async def screenshot_path(name: str) -> Path:
    """The path for screenshot ``name`` (a ``.png`` file name), its directory made."""
    configured = os.environ.get("ASYNCTRACE_ARTIFACTS")
    directory = (Path(configured) if configured else _REPO / "artifacts") / "screenshots"
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    return directory / name
