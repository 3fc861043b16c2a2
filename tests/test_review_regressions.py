"""Regression tests for bugs found in review: each named by the behaviour it keeps."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence

import pytest

import asynctrace
from asynctrace import ids
from asynctrace.export import ExportQueue, InMemoryExporter
from asynctrace.model import Span, SpanDecodeError, decode_span, encode_span
from asynctrace.tracer import reset_tracer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(autouse=True)
def _forget_tracer() -> Iterator[None]:
    yield
    reset_tracer()


def span(number: int = 1) -> Span:
    return Span(TRACE, f"{number:016x}", None, "svc", f"op{number}")


def test_a_non_finite_log_timestamp_is_replaced_so_the_span_stays_readable() -> None:
    live = span()
    live.log("late", timestamp=float("nan"))
    live.log("later", timestamp=float("inf"))
    live.end()
    back = decode_span(encode_span(live))
    assert [log.message for log in back.logs] == ["late", "later"]


@pytest.mark.parametrize("start", [1e17, -5.0])
def test_a_start_time_no_key_can_name_is_a_decode_error(start: float) -> None:
    raw = json.dumps(
        {"traceId": TRACE, "spanId": "a" * 16, "startTime": start, "duration": 1, "status": "ok"}
    )
    with pytest.raises(SpanDecodeError, match="between 1970 and 9999"):
        decode_span(raw)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("draw", [ids.new_span_id, ids.new_trace_id], ids=["span", "trace"])
def test_a_forked_child_does_not_reuse_the_parents_pooled_ids(draw: Callable[[], str]) -> None:
    draw()  # fill the pool in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, draw().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_id != draw()


def test_pooled_trace_ids_are_valid_and_distinct_across_refills() -> None:
    drawn = [ids.new_trace_id() for _ in range(2000)]  # several refills of the pool
    assert all(ids.is_valid_trace_id(trace_id) for trace_id in drawn)
    assert len(set(drawn)) == len(drawn)


@pytest.mark.parametrize(("pool", "digits"), [("_span_pool", 16), ("_trace_pool", 32)])
def test_a_refill_never_hands_out_an_all_zero_id(
    monkeypatch: pytest.MonkeyPatch, pool: str, digits: int
) -> None:
    # Random bytes with an all-zero id where an id starts, and zeros straddling two
    # ids (not a zero id: both must stay).
    width = digits // 2
    raw = bytes([1]) * width + bytes(width) + bytes([2]) * (width - 3) + bytes(6)
    raw += bytes([3]) * (width - 3)
    monkeypatch.setattr(ids.os, "urandom", lambda size: raw)
    drawn: list[str] = getattr(ids, pool)
    drawn.clear()
    try:
        ids._refill(drawn, digits, "0" * digits)
        assert drawn == [
            "01" * width,
            "02" * (width - 3) + "000000",
            "000000" + "03" * (width - 3),
        ]
    finally:
        drawn.clear()


async def test_entering_the_same_span_twice_does_not_leave_it_current(
    exporter: InMemoryExporter,
) -> None:
    asynctrace.configure(service="svc", exporter=exporter)
    outer = asynctrace.span("outer")
    with outer, outer:
        assert asynctrace.current_span() is outer
    assert asynctrace.current_span() is None
    await asynctrace.shutdown()


async def test_flush_after_shutdown_starts_no_worker() -> None:
    queue = ExportQueue(InMemoryExporter())
    await queue.shutdown()
    assert await queue.flush()
    assert queue._state is None


class DownExporter(InMemoryExporter):
    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def export(self, spans: Sequence[Span]) -> None:
        if self.down:
            raise ConnectionError("redis is down")
        await super().export(spans)


def test_a_new_loop_restarts_the_worker_for_spans_left_by_an_ended_loop() -> None:
    exporter = DownExporter()
    queue = ExportQueue(exporter, batch_size=256, max_delay_s=0)

    async def first_loop() -> None:
        queue.start()
        queue.append(span(1))
        assert not await queue.flush(timeout_s=1)  # Redis down: span 1 stays queued

    async def second_loop() -> None:
        exporter.down = False
        queue.append(span(2))  # the queue is not empty: no 0 -> 1 transition here
        assert queue._state is not None
        assert queue._state.is_alive  # restarted by the append, not only by a flush
        assert await queue.flush(timeout_s=5)
        await queue.shutdown()

    asyncio.run(first_loop())
    asyncio.run(second_loop())
    assert sorted(s.operation for s in exporter.spans) == ["op1", "op2"]


def test_flush_does_not_hand_work_to_a_stopped_loop() -> None:
    exporter = InMemoryExporter()
    queue = ExportQueue(exporter, batch_size=256, max_delay_s=3600)
    stopped = asyncio.new_event_loop()
    try:

        async def start_there() -> None:
            queue.start()
            queue.append(span(1))

        stopped.run_until_complete(start_there())  # stopped now, not closed

        async def flush_here() -> bool:
            return await queue.flush(timeout_s=5)

        assert asyncio.run(flush_here())
        assert [s.operation for s in exporter.spans] == ["op1"]
    finally:
        # The first worker still waits on the stopped loop: end it there, so no task is
        # left pending when the loop is closed (Python reports those at exit).
        left = asyncio.all_tasks(stopped)
        for task in left:
            task.cancel()
        stopped.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        stopped.close()


async def test_shutdown_cancels_a_worker_running_on_another_threads_loop() -> None:
    queue = ExportQueue(InMemoryExporter())
    started = threading.Event()
    other = asyncio.new_event_loop()

    def run_other() -> None:
        asyncio.set_event_loop(other)
        other.call_soon(queue.start)
        other.call_soon(started.set)
        other.run_forever()

    thread = threading.Thread(target=run_other)
    thread.start()
    try:
        await asyncio.to_thread(started.wait, 5)
        state = queue._state
        assert state is not None
        assert state.task is not None
        done = threading.Event()
        task = state.task
        # Callbacks belong to the task's own loop: register it there.
        other.call_soon_threadsafe(task.add_done_callback, lambda _: done.set())
        await queue.shutdown(timeout_s=2)
        assert await asyncio.to_thread(done.wait, 5)
        assert task.cancelled()
    finally:
        other.call_soon_threadsafe(other.stop)
        await asyncio.to_thread(thread.join)
        other.close()


class SlowShutdownExporter(InMemoryExporter):
    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def export(self, spans: Sequence[Span]) -> None:
        await self.release.wait()
        await super().export(spans)


async def test_a_flush_timeout_does_not_cancel_a_replaced_tracers_shutdown() -> None:
    old_exporter = SlowShutdownExporter()
    asynctrace.configure(service="one", exporter=old_exporter)
    async with asynctrace.span("before"):
        pass
    asynctrace.configure(service="two", exporter=InMemoryExporter())
    assert not await asynctrace.flush(timeout_s=0.05)
    old_exporter.release.set()
    assert await asynctrace.flush(timeout_s=5)
    assert [s.operation for s in old_exporter.spans] == ["before"]
    assert old_exporter.is_shut_down
    await asynctrace.shutdown()


async def test_a_span_in_flight_during_configure_reaches_the_new_exporter() -> None:
    first, second = InMemoryExporter(), InMemoryExporter()
    asynctrace.configure(service="one", exporter=first)
    in_flight = asynctrace.span("in-flight")
    asynctrace.configure(service="two", exporter=second)
    assert await asynctrace.flush()  # the first tracer is shut down now
    in_flight.end()
    assert await asynctrace.flush()
    assert [s.operation for s in second.spans] == ["in-flight"]
    assert asynctrace.stats().dropped == 0
    await asynctrace.shutdown()


def test_configure_outside_a_loop_hands_queued_spans_to_the_new_tracer() -> None:
    second = InMemoryExporter()
    asynctrace.configure(service="one", exporter=InMemoryExporter())
    with asynctrace.span("queued-before"):
        pass
    asynctrace.configure(service="two", exporter=second)

    async def drain() -> None:
        assert await asynctrace.flush()
        await asynctrace.shutdown()

    asyncio.run(drain())
    assert [s.operation for s in second.spans] == ["queued-before"]


def test_a_full_queue_whose_worker_ended_restarts_it_on_the_next_append() -> None:
    exporter = DownExporter()
    queue = ExportQueue(exporter, max_queue=3, batch_size=256, max_delay_s=0)

    async def first_loop() -> None:
        queue.start()
        for number in range(3):
            queue.append(span(number + 1))
        assert not await queue.flush(timeout_s=1)  # Redis down: the queue stays full

    async def second_loop() -> None:
        exporter.down = False
        # Over the bound: the oldest go, and they are a batch that failed, dropped
        # whole (its retry must be the same batch, issue 16 item 5).
        queue.append(span(4))
        assert queue._state is not None
        assert queue._state.is_alive
        assert await queue.flush(timeout_s=5)
        await queue.shutdown()

    asyncio.run(first_loop())
    asyncio.run(second_loop())
    assert sorted(s.operation for s in exporter.spans) == ["op4"]
    assert queue.stats().dropped == 3
