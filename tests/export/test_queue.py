from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import pytest

import asynctrace
from asynctrace.export import ExportQueue, InMemoryExporter
from asynctrace.model import Span


def span(number: int) -> Span:
    return Span(
        "4bf92f3577b34da6a3ce929d0e0e4736", f"{number + 1:016x}", None, "svc", f"op{number}"
    )


class FlakyExporter:
    """Raises ConnectionError while ``down``; records what it wrote; signals each write."""

    def __init__(self) -> None:
        self.down = False
        self.written: list[Span] = []
        self.attempts = 0
        self.wrote = asyncio.Event()

    async def export(self, spans: Sequence[Span]) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionError("redis is down")
        self.written.extend(spans)
        self.wrote.set()

    async def shutdown(self) -> None:
        pass


async def no_wait(delay: float) -> None:
    await asyncio.sleep(0)


async def test_batch_size_wakes_the_worker_without_waiting_for_the_delay() -> None:
    exporter = FlakyExporter()
    queue = ExportQueue(exporter, batch_size=4, max_delay_s=3600)
    queue.start()
    for number in range(4):
        queue.append(span(number))
    async with asyncio.timeout(5):
        await exporter.wrote.wait()
    assert len(exporter.written) == 4
    await queue.shutdown()


async def test_a_partial_batch_goes_out_after_max_delay() -> None:
    exporter = FlakyExporter()
    queue = ExportQueue(exporter, batch_size=100, max_delay_s=0.01)
    queue.start()
    queue.append(span(1))
    async with asyncio.timeout(5):
        await exporter.wrote.wait()
    assert [s.operation for s in exporter.written] == ["op1"]
    await queue.shutdown()


async def test_full_queue_drops_oldest_and_counts_every_drop() -> None:
    exporter = FlakyExporter()
    queue = ExportQueue(exporter, max_queue=10, batch_size=1000, max_delay_s=3600)
    for number in range(25):
        queue.append(span(number))
    assert queue.stats().queued == 10
    assert queue.stats().dropped == 15
    assert await queue.flush()
    assert [s.operation for s in exporter.written] == [f"op{n}" for n in range(15, 25)]
    assert queue.stats().exported == 10


async def test_no_span_is_dropped_while_under_the_bound() -> None:
    exporter = FlakyExporter()
    queue = ExportQueue(exporter, max_queue=5000, batch_size=64, max_delay_s=0.001)
    queue.start()
    for number in range(4000):
        queue.append(span(number))
        if number % 500 == 0:
            await asyncio.sleep(0)
    assert await queue.flush()
    assert queue.stats().dropped == 0
    assert len(exporter.written) == 4000


async def test_outage_keeps_spans_queued_retries_and_resumes_by_itself() -> None:
    exporter = FlakyExporter()
    exporter.down = True
    queue = ExportQueue(exporter, max_queue=50, batch_size=10, max_delay_s=0, sleep=no_wait)
    queue.start()
    for number in range(80):
        queue.append(span(number))
    assert not await queue.flush()
    stats = queue.stats()
    assert stats.failed_batches >= 1
    assert stats.last_error == "ConnectionError: redis is down"
    assert stats.dropped == 30
    assert stats.queued == 50
    exporter.down = False
    async with asyncio.timeout(5):
        while len(exporter.written) < 50:
            exporter.wrote.clear()
            await exporter.wrote.wait()
    assert [s.operation for s in exporter.written] == [f"op{n}" for n in range(30, 80)]
    assert queue.stats().dropped == 30
    await queue.shutdown()


async def test_rejected_batch_is_counted_as_dropped_not_retried() -> None:
    class Rejecting(FlakyExporter):
        async def export(self, spans: Sequence[Span]) -> None:
            self.attempts += 1
            raise RuntimeError("WRONGTYPE")

    exporter = Rejecting()
    queue = ExportQueue(exporter, batch_size=10)
    for number in range(10):
        queue.append(span(number))
    assert await queue.flush()
    assert queue.stats().dropped == 10
    assert queue.stats().failed_batches == 1
    assert exporter.attempts == 1


async def test_spans_ended_in_threads_wake_the_worker_promptly() -> None:
    exporter = FlakyExporter()
    queue = ExportQueue(exporter, batch_size=1, max_delay_s=3600)
    queue.start()
    await asyncio.sleep(0)  # let the worker start waiting on an empty queue
    await asyncio.to_thread(queue.append, span(7))
    async with asyncio.timeout(5):
        await exporter.wrote.wait()
    assert [s.operation for s in exporter.written] == ["op7"]
    await queue.shutdown()


async def test_shutdown_counts_what_could_not_be_written() -> None:
    exporter = FlakyExporter()
    exporter.down = True
    queue = ExportQueue(exporter, batch_size=10, sleep=no_wait)
    for number in range(3):
        queue.append(span(number))
    assert not await queue.shutdown(timeout_s=1)
    assert queue.stats().dropped == 3
    queue.append(span(4))
    assert queue.stats().dropped == 4


async def test_flush_from_another_thread_loop_reaches_the_worker_loop() -> None:
    exporter = InMemoryExporter()
    queue = ExportQueue(exporter, batch_size=1000, max_delay_s=3600)
    queue.start()
    queue.append(span(1))
    result: list[bool] = []

    def other_loop() -> None:
        result.append(asyncio.run(queue.flush(timeout_s=5)))

    thread = threading.Thread(target=other_loop)
    thread.start()
    await asyncio.to_thread(thread.join)
    assert result == [True]
    assert len(exporter.spans) == 1
    await queue.shutdown()


async def test_tracer_keeps_error_spans_of_unsampled_traces(exporter: InMemoryExporter) -> None:
    asynctrace.configure(service="svc", exporter=exporter, sample_rate=0.0)
    try:
        async with asynctrace.span("ok-root"):
            pass
        with pytest.raises(KeyError):
            async with asynctrace.span("bad-root"):
                raise KeyError("x")
        await asynctrace.flush()
        (kept,) = exporter.spans
        assert kept.operation == "bad-root"
        assert kept.tags["sampling.kept"] == "error"
        assert asynctrace.stats().unsampled == 1
        assert asynctrace.stats().dropped == 0
    finally:
        await asynctrace.shutdown()


def test_invalid_settings_fail_fast() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        asynctrace.configure(sample_rate=2)
    with pytest.raises(ValueError, match="batch_size"):
        ExportQueue(InMemoryExporter(), batch_size=0)


async def test_an_outage_is_reported_in_one_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = FlakyExporter()
    exporter.down = True
    queue = ExportQueue(exporter, max_queue=50, batch_size=10, max_delay_s=0, sleep=no_wait)
    queue.start()
    queue.append(span(0))
    with caplog.at_level(logging.WARNING, logger="asynctrace"):
        assert not await queue.flush()
    await queue.shutdown(0)
    records = [record for record in caplog.records if "export failed" in record.getMessage()]
    assert [record.getMessage() for record in records] == [
        "asynctrace: export failed, will retry: ConnectionError: redis is down"
    ]
    assert not records[0].exc_info
