"""Local tail sampling: an unsampled trace's local subtree is kept whole when it
failed or was slow, and the wait for the local root is bounded."""

from __future__ import annotations

import asyncio

import pytest

import asynctrace
from asynctrace.export import InMemoryExporter
from asynctrace.export.tail import TailBuffer
from asynctrace.model import Span
from asynctrace.tracer import reset_tracer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "0af7651916cd43dd8448eb211c80319c"


def ended(
    span_id: str,
    parent: str | None,
    *,
    trace_id: str = TRACE,
    duration: float = 5.0,
    failed: bool = False,
    is_local_root: bool | None = None,
) -> Span:
    span = Span(
        trace_id, span_id, parent, "orders", f"op {span_id[-2:]}", is_sampled=False,
        is_local_root=parent is None if is_local_root is None else is_local_root,
    )  # fmt: skip
    span.duration = duration
    span.status = "error" if failed else "ok"
    return span


class Sink:
    """What the buffer kept and what it let go, in order."""

    def __init__(self, *, max_spans: int = 100, max_age_s: float = 60.0) -> None:
        self.kept: list[Span] = []
        self.discarded: list[Span] = []
        self.now = 0.0
        self.buffer = TailBuffer(
            keep=self.kept.append,
            discard=self.discarded.append,
            slow_threshold_ms=100.0,
            max_spans=max_spans,
            max_age_s=max_age_s,
            clock=lambda: self.now,
        )

    def ids(self, spans: list[Span]) -> list[str]:
        return [span.span_id[-2:] for span in spans]


def test_a_failed_child_keeps_the_whole_local_subtree_tagged_error() -> None:
    sink = Sink()
    for span in (
        ended("00000000000000a2", "00000000000000a1", failed=True),
        ended("00000000000000a3", "00000000000000a2"),
        ended("00000000000000a1", None),
    ):
        sink.buffer.add(span)
    assert sink.ids(sink.kept) == ["a1", "a2", "a3"]
    assert {span.tags["sampling.kept"] for span in sink.kept} == {"error"}
    assert all(span.is_sampled for span in sink.kept)
    assert (sink.discarded, sink.buffer.kept, sink.buffer.held) == ([], 3, 0)


def test_a_slow_local_root_keeps_its_subtree_tagged_slow_and_a_fast_one_keeps_nothing() -> None:
    sink = Sink()
    sink.buffer.add(ended("00000000000000b2", "00000000000000b1"))
    sink.buffer.add(ended("00000000000000b1", None, duration=100.5))
    sink.buffer.add(ended("00000000000000c2", "00000000000000c1", trace_id=OTHER))
    sink.buffer.add(ended("00000000000000c1", None, trace_id=OTHER, duration=100.0))
    assert sink.ids(sink.kept) == ["b1", "b2"]
    assert {span.tags["sampling.kept"] for span in sink.kept} == {"slow"}
    assert sink.ids(sink.discarded) == ["c1", "c2"]
    assert not any(span.is_sampled for span in sink.discarded)


def test_each_local_root_of_a_trace_decides_its_own_subtree() -> None:
    # front (f1) calls back (b1) in the same process: back fails, front only waits.
    sink = Sink()
    sink.buffer.add(ended("00000000000000b2", "00000000000000b1", failed=True))
    sink.buffer.add(ended("00000000000000b1", "00000000000000f2", is_local_root=True))
    assert sink.ids(sink.kept) == ["b1", "b2"]
    sink.buffer.add(ended("00000000000000f2", "00000000000000f1"))
    sink.buffer.add(ended("00000000000000f1", None))
    assert sink.ids(sink.discarded) == ["f1", "f2"]


def test_a_span_ending_after_its_local_root_follows_the_verdict() -> None:
    sink = Sink()
    sink.buffer.add(ended("00000000000000a1", None, duration=500.0))
    sink.buffer.add(ended("00000000000000a2", "00000000000000a1"))
    sink.buffer.add(ended("00000000000000a3", "00000000000000a2"))
    assert sink.ids(sink.kept) == ["a1", "a2", "a3"]
    assert sink.buffer.held == 0


def test_a_full_buffer_lets_the_oldest_trace_go_keeping_only_its_errors() -> None:
    sink = Sink(max_spans=3)
    sink.buffer.add(ended("00000000000000a2", "00000000000000a1", failed=True))
    sink.buffer.add(ended("00000000000000a3", "00000000000000a1"))
    sink.buffer.add(ended("00000000000000c2", "00000000000000c1", trace_id=OTHER))
    assert (sink.kept, sink.discarded, sink.buffer.held) == ([], [], 3)
    sink.buffer.add(ended("00000000000000c3", "00000000000000c1", trace_id=OTHER))
    assert sink.ids(sink.kept) == ["a2"]
    assert sink.kept[0].tags["sampling.kept"] == "error"
    assert sink.ids(sink.discarded) == ["a3"]
    assert (sink.buffer.overflow, sink.buffer.held) == (2, 2)
    sink.buffer.add(ended("00000000000000c1", None, trace_id=OTHER))  # still decides
    assert sink.ids(sink.discarded) == ["a3", "c1", "c2", "c3"]


