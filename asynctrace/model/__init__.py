"""The model layer: spans, traces and their seed-compatible JSON codec.

The span JSON is camelCase as the original TypeScript tracer wrote it; ``span.py``
(its dict form) and ``codec.py`` (its text) are the only places that spelling appears.
"""

from __future__ import annotations

from asynctrace.model.codec import (
    IndexEntry,
    decode_span,
    encode_index_entry,
    encode_indexed_span,
    encode_span,
    spans_of,
    utc_day,
)
from asynctrace.model.span import (
    DEFAULT_LIMITS,
    DROPPED_LOGS_TAG,
    DROPPED_TAGS_TAG,
    TRUNCATED_TAG,
    TRUNCATION_MARK,
    Limits,
    Span,
    SpanContext,
    SpanDecodeError,
    SpanDict,
    SpanKind,
    SpanLog,
    SpanLogDict,
    SpanStatus,
    round_ms,
)
from asynctrace.model.trace import Trace

__all__ = [
    "DEFAULT_LIMITS",
    "DROPPED_LOGS_TAG",
    "DROPPED_TAGS_TAG",
    "TRUNCATED_TAG",
    "TRUNCATION_MARK",
    "IndexEntry",
    "Limits",
    "Span",
    "SpanContext",
    "SpanDecodeError",
    "SpanDict",
    "SpanKind",
    "SpanLog",
    "SpanLogDict",
    "SpanStatus",
    "Trace",
    "decode_span",
    "encode_index_entry",
    "encode_indexed_span",
    "encode_span",
    "round_ms",
    "spans_of",
    "utc_day",
]
