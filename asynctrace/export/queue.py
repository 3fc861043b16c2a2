"""The bounded queue between span ends and the exporter, drained by one background task.

A span's end is the only thing a request path does here: an O(1) deque append from
any thread, no I/O, no await. While the queue is below ``room`` the span appends
itself to ``spans`` (the context layer does it inline, without a call); otherwise it
goes through ``append``, which keeps the bound and wakes the task. The task takes
batches (when ``batch_size`` spans are waiting, or ``max_delay_s`` after the first
one arrived) and hands each to the exporter, keeping up to ``max_in_flight`` batches
in flight when replies are slow. When the exporter is unreachable, the batch goes
back to the front of the queue, whole (its retry is the same batch), and the task
backs off; the queue stays bounded by dropping its oldest spans. Every span is
exported, dropped (counted) or still queued, at every moment, shutdown included.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from asynctrace import clock
from asynctrace._ratelimit import (
    WINDOW_S,
    internal_error_count,
    report_expected,
    report_internal_error,
)
from asynctrace.export.protocol import BatchRejected, ExportStats, SpanExporter
from asynctrace.model import Span

__all__ = ["ExportQueue"]

Sleep = Callable[[float], Awaitable[None]]

# An idle task also looks at the queue this often (or every max_delay_s, if longer):
# a span ended on another thread can slip past the moment the task went idle.
_IDLE_RECHECK_S = 1.0
# What shutdown() gives the tasks it cancels to put their batches back.
_STOP_GRACE_S = 1.0
# A batch still unanswered after this is slow: the next may start beside it. Below
# it, one batch at a time: batches in flight together on a fast Redis only add
# longer holds of the loop (their replies land together), not throughput.
_SLOW_REPLY_S = 0.05

logger = logging.getLogger("asynctrace")


@dataclass(slots=True)
class _LoopState:
    """The worker of one event loop, with the loop-bound primitives it uses."""

    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # The tasks writing a batch each (the worker's and flush()'s).
    writers: set[asyncio.Task[bool]] = field(default_factory=set)
    # The retryable failures the worker has backed off for.
    failures_seen: int = 0
    launched_at: float = 0.0  # loop time of the latest batch handed to a writer

    @property
    def is_alive(self) -> bool:
        # A loop that stopped (run_until_complete returned) but was not closed would
        # never run the task again: it is not alive either.
        return (
            self.loop.is_running()
            and not self.loop.is_closed()
            and self.task is not None
            and not self.task.done()
        )


class _Batch:
    """Spans handed to the exporter together; settled once: exported, dropped or
    put back (whichever of the writer and shutdown comes first)."""

    __slots__ = ("is_settled", "number", "spans")

    def __init__(self, spans: list[Span], number: int) -> None:
        self.spans = spans
        self.number = number  # batches are numbered as taken: oldest spans first
        self.is_settled = False


class ExportQueue:
    """Holds finished spans until the background task exports them in batches.

    ``spans`` and ``room`` are what a span's end reads (``context.EndedSpans``): below
    ``room`` it appends itself to ``spans``. ``room`` is one less than a batch while
    the task runs and is not idle (the bound, less one, once a full batch has woken
    it), else 0, so that the append which fills a batch, the first one after the task
    went idle, and every one while no task runs or after shutdown go through
    ``append``.

    Args:
        exporter: where batches go.
        max_queue: spans held at most; beyond it the oldest are dropped and counted.
        batch_size: spans per ``export`` call; reaching it wakes the worker at once.
        max_delay_s: longest a span waits for its batch to fill.
        max_in_flight: batches being written at once, at most (more than one only
            while replies are slower than batches fill).
        backoff_initial_s, backoff_max_s: retry delays after a failed export (doubling,
            with jitter); export resumes within ``backoff_max_s`` of Redis answering.
        sleep: the backoff sleep, injectable so tests need not wait.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue: int = 20_000,
        batch_size: int = 256,
        max_delay_s: float = 0.2,
        max_in_flight: int = 4,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 1.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or max_in_flight < 1:
            raise ValueError("max_queue, batch_size and max_in_flight must be at least 1")
        if max_delay_s < 0 or backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("delays must be positive, backoff_max_s >= backoff_initial_s")
        self.exporter = exporter
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._max_delay_s = max_delay_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._backoff_s = backoff_initial_s
        self._sleep = sleep
        self.spans: deque[Span] = deque()
        self.room = 0
        self._state: _LoopState | None = None
        self._is_closed = False
        # append()'s bound (0 once closed) and the queue length before the append that
        # fills a batch; room is that length while the task waits for a batch.
        self._bound = max_queue
        self._wake_at = batch_size - 1
        self._batch_room = min(batch_size, max_queue) - 1
        self._idle_recheck_s = max(max_delay_s, _IDLE_RECHECK_S)
        # False while no worker runs (before the first, after its loop ended): then
        # every append tries to start one, not only the empty -> non-empty transition.
        self._has_worker = False
        self._reset_counts()
        _queues.add(self)

    def _reset_counts(self) -> None:
        self._exported = 0
        self._dropped = 0
        self._failed_batches = 0
        self._retryable_failures = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._last_success_at: float | None = None
        # (number, size) of the retried batches at the front of ``spans``, oldest
        # first: each is taken (or dropped) whole, so its retry is the same batch.
        self._retry_sizes: deque[tuple[int, int]] = deque()
        self._batches_taken = 0
        self._in_flight: set[_Batch] = set()
        self._settle_lock = threading.Lock()
        self._drops_reported = 0
        self._drops_reported_at: float | None = None

    # -- request path ------------------------------------------------------------------

    def append(self, span: Span) -> None:
        """Queue a finished span. Any thread; O(1); never blocks, never raises.

        A span's end calls this when the queue has no ``room`` for a direct append.
        """
        spans = self.spans
        size = len(spans)
        if size < self._bound:
            spans.append(span)
            # Wake the worker only on the transitions it waits for, not on every span.
            if (size == 0 or size == self._wake_at or not self._has_worker) and self._wake():
                # Whoever wakes the task opens room (so no room opens for a task that
                # went idle unwoken): up to the batch, or once the batch is full, up to
                # the bound. The task's own pass narrows it to the batch again.
                self.room = self._batch_room if size < self._wake_at else self._bound - 1
            return
        self._append_over_bound(span)

    def _append_over_bound(self, span: Span) -> None:
        if self._is_closed:
            self._dropped += 1
            return
        spans = self.spans
        with contextlib.suppress(IndexError):  # the worker may have emptied it meanwhile
            if self._retry_sizes:
                # The oldest spans are a batch that failed: dropped whole, so no
                # part of it is retried as a different batch.
                for _ in range(self._retry_sizes.popleft()[1]):
                    spans.popleft()
                    self._dropped += 1
            else:
                spans.popleft()
                self._dropped += 1
        spans.append(span)
        size = len(spans)
        if size == 1 or size == self._batch_size or not self._has_worker:
            self._wake()

    def _wake(self) -> bool:
        """Wake the task, or start one on the running loop. True when a task will look."""
        try:
            state = self._state
            loop = asyncio.events._get_running_loop()
            if state is None or not state.is_alive:
                if loop is None or self._is_closed:
                    return False
                self._start(loop)
                return True
            if loop is state.loop:
                state.wake.set()
            else:
                # A worker thread or another loop: hand the wake-up to the worker's loop.
                state.loop.call_soon_threadsafe(state.wake.set)
            return True
        except Exception as exc:
            report_internal_error("waking the export task failed", exc)
            return False

    # -- worker ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background task on the running loop (if it is not running yet)."""
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or not state.is_alive:
            self._start(loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        state = _LoopState(loop)
        # An empty context: the export runs outside every span, even when configure()
        # was called inside one, so an instrumented client it shares stays untraced.
        state.task = loop.create_task(
            self._run(state), name="asynctrace-export", context=contextvars.Context()
        )
        state.task.add_done_callback(self._worker_ended)
        self._state = state
        self._has_worker = True
        return state

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        state = self._state
        if state is None or state.task is task:
            self._has_worker = False
            self.room = 0

    async def _run(self, state: _LoopState) -> None:
        try:
            while True:
                state.wake.clear()
                self._report_drops()
                if self._retryable_failures != state.failures_seen:
                    # A batch failed and went back: let the others settle, then back off.
                    await self._wait_writers(state)
                    state.failures_seen = self._retryable_failures
                    await self._sleep(self._next_backoff())
                    continue
                if not self.spans:
                    # Idle: the next span must go through append(), which wakes us.
                    # room drops before the check, so a span ended on this thread
                    # either is seen here or takes append().
                    self.room = 0
                    if not self.spans:
                        await self._wait_idle(state)
                    continue
                if not self._is_closed:
                    self.room = self._batch_room
                if len(self.spans) < self._batch_size:
                    await self._wait_for_batch(state)
                await self._launch_available(
                    state, failures_at=state.failures_seen, full_batches_only=True
                )
        except asyncio.CancelledError:
            if not self._is_closed and self.spans:
                # Cancelled by loop shutdown: push what is queued, within a grace period.
                # In this task: a task started now would outlive the loop's shutdown.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    async with asyncio.timeout(_STOP_GRACE_S):
                        while (batch := self._take()) is not None:
                            if not await self._write(batch):
                                break
            raise

    async def _wait_idle(self, state: _LoopState) -> None:
        """Wait for a wake-up, looking again every ``_idle_recheck_s`` all the same."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._idle_recheck_s):
                await state.wake.wait()

    async def _wait_for_batch(self, state: _LoopState) -> None:
        """Wait until a batch is full or the oldest queued span is ``max_delay_s`` old."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._max_delay_s):
                while len(self.spans) < self._batch_size:
                    state.wake.clear()
                    await state.wake.wait()

    def _next_backoff(self) -> float:
        delay = self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self._backoff_max_s)
        return delay * random.uniform(0.5, 1.0)

    # -- batches in flight -------------------------------------------------------------

    async def _launch_available(
        self, state: _LoopState, *, failures_at: int | None, full_batches_only: bool = False
    ) -> None:
        """Hand batches to writer tasks until the queue is empty, stopping once a
        retryable failure came after ``failures_at`` (None: never stopping for one).
        The next batch starts when none is in flight, or beside the others when the
        latest has waited ``_SLOW_REPLY_S`` for its reply, at most ``max_in_flight``.

        With ``full_batches_only`` (the worker), the first batch goes whatever its size
        (it is full, or its wait is over) and the rest only while they are full: the
        spans that came in meanwhile wait for their own batch to fill (or
        ``max_delay_s``), instead of going out in many small batches that each pay a
        round trip and the per-batch commands.
        """
        is_first = True
        while self.spans and (failures_at is None or failures_at == self._retryable_failures):
            if full_batches_only and not is_first and len(self.spans) < self._batch_size:
                return
            if state.writers:
                is_full = len(state.writers) >= self._max_in_flight
                waited = state.loop.time() - state.launched_at
                if is_full or waited < _SLOW_REPLY_S:
                    # A slot opens when a batch lands, or once the latest is slow.
                    await asyncio.wait(
                        state.writers,
                        timeout=None if is_full else _SLOW_REPLY_S - waited,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    continue
            is_first = False
            self._launch(state)

    def _launch(self, state: _LoopState) -> None:
        """Take a batch and start the task that writes it."""
        batch = self._take()
        if batch is None:
            return
        writer = state.loop.create_task(self._write(batch), name="asynctrace-export-batch")
        state.writers.add(writer)
        writer.add_done_callback(state.writers.discard)
        state.launched_at = state.loop.time()

    def _take(self) -> _Batch | None:
        """The next batch (a retried one whole), counted in flight; None when empty."""
        spans = self.spans
        if self._retry_sizes:
            number, size = self._retry_sizes.popleft()  # a retry keeps its age
        else:
            self._batches_taken += 1
            number, size = self._batches_taken, min(len(spans), self._batch_size)
        taken: list[Span] = []
        with contextlib.suppress(IndexError):
            for _ in range(size):
                taken.append(spans.popleft())
        if not taken:
            return None
        batch = _Batch(taken, number)
        self._in_flight.add(batch)  # with the pops, before any await: always counted
        return batch

    async def _wait_writers(self, state: _LoopState) -> None:
        """Wait until every batch in flight on ``state``'s loop is settled."""
        while state.writers:
            await asyncio.wait(set(state.writers))

    async def _write(self, batch: _Batch) -> bool:
        """Export ``batch`` and settle it; False after a retryable failure."""
        clock.resync()  # spans that start from now on follow a step of the wall clock
        try:
            await self.exporter.export(batch.spans)
        except (ConnectionError, TimeoutError) as exc:
            self._note_failure(exc)
            self._retryable_failures += 1
            if self._settle(batch):
                self._requeue(batch)
            report_expected("export failed, will retry", exc)
            return False
        except asyncio.CancelledError:
            if self._settle(batch):
                self._requeue(batch)
            raise
        except Exception as exc:
            self._note_failure(exc)
            if self._settle(batch):
                self._dropped += len(batch.spans)
            if isinstance(exc, BatchRejected):
                report_expected("a batch was refused, its spans are dropped", exc)
            else:
                report_internal_error("exporter rejected a batch; its spans are dropped", exc)
            return True
        if self._settle(batch):
            self._exported += len(batch.spans)
        self._last_error = None
        self._last_success_at = time.time()
        self._backoff_s = self._backoff_initial_s
        return True

    def _settle(self, batch: _Batch) -> bool:
        """Take ``batch`` out of flight; False when shutdown already counted it."""
        with self._settle_lock:
            if batch.is_settled:
                return False
            batch.is_settled = True
            self._in_flight.discard(batch)
            return True

    def _note_failure(self, exc: BaseException) -> None:
        self._failed_batches += 1
        self._last_error = f"{type(exc).__name__}: {exc}"[:500]
        self._last_error_at = time.time()

    def _requeue(self, batch: _Batch) -> None:
        """Put ``batch`` back among the retried batches at the front, in age order
        (batches in flight together can fail in any order)."""
        spans = self.spans
        retried = self._retry_sizes
        position = offset = 0
        for number, size in retried:
            if number > batch.number:
                break
            position += 1
            offset += size
        # Rotations are single C calls; failures are rare, so O(queue) is fine here.
        spans.rotate(-offset)
        spans.extendleft(reversed(batch.spans))
        spans.rotate(offset)
        retried.insert(position, (batch.number, len(batch.spans)))
        with contextlib.suppress(IndexError):
            while len(spans) > self._max_queue and retried:
                # Over the bound: the oldest batch goes, whole.
                for _ in range(retried.popleft()[1]):
                    spans.popleft()
                    self._dropped += 1
        # A flush() that failed must leave the retry to the worker, which may be
        # waiting on an empty queue: requeueing is a transition it has to see.
        self._wake()

    def _report_drops(self) -> None:
        """Log drops in one line, at most once per window, with their count."""
        dropped = self._dropped
        if dropped == self._drops_reported:
            return
        now = time.monotonic()
        reported_at = self._drops_reported_at
        if reported_at is not None and now - reported_at < WINDOW_S:
            return
        since = "" if reported_at is None else f" in the last {now - reported_at:.0f} s"
        logger.warning(
            "asynctrace: %d spans dropped%s (%d in all): the export queue was full "
            "(max_queue=%d) or batches were refused; last error: %s",
            dropped - self._drops_reported,
            since,
            dropped,
            self._max_queue,
            self._last_error or "none",
        )
        self._drops_reported = dropped
        self._drops_reported_at = now

    # -- control -----------------------------------------------------------------------

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Export everything queued so far. True when all of it was written.

        Returns False (without raising) when the exporter failed or ``timeout_s``
        passed; the spans stay queued (or in flight) for the background task.
        """
        if self._is_closed:
            return not self.spans  # shut down: nothing is queued, no worker to start
        loop = asyncio.get_running_loop()
        state = self._state
        if state is not None and state.is_alive and state.loop is not loop:
            future = asyncio.run_coroutine_threadsafe(self._flush_here(timeout_s), state.loop)
            try:
                async with asyncio.timeout(timeout_s):
                    return await asyncio.wrap_future(future)
            except TimeoutError:
                future.cancel()
                return False
        # In a task of its own, with an empty context: the export runs outside every
        # span even when flush() is awaited inside one, as the worker's does, so an
        # instrumented client it shares with the app makes no spans (each of which
        # would have to be exported in turn).
        return await loop.create_task(self._flush_here(timeout_s), context=contextvars.Context())

    async def _flush_here(self, timeout_s: float | None) -> bool:
        state = self._state
        if state is None or not state.is_alive:
            state = self._start(asyncio.get_running_loop())
        failures_at = self._retryable_failures
        try:
            async with asyncio.timeout(timeout_s):
                # The timeout cancels only this wait: the batches in flight go on,
                # their spans counted as queued until they settle.
                while True:
                    await self._launch_available(state, failures_at=failures_at)
                    await self._wait_writers(state)
                    if self._retryable_failures != failures_at:
                        return False
                    if not self.spans:
                        return True
        except TimeoutError:
            return False

    async def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Flush within ``timeout_s``, stop the task, shut the exporter down.

        What could not be written (queued, or in a batch whose reply did not come in
        time) is counted as dropped and logged in one line. True when nothing was lost.
        """
        flushed = await self.flush(timeout_s)
        self._close()
        state, self._state = self._state, None
        if state is not None:
            await self._stop(state)
        lost = self._abandon()
        if lost:
            logger.warning(
                "asynctrace: %d spans not exported within %g s at shutdown, counted as "
                "dropped; last error: %s",
                lost,
                timeout_s,
                self._last_error or "none (the exporter was still writing)",
            )
        try:
            async with asyncio.timeout(timeout_s):
                await self.exporter.shutdown()
        except Exception as exc:
            report_internal_error("exporter shutdown failed", exc)
        return flushed and lost == 0

    async def _stop(self, state: _LoopState) -> None:
        """Cancel the worker and the writers (their batches go back to the queue)."""
        try:
            if state.loop is asyncio.get_running_loop():
                await self._cancel_tasks(state)
            elif not state.loop.is_closed():
                # The worker runs on another thread's loop: cancel its tasks there.
                future = asyncio.run_coroutine_threadsafe(self._cancel_tasks(state), state.loop)
                async with asyncio.timeout(_STOP_GRACE_S):
                    await asyncio.wrap_future(future)
        except Exception as exc:
            # Whatever is still in flight is counted by _abandon().
            report_expected("stopping the export task took too long", exc)

    async def _cancel_tasks(self, state: _LoopState) -> None:
        tasks = [task for task in (state.task, *state.writers) if task is not None]
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            # wait() does not re-raise their cancellation; bounded, a writer only
            # disconnects and releases its connection on the way out.
            await asyncio.wait(pending, timeout=_STOP_GRACE_S)

    def _abandon(self) -> int:
        """Count what is left, queued or in flight, as dropped; returns how many."""
        with self._settle_lock:
            lost = 0
            for batch in self._in_flight:
                batch.is_settled = True
                lost += len(batch.spans)
            self._in_flight.clear()
            lost += len(self.spans)
            self.spans.clear()
            self._retry_sizes.clear()
            self._dropped += lost
        return lost

    def hand_over(self, successor: Callable[[Span], None]) -> None:
        """Close without a loop: pass the queued spans to ``successor``."""
        self._close()
        spans = self.spans
        self._retry_sizes.clear()
        while spans:
            successor(spans.popleft())

    def _close(self) -> None:
        # After this every span's end goes through append(), which drops and counts.
        self.room = 0
        self._bound = 0
        self._is_closed = True

    def _after_fork_in_child(self) -> None:
        """Start over in a forked child: the parent's queued spans are the parent's
        to export, and its loop, task and connections are not this process's."""
        self.spans.clear()
        self._state = None
        self._has_worker = False
        self.room = 0
        self._reset_counts()

    def stats(self) -> ExportStats:
        """Health of the export path. Never blocks."""
        queued = len(self.spans)
        in_flight = sum([len(batch.spans) for batch in list(self._in_flight)])
        # A span that checked room just before shutdown can land in the closed queue
        # afterwards: it will not be exported, so it counts as dropped.
        late = queued if self._is_closed else 0
        return ExportStats(
            queued=queued - late + in_flight,
            exported=self._exported,
            dropped=self._dropped + late,
            failed_batches=self._failed_batches,
            last_error=self._last_error,
            internal_errors=internal_error_count(),
            in_flight=in_flight,
            last_error_at=self._last_error_at,
            last_success_at=self._last_success_at,
        )


_queues: weakref.WeakSet[ExportQueue] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for queue in list(_queues):
        queue._after_fork_in_child()


# A pre-fork server configures once, then forks its workers: each child exports
# its own spans, on its own loop and connections.
os.register_at_fork(after_in_child=_after_fork_in_child)
