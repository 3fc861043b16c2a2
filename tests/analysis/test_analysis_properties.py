"""Invariants of the analyses over random trees: overruns, skew, orphans, ties, zeros."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from span_builder import TraceBuilder

from asynctrace.analysis import bottleneck, compare, critical_path, error_chain, self_time
from asynctrace.model import Span, Trace

SERVICES = ("api-gateway", "auth", "orders", "payment")


@st.composite
def trees(draw: st.DrawFn, *, number: int = 1) -> Trace:
    """Random trees whose children may overrun, precede or miss their parent.

    Times are multiples of 1/4 ms, so the float arithmetic is exact and equal or
    touching intervals are common.
    """
    builder = TraceBuilder(number)
    count = draw(st.integers(1, 25))
    for index in range(count):
        start = draw(st.integers(-40, 400)) / 4
        length = draw(st.one_of(st.just(0), st.integers(0, 400))) / 4
        parent_index = draw(st.integers(-1, index - 1)) if index else None
        if parent_index is None:
            parent = None
        elif parent_index < 0:
            parent = f"missing {index}"  # never added: this span is an orphan
        else:
            parent = f"s{parent_index}"
        builder.add(
            f"s{index}",
            start,
            start + length,
            parent=parent,
            service=draw(st.sampled_from(SERVICES)),
            operation=f"op{draw(st.integers(0, 3))}",
            status=draw(st.sampled_from(["ok", "ok", "error"])),
        )
    return builder.build()


def root_tree(trace: Trace) -> set[str]:
    ids: set[str] = set()
    stack = [trace.root]
    while stack:
        span = stack.pop()
        ids.add(span.span_id)
        stack.extend(trace.children_of(span))
    return ids


@settings(max_examples=300)
@given(trees())
def test_critical_path_tiles_the_root_without_overlap(trace: Trace) -> None:
    root = trace.root
    segments = critical_path(trace)
    in_root_tree = root_tree(trace)

    for segment in segments:
        assert segment.end > segment.start
        assert root.start_time <= segment.start
        assert segment.end <= root.end_time
        assert segment.span.start_time <= segment.start
        assert segment.end <= segment.span.end_time
        assert segment.span.span_id in in_root_tree
    for before, after in pairwise(segments):
        assert before.end <= after.start
    total = sum(segment.duration_ms for segment in segments)
    assert total <= root.duration + 1e-6
    assert total == pytest.approx(root.duration)


@settings(max_examples=300)
@given(trees())
def test_self_time_lies_between_zero_and_the_duration(trace: Trace) -> None:
    times = self_time(trace)

    assert set(times) == {span.span_id for span in trace.spans}
    for span in trace.spans:
        assert 0 <= times[span.span_id] <= span.duration


@settings(max_examples=300)
@given(trees())
def test_bottleneck_is_the_largest_service_share_of_the_critical_path(trace: Trace) -> None:
    found = bottleneck(trace)
    segments = critical_path(trace)

    if not segments:
        assert found is None
        return
    assert found is not None
    by_service: dict[str, float] = {}
    for segment in segments:
        by_service[segment.span.service] = (
            by_service.get(segment.span.service, 0) + segment.duration_ms
        )
    assert found.critical_ms == pytest.approx(max(by_service.values()))
    assert found.critical_ms == pytest.approx(by_service[found.service])
    assert found.total_ms == pytest.approx(trace.root.duration)
    assert 0 <= found.share <= 1
    assert found.span.service == found.service
    assert found.sentence.startswith(f"{found.service} is the bottleneck: ")


@settings(max_examples=300)
@given(trees())
def test_error_chain_starts_at_a_failing_leaf_and_climbs_parent_by_parent(trace: Trace) -> None:
    found = error_chain(trace)

    if not trace.has_errors:
        assert found is None
        return
    assert found is not None
    origin = found.origin
    assert origin.status == "error"
    assert not any(child.status == "error" for child in trace.children_of(origin))
    assert found.path[0].span is origin
    for child_hop, parent_hop in pairwise(found.path):
        assert child_hop.span.parent_span_id == parent_hop.span.span_id
    top: Span = found.path[-1].span
    assert top.parent_span_id is None or top.parent_span_id not in trace.by_id


@settings(max_examples=100)
@given(trees(number=1))
def test_trace_compared_with_an_identical_one_deviates_nowhere(trace: Trace) -> None:
    builder = TraceBuilder(2)
    copy = Trace.from_spans(
        Span.from_dict({**span.to_dict(), "traceId": builder.trace_id}) for span in trace.spans
    )

    comparison = compare(trace, [trace, copy])

    assert comparison.sample_size == 1
    assert {row.diff_ms for row in comparison.deviations} <= {0.0}
    assert all(row.ratio in (1.0, None) for row in comparison.deviations)
