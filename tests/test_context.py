from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

import asynctrace
from asynctrace import context
from asynctrace.export import InMemoryExporter
from asynctrace.model import Span
from asynctrace.tracer import Tracer


def by_operation(exporter: InMemoryExporter) -> dict[str, Span]:
    return {span.operation: span for span in exporter.spans}


async def test_spans_nest_under_async_with_and_with(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    async with asynctrace.span("outer", tags={"order.id": 42}) as outer:
        assert asynctrace.current_span() is outer
        with asynctrace.span("inner") as inner:
            assert asynctrace.current_span() is inner
        assert asynctrace.current_span() is outer
    assert asynctrace.current_span() is None
    await asynctrace.flush()
    spans = by_operation(exporter)
    assert spans["inner"].parent_span_id == spans["outer"].span_id
    assert spans["inner"].trace_id == spans["outer"].trace_id
    assert spans["outer"].parent_span_id is None
    assert spans["outer"].tags == {"order.id": "42"}
    assert spans["outer"].service == "test-service"
    assert spans["outer"].duration >= spans["inner"].duration


async def test_exception_marks_error_and_is_reraised_unchanged(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    error = ValueError("card declined")
    with pytest.raises(ValueError, match="card declined") as caught:
        async with asynctrace.span("charge"):
            raise error
    assert caught.value is error
    await asynctrace.flush()
    (span,) = exporter.spans
    assert span.status == "error"
    assert span.tags["error"] == "true"
    assert span.logs[-1].message == "ValueError: card declined"
    assert span.logs[-1].level == "error"


async def test_cancellation_ends_span_with_cancelled_tag(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    started = asyncio.Event()

    async def worker() -> None:
        async with asynctrace.span("waiting"):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(worker())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asynctrace.flush()
    (span,) = exporter.spans
    assert span.tags["cancelled"] == "true"
    assert span.status == "ok"
    assert span.is_ended


async def test_children_in_tasks_gather_taskgroup_and_threads_get_the_right_parent(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    @asynctrace.traced
    async def child(name: str) -> str:
        async with asynctrace.span(f"{name}.inner"):
            await asyncio.sleep(0)
        return name

    def blocking_child() -> str:
        with asynctrace.span("thread.inner"):
            return "thread"

    async with asynctrace.span("root") as root:
        await asyncio.create_task(child("task"))
        await asyncio.gather(child("gather1"), child("gather2"))
        async with asyncio.TaskGroup() as group:
            group.create_task(child("group"))
        assert await asyncio.to_thread(blocking_child) == "thread"
    await asynctrace.flush()
    spans = exporter.spans
    assert len(spans) == 10
    tree = {span.span_id: span for span in spans}
    for span in spans:
        assert span.trace_id == root.trace_id
        if span.operation.endswith(".inner"):
            parent = tree[span.parent_span_id or ""]
            assert parent.operation.endswith("child") or span.operation == "thread.inner"
    assert by_operation(exporter)["thread.inner"].parent_span_id == root.span_id


async def test_hundred_concurrent_requests_build_hundred_separate_trees(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    gate = asyncio.Event()

    async def request(number: int) -> None:
        async with asynctrace.span(f"request-{number}"):
            await gate.wait()
            async with asynctrace.span(f"db-{number}"):
                await asyncio.sleep(0)
                async with asynctrace.span(f"row-{number}"):
                    await asyncio.sleep(0)

    tasks = [asyncio.create_task(request(number)) for number in range(100)]
    await asyncio.sleep(0)  # let every task start and open its root span
    gate.set()
    await asyncio.gather(*tasks)
    await asynctrace.flush()
    traces = exporter.traces()
    assert len(traces) == 100
    for trace in traces.values():
        number = trace.root.operation.removeprefix("request-")
        (db,) = trace.children_of(trace.root)
        (row,) = trace.children_of(db)
        assert (db.operation, row.operation) == (f"db-{number}", f"row-{number}")


async def test_traced_keeps_signature_and_metadata(tracer: Tracer) -> None:
    @asynctrace.traced("db.query", tags={"db": "orders"})
    async def query(sql: str, *, limit: int = 10) -> list[str]:
        """Run a query."""
        return [sql] * limit

    assert query.__name__ == "query"
    assert query.__doc__ == "Run a query."
    assert str(inspect.signature(query)) == "(sql: 'str', *, limit: 'int' = 10) -> 'list[str]'"
    assert inspect.iscoroutinefunction(query)
    assert await query("x", limit=2) == ["x", "x"]


async def test_traced_coroutine_span_covers_the_awaited_call(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    release = asyncio.Event()

    @asynctrace.traced
    async def slow() -> None:
        async with asynctrace.span("inside"):
            await release.wait()

    task = asyncio.create_task(slow())
    await asyncio.sleep(0)
    release.set()
    await task
    await asynctrace.flush()
    spans = by_operation(exporter)
    outer = spans["test_traced_coroutine_span_covers_the_awaited_call.<locals>.slow"]
    assert spans["inside"].parent_span_id == outer.span_id
    assert outer.duration >= spans["inside"].duration


async def test_traced_sync_function_and_error(tracer: Tracer, exporter: InMemoryExporter) -> None:
    @asynctrace.traced("parse")
    def parse(text: str) -> int:
        return int(text)

    assert parse("3") == 3
    with pytest.raises(ValueError, match="invalid literal"):
        parse("x")
    await asynctrace.flush()
    assert [span.status for span in exporter.spans] == ["ok", "error"]


async def test_traced_async_generator_spans_whole_iteration_without_leaking_context(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    @asynctrace.traced("rows")
    async def rows() -> AsyncIterator[int]:
        for number in range(3):
            async with asynctrace.span(f"fetch-{number}"):
                await asyncio.sleep(0)
            yield number

    async with asynctrace.span("consumer") as consumer:
        seen = []
        async for number in rows():
            # Between items, the consumer's own span is current, not the generator's.
            assert asynctrace.current_span() is consumer
            seen.append(number)
    assert seen == [0, 1, 2]
    await asynctrace.flush()
    spans = by_operation(exporter)
    assert spans["rows"].parent_span_id == consumer.span_id
    for number in range(3):
        assert spans[f"fetch-{number}"].parent_span_id == spans["rows"].span_id
    assert spans["rows"].duration >= sum(spans[f"fetch-{n}"].duration for n in range(3))


async def test_async_generator_span_ends_on_aclose(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    closed = False

    @asynctrace.traced("stream")
    async def stream() -> AsyncIterator[int]:
        nonlocal closed
        try:
            while True:
                yield 1
        finally:
            closed = True

    generator = stream()
    assert await generator.__anext__() == 1
    await generator.aclose()
    assert closed
    await asynctrace.flush()
    (span,) = exporter.spans
    assert span.operation == "stream"
    assert span.status == "ok"


async def test_async_generator_finalized_elsewhere_does_not_corrupt_active_span(
    tracer: Tracer, exporter: InMemoryExporter, caplog: pytest.LogCaptureFixture
) -> None:
    @asynctrace.traced("abandoned")
    async def abandoned() -> AsyncIterator[int]:
        yield 1
        yield 2

    async with asynctrace.span("owner") as owner:
        generator = abandoned()
        await generator.__anext__()
        del generator
        gc.collect()  # the loop's asyncgen hook schedules aclose() in another task
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert asynctrace.current_span() is owner
    await asynctrace.flush()
    assert {span.operation for span in exporter.spans} == {"abandoned", "owner"}
    assert not [record for record in caplog.records if record.name == "asynctrace"]


async def test_traced_sync_generator(tracer: Tracer, exporter: InMemoryExporter) -> None:
    @asynctrace.traced("numbers")
    def numbers() -> Iterator[int]:
        with asynctrace.span("step"):
            yield 1
        yield 2

    assert list(numbers()) == [1, 2]
    await asynctrace.flush()
    spans = by_operation(exporter)
    assert spans["step"].parent_span_id == spans["numbers"].span_id


async def test_span_ended_in_another_context_leaves_that_context_alone(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    handed_over = asynctrace.span("handed-over")
    handed_over.__enter__()

    async def other_task() -> Span | None:
        handed_over.__exit__(None, None, None)
        return asynctrace.current_span()

    async with asynctrace.span("other") as other:
        # The other task's context keeps its own active span.
        assert await asyncio.create_task(other_task()) is other
        assert asynctrace.current_span() is other
    assert handed_over.is_ended
    await asynctrace.flush()
    assert {span.operation for span in exporter.spans} == {"handed-over", "other"}


async def test_unconfigured_spans_work_and_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    context.set_recorder(None)
    with caplog.at_level(logging.WARNING, logger="asynctrace"):
        for _ in range(3):
            async with asynctrace.span("x") as span:
                span.set_tag("a", 1)
    assert span.is_ended
    warnings = [r for r in caplog.records if "not exported" in r.getMessage()]
    assert len(warnings) == 1


async def test_service_comes_from_local_parent_else_configure(
    tracer: Tracer, exporter: InMemoryExporter
) -> None:
    async with asynctrace.span("server", service="auth"):
        async with asynctrace.span("child"):
            pass
    async with asynctrace.span("plain"):
        pass
    await asynctrace.flush()
    services = {span.operation: span.service for span in exporter.spans}
    assert services == {"server": "auth", "child": "auth", "plain": "test-service"}
