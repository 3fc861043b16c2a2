"""Configuration, sampling and limits; hands finished spans to the export queue.

``configure()`` builds the process-wide ``Tracer`` and registers it with the context
layer as the ``Recorder`` that receives ended spans.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypedDict, Unpack

from asynctrace import context, keys
from asynctrace._ratelimit import report_internal_error
from asynctrace.export import ExportQueue, ExportStats, RedisExporter, SpanExporter
from asynctrace.export.fanout import ExportQueues
from asynctrace.export.tail import KEPT_TAG, TailBuffer
from asynctrace.model import DEFAULT_LIMITS, Limits, Span

__all__ = [
    "Tracer",
    "TracerOptions",
    "configure",
    "flush",
    "get_tracer",
    "reset_tracer",
    "shutdown",
    "stats",
]

logger = logging.getLogger("asynctrace")


class Tracer:
    """The process's tracing settings and its export path.

    Spans of unsampled traces are not stored as traces unless local tail sampling
    keeps them (``export/tail.py``): they wait in the process until their local root
    ends, and its whole subtree is kept, tagged ``sampling.kept=error`` or ``=slow``,
    when a span in it failed or the local root took longer than
    ``slow_threshold_ms``. At most ``tail_max_spans`` spans wait, each at most
    ``tail_max_age_s``; a trace pushed out earlier keeps only its error spans
    (counted in ``tail_overflow``). ``tail_max_spans=0`` turns tail sampling off:
    then only error spans of unsampled traces are kept, one by one. Spans not kept are
    counted as ``unsampled``, not as dropped. The aggregates still count every
    request: when the exporter takes them (``accepts_unsampled``, as
    ``RedisExporter`` does), an unsampled local-root or server span is queued for the
    aggregates only and counted in ``aggregate_only`` as well (it then also shows in
    ``exported`` or ``dropped``, like any queued span).

    ``exporter`` may be a list of exporters (say ``RedisExporter`` and
    ``OTLPExporter``): each gets its own queue (``export.fanout.ExportQueues``), so a
    failing one never stops the others, and ``stats()`` adds their counts up.
    """

    def __init__(
        self,
        *,
        service: str | None = None,
        redis_url: str | None = None,
        exporter: SpanExporter | Sequence[SpanExporter] | None = None,
        sample_rate: float = 1.0,
        slow_threshold_ms: float = 1000.0,
        trace_ttl_s: int = keys.TRACE_TTL_S,
        aggregate_ttl_s: int = keys.AGGREGATE_TTL_S,
        prefix: str = keys.DEFAULT_PREFIX,
        limits: Limits = DEFAULT_LIMITS,
        max_queue: int = 20_000,
        batch_size: int = 256,
        max_delay_s: float = 0.2,
        tail_max_spans: int = 10_000,
        tail_max_age_s: float = 60.0,
        max_in_flight: int = 4,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be between 0.0 and 1.0")
        if tail_max_spans < 0 or not tail_max_age_s > 0:
            raise ValueError("tail_max_spans must be >= 0 and tail_max_age_s above 0")
        # Checked here too, not only by the queue: without an exporter there is no
        # queue, and a bad value must still be refused at setup, not on a later configure.
        if max_queue < 1 or batch_size < 1 or max_in_flight < 1 or max_delay_s < 0:
            raise ValueError(
                "max_queue, batch_size and max_in_flight must be at least 1, max_delay_s >= 0"
            )
        self.service = (
            service
            or os.environ.get("ASYNCTRACE_SERVICE")
            or os.environ.get("SERVICE_NAME")
            or "unknown"
        )
        self.redis_url = redis_url if redis_url is not None else os.environ.get("REDIS_URL")
        self.sample_rate = sample_rate
        self.slow_threshold_ms = slow_threshold_ms
        self.limits = limits
        if exporter is None and self.redis_url:
            exporter = RedisExporter(
                self.redis_url,
                prefix=prefix,
                slow_threshold_ms=slow_threshold_ms,
                trace_ttl_s=trace_ttl_s,
                aggregate_ttl_s=aggregate_ttl_s,
            )
        self.queue: ExportQueue | ExportQueues | None
        if exporter is not None and not isinstance(exporter, SpanExporter):
            if not _is_exporter_list(exporter):
                raise TypeError(
                    "exporter must be a SpanExporter (async export(spans) and async "
                    f"shutdown()) or a list of them, not {type(exporter).__name__}"
                )
            # Several exporters: a queue each (export/fanout.py), so none holds up another.
            exporters = list(exporter)
            self.exporter: SpanExporter | None = exporters[0] if exporters else None
            self.queue = ExportQueues(
                exporters,
                max_queue=max_queue,
                batch_size=batch_size,
                max_delay_s=max_delay_s,
                max_in_flight=max_in_flight,
            )
            self._append_aggregating = self.queue.append_aggregating
            aggregating = [getattr(each, "accepts_unsampled", False) for each in exporters]
        else:
            self.exporter = exporter
            self.queue = (
                ExportQueue(
                    exporter,
                    max_queue=max_queue,
                    batch_size=batch_size,
                    max_delay_s=max_delay_s,
                    max_in_flight=max_in_flight,
                )
                if exporter is not None
                else None
            )
            if self.queue is not None:
                self._append_aggregating = self.queue.append
            aggregating = [getattr(exporter, "accepts_unsampled", False)]
        self._unsampled = 0
        self._aggregate_only = 0
        # An exporter that writes aggregates says so; others never see unsampled ok spans.
        self._is_aggregating = any(flag is True for flag in aggregating)
        self._warned_unexported = False
        # What the context layer hands ended spans to: a sampled span appends itself to
        # the queue while it has room (no method of ours on that path), else on_end.
        self.ended: context.EndedSpans = self.queue if self.queue is not None else context.UNQUEUED
        self.on_end: Callable[[Span], None] = (
            self.queue.append if self.queue is not None else self._warn_unexported
        )
        self.on_unsampled_end: Callable[[Span], None] = self._on_unsampled_end
        self._tail: TailBuffer | None = None
        if self.queue is not None and tail_max_spans > 0:
            self._tail = TailBuffer(
                keep=self.queue.append,
                discard=self._not_kept,
                slow_threshold_ms=slow_threshold_ms,
                max_spans=tail_max_spans,
                max_age_s=tail_max_age_s,
            )
            self.on_unsampled_end = self._tail.add

    def should_sample(self) -> bool:
        """Head sampling for a new trace: keep it with probability ``sample_rate``."""
        rate = self.sample_rate
        return rate >= 1.0 or (rate > 0.0 and random.random() < rate)

    def _warn_unexported(self, span: Span) -> None:
        if not self._warned_unexported:
            self._warned_unexported = True
            logger.warning(
                "asynctrace: no redis_url, REDIS_URL or exporter configured; "
                "spans are recorded but not exported"
            )

    def _on_unsampled_end(self, span: Span) -> None:
        """Without tail sampling: keep an error span alone, count the rest."""
        if span.status == "error" and self.queue is not None:
            # Errors are always kept, even when their trace was not sampled.
            span.tags[KEPT_TAG] = "error"
            self.queue.append(span)
            return
        self._not_kept(span)

    def _not_kept(self, span: Span) -> None:
        self._unsampled += 1
        if (
            self._is_aggregating
            and self.queue is not None
            and (span.is_local_root or span.kind == "server")
        ):
            # Aggregates count every request, sampled or not; the exporter writes
            # only aggregates for an unsampled ok span.
            self._aggregate_only += 1
            self._append_aggregating(span)

    def start(self) -> None:
        """Start the export task on the running loop, if there is one."""
        if self.queue is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # started by the first span that ends inside a loop
        self.queue.start()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Export everything finished so far; True when all of it was written."""
        if self.queue is None:
            return True
        return await self.queue.flush(timeout_s)

    async def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Flush within ``timeout_s``, then stop exporting. True when nothing was lost.

        Spans still waiting for their local root's verdict go undecided first: their
        errors are exported, the rest counted as unsampled."""
        if self.queue is None:
            return True
        if self._tail is not None:
            self._tail.release_all()
        return await self.queue.shutdown(timeout_s)

    def stats(self) -> ExportStats:
        """Export health: queued, exported, dropped, failed batches, last error."""
        if self.queue is None:
            return ExportStats(0, 0, 0, 0, None, unsampled=self._unsampled)
        tail = self._tail
        return replace(
            self.queue.stats(),
            unsampled=self._unsampled,
            aggregate_only=self._aggregate_only,
            over_trace_limit=_over_trace_limit(self.exporter),
            tail_kept=tail.kept if tail is not None else 0,
            tail_held=tail.held if tail is not None else 0,
            tail_overflow=tail.overflow if tail is not None else 0,
        )


def _over_trace_limit(exporter: object) -> int:
    """What a ``RedisExporter`` (or any exporter saying so) left out of full traces."""
    count = getattr(exporter, "spans_over_trace_limit", 0)
    return count if isinstance(count, int) else 0


def _is_exporter_list(value: object) -> bool:
    """True for a list (or tuple) of exporters: what ``exporter=`` takes besides one."""
    return isinstance(value, Sequence) and all(isinstance(each, SpanExporter) for each in value)


_tracer: Tracer | None = None
_retired: set[asyncio.Task[bool]] = set()


class TracerOptions(TypedDict, total=False):
    """The keyword options of ``configure()``; their defaults are ``Tracer``'s."""

    exporter: SpanExporter | Sequence[SpanExporter] | None
    sample_rate: float
    slow_threshold_ms: float
    trace_ttl_s: int
    aggregate_ttl_s: int
    prefix: str
    limits: Limits
    max_queue: int
    batch_size: int
    max_delay_s: float
    tail_max_spans: int
    tail_max_age_s: float
    max_in_flight: int


