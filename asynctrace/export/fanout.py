"""Several exporters at once: one export queue each, fed the same finished spans.

``configure(exporter=[RedisExporter(...), OTLPExporter(...)])`` gives each exporter
its own ``ExportQueue``: its own bound, batches, retries and counts, so one that
fails or is slow never holds up, drops or duplicates the others' spans.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from asynctrace.export.protocol import ExportStats, SpanExporter
from asynctrace.export.queue import ExportQueue
from asynctrace.model import Span

__all__ = ["ExportQueues"]


class ExportQueues:
    """One ``ExportQueue`` per exporter, used by the tracer as one queue.

    As a span's end sees it (``context.EndedSpans``) it never has ``room``, so every
    finished span goes through ``append``, which queues it for every exporter.
    ``append_aggregating`` queues a span only for the exporters that take unsampled
    spans for their aggregates (``accepts_unsampled``). ``stats()`` adds the queues'
    counts up: each count is of (span, exporter) deliveries, so a span written by two
    exporters counts twice in ``exported``; ``exporter_stats()`` has them one by one.
    """

    def __init__(
        self,
        exporters: Sequence[SpanExporter],
        *,
        max_queue: int = 20_000,
        batch_size: int = 256,
        max_delay_s: float = 0.2,
        max_in_flight: int = 4,
    ) -> None:
        if not exporters:
            raise ValueError("give at least one exporter")
        self.queues = [
            ExportQueue(
                exporter,
                max_queue=max_queue,
                batch_size=batch_size,
                max_delay_s=max_delay_s,
                max_in_flight=max_in_flight,
            )
            for exporter in exporters
        ]
        self._aggregating = [
            queue
            for queue in self.queues
            if getattr(queue.exporter, "accepts_unsampled", False) is True
        ]
        # What a span's end reads: always empty, never room, so it calls append().
        self.spans: deque[Span] = deque()
        self.room = 0

    @property
    def exporters(self) -> list[SpanExporter]:
        return [queue.exporter for queue in self.queues]

    def append(self, span: Span) -> None:
        """Queue a finished span for every exporter. O(exporters); never raises."""
        for queue in self.queues:
            queue.append(span)

    def append_aggregating(self, span: Span) -> None:
        """Queue an unsampled span for the exporters that count it in aggregates."""
        for queue in self._aggregating:
            queue.append(span)

    def start(self) -> None:
        for queue in self.queues:
            queue.start()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Flush every queue at once; True when all of them wrote everything."""
        results = await asyncio.gather(*(queue.flush(timeout_s) for queue in self.queues))
        return all(results)

    async def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Shut every queue (and exporter) down at once; True when none lost a span."""
        results = await asyncio.gather(*(queue.shutdown(timeout_s) for queue in self.queues))
        return all(results)

    def hand_over(self, successor: Callable[[Span], None]) -> None:
        """Close without a loop: pass each queued span on once, oldest first."""
        # The queues hold the same spans (the aggregating ones a few more): each once.
        passed_on: set[int] = set()

        def once(span: Span) -> None:
            if id(span) not in passed_on:
                passed_on.add(id(span))
                successor(span)

        for queue in self.queues:
            queue.hand_over(once)

    def exporter_stats(self) -> list[tuple[SpanExporter, ExportStats]]:
        """Each exporter with the stats of its own queue."""
        return [(queue.exporter, queue.stats()) for queue in self.queues]

    def stats(self) -> ExportStats:
        """The queues' counts added up; ``last_error`` is the first exporter's that
        failed, named by its class."""
        each = [queue.stats() for queue in self.queues]
        errors = [
            f"{type(queue.exporter).__name__}: {stats.last_error}"
            for queue, stats in zip(self.queues, each, strict=True)
            if stats.last_error is not None
        ]
        return ExportStats(
            queued=sum(stats.queued for stats in each),
            exported=sum(stats.exported for stats in each),
            dropped=sum(stats.dropped for stats in each),
            failed_batches=sum(stats.failed_batches for stats in each),
            last_error=errors[0] if errors else None,
            internal_errors=each[0].internal_errors,
        )
