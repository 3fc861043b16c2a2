from __future__ import annotations

import dataclasses

import pytest
from span_builder import EPOCH_MS, TraceBuilder, chain, relative_path

from asynctrace.analysis import CriticalSegment, critical_path


def test_lone_root_is_the_whole_path() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)

    assert relative_path(critical_path(builder.build())) == [("root", 0, 100)]


def test_sequential_children_are_all_on_the_path() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    builder.add("a", 10, 40, parent="root")
    builder.add("b", 40, 90, parent="root")

    assert relative_path(critical_path(builder.build())) == [
        ("root", 0, 10),
        ("a", 10, 40),
        ("b", 40, 90),
        ("root", 90, 100),
    ]


def test_concurrent_children_leave_only_the_last_finishing_one_on_the_path() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    builder.add("a", 10, 60, parent="root")
    builder.add("b", 20, 90, parent="root")
    builder.add("c", 30, 50, parent="root")

    assert relative_path(critical_path(builder.build())) == [
        ("root", 0, 20),
        ("b", 20, 90),
        ("root", 90, 100),
    ]


def test_walk_continues_left_of_the_chosen_child() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    builder.add("fetch user", 0, 50, parent="root")
    builder.add("fetch flags", 0, 30, parent="root")  # concurrent with fetch user
    builder.add("render", 50, 100, parent="root")

    assert relative_path(critical_path(builder.build())) == [
        ("fetch user", 0, 50),
        ("render", 50, 100),
    ]


def test_nested_children_are_followed_down() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    builder.add("a", 10, 90, parent="root")
    builder.add("b", 20, 60, parent="a")

    assert relative_path(critical_path(builder.build())) == [
        ("root", 0, 10),
        ("a", 10, 20),
        ("b", 20, 60),
        ("a", 60, 90),
        ("root", 90, 100),
    ]


def test_child_overrunning_its_parent_is_clipped_to_the_parent() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    builder.add("a", 50, 150, parent="root")
    builder.add("b", 90, 140, parent="a")  # inside a, but past the root's end

    assert relative_path(critical_path(builder.build())) == [
        ("root", 0, 50),
        ("a", 50, 90),
        ("b", 90, 100),
    ]


def test_child_starting_before_its_parent_from_clock_skew_is_clamped() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100, service="api-gateway")
    builder.add("a", -20, 30, parent="root", service="orders")  # orders' clock is behind

    assert relative_path(critical_path(builder.build())) == [("a", 0, 30), ("root", 30, 100)]


def test_child_entirely_outside_its_parent_is_off_the_path() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    builder.add("late", 150, 200, parent="root")
    builder.add("early", -80, -10, parent="root")

    assert relative_path(critical_path(builder.build())) == [("root", 0, 100)]


def test_orphans_are_ignored() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    builder.add("a", 10, 40, parent="root")
    builder.add("orphan", 20, 300, parent="lost")
    builder.add("orphan child", 30, 290, parent="orphan")
    trace = builder.build()

    assert [span.operation for span in trace.orphans] == ["orphan"]
    assert relative_path(critical_path(trace)) == [
        ("root", 0, 10),
        ("a", 10, 40),
        ("root", 40, 100),
    ]


def test_trace_without_its_true_root_walks_the_tree_of_the_earliest_detached_span() -> None:
    builder = TraceBuilder()
    builder.add("orders", 0, 100, parent="gateway (not stored)")
    builder.add("db", 20, 70, parent="orders")
    builder.add("payment", 50, 80, parent="also missing")

    assert relative_path(critical_path(builder.build())) == [
        ("orders", 0, 20),
        ("db", 20, 70),
        ("orders", 70, 100),
    ]


def test_zero_duration_root_has_an_empty_path() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 0)
    builder.add("a", 0, 0, parent="root")

    assert critical_path(builder.build()) == []


def test_zero_duration_child_leaves_no_segment() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    builder.add("instant", 50, 50, parent="root")

    assert relative_path(critical_path(builder.build())) == [("root", 0, 100)]


def test_children_with_identical_times_put_exactly_one_on_the_path() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    builder.add("a", 0, 100, parent="root")
    builder.add("b", 0, 100, parent="root")

    assert relative_path(critical_path(builder.build())) == [("a", 0, 100)]


def test_children_ending_together_put_the_longer_one_on_the_path() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    builder.add("short", 60, 90, parent="root")
    builder.add("long", 10, 90, parent="root")

    assert relative_path(critical_path(builder.build())) == [
        ("root", 0, 10),
        ("long", 10, 90),
        ("root", 90, 100),
    ]


def test_chain_of_5000_spans_does_not_hit_the_recursion_limit() -> None:
    segments = critical_path(chain(5000))

    assert len(segments) == 2 * 4999 + 1
    assert sum(segment.duration_ms for segment in segments) == pytest.approx(10_000)
    assert all(segment.duration_ms == pytest.approx(1) for segment in segments[:4999])
    assert segments[4999].span.operation == "s4999"
    assert segments[4999].duration_ms == pytest.approx(2)


def test_segments_are_frozen_values_in_epoch_ms() -> None:
    builder = TraceBuilder()
    root = builder.add("root", 0, 100)
    segment = critical_path(builder.build())[0]

    assert segment == CriticalSegment(root, EPOCH_MS, EPOCH_MS + 100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        segment.start = 0.0  # type: ignore[misc]  # the point is that assignment fails