def configure(
    service: str | None = None,
    redis_url: str | None = None,
    **options: Unpack[TracerOptions],
) -> Tracer:
    """Configure tracing for this process and return the ``Tracer``.

    ``service`` defaults to ``$ASYNCTRACE_SERVICE``, then ``$SERVICE_NAME``, then
    ``"unknown"``; ``redis_url`` to ``$REDIS_URL``; the keyword options and their
    defaults are ``Tracer``'s (``aggregate_ttl_s``, for one, is how long the per-hour
    aggregates are kept after their hour: 35 days). Calling again reconfigures: the
    previous tracer is flushed and shut down in the background. Raises
    ``ValueError`` for invalid settings (``TypeError`` for an ``exporter`` that is
    not one); never connects synchronously.
    """
    global _tracer
    tracer = Tracer(service=service, redis_url=redis_url, **options)
    previous, _tracer = _tracer, tracer
    context.set_recorder(tracer)
    if previous is not None:
        _retire(previous, tracer)
    tracer.start()
    return tracer


def _retire(previous: Tracer, successor: Tracer) -> None:
    """Shut ``previous`` down in the background. Spans that end from now on go to
    ``successor`` (a span ends into the tracer configured when it ends)."""
    queue = previous.queue
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        if previous._tail is not None:
            previous._tail.release_all()  # what it keeps joins the queue handed over
        if queue is not None:
            queue.hand_over(successor.on_end)  # no loop to flush in: pass spans on
        return
    task = loop.create_task(previous.shutdown(), name="asynctrace-retire")
    _retired.add(task)
    task.add_done_callback(_retired.discard)