def test_a_trace_waiting_longer_than_its_age_leaves_undecided() -> None:
    sink = Sink(max_age_s=60.0)
    sink.buffer.add(ended("00000000000000a2", "00000000000000a1"))
    sink.now = 60.0
    sink.buffer.add(ended("00000000000000c2", "00000000000000c1", trace_id=OTHER))
    assert sink.discarded == []
    sink.now = 60.5
    sink.buffer.add(ended("00000000000000c3", "00000000000000c1", trace_id=OTHER))
    assert sink.ids(sink.discarded) == ["a2"]
    assert (sink.buffer.overflow, sink.buffer.held) == (1, 2)


def test_release_all_keeps_the_errors_of_what_still_waits() -> None:
    sink = Sink()
    sink.buffer.add(ended("00000000000000a2", "00000000000000a1", failed=True))
    sink.buffer.add(ended("00000000000000a3", "00000000000000a1"))
    sink.buffer.release_all()
    assert (sink.ids(sink.kept), sink.ids(sink.discarded)) == (["a2"], ["a3"])
    assert (sink.buffer.overflow, sink.buffer.held) == (2, 0)


@pytest.fixture
async def unsampled() -> InMemoryExporter:
    exporter = InMemoryExporter()
    asynctrace.configure(service="orders", exporter=exporter, sample_rate=0.0)
    return exporter


async def request(*, fail: bool) -> None:
    try:
        async with asynctrace.span("GET /orders", kind="server"):
            async with asynctrace.span("load"):
                await asyncio.to_thread(lambda: None)
            async with asynctrace.span("charge"):
                if fail:
                    raise RuntimeError("declined")
    except RuntimeError:
        pass


async def test_the_tracer_keeps_a_failed_unsampled_request_whole(
    unsampled: InMemoryExporter,
) -> None:
    try:
        await request(fail=False)
        await request(fail=True)
        assert await asynctrace.flush()
        assert sorted(span.operation for span in unsampled.spans) == [
            "GET /orders",
            "charge",
            "load",
        ]
        assert {span.tags["sampling.kept"] for span in unsampled.spans} == {"error"}
        health = asynctrace.stats()
        assert (health.unsampled, health.tail_kept, health.tail_held) == (3, 3, 0)
    finally:
        await asynctrace.shutdown()
        reset_tracer()


async def test_without_tail_sampling_only_the_error_span_is_kept() -> None:
    exporter = InMemoryExporter()
    asynctrace.configure(service="orders", exporter=exporter, sample_rate=0.0, tail_max_spans=0)
    try:
        await request(fail=True)
        assert await asynctrace.flush()
        # The error passed through the request's span too; "load" is not kept.
        assert [span.operation for span in exporter.spans] == ["charge", "GET /orders"]
        assert asynctrace.stats().unsampled == 1
    finally:
        await asynctrace.shutdown()
        reset_tracer()


async def test_shutdown_exports_the_errors_still_waiting_for_their_root() -> None:
    exporter = InMemoryExporter()
    asynctrace.configure(service="orders", exporter=exporter, sample_rate=0.0)
    root = asynctrace.span("stream", kind="server")
    with root:
        with pytest.raises(KeyError):
            with asynctrace.span("frame"):
                raise KeyError("gone")
        assert await asynctrace.shutdown()
        assert [span.operation for span in exporter.spans] == ["frame"]
        assert asynctrace.stats().tail_overflow == 1
    reset_tracer()


def test_bad_tail_bounds_are_refused_at_setup() -> None:
    with pytest.raises(ValueError, match="tail_max_spans"):
        asynctrace.tracer.Tracer(tail_max_spans=-1)
    with pytest.raises(ValueError, match="max_spans"):
        TailBuffer(keep=print, discard=print, slow_threshold_ms=1.0, max_spans=0)


def test_reconfiguring_without_a_loop_hands_on_what_the_tail_kept() -> None:
    first, second = InMemoryExporter(), InMemoryExporter()
    asynctrace.configure(service="orders", exporter=first, sample_rate=0.0)
    root = asynctrace.span("job", kind="server")
    with root:
        with pytest.raises(KeyError):
            with asynctrace.span("step"):
                raise KeyError("gone")
        tracer = asynctrace.configure(service="orders", exporter=second, sample_rate=0.0)
        # The failed step waited for its root in the first tracer: it is kept, and
        # goes to the new tracer's queue with the rest of the first one's.
        assert [span.operation for span in tracer.queue.spans] == ["step"]  # type: ignore[union-attr]
    reset_tracer()


async def test_the_tracer_keeps_a_slow_unsampled_request_whole() -> None:
    exporter = InMemoryExporter()
    # Every request is slower than 0 ms: each one is kept, tagged slow.
    asynctrace.configure(
        service="orders", exporter=exporter, sample_rate=0.0, slow_threshold_ms=0.0
    )
    try:
        await request(fail=False)
        assert await asynctrace.flush()
        assert sorted(span.operation for span in exporter.spans) == [
            "GET /orders",
            "charge",
            "load",
        ]
        assert {span.tags["sampling.kept"] for span in exporter.spans} == {"slow"}
        assert all(span.is_sampled for span in exporter.spans)
        assert asynctrace.stats().unsampled == 0
    finally:
        await asynctrace.shutdown()
        reset_tracer()
