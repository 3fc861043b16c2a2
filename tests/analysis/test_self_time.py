from __future__ import annotations

import pytest
from span_builder import TraceBuilder, chain

from asynctrace.analysis import self_time


def test_leaf_span_keeps_its_whole_duration() -> None:
    builder = TraceBuilder()
    root = builder.add("root", 0, 100)

    assert self_time(builder.build()) == {root.span_id: 100}


def test_sequential_children_are_subtracted() -> None:
    builder = TraceBuilder()
    root = builder.add("root", 0, 100)
    a = builder.add("a", 10, 40, parent="root")
    b = builder.add("b", 40, 90, parent="root")

    assert self_time(builder.build()) == {root.span_id: 20, a.span_id: 30, b.span_id: 50}


def test_concurrent_children_count_once_not_summed() -> None:
    builder = TraceBuilder()
    root = builder.add("root", 0, 120)
    for name in ("a", "b", "c"):
        builder.add(name, 10, 110, parent="root")

    assert self_time(builder.build())[root.span_id] == 20


def test_partly_overlapping_children_subtract_their_union() -> None:
    builder = TraceBuilder()
    root = builder.add("root", 0, 100)
    builder.add("a", 10, 60, parent="root")
    builder.add("b", 40, 90, parent="root")
    builder.add("c", 95, 95, parent="root")

    assert self_time(builder.build())[root.span_id] == 20


def test_overrunning_child_only_covers_its_parent_while_the_parent_ran() -> None:
    builder = TraceBuilder()
    root = builder.add("root", 0, 100)
    late = builder.add("late", 50, 150, parent="root")
    early = builder.add("early", -30, 10, parent="root")  # clock skew

    times = self_time(builder.build())

    assert times[root.span_id] == 40
    assert times[late.span_id] == 100
    assert times[early.span_id] == 40


def test_child_covering_more_than_its_parent_leaves_zero_not_a_negative() -> None:
    builder = TraceBuilder()
    root = builder.add("root", 0, 100)
    builder.add("a", -50, 200, parent="root")
    builder.add("b", 0, 100, parent="root")

    assert self_time(builder.build())[root.span_id] == 0


def test_child_outside_its_parent_takes_nothing_away() -> None:
    builder = TraceBuilder()
    root = builder.add("root", 0, 100)
    builder.add("after", 100, 130, parent="root")

    assert self_time(builder.build())[root.span_id] == 100


def test_orphans_get_their_own_self_time() -> None:
    builder = TraceBuilder()
    builder.add("root", 0, 100)
    orphan = builder.add("orphan", 10, 60, parent="lost")
    builder.add("orphan child", 20, 30, parent="orphan")

    assert self_time(builder.build())[orphan.span_id] == 40


def test_every_span_of_a_5000_span_chain_gets_an_entry() -> None:
    trace = chain(5000)

    times = self_time(trace)

    assert len(times) == 5000
    assert times[trace.root.span_id] == pytest.approx(2)
    assert sum(times.values()) == pytest.approx(trace.root.duration)
