"""ExportQueue.append's fast path and its edges: a closed queue, a full one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from asynctrace.export import ExportQueue
from asynctrace.model import Span
from tests.export.batch_recorder import Recorder


def span(number: int) -> Span:
    return Span(
        "4bf92f3577b34da6a3ce929d0e0e4736", f"{number + 1:016x}", None, "svc", f"op{number}"
    )


async def test_spans_ended_after_shutdown_are_dropped_and_counted() -> None:
    queue = ExportQueue(Recorder(), max_queue=10)
    queue.append(span(0))
    assert await queue.shutdown()
    for number in range(3):
        queue.append(span(number))
    assert queue.stats().queued == 0
    assert queue.stats().dropped == 3


async def test_a_full_queue_still_wakes_the_worker_when_it_holds_a_batch() -> None:
    exporter = Recorder()
    queue = ExportQueue(exporter, max_queue=3, batch_size=3, max_delay_s=3600)
    queue.start()
    await asyncio.sleep(0)  # let the worker start waiting
    for number in range(5):  # the last two overflow: oldest dropped, batch still full
        queue.append(span(number))
    async with asyncio.timeout(5):
        await exporter.wrote.wait()
    assert exporter.batches == [["op2", "op3", "op4"]]
    assert queue.stats().dropped == 2
    await queue.shutdown()


async def test_the_first_span_of_an_empty_queue_wakes_the_worker() -> None:
    exporter = Recorder()
    queue = ExportQueue(exporter, batch_size=1, max_delay_s=3600)
    queue.start()
    await asyncio.sleep(0)
    queue.append(span(7))
    async with asyncio.timeout(5):
        await exporter.wrote.wait()
    assert exporter.batches == [["op7"]]
    await queue.shutdown()


class Gate(Recorder):
    """Holds each export until ``release`` is set; ``started`` tells an export began."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def export(self, spans: Sequence[Span]) -> None:
        self.started.set()
        await self.release.wait()
        await super().export(spans)


async def test_spans_arriving_during_an_export_wait_for_their_own_full_batch() -> None:
    exporter = Gate()
    queue = ExportQueue(exporter, batch_size=4, max_delay_s=3600)
    queue.start()
    for number in range(4):
        queue.append(span(number))
    async with asyncio.timeout(5):
        await exporter.started.wait()
    for number in range(4, 7):  # three more while the first batch is on its way
        queue.append(span(number))
    exporter.release.set()
    async with asyncio.timeout(5):
        await exporter.wrote.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert exporter.batches == [["op0", "op1", "op2", "op3"]]
    assert queue.stats().queued == 3
    exporter.wrote.clear()
    queue.append(span(7))  # the batch is full: it goes at once
    async with asyncio.timeout(5):
        await exporter.wrote.wait()
    assert exporter.batches[-1] == ["op4", "op5", "op6", "op7"]
    queue.append(span(8))
    assert await queue.flush()  # flush still drains a partial batch
    assert exporter.batches[-1] == ["op8"]
    await queue.shutdown()