def get_tracer() -> Tracer | None:
    """The configured tracer, or None before ``configure()``."""
    return _tracer


async def flush(timeout_s: float | None = None) -> bool:
    """Push every span finished so far. True when all were written; never raises.

    Spans finished under a tracer that ``configure()`` replaced count too: their
    tracer's background shutdown is awaited first.
    """
    try:
        loop = asyncio.get_running_loop()
        retiring = [task for task in _retired if task.get_loop() is loop]
        retired_ok = True
        if retiring:
            # wait(), not gather(): a timeout here must not cancel their shutdown.
            done, pending = await asyncio.wait(retiring, timeout=timeout_s)
            retired_ok = not pending and all(
                not task.cancelled() and task.exception() is None and task.result() is True
                for task in done
            )
        flushed = True if _tracer is None else await _tracer.flush(timeout_s)
        return retired_ok and flushed
    except TimeoutError:
        return False
    except Exception as exc:
        report_internal_error("flush failed", exc)
        return False


async def shutdown(timeout_s: float = 5.0) -> bool:
    """Flush within ``timeout_s``, then stop the exporter. True when nothing was lost."""
    try:
        return True if _tracer is None else await _tracer.shutdown(timeout_s)
    except Exception as exc:
        report_internal_error("shutdown failed", exc)
        return False


def stats() -> ExportStats:
    """Exporter health: queued, exported, dropped, failed_batches, last_error."""
    if _tracer is None:
        return ExportStats(0, 0, 0, 0, None)
    return _tracer.stats()


def reset_tracer() -> None:
    """Forget the configured tracer (for tests); spans go unexported again."""
    global _tracer
    _tracer = None
    context.set_recorder(None)
