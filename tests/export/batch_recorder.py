"""An exporter for queue tests: it records each batch's operations and signals writes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from asynctrace.model import Span


class Recorder:
    """Records each exported batch's operations and signals every write."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.wrote = asyncio.Event()

    async def export(self, spans: Sequence[Span]) -> None:
        self.batches.append([s.operation for s in spans])
        self.wrote.set()

    async def shutdown(self) -> None:
        pass

    @property
    def operations(self) -> list[str]:
        """Every exported span's operation, in export order."""
        return [operation for batch in self.batches for operation in batch]
