"""The direct hand-off: a span's end appends itself to the queue while it has room.

Below ``room`` no method runs on a span's end; these tests check that the queue
still wakes its task on every transition it waits for, keeps its bound and counts
every drop, whatever mix of direct appends and ``append`` calls fills it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence

import pytest

import asynctrace
from asynctrace.export import ExportQueue
from asynctrace.export import queue as queue_module
from asynctrace.model import Span
from asynctrace.tracer import Tracer, reset_tracer
from tests.export.batch_recorder import Recorder


def queue_of(tracer: Tracer) -> ExportQueue:
    assert tracer.queue is not None
    return tracer.queue


def count_calls(tracer: Tracer) -> list[Span]:
    """Spans that went through ``on_end`` (the queue's append) rather than directly."""
    called: list[Span] = []
    append = tracer.on_end

    def counted(span: Span) -> None:
        called.append(span)
        append(span)

    tracer.on_end = counted
    return called


async def until_idle(queue: ExportQueue) -> None:
    """Let the task run until it waits on an empty queue (bounded: 1000 loop turns)."""
    for _ in range(1000):
        await asyncio.sleep(0)  # first: a task just started has not run yet
        if not queue.spans and queue.room == 0:
            return
    raise AssertionError("the export task never went idle")


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    exporter = Recorder()
    yield exporter
    await asynctrace.shutdown()
    reset_tracer()


async def end_spans(names: Sequence[str]) -> None:
    for name in names:
        async with asynctrace.span(name):
            pass


async def test_spans_append_directly_until_the_batch_is_full(recorder: Recorder) -> None:
    tracer = asynctrace.configure(service="svc", exporter=recorder, batch_size=8, max_delay_s=3600)
    queue = queue_of(tracer)
    await until_idle(queue)
    called = count_calls(tracer)

    await end_spans(["s0"])  # the first span after idle wakes the task and opens room
    assert [span.operation for span in called] == ["s0"]
    assert queue.room == 7
    await end_spans([f"s{number}" for number in range(1, 7)])
    assert len(called) == 1  # six direct appends, no call
    assert not recorder.batches
    await end_spans(["s7"])  # fills the batch: it must wake the task
    assert [span.operation for span in called] == ["s0", "s7"]
    async with asyncio.timeout(5):
        await recorder.wrote.wait()
    assert recorder.batches == [[f"s{number}" for number in range(8)]]
    await until_idle(queue)
    assert queue.room == 0


async def test_the_bound_holds_while_the_task_cannot_run(recorder: Recorder) -> None:
    tracer = asynctrace.configure(
        service="svc", exporter=recorder, max_queue=10, batch_size=4, max_delay_s=3600
    )
    queue = queue_of(tracer)
    await until_idle(queue)
    for number in range(25):  # never yields: the task cannot take a batch meanwhile
        with asynctrace.span(f"s{number}"):
            pass
    stats = asynctrace.stats()
    assert (stats.queued, stats.dropped) == (10, 15)
    assert await asynctrace.flush()
    assert recorder.operations == [f"s{number}" for number in range(15, 25)]


async def test_a_span_slipping_past_the_idle_moment_goes_out_at_the_recheck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A span's end on another thread can read room just before the task closes it and
    # append just after the task found the queue empty: the idle task looks again.
    monkeypatch.setattr(queue_module, "_IDLE_RECHECK_S", 0.01)
    exporter = Recorder()
    queue = ExportQueue(exporter, batch_size=8, max_delay_s=0.001)
    queue.start()
    await until_idle(queue)
    late = Span("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", None, "svc", "late")
    queue.spans.append(late)  # what the direct path does, without waking anyone
    async with asyncio.timeout(5):
        await exporter.wrote.wait()
    assert exporter.operations == ["late"]
    await queue.shutdown()


async def test_a_span_landing_in_a_closed_queue_counts_as_dropped() -> None:
    queue = ExportQueue(Recorder())
    assert await queue.shutdown()
    late = Span("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", None, "svc", "late")
    queue.spans.append(late)  # a direct append that checked room before shutdown
    stats = queue.stats()
    assert (stats.queued, stats.dropped) == (0, 1)
    assert queue.room == 0


async def test_spans_ended_on_many_threads_all_arrive(recorder: Recorder) -> None:
    asynctrace.configure(service="svc", exporter=recorder, batch_size=64, max_delay_s=0.005)
    start = threading.Barrier(4)

    def work(thread: int) -> None:
        start.wait()
        for number in range(500):
            with asynctrace.span(f"t{thread}-{number}"):
                pass

    await asyncio.gather(*(asyncio.to_thread(work, thread) for thread in range(4)))
    assert await asynctrace.flush()
    stats = asynctrace.stats()
    assert (stats.exported, stats.dropped, stats.queued) == (2000, 0, 0)
    assert sorted(recorder.operations) == sorted(
        f"t{thread}-{number}" for thread in range(4) for number in range(500)
    )
