"""configure(): environment defaults, reconfiguring, and health when nothing is set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import asynctrace
from asynctrace.export import InMemoryExporter
from asynctrace.tracer import Tracer, reset_tracer


@pytest.fixture(autouse=True)
def _forget_tracer() -> Iterator[None]:
    yield
    reset_tracer()


def test_service_and_redis_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_NAME", "from-service-name")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert Tracer().service == "from-service-name"
    monkeypatch.setenv("ASYNCTRACE_SERVICE", "from-asynctrace")
    tracer = Tracer()
    assert tracer.service == "from-asynctrace"
    assert tracer.redis_url == "redis://127.0.0.1:1/0"
    monkeypatch.delenv("ASYNCTRACE_SERVICE")
    monkeypatch.delenv("SERVICE_NAME")
    assert Tracer().service == "unknown"


async def test_reconfiguring_flushes_the_old_tracer_and_routes_new_spans_to_the_new_one() -> None:
    first, second = InMemoryExporter(), InMemoryExporter()
    asynctrace.configure(service="one", exporter=first, max_delay_s=3600)
    async with asynctrace.span("before"):
        pass
    asynctrace.configure(service="two", exporter=second)
    async with asynctrace.span("after"):
        pass
    assert await asynctrace.flush()  # awaits the replaced tracer's shutdown too
    assert [span.operation for span in first.spans] == ["before"]
    assert first.is_shut_down
    assert [(span.operation, span.service) for span in second.spans] == [("after", "two")]
    await asynctrace.shutdown()


async def test_a_span_open_across_reconfiguring_goes_to_the_tracer_it_ends_under() -> None:
    first, second = InMemoryExporter(), InMemoryExporter()
    asynctrace.configure(service="one", exporter=first)
    async with asynctrace.span("across") as across:
        asynctrace.configure(service="two", exporter=second)
        async with asynctrace.span("child"):
            pass
    assert await asynctrace.flush()
    assert first.spans == []
    # Started under "one": its service and trace stay; the child is its child.
    assert [(span.operation, span.service) for span in second.spans] == [
        ("child", "one"),
        ("across", "one"),
    ]
    assert second.spans[0].parent_span_id == across.span_id
    await asynctrace.shutdown()


async def test_spans_ending_after_shutdown_are_counted_as_dropped() -> None:
    asynctrace.configure(service="svc", exporter=InMemoryExporter())
    await asynctrace.shutdown()
    async with asynctrace.span("late"):
        pass
    assert asynctrace.stats().dropped == 1


async def test_flush_shutdown_and_stats_work_before_configure() -> None:
    assert await asynctrace.flush()
    assert await asynctrace.shutdown()
    stats = asynctrace.stats()
    assert (stats.queued, stats.exported, stats.dropped) == (0, 0, 0)


def test_configure_without_a_loop_starts_exporting_in_the_first_loop() -> None:
    import asyncio

    exporter = InMemoryExporter()
    asynctrace.configure(service="svc", exporter=exporter)

    async def work() -> None:
        async with asynctrace.span("in-loop"):
            pass
        assert await asynctrace.flush()
        await asynctrace.shutdown()

    asyncio.run(work())
    assert [span.operation for span in exporter.spans] == ["in-loop"]


@pytest.mark.parametrize(
    "exporter",
    [object(), "redis://127.0.0.1:6379/0", [InMemoryExporter(), object()]],
    ids=["object", "url", "list-with-an-object"],
)
def test_an_exporter_that_is_not_one_is_refused_at_setup(exporter: object) -> None:
    # An object used to fail as "'object' object is not iterable", and a list holding
    # one failed every batch at export time.
    with pytest.raises(TypeError, match=r"^exporter must be a SpanExporter .* or a list of them"):
        Tracer(service="svc", exporter=exporter)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [{"max_queue": 0}, {"batch_size": 0}, {"max_in_flight": 0}, {"max_delay_s": -1.0}],
    ids=["max_queue", "batch_size", "max_in_flight", "max_delay_s"],
)
def test_queue_options_are_refused_at_setup_even_without_an_exporter(
    options: dict[str, float],
) -> None:
    with pytest.raises(ValueError, match="must be at least 1, max_delay_s >= 0"):
        Tracer(service="svc", **options)  # type: ignore[arg-type]
