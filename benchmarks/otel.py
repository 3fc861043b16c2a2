"""OpenTelemetry set-ups to compare against, used only when its packages are installed.

The comparison is the one issue 7 fixes: the SDK's ``TracerProvider`` with a
``BatchSpanProcessor`` feeding an exporter that does nothing, and the aiohttp server
instrumentation's middleware on top of it. Nothing here touches OpenTelemetry's
global provider, so one process can hold several set-ups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AVAILABLE",
    "UNAVAILABLE_REASON",
    "aiohttp_middleware",
    "aiohttp_unavailable_reason",
    "sdk_provider",
]

try:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
except ImportError as exc:  # the bench extra is not installed
    AVAILABLE = False
    UNAVAILABLE_REASON = f"OpenTelemetry SDK not installed ({exc.name}); pip install '.[bench]'"
else:
    AVAILABLE = True
    UNAVAILABLE_REASON = ""

    class _NoOpExporter(SpanExporter):
        """Accepts every batch and does nothing with it; counts what it saw."""

        def __init__(self) -> None:
            self.exported = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.exported += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True


def sdk_provider() -> tuple[Any, Any]:
    """(TracerProvider with a BatchSpanProcessor and a no-op exporter, that exporter)."""
    if not AVAILABLE:
        raise RuntimeError(UNAVAILABLE_REASON)
    exporter = _NoOpExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, exporter


def aiohttp_unavailable_reason() -> str:
    """Why the aiohttp server comparison cannot run ("" when it can).

    The SDK and the aiohttp server instrumentation are separate packages: with the SDK
    alone, scenarios that serve OpenTelemetry's middleware report "not installed"
    instead of starting a server that cannot build its app.
    """
    if not AVAILABLE:
        return UNAVAILABLE_REASON
    try:
        import opentelemetry.instrumentation.aiohttp_server  # noqa: F401
    except ImportError as exc:
        return (
            f"opentelemetry-instrumentation-aiohttp-server not installed ({exc.name}); "
            "pip install '.[bench]'"
        )
    return ""


def aiohttp_middleware(provider: Any) -> tuple[Any, str]:
    """(OpenTelemetry's aiohttp server middleware for ``provider``, or None, and why not)."""
    try:
        from opentelemetry.instrumentation.aiohttp_server import (
            AioHttpServerInstrumentor,
            create_aiohttp_middleware,
        )
    except ImportError as exc:
        return None, f"opentelemetry-instrumentation-aiohttp-server not installed ({exc.name})"
    # The middleware reads module globals (excluded URLs, metric instruments) that only
    # instrument() sets; it also swaps web.Application, which uninstrument() restores.
    instrumentor = AioHttpServerInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
        instrumentor.uninstrument()
    return create_aiohttp_middleware(tracer_provider=provider), ""
