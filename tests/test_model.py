from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from asynctrace import ids
from asynctrace.model import (
    DROPPED_LOGS_TAG,
    DROPPED_TAGS_TAG,
    TRUNCATED_TAG,
    IndexEntry,
    Limits,
    Span,
    SpanDecodeError,
    Trace,
    decode_span,
    encode_span,
    spans_of,
    utc_day,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

SEED_SPAN = {
    "traceId": TRACE,
    "spanId": "00f067aa0ba902b7",
    "parentSpanId": None,
    "service": "orders",
    "operation": "GET /orders/{id}",
    "kind": "server",
    "startTime": 1764236400123.456,
    "endTime": 1764236402623.9,
    "duration": 2500.444,
    "status": "ok",
    "tags": {"http.method": "GET"},
    "logs": [{"timestamp": 1764236400200.1, "message": "cache miss", "level": "info"}],
}


def make(span_id: str, parent: str | None, start: float, duration: float, **extra: object) -> Span:
    data: dict[str, object] = {
        "traceId": TRACE,
        "spanId": span_id,
        "parentSpanId": parent,
        "service": extra.pop("service", "svc"),
        "operation": extra.pop("operation", span_id),
        "startTime": start,
        "duration": duration,
        "status": extra.pop("status", "ok"),
    }
    return Span.from_dict(data)


def test_ids_are_lowercase_hex_and_unique() -> None:
    span_ids = {ids.new_span_id() for _ in range(5000)}
    assert len(span_ids) == 5000
    assert all(ids.is_valid_span_id(value) for value in span_ids)
    assert ids.is_valid_trace_id(ids.new_trace_id())


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("0" * 32, False),
        ("A" * 32, False),
        ("a" * 31, False),
        ("g" * 32, False),
        (None, False),
        (TRACE, True),
    ],
)
def test_trace_id_validation(value: object, valid: bool) -> None:
    assert ids.is_valid_trace_id(value) is valid


def test_seed_span_round_trips_byte_for_byte_in_field_order() -> None:
    raw = json.dumps(SEED_SPAN, separators=(",", ":"))
    span = decode_span(raw)
    assert encode_span(span) == raw


def test_span_reads_typescript_tracer_output() -> None:
    # The original tracer wrote integer ms, "" for no parent, no kind, extra fields.
    raw = json.dumps(
        {
            "traceId": TRACE.upper(),
            "spanId": "00F067AA0BA902B7",
            "parentSpanId": "",
            "service": "api-gateway",
            "operation": "GET /",
            "startTime": 1764236400123,
            "endTime": 1764236400128,
            "status": "ok",
            "tags": {"http.status": 200, "cached": True},
            "logs": [{"timestamp": 1764236400124, "message": "hi"}],
            "resource": {"host": "a"},
        }
    )
    span = decode_span(raw)
    assert span.trace_id == TRACE
    assert span.span_id == "00f067aa0ba902b7"
    assert span.parent_span_id is None
    assert span.kind == "internal"
    assert span.duration == 5.0
    assert span.end_time == span.start_time + span.duration
    assert span.tags == {"http.status": "200", "cached": "true"}
    assert span.logs[0].level == "info"


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        json.dumps({**SEED_SPAN, "traceId": "0" * 32}),
        json.dumps({**SEED_SPAN, "traceId": "trace:injected"}),
        json.dumps({**SEED_SPAN, "spanId": "xyz"}),
        json.dumps({**SEED_SPAN, "parentSpanId": "nothex"}),
        json.dumps({**SEED_SPAN, "startTime": "yesterday"}),
        json.dumps({**SEED_SPAN, "duration": -1}),
        json.dumps({**SEED_SPAN, "status": "weird"}),
        json.dumps({**SEED_SPAN, "logs": "x"}),
    ],
)
def test_invalid_span_json_is_rejected_with_decode_error(raw: str) -> None:
    with pytest.raises(SpanDecodeError):
        decode_span(raw)


def test_corrupt_entries_are_skipped_and_counted() -> None:
    good = json.dumps(SEED_SPAN)
    spans, corrupt = spans_of([good, b"\xff\xfe", "{", good.replace("orders", "o2")])
    assert len(spans) == 2
    assert corrupt == 2


def test_tag_limit_counts_dropped_tags() -> None:
    span = Span(TRACE, "00f067aa0ba902b7", None, "svc", "op", limits=Limits(max_tags=2))
    for number in range(5):
        span.set_tag(f"k{number}", number)
    assert span.tags["k0"] == "0"
    assert span.tags[DROPPED_TAGS_TAG] == "3"


def test_long_strings_are_truncated_with_a_visible_mark() -> None:
    span = Span(TRACE, "00f067aa0ba902b7", None, "svc", "op", limits=Limits(max_string_length=10))
    span.set_tag("sql", "x" * 100)
    span.log("y" * 100)
    assert span.tags["sql"].startswith("x" * 10)
    assert span.tags["sql"].endswith("[truncated]")
    assert span.logs[0].message.endswith("[truncated]")
    assert span.tags[TRUNCATED_TAG] == "true"


