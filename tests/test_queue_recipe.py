"""The README's queue recipe runs as printed and links the consumer to the producer."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

import asynctrace
from asynctrace.export import InMemoryExporter
from asynctrace.tracer import Tracer

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def queue_recipe() -> str:
    """The recipe's code block, read outside the event loop."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### A trace through a queue", 1)[1]
    match = re.search(r"```python\n(.+?)\n```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


async def test_readme_queue_recipe_makes_the_consumer_a_child_of_the_producer(
    tracer: Tracer, exporter: InMemoryExporter, queue_recipe: str
) -> None:
    namespace: dict[str, object] = {"__name__": "readme_queue_recipe"}
    exec(compile(queue_recipe, str(README), "exec"), namespace)

    async with asyncio.timeout(10):
        await namespace["main"]()  # type: ignore[operator]  # defined by the recipe
    await asyncio.sleep(0)  # let the cancelled consumer finish
    assert await asynctrace.flush()

    (published,) = exporter.by_operation("publish order")
    (processed,) = exporter.by_operation("process order")
    assert processed.trace_id == published.trace_id
    assert processed.parent_span_id == published.span_id
    assert published.tags["order.id"] == "42"
