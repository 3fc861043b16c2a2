"""The bounded queue between span ends and the exporter, drained by one background task.

A span's end is the only thing a request path does here: an O(1) deque append from
any thread, no I/O, no await. While the queue is below ``room`` the span appends
itself to ``spans`` (the context layer does it inline, without a call); otherwise it
goes through ``append``, which keeps the bound and wakes the task. The task takes
batches (when ``batch_size`` spans are waiting, or ``max_delay_s`` after the first
one arrived) and hands each to the exporter. When the exporter is unreachable, the
batch goes back to the front of the queue and the task backs off; the queue stays
bounded by dropping its oldest spans, and every drop is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from asynctrace import clock
from asynctrace._ratelimit import internal_error_count, report_internal_error
from asynctrace.export.protocol import ExportStats, SpanExporter
from asynctrace.model import Span

__all__ = ["ExportQueue"]

Sleep = Callable[[float], Awaitable[None]]

# An idle task also looks at the queue this often (or every max_delay_s, if longer):
# a span ended on another thread can slip past the moment the task went idle.
_IDLE_RECHECK_S = 1.0


@dataclass(slots=True)
class _LoopState:
    """The worker of one event loop, with the loop-bound primitives it uses."""

    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    export_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None

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
        backoff_initial_s, backoff_max_s: retry delays after a failed export (doubling,
            with jitter).
        sleep: the backoff sleep, injectable so tests need not wait.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue: int = 20_000,
        batch_size: int = 256,
        max_delay_s: float = 0.2,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ValueError("max_queue and batch_size must be at least 1")
        if max_delay_s < 0 or backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("delays must be positive, backoff_max_s >= backoff_initial_s")
        self.exporter = exporter
        self._max_queue = max_queue
        self._batch_size = batch_size
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
        self._exported = 0
        self._dropped = 0
        self._failed_batches = 0
        self._last_error: str | None = None

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
        state.task = loop.create_task(self._run(state), name="asynctrace-export")
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
                if not await self._export_available(state, full_batches_only=True):
                    await self._sleep(self._next_backoff())
        except asyncio.CancelledError:
            if not self._is_closed and self.spans:
                # Cancelled by loop shutdown: push what is queued, within a grace period.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    async with asyncio.timeout(1.0):
                        await self._export_available(state)
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

    async def _export_available(
        self, state: _LoopState, *, full_batches_only: bool = False
    ) -> bool:
        """Export batch by batch until the queue is empty; False after a retryable failure.

        With ``full_batches_only`` (the worker), the first batch goes whatever its size
        (it is full, or its wait is over) and the rest only while they are full: the
        spans that came in during an export wait for their own batch to fill (or
        ``max_delay_s``), instead of going out in many small batches that each pay a
        round trip and the per-batch commands.
        """
        is_first = True
        while self.spans:
            if full_batches_only and not is_first and len(self.spans) < self._batch_size:
                return True
            is_first = False
            batch = self._take()
            if not await self._export_batch(state, batch):
                return False
        return True

    def _take(self) -> list[Span]:
        spans = self.spans
        batch: list[Span] = []
        with contextlib.suppress(IndexError):
            for _ in range(min(len(spans), self._batch_size)):
                batch.append(spans.popleft())
        return batch

    async def _export_batch(self, state: _LoopState, batch: list[Span]) -> bool:
        if not batch:
            return True
        async with state.export_lock:
            clock.resync()  # spans that start from now on follow a step of the wall clock
            try:
                await self.exporter.export(batch)
            except (ConnectionError, TimeoutError) as exc:
                self._note_failure(exc)
                self._requeue(batch)
                # An expected condition (the store is down): one line, no traceback.
                report_internal_error("export failed, will retry", detail=self._last_error or "")
                return False
            except asyncio.CancelledError:
                self._requeue(batch)
                raise
            except Exception as exc:
                self._note_failure(exc)
                self._dropped += len(batch)
                report_internal_error("exporter rejected a batch; its spans are dropped", exc)
                return True
        self._exported += len(batch)
        self._backoff_s = self._backoff_initial_s
        return True

    def _note_failure(self, exc: BaseException) -> None:
        self._failed_batches += 1
        self._last_error = f"{type(exc).__name__}: {exc}"[:500]

    def _requeue(self, batch: list[Span]) -> None:
        spans = self.spans
        spans.extendleft(reversed(batch))
        overflow = len(spans) - self._max_queue
        with contextlib.suppress(IndexError):
            for _ in range(overflow):
                spans.popleft()
                self._dropped += 1
        # A flush() that failed must leave the retry to the worker, which may be
        # waiting on an empty queue: requeueing is a transition it has to see.
        self._wake()

    # -- control -----------------------------------------------------------------------

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Export everything queued so far. True when all of it was written.

        Returns False (without raising) when the exporter failed or ``timeout_s``
        passed; the spans stay queued for the background task.
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
        return await self._flush_here(timeout_s)

    async def _flush_here(self, timeout_s: float | None) -> bool:
        state = self._state
        if state is None or not state.is_alive:
            state = self._start(asyncio.get_running_loop())
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if not await self._export_available(state):
                        return False
                    async with state.export_lock:  # let a batch the worker holds land
                        pass
                    if not self.spans:
                        return True
        except TimeoutError:
            return False

    async def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Flush within ``timeout_s``, stop the task, shut the exporter down.

        What could not be written is counted as dropped. True when nothing was lost.
        """
        flushed = await self.flush(timeout_s)
        self._close()
        state, self._state = self._state, None
        if state is not None and state.task is not None and not state.task.done():
            if state.loop is asyncio.get_running_loop():
                state.task.cancel()
                await asyncio.wait([state.task])  # waits without re-raising its cancellation
            elif not state.loop.is_closed():
                # The worker runs on another thread's loop: cancel it there.
                state.loop.call_soon_threadsafe(state.task.cancel)
        lost = len(self.spans)
        self.spans.clear()
        self._dropped += lost
        try:
            async with asyncio.timeout(timeout_s):
                await self.exporter.shutdown()
        except Exception as exc:
            report_internal_error("exporter shutdown failed", exc)
        return flushed and lost == 0

    def hand_over(self, successor: Callable[[Span], None]) -> None:
        """Close without a loop: pass the queued spans to ``successor``."""
        self._close()
        spans = self.spans
        while spans:
            successor(spans.popleft())

    def _close(self) -> None:
        # After this every span's end goes through append(), which drops and counts.
        self.room = 0
        self._bound = 0
        self._is_closed = True

    def stats(self) -> ExportStats:
        """Health of the export path. Never blocks."""
        queued = len(self.spans)
        # A span that checked room just before shutdown can land in the closed queue
        # afterwards: it will not be exported, so it counts as dropped.
        late = queued if self._is_closed else 0
        return ExportStats(
            queued=queued - late,
            exported=self._exported,
            dropped=self._dropped + late,
            failed_batches=self._failed_batches,
            last_error=self._last_error,
            internal_errors=internal_error_count(),
        )
