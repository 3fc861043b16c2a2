"""Runs the README's fragment ``python`` blocks, each in the names it assumes.

``python -m tests.readme_blocks README REDIS_URL`` executes every ``python`` block of
README except the complete service (the one calling ``web.run_app``, which
tests/test_readme.py starts as a process of its own). Each block runs with top-level
``await`` allowed, in a fresh namespace holding what the README's earlier sections
define (``asynctrace``, ``web``, ``ClientSession``, ``middleware``, an ``app``, a
stored ``trace_id``, a ``Row`` type); ``redis://localhost:6379/0`` is replaced by
``REDIS_URL`` so nothing reaches a Redis the test does not own. Prints one JSON
object: per block, its first line, the error if it raised, and the type of every
name it defined; then the most any block's tracer had exported right after it.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

import asynctrace
import asynctrace.aiohttp
import asynctrace.logs
from asynctrace.aiohttp import client_trace_config, middleware
from asynctrace.store import TraceStore

README_REDIS_URL = "redis://localhost:6379/0"


def fragment_blocks(readme: str) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    return [block for block in blocks if "web.run_app(" not in block]


async def _close(namespace: dict[str, Any], base: dict[str, Any]) -> None:
    for name, value in namespace.items():
        if base.get(name) is value:
            continue
        if isinstance(value, ClientSession):
            await value.close()
        elif isinstance(value, TraceStore):
            await value.aclose()


async def run(readme: str, redis_url: str) -> dict[str, Any]:
    asynctrace.configure(service="readme", redis_url=redis_url)
    async with asynctrace.span("readme harness") as root:
        trace_id = root.trace_id
    await asynctrace.flush()
    base: dict[str, Any] = {
        "__name__": "__readme__",
        "asyncio": asyncio,
        "logging": logging,
        "asynctrace": asynctrace,
        "web": web,
        "ClientSession": ClientSession,
        "client_trace_config": client_trace_config,
        "middleware": middleware,
        "app": web.Application(),
        "trace_id": trace_id,
        "Row": tuple,  # the reader's own row type
    }
    results = []
    exported = asynctrace.stats().exported  # the harness's span
    for block in fragment_blocks(readme):
        source = block.replace(README_REDIS_URL, redis_url)
        namespace = dict(base)
        error = None
        # A block may configure a tracer of its own (the OpenTelemetry one does): what
        # the harness's tracer exported is counted block by block, before it is replaced.
        await asynctrace.flush()
        tracer = asynctrace.get_tracer()
        assert tracer is not None
        before = tracer.stats().exported
        try:
            code = compile(source, "<README>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            outcome = eval(code, namespace)
            if inspect.iscoroutine(outcome):
                await outcome
        except Exception as exc:  # reported to the test, which fails on it
            error = f"{type(exc).__name__}: {exc}"
        finally:
            await _close(namespace, base)
            asynctrace.logs.uninstall()
            # Flushes the current tracer; a replaced one was shut down (and flushed).
            await (asynctrace.flush() if asynctrace.get_tracer() is tracer else tracer.shutdown())
            exported += tracer.stats().exported - before
        results.append(
            {
                "first_line": block.splitlines()[0],
                "error": error,
                "names": {
                    name: type(value).__name__
                    for name, value in namespace.items()
                    if name not in base and not name.startswith("__")
                },
                "trace_id": getattr(namespace.get("trace"), "trace_id", None),
            }
        )
    await asynctrace.shutdown()
    return {"blocks": results, "exported": exported, "harness_trace_id": trace_id}


if __name__ == "__main__":
    text = Path(sys.argv[1]).read_text(encoding="utf-8")
    sys.stdout.write(json.dumps(asyncio.run(run(text, sys.argv[2]))) + "\n")
