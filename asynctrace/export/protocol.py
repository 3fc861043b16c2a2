"""What an exporter is (``SpanExporter``) and how the export path reports its health."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from asynctrace.model import Span

__all__ = ["BatchRejected", "ExportStats", "SpanExporter"]


@runtime_checkable
class SpanExporter(Protocol):
    """Writes finished spans somewhere. Any object with these two methods is one.

    ``export`` is called from one background task, never on a request path. Raising
    ``ConnectionError`` or ``TimeoutError`` (builtins) means "nothing was written, try
    again later": the batch is kept and retried with backoff, as the same batch (the
    same spans in the same order), so an exporter can recognise a retry of a batch
    it already wrote. Any other exception means the batch is lost; it is counted as
    dropped. ``BatchRejected`` says the destination refused it (an expected condition,
    logged in one line); anything else is logged with its traceback.
    """

    async def export(self, spans: Sequence[Span]) -> None: ...

    async def shutdown(self) -> None: ...


class BatchRejected(Exception):
    """The destination answered and refused a batch (out of memory, read-only, wrong
    key type): not retried, its spans counted as dropped, logged in one line."""


@dataclass(frozen=True, slots=True)
class ExportStats:
    """Health of the export path, as a value the CLI and dashboard can show.

    Every span handed to the queue is in exactly one of ``exported``, ``dropped`` and
    ``queued`` at every moment.

    ``queued``: spans not settled yet, waiting or in a batch being written;
    ``in_flight``: those of them in a batch being written; ``exported``: spans
    written; ``dropped``: spans lost (queue full, a batch the exporter rejected, or
    not written by shutdown); ``failed_batches``: export calls that raised;
    ``last_error``: the latest failure's one-line text, None again once a batch is
    written after it; ``last_error_at`` and ``last_success_at``: when a batch last
    failed and was last written (Unix seconds, None before the first);
    ``unsampled``: ok spans of unsampled traces, not stored as traces by design and
    not counted as dropped; ``aggregate_only``: those of them queued to count in the
    per-hour aggregates only (local-root and server spans), which also count in
    ``exported`` or ``dropped`` like every queued span. Local tail sampling:
    ``tail_kept``: spans of unsampled traces kept because their local subtree failed
    or was slow (queued like sampled spans); ``tail_held``: spans waiting for their
    local root now; ``tail_overflow``: spans that left the wait before their local
    root ended (the bound of spans or of age), whose errors were kept and the rest not.
    """

    queued: int
    exported: int
    dropped: int
    failed_batches: int
    last_error: str | None
    unsampled: int = 0
    internal_errors: int = 0
    aggregate_only: int = 0
    # Spans the exporter left out of their trace's list because the trace was full
    # (keys.MAX_TRACE_SPANS); the queue counts them as exported, the aggregates too.
    over_trace_limit: int = 0
    tail_kept: int = 0
    tail_held: int = 0
    tail_overflow: int = 0
    in_flight: int = 0
    last_error_at: float | None = None
    last_success_at: float | None = None
