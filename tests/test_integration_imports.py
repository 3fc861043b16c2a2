"""Integrations load their library only when imported, and say how to install it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_asynctrace_loads_no_integration_library() -> None:
    probe = (
        "import sys, asynctrace, asynctrace.asgi, asynctrace.redis; "
        "print(sorted(m for m in ('httpx', 'asyncpg', 'starlette', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("module", "library"), [("httpx", "httpx"), ("asyncpg", "asyncpg")])
def test_missing_library_names_the_extra_to_install(
    module: str, library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, library, None)  # None: "import library" fails
    monkeypatch.delitem(sys.modules, f"asynctrace.{module}", raising=False)

    with pytest.raises(ImportError, match=rf"pip install 'asynctrace\[{module}\]'"):
        importlib.import_module(f"asynctrace.{module}")
