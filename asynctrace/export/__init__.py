"""Getting finished spans out of the process: the exporter protocol and exporters.

``OTLPExporter`` is imported on first use (``asynctrace.export.OTLPExporter``), so
``import asynctrace`` does not load its HTTP client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asynctrace.export.memory import InMemoryExporter
from asynctrace.export.protocol import BatchRejected, ExportStats, SpanExporter
from asynctrace.export.queue import ExportQueue
from asynctrace.export.redis_exporter import RedisCommandError, RedisExporter

if TYPE_CHECKING:
    from asynctrace.export.otlp import OTLPExporter

__all__ = [
    "BatchRejected",
    "ExportQueue",
    "ExportStats",
    "InMemoryExporter",
    "OTLPExporter",
    "RedisCommandError",
    "RedisExporter",
    "SpanExporter",
]


def __getattr__(name: str) -> Any:
    if name == "OTLPExporter":
        from asynctrace.export.otlp import OTLPExporter

        return OTLPExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
