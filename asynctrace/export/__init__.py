"""Getting finished spans out of the process: the exporter protocol and exporters."""

from __future__ import annotations

from asynctrace.export.memory import InMemoryExporter
from asynctrace.export.protocol import BatchRejected, ExportStats, SpanExporter
from asynctrace.export.queue import ExportQueue
from asynctrace.export.redis_exporter import RedisCommandError, RedisExporter

__all__ = [
    "BatchRejected",
    "ExportQueue",
    "ExportStats",
    "InMemoryExporter",
    "RedisCommandError",
    "RedisExporter",
    "SpanExporter",
]
