"""Every span is exported, dropped (counted) or still queued: with batches in flight,
after a timed-out flush, at shutdown, and while replies are slow (issue 16, items 3
and 8)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from asynctrace.export import BatchRejected, ExportQueue
from asynctrace.model import Span


def span(number: int) -> Span:
    return Span("4bf92f3577b34da6a3ce929d0e0e4736", f"{number + 1:016x}", None, "svc", "op")


class GatedExporter:
    """Holds every batch until ``gate`` opens; counts the batches waiting on it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0
        self.most_waiting = 0
        self.arrived = asyncio.Event()
        self.written: list[Span] = []
        self.fail_with: Exception | None = None

    async def export(self, spans: Sequence[Span]) -> None:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        self.arrived.set()
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        if self.fail_with is not None:
            raise self.fail_with
        self.written.extend(spans)

    async def shutdown(self) -> None:
        pass


def accounted(queue: ExportQueue) -> int:
    stats = queue.stats()
    return stats.exported + stats.dropped + stats.queued


async def test_a_timed_out_flush_keeps_the_batch_in_flight_counted_as_queued() -> None:
    exporter = GatedExporter()
    queue = ExportQueue(exporter, batch_size=100, max_in_flight=2)
    for number in range(1000):
        queue.append(span(number))
    # The second batch starts beside the first once that one is slow (50 ms): long
    # before this timeout, whose timer comes later.
    assert not await queue.flush(timeout_s=0.3)
    stats = queue.stats()
    assert stats.in_flight == 200  # two batches held by the exporter
    assert stats.queued == 1000
    assert accounted(queue) == 1000
    exporter.gate.set()
    assert await queue.flush(timeout_s=5)
    assert len(exporter.written) == 1000
    assert accounted(queue) == queue.stats().exported == 1000
    assert await queue.shutdown()


async def test_a_timed_out_shutdown_counts_every_span_and_returns_false(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = GatedExporter()
    queue = ExportQueue(exporter, batch_size=100, max_in_flight=2)
    queue.start()
    for number in range(1000):
        queue.append(span(number))
    async with asyncio.timeout(5):
        await exporter.arrived.wait()  # the worker holds a batch
    with caplog.at_level(logging.WARNING, logger="asynctrace"):
        assert not await queue.shutdown(timeout_s=0.05)
    stats = queue.stats()
    assert (stats.exported, stats.dropped, stats.queued, stats.in_flight) == (0, 1000, 0, 0)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "asynctrace: 1000 spans not exported within 0.05 s at shutdown, counted as "
        "dropped; last error: none (the exporter was still writing)"
    ]
    assert not any(record.exc_info for record in caplog.records)


async def test_slow_replies_keep_several_batches_in_flight_up_to_the_bound() -> None:
    exporter = GatedExporter()
    queue = ExportQueue(exporter, batch_size=10, max_in_flight=3, max_delay_s=0)
    queue.start()
    for number in range(100):
        queue.append(span(number))
    async with asyncio.timeout(5):
        while exporter.waiting < 3:
            exporter.arrived.clear()
            await exporter.arrived.wait()
    for _ in range(5):
        await asyncio.sleep(0)  # a fourth batch would start now if the bound let it
    assert exporter.most_waiting == 3
    assert queue.stats().in_flight == 30
    assert accounted(queue) == 100
    exporter.gate.set()
    assert await queue.flush(timeout_s=5)
    assert len(exporter.written) == 100
    await queue.shutdown()


async def test_last_error_has_a_time_and_clears_when_a_batch_is_written() -> None:
    exporter = GatedExporter()
    exporter.gate.set()
    exporter.fail_with = ConnectionError("Redis unreachable: refused")
    queue = ExportQueue(exporter, batch_size=10)
    for number in range(10):
        queue.append(span(number))
    assert not await queue.flush()
    failed = queue.stats()
    assert failed.last_error == "ConnectionError: Redis unreachable: refused"
    assert failed.last_error_at is not None
    assert failed.last_success_at is None
    assert failed.queued == 10
    exporter.fail_with = None
    assert await queue.flush()
    recovered = queue.stats()
    assert recovered.last_error is None
    assert recovered.last_error_at == failed.last_error_at
    assert recovered.last_success_at is not None
    assert recovered.last_success_at >= failed.last_error_at
    await queue.shutdown()


async def test_an_expected_failure_is_one_line_without_a_traceback_once_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = GatedExporter()
    exporter.gate.set()
    exporter.fail_with = ConnectionError("Redis unreachable: Connection refused")
    queue = ExportQueue(exporter, batch_size=10)
    for number in range(10):
        queue.append(span(number))
    with caplog.at_level(logging.WARNING, logger="asynctrace"):
        for _ in range(5):
            assert not await queue.flush()
    assert [record.getMessage() for record in caplog.records] == [
        "asynctrace: export failed, will retry: "
        "ConnectionError: Redis unreachable: Connection refused"
    ]
    assert caplog.records[0].exc_info is None
    await queue.shutdown(timeout_s=0.1)


async def test_a_refused_batch_is_dropped_and_logged_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = GatedExporter()
    exporter.gate.set()
    exporter.fail_with = BatchRejected("1 of 4 Redis commands failed, first: OOM command")
    queue = ExportQueue(exporter, batch_size=10)
    for number in range(10):
        queue.append(span(number))
    with caplog.at_level(logging.WARNING, logger="asynctrace"):
        assert await queue.flush()
    assert queue.stats().dropped == 10
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "asynctrace: a batch was refused, its spans are dropped: "
        "BatchRejected: 1 of 4 Redis commands failed, first: OOM command"
    ]
    await queue.shutdown()


async def test_drops_are_logged_in_one_line_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = GatedExporter()
    queue = ExportQueue(exporter, max_queue=50, batch_size=10, max_delay_s=0)
    queue.start()
    for number in range(50):
        queue.append(span(number))
    async with asyncio.timeout(5):
        await exporter.arrived.wait()
    with caplog.at_level(logging.WARNING, logger="asynctrace"):
        for number in range(200):  # the queue stays full: the oldest go
            queue.append(span(number))
        exporter.gate.set()
        assert await queue.flush(timeout_s=5)
        for number in range(200):  # more drops within the window: not logged again
            queue.append(span(number))
        await queue.flush(timeout_s=5)
    drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1
    assert drops[0].startswith("asynctrace: ")
    assert "spans dropped" in drops[0]
    assert "(max_queue=50)" in drops[0]
    stats = queue.stats()
    assert stats.dropped > 0
    assert stats.exported + stats.dropped + stats.queued == 450
    await queue.shutdown()


async def test_a_retried_batch_is_the_same_batch() -> None:
    batches: list[list[str]] = []

    class FailsOnce:
        def __init__(self) -> None:
            self.failed = False

        async def export(self, spans: Sequence[Span]) -> None:
            batches.append([s.span_id for s in spans])
            if not self.failed:
                self.failed = True
                raise TimeoutError("no reply")

        async def shutdown(self) -> None:
            pass

    queue = ExportQueue(FailsOnce(), batch_size=7)
    for number in range(5):
        queue.append(span(number))
    assert not await queue.flush()
    for number in range(5, 20):  # newer spans must not join the retried batch
        queue.append(span(number))
    assert await queue.flush()
    assert batches[1] == batches[0]
    assert sorted(i for batch in batches[1:] for i in batch) == [f"{n + 1:016x}" for n in range(20)]
    await queue.shutdown()