def test_log_limit_counts_dropped_logs() -> None:
    span = Span(TRACE, "00f067aa0ba902b7", None, "svc", "op", limits=Limits(max_logs=1))
    span.log("one")
    span.log("two")
    assert [log.message for log in span.logs] == ["one"]
    assert span.tags[DROPPED_LOGS_TAG] == "1"


def test_span_ends_once_and_end_time_is_start_plus_duration() -> None:
    ended: list[Span] = []
    span = Span(TRACE, "00f067aa0ba902b7", None, "svc", "op", on_end=ended.append)
    span.end()
    span.end()
    assert ended == [span]
    assert span.end_time == span.start_time + span.duration
    span.set_tag("late", "x")
    assert "late" not in span.tags


def test_record_exception_marks_error_and_logs_type_and_message() -> None:
    span = Span(TRACE, "00f067aa0ba902b7", None, "svc", "op")
    span.record_exception(KeyError("card"))
    assert span.status == "error"
    assert span.tags["error"] == "true"
    assert span.tags["error.type"] == "KeyError"
    assert span.logs[0].level == "error"
    assert span.logs[0].message == "KeyError: 'card'"


def test_invalid_status_is_ignored_not_raised() -> None:
    span = Span(TRACE, "00f067aa0ba902b7", None, "svc", "op")
    span.set_status("broken")
    assert span.status == "ok"


def test_trace_arranges_tree_and_keeps_orphans_visible() -> None:
    root = make("a000000000000001", None, 1000, 100, service="gateway")
    child = make("a000000000000002", "a000000000000001", 1010, 50, service="orders")
    orphan = make("a000000000000003", "ffffffffffffffff", 1020, 10, service="payment")
    trace = Trace.from_spans([orphan, child, root], corrupt_entries=1)
    assert trace.root is root
    assert trace.orphans == (orphan,)
    assert trace.children_of(root) == (child,)
    assert trace.services == ("gateway", "orders", "payment")
    assert trace.total_duration == 100
    assert trace.corrupt_entries == 1
    assert not trace.is_complete
    assert [span.span_id for span, _ in trace.depth_first()] == [
        "a000000000000001",
        "a000000000000002",
        "a000000000000003",
    ]


def test_trace_without_its_root_uses_earliest_detached_span() -> None:
    first = make("b000000000000001", "cccccccccccccccc", 5, 10)
    second = make("b000000000000002", "dddddddddddddddd", 7, 30)
    trace = Trace.from_spans([second, first])
    assert trace.root is first
    assert trace.orphans == (second,)
    assert trace.total_duration == 32


def test_trace_dedupes_spans_written_twice() -> None:
    root = make("a000000000000001", None, 1000, 100)
    trace = Trace.from_spans([root, make("a000000000000001", None, 1000, 100)])
    assert len(trace.spans) == 1
    assert trace.duplicate_spans == 1


def test_trace_survives_a_parent_cycle() -> None:
    one = make("a000000000000001", "a000000000000002", 0, 1)
    two = make("a000000000000002", "a000000000000001", 0, 1)
    trace = Trace.from_spans([one, two])
    assert {span.span_id for span, _ in trace.depth_first()} == {one.span_id, two.span_id}


def test_index_entry_round_trips() -> None:
    span = make("a000000000000001", None, 1764236400123.5, 12.25, status="error")
    entry = IndexEntry.of(span)
    assert IndexEntry.decode(entry.encode()) == entry
    assert entry.is_root


def test_utc_day() -> None:
    assert utc_day(1764236400123.456) == "2025-11-27"


tag_texts = st.text(st.characters(codec="utf-8"), max_size=8)


@given(
    st.one_of(
        st.dictionaries(tag_texts, tag_texts, max_size=6),  # plain: the one-copy path
        st.dictionaries(
            st.one_of(tag_texts, st.integers(0, 9)),
            st.one_of(tag_texts, st.integers(), st.booleans(), st.none()),
            max_size=6,
        ),
    ),
    st.integers(1, 7),
    st.integers(1, 9),
)
@example({"a": "long value"}, 7, 3)  # a value to clip
@example({"long key": "a"}, 7, 3)  # a key to clip
@example({"k1": "a", "k2": "b", "k3": "c"}, 2, 9)  # one tag too many: counted
@example({"n": 1, "b": True}, 7, 9)  # values to convert
def test_set_tags_on_a_new_span_is_set_tag_one_by_one(
    tags: dict[object, object], max_tags: int, max_string_length: int
) -> None:
    # set_tags copies a new span's plain tags at once: the result must be what
    # set_tag gives tag by tag, whatever needs converting, clipping or counting.
    limits = Limits(max_tags=max_tags, max_string_length=max_string_length)
    at_once = Span(TRACE, "00f067aa0ba902b7", None, "svc", "op", limits=limits)
    one_by_one = Span(TRACE, "00f067aa0ba902b7", None, "svc", "op", limits=limits)
    at_once.set_tags(tags)  # type: ignore[arg-type]  # keys that are not str too
    for key, value in tags.items():
        one_by_one.set_tag(key, value)  # type: ignore[arg-type]
    assert at_once.tags == one_by_one.tags
    assert list(at_once.tags) == list(one_by_one.tags)
